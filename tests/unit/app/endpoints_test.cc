// The agent's listeners as app/ starts them: /healthz logs a state change once, the status
// view is served where the options say, /metrics carries the process_* metrics.
#include "endpoints.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <spdlog/sinks/ostream_sink.h>
#include <spdlog/spdlog.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <sstream>

#include "kube_router/base/unique_fd.h"

namespace kr::app {
namespace {

using namespace std::chrono_literals;

std::string Get(uint16_t port, const std::string& path) {
  UniqueFd fd(socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  timeval tv{10, 0};
  setsockopt(fd.get(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  sockaddr_in to{};
  to.sin_family = AF_INET;
  to.sin_port = htons(port);
  to.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (connect(fd.get(), reinterpret_cast<sockaddr*>(&to), sizeof(to)) != 0) return "";
  std::string request = "GET " + path + " HTTP/1.1\r\n\r\n";
  if (send(fd.get(), request.data(), request.size(), MSG_NOSIGNAL) < 0) return "";
  std::string out;
  char buf[4096];
  for (ssize_t n; (n = recv(fd.get(), buf, sizeof(buf), 0)) > 0;) out.append(buf, n);
  return out;
}

// A port that was free a moment ago (the options have no "any port" value: 0 disables).
uint16_t FreePort() {
  UniqueFd fd(socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  bind(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof(addr));
  socklen_t len = sizeof(addr);
  getsockname(fd.get(), reinterpret_cast<sockaddr*>(&addr), &len);
  return ntohs(addr.sin_port);
}

class CapturedLog {
 public:
  CapturedLog() : previous_(spdlog::default_logger()) {
    auto sink = std::make_shared<spdlog::sinks::ostream_sink_mt>(out_);
    spdlog::set_default_logger(std::make_shared<spdlog::logger>("test", sink));
  }
  ~CapturedLog() { spdlog::set_default_logger(previous_); }
  size_t Count(const std::string& needle) const {
    std::string text = out_.str();
    size_t n = 0;
    for (auto at = text.find(needle); at != std::string::npos; at = text.find(needle, at + 1)) ++n;
    return n;
  }

 private:
  std::ostringstream out_;
  std::shared_ptr<spdlog::logger> previous_;
};

TEST(Endpoints, UnhealthyIsLoggedOnChangeNotPerProbe) {
  CapturedLog log;
  health::HealthChecker checker;
  checker.Register("NetworkPolicy", 10ms);
  checker.MarkStarted(health::Clock::now() - 1h);  // late from the start
  metrics::Registry registry;
  Options options;
  options.health_addr = "127.0.0.1";
  options.health_port = FreePort();
  auto endpoints = StartHealthAndMetrics(options, &checker, &registry);
  ASSERT_TRUE(endpoints.ok()) << endpoints.error();
  for (int i = 0; i < 20; ++i) {
    EXPECT_EQ(Get(options.health_port, "/healthz").rfind("HTTP/1.1 500", 0), 0u);
  }
  EXPECT_EQ(log.Count("health check failed"), 1u);
  checker.Heartbeat("NetworkPolicy");
  EXPECT_EQ(Get(options.health_port, "/healthz").rfind("HTTP/1.1 200", 0), 0u);
  EXPECT_EQ(log.Count("health check passes again"), 1u);
}

TEST(Endpoints, MetricsCarryTheProcessCollectorsNames) {
  health::HealthChecker checker;
  metrics::Registry registry;
  Options options;
  options.health_addr = options.metrics_addr = "127.0.0.1";
  options.health_port = options.metrics_port = FreePort();  // one shared server
  auto endpoints = StartHealthAndMetrics(options, &checker, &registry);
  ASSERT_TRUE(endpoints.ok()) << endpoints.error();
  ASSERT_EQ(endpoints->servers.size(), 1u);
  std::string text = Get(options.metrics_port, options.metrics_path);
  EXPECT_NE(text.find("\nprocess_resident_memory_bytes "), std::string::npos) << text;
  EXPECT_NE(text.find("\nprocess_start_time_seconds "), std::string::npos) << text;
}

// Moved from the routing tests with the server wiring: the status view on loopback.
TEST(Endpoints, StatusViewIsServedOnLoopback) {
  Options options;
  options.gobgp_admin_port = FreePort();
  auto server = StartStatusView(options, [] { return std::string(R"({"peers":[]})"); });
  ASSERT_TRUE(server.ok()) << server.error();
  ASSERT_TRUE(*server);
  std::string r = Get(options.gobgp_admin_port, "/status");
  EXPECT_EQ(r.rfind("HTTP/1.1 200", 0), 0u) << r;
  EXPECT_NE(r.find("application/json"), std::string::npos);
  EXPECT_NE(r.find("{\"peers\":[]}\n"), std::string::npos);
  options.gobgp_admin_port = 0;
  auto off = StartStatusView(options, [] { return std::string("{}"); });
  ASSERT_TRUE(off.ok());
  EXPECT_FALSE(*off);
}

}  // namespace
}  // namespace kr::app
