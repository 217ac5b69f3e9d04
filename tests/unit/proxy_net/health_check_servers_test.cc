// healthCheckNodePort servers on loopback: kube-router's body, counts per Service, servers
// following the Services, a busy port not stopping the others.
#include "kube_router/proxy/health_check_servers.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <vector>

namespace kr::proxy::health_check_servers_test {
namespace {

// A port that was free a moment ago (the kernel's choice for port 0).
uint16_t FreePort() {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr));
  socklen_t len = sizeof(addr);
  getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  close(fd);
  return ntohs(addr.sin_port);
}

// GET `path` from 127.0.0.1:port; the whole response, or "" when refused. 5 s deadline.
std::string Get(uint16_t port, const std::string& path) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(port);
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    close(fd);
    return "";
  }
  std::string request = "GET " + path + " HTTP/1.1\r\nHost: node\r\n\r\n";
  (void)!write(fd, request.data(), request.size());
  std::string response;
  char buf[4096];
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
  while (std::chrono::steady_clock::now() < deadline) {
    pollfd p{fd, POLLIN, 0};
    if (poll(&p, 1, 500) <= 0) continue;
    ssize_t n = read(fd, buf, sizeof(buf));
    if (n <= 0) break;
    response.append(buf, static_cast<size_t>(n));
  }
  close(fd);
  return response;
}

bool Answers(const std::string& response, int status, const std::string& body) {
  return response.starts_with("HTTP/1.1 " + std::to_string(status) + " ") &&
         response.ends_with("\r\n\r\n" + body);
}

TEST(HealthCheckResponse, IsKubeRoutersBodyWithoutOverflow) {
  EXPECT_EQ(HealthCheckResponse(0).status, 503);
  EXPECT_EQ(HealthCheckResponse(0).body, "No Service Endpoints Found");
  EXPECT_EQ(HealthCheckResponse(1).status, 200);
  EXPECT_EQ(HealthCheckResponse(1).body, "1 Service Endpoints found");
  // kube-router counts in an int8: 128 local endpoints wrapped to a negative count and a 503.
  EXPECT_EQ(HealthCheckResponse(128).status, 200);
  EXPECT_EQ(HealthCheckResponse(300).body, "300 Service Endpoints found");
}

TEST(HealthCheckServers, ServeCountsPerServiceAndFollowTheServices) {
  HealthCheckServers servers("127.0.0.1");
  const uint16_t a = FreePort();
  uint16_t b = FreePort();
  while (b == a) b = FreePort();
  ASSERT_TRUE(servers.Sync({{"default", "web", a, 3}, {"shop", "cart", b, 0}}).ok());
  EXPECT_TRUE(Answers(Get(a, "/healthz"), 200, "3 Service Endpoints found")) << Get(a, "/healthz");
  EXPECT_TRUE(Answers(Get(b, "/healthz"), 503, "No Service Endpoints Found"));
  EXPECT_TRUE(Get(a, "/other").starts_with("HTTP/1.1 404 "));

  // Counts change in place; the cart Service goes away and its port closes.
  ASSERT_TRUE(servers.Sync({{"default", "web", a, 0}}).ok());
  EXPECT_TRUE(Answers(Get(a, "/healthz"), 503, "No Service Endpoints Found"));
  EXPECT_EQ(Get(b, "/healthz"), "");
  ASSERT_TRUE(servers.Sync({{"default", "web", a, 200}}).ok());
  EXPECT_TRUE(Answers(Get(a, "/healthz"), 200, "200 Service Endpoints found"));
  EXPECT_EQ(servers.ports(), std::vector<uint16_t>{a});
  servers.StopAll();
  EXPECT_EQ(Get(a, "/healthz"), "");
}

