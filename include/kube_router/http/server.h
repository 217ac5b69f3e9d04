// A deliberately small HTTP/1.1 server on plain sockets for /healthz and /metrics: GET and
// HEAD of fixed paths, one request per connection (Connection: close), bounded request size
// and time. The static agent cannot link cpp-httplib, and it needs nothing more than this.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include "kube_router/base/status.h"

namespace kr::http {

struct Response {
  int status = 200;
  std::string content_type = "text/plain; charset=utf-8";
  std::string body;
};

// Called on a connection thread for each GET/HEAD of its path; must be thread-safe.
using Handler = std::function<Response()>;
using Routes = std::map<std::string, Handler>;  // exact path (query string ignored) → handler

class Server {
 public:
  // Listens on `address` ("" = every address, IPv4 and IPv6; otherwise a literal IP — no
  // name lookups) and `port` (0 = a free port, see port()). Fails naming the address and the
  // reason (e.g. "address already in use").
  static Result<std::unique_ptr<Server>> Start(const std::string& address, uint16_t port,
                                               Routes routes);
  ~Server();  // Stop()
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  uint16_t port() const { return port_; }
  // Stops accepting, waits for the requests in progress (each is bounded in time). Idempotent.
  void Stop();

 private:
  Server(int listen_fd, uint16_t port, Routes routes);
  void AcceptLoop();
  void Serve(int fd);

  int listen_fd_;
  int wake_pipe_[2] = {-1, -1};
  uint16_t port_;
  Routes routes_;
  std::thread acceptor_;
  std::mutex mu_;
  std::condition_variable idle_;
  int active_connections_ = 0;  // guarded by mu_
  std::atomic<bool> stopped_{false};
};

// Splits a raw request head into method and path; exposed for the fuzz and unit tests.
// Returns an error for anything that is not "<METHOD> <target> HTTP/1.x".
struct RequestLine {
  std::string method;
  std::string path;  // without the query string
};
Result<RequestLine> ParseRequestLine(const std::string& head);

// "HTTP/1.1 <code> <reason>" + headers + body, as sent on the wire.
std::string FormatResponse(const Response& response, bool include_body);

}  // namespace kr::http
