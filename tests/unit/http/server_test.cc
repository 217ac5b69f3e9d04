// Talks to the server over real loopback sockets, with a raw client (no HTTP library), so the
// bytes on the wire are what is checked.
#include "kube_router/http/server.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>

namespace kr::http {
namespace {

// Connects to 127.0.0.1:port, sends `request`, returns everything until the server closes.
std::string RoundTrip(uint16_t port, const std::string& request) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  EXPECT_GE(fd, 0);
  timeval tv{10, 0};  // a broken server fails the test instead of hanging it
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(port);
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  EXPECT_EQ(connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
  EXPECT_EQ(send(fd, request.data(), request.size(), MSG_NOSIGNAL),
            static_cast<ssize_t>(request.size()));
  std::string out;
  char buf[4096];
  ssize_t n;
  while ((n = recv(fd, buf, sizeof(buf), 0)) > 0) out.append(buf, static_cast<size_t>(n));
  close(fd);
  return out;
}

class ServerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    Routes routes;
    routes["/healthz"] = [] { return Response{200, "text/plain; charset=utf-8", "OK\n"}; };
    routes["/fail"] = [this] {
      ++fail_calls;
      return Response{500, "text/plain; charset=utf-8", "Unhealthy: X is late\n"};
    };
    auto s = Server::Start("127.0.0.1", 0, routes);
    ASSERT_TRUE(s.ok()) << s.error();
    server = std::move(*s);
    ASSERT_NE(server->port(), 0);
  }
  std::unique_ptr<Server> server;
  std::atomic<int> fail_calls{0};
};

TEST_F(ServerTest, ServesGet) {
  EXPECT_EQ(RoundTrip(server->port(), "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"),
            "HTTP/1.1 200 OK\r\nContent-Type: text/plain; charset=utf-8\r\n"
            "Content-Length: 3\r\nConnection: close\r\n\r\nOK\n");
}

TEST_F(ServerTest, IgnoresQueryStringAndAcceptsHttp10) {
  std::string r = RoundTrip(server->port(), "GET /healthz?verbose=1 HTTP/1.0\r\n\r\n");
  EXPECT_EQ(r.rfind("HTTP/1.1 200 OK\r\n", 0), 0u) << r;
}

TEST_F(ServerTest, HeadHasNoBody) {
  std::string r = RoundTrip(server->port(), "HEAD /healthz HTTP/1.1\r\n\r\n");
  EXPECT_EQ(r.rfind("HTTP/1.1 200 OK\r\n", 0), 0u) << r;
  EXPECT_NE(r.find("Content-Length: 3\r\n"), std::string::npos);
  EXPECT_EQ(r.substr(r.size() - 4), "\r\n\r\n");
}

TEST_F(ServerTest, PassesHandlerStatusThrough) {
  std::string r = RoundTrip(server->port(), "GET /fail HTTP/1.1\r\n\r\n");
  EXPECT_EQ(r.rfind("HTTP/1.1 500 Internal Server Error\r\n", 0), 0u) << r;
  EXPECT_NE(r.find("X is late"), std::string::npos);
  EXPECT_EQ(fail_calls, 1);
}

TEST_F(ServerTest, RejectsWhatItDoesNotServe) {
  struct Case {
    std::string request;
    std::string status_line;
  };
  const Case cases[] = {
      {"GET /nope HTTP/1.1\r\n\r\n", "HTTP/1.1 404 Not Found"},
      {"POST /healthz HTTP/1.1\r\nContent-Length: 0\r\n\r\n", "HTTP/1.1 405 Method Not Allowed"},
      {"garbage\r\n\r\n", "HTTP/1.1 400 Bad Request"},
      {"GET /healthz SPDY/3\r\n\r\n", "HTTP/1.1 400 Bad Request"},
      {"GET healthz HTTP/1.1\r\n\r\n", "HTTP/1.1 400 Bad Request"},
      {"GET /healthz HTTP/1.1\r\nX: " + std::string(20000, 'a') + "\r\n\r\n",
       "HTTP/1.1 431 Request Header Fields Too Large"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.request.substr(0, 40));
    std::string r = RoundTrip(server->port(), c.request);
    EXPECT_EQ(r.rfind(c.status_line + "\r\n", 0), 0u) << r;
  }
  EXPECT_EQ(fail_calls, 0);
}

TEST_F(ServerTest, SilentClientDoesNotBlockOthers) {
  // A client that connects and sends nothing holds one connection thread only.
  int idle = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(server->port());
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(connect(idle, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
  std::string r = RoundTrip(server->port(), "GET /healthz HTTP/1.1\r\n\r\n");
  EXPECT_EQ(r.rfind("HTTP/1.1 200 OK\r\n", 0), 0u) << r;
  close(idle);
}

TEST_F(ServerTest, StopIsIdempotentAndFreesThePort) {
  uint16_t port = server->port();
  server->Stop();
  server->Stop();
  auto again = Server::Start("127.0.0.1", port, {});
  EXPECT_TRUE(again.ok()) << again.error();
}

TEST(Server, BindErrorsNameTheAddress) {
  auto first = Server::Start("127.0.0.1", 0, {});
  ASSERT_TRUE(first.ok());
  auto clash = Server::Start("127.0.0.1", (*first)->port(), {});
  ASSERT_FALSE(clash.ok());
  EXPECT_NE(clash.error().find("127.0.0.1:" + std::to_string((*first)->port())), std::string::npos)
      << clash.error();
  auto bad = Server::Start("not-an-ip", 0, {});
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.error().find("not-an-ip"), std::string::npos);
}

TEST(Server, AllAddressesIncludesLoopback) {
  auto s = Server::Start("", 0, {{"/x", [] { return Response{200, "text/plain", "x"}; }}});
  ASSERT_TRUE(s.ok()) << s.error();
  std::string r = RoundTrip((*s)->port(), "GET /x HTTP/1.1\r\n\r\n");
  EXPECT_EQ(r.rfind("HTTP/1.1 200 OK\r\n", 0), 0u) << r;
}

TEST(RequestLine, Parses) {
  auto r = ParseRequestLine("GET /metrics?x=y HTTP/1.1\r\nHost: a\r\n\r\n");
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->method, "GET");
  EXPECT_EQ(r->path, "/metrics");
  for (const char* bad : {"", "GET", "GET /", "GET / HTTP/2", "get / HTTP/1.1", " / HTTP/1.1",
                          "GET  / HTTP/1.1", "GET / HTTP/1.1 extra"}) {
    EXPECT_FALSE(ParseRequestLine(bad).ok()) << bad;
  }
}

}  // namespace
}  // namespace kr::http