TEST(HealthCheckServers, ABusyPortIsReportedAndRetriedWhileOthersWork) {
  // Something else holds this port.
  int holder = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(bind(holder, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
  ASSERT_EQ(listen(holder, 1), 0);
  socklen_t len = sizeof(addr);
  getsockname(holder, reinterpret_cast<sockaddr*>(&addr), &len);
  const uint16_t busy = ntohs(addr.sin_port);
  uint16_t free_port = FreePort();
  while (free_port == busy) free_port = FreePort();

  HealthCheckServers servers("127.0.0.1");
  Status s = servers.Sync({{"default", "a", busy, 1}, {"default", "b", free_port, 2}});
  EXPECT_FALSE(s.ok());
  EXPECT_NE(s.message().find("default/a"), std::string::npos) << s.message();
  EXPECT_TRUE(Answers(Get(free_port, "/healthz"), 200, "2 Service Endpoints found"));
  close(holder);
  ASSERT_TRUE(servers.Sync({{"default", "a", busy, 1}, {"default", "b", free_port, 2}}).ok());
  EXPECT_TRUE(Answers(Get(busy, "/healthz"), 200, "1 Service Endpoints found"));
}

TEST(HealthCheckServers, TwoServicesOnOnePortServeTheFirstByName) {
  HealthCheckServers servers("127.0.0.1");
  const uint16_t port = FreePort();
  ASSERT_TRUE(servers.Sync({{"zeta", "x", port, 0}, {"alpha", "y", port, 4}}).ok());
  EXPECT_TRUE(Answers(Get(port, "/healthz"), 200, "4 Service Endpoints found"));
  EXPECT_EQ(servers.ports().size(), 1u);
}

int OpenDescriptors() {
  int n = 0;
  for (const auto& e : std::filesystem::directory_iterator("/proc/self/fd")) n += !e.path().empty();
  return n;
}

// Issue 16, resource bounds: a healthCheckNodePort server (one per Service port, on the node
// address for anyone who reaches it) keeps answering while 400 half-sent requests from 50
// source addresses are held open, and holds at most its cap of them (net::HttpServer: 8 per
// source, 256 in total). In-process because the proxy cannot run on a host without ip_vs.
TEST(HealthCheckServers, KeepAnsweringUnderHeldIdleConnectionsWithinTheCap) {
  rlimit nofile{};
  getrlimit(RLIMIT_NOFILE, &nofile);
  nofile.rlim_cur = nofile.rlim_max;
  setrlimit(RLIMIT_NOFILE, &nofile);
  HealthCheckServers servers("");
  const uint16_t port = FreePort();
  ASSERT_TRUE(servers.Sync({{"default", "web", port, 2}}).ok());
  ASSERT_TRUE(Answers(Get(port, "/healthz"), 200, "2 Service Endpoints found"));
  const int before = OpenDescriptors();
  std::vector<int> held;
  const std::string partial = "GET /healthz HTTP/1.1\r\nHost: node\r\nX-Slow: ";
  for (int i = 0; i < 400; ++i) {
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    sockaddr_in src{}, dst{};
    src.sin_family = dst.sin_family = AF_INET;
    src.sin_addr.s_addr = htonl((127u << 24) | (10u + static_cast<unsigned>(i / 8)));
    bind(fd, reinterpret_cast<sockaddr*>(&src), sizeof(src));
    dst.sin_port = htons(port);
    dst.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    connect(fd, reinterpret_cast<sockaddr*>(&dst), sizeof(dst));
    pollfd p{fd, POLLOUT, 0};
    if (poll(&p, 1, 200) == 1) send(fd, partial.data(), partial.size(), MSG_NOSIGNAL);
    held.push_back(fd);
  }
  for (int i = 0; i < 10; ++i) {
    auto start = std::chrono::steady_clock::now();
    EXPECT_TRUE(Answers(Get(port, "/healthz"), 200, "2 Service Endpoints found")) << "probe " << i;
    EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(2)) << "probe " << i;
  }
  // Ours: the 400 client ends; the server's: at most its cap (and a few of its own).
  EXPECT_LE(OpenDescriptors(), before + 400 + 256 + 16);
  for (int fd : held) close(fd);
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(15);
  while (OpenDescriptors() > before + 16 && std::chrono::steady_clock::now() < deadline) {
    pollfd none{-1, 0, 0};
    poll(&none, 1, 100);  // poll interval of the deadline loop
  }
  EXPECT_LE(OpenDescriptors(), before + 16) << "descriptors of closed clients kept";
}

}  // namespace
}  // namespace kr::proxy::health_check_servers_test
