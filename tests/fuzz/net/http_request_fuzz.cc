// Fuzzes the health/metrics HTTP server: the gate's head scanner, then a whole connection
// served by cpp-httplib with our routing (over a socketpair, on this thread). Never crashes,
// always answers with an HTTP/1.1 status line, and a well-formed GET of a route gets 200.
#include <sys/socket.h>
#include <unistd.h>

#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include "kube_router/net/http_server.h"

namespace {

kr::net::HttpServer& Server() {
  static auto server = [] {
    kr::net::HttpRoutes routes;
    routes["/healthz"] = [] { return kr::net::HttpServerResponse{200, "text/plain", "OK\n"}; };
    auto s = kr::net::HttpServer::Start("127.0.0.1", 0, routes);
    if (!s) std::abort();
    return std::move(*s);
  }();
  return *server;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  constexpr size_t kMaxHead = 8192;
  std::string_view input(reinterpret_cast<const char*>(data), size);
  auto scan = kr::net::ScanRequestHead(input, kMaxHead);
  std::string_view window = input.substr(0, std::min(size, kMaxHead));
  bool ended = window.find("\r\n\r\n") != std::string_view::npos ||
               window.find("\n\n") != std::string_view::npos;
  if ((scan == kr::net::HeadScan::kComplete) != ended) std::abort();
  if (scan == kr::net::HeadScan::kTooLarge && size < kMaxHead) std::abort();
  if (scan != kr::net::HeadScan::kComplete || size > 65536) return 0;

  int pair[2];
  if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, pair) != 0) std::abort();
  if (write(pair[0], data, size) != static_cast<ssize_t>(size)) std::abort();
  shutdown(pair[0], SHUT_WR);
  Server().ServeConnectionForTest(pair[1]);  // closes pair[1]
  std::string answer;
  char buf[4096];
  ssize_t n;
  while ((n = read(pair[0], buf, sizeof(buf))) > 0) answer.append(buf, static_cast<size_t>(n));
  close(pair[0]);
  if (!answer.empty() && answer.rfind("HTTP/1.1 ", 0) != 0) std::abort();
  if (input.rfind("GET /healthz HTTP/1.1\r\n\r\n", 0) == 0 &&
      answer.rfind("HTTP/1.1 200 OK\r\n", 0) != 0) {
    std::abort();
  }
  return 0;
}
