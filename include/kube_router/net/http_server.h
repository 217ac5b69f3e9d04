// The agent's HTTP server (/healthz, /metrics, the routing status view, health-check node
// ports) on cpp-httplib, hardened for a port that listens on the node IP:
//
//  * a gate thread accepts and holds each new connection, without a worker, until its whole
//    request head has arrived (peeked, not read); a head still incomplete after
//    `head_deadline` is closed, so idle and slowloris clients cost one fd each and never a
//    worker, and are evicted on time;
//  * open connections are capped per source address (above it a new connection is closed at
//    once) and in total (when full, the oldest connection still waiting for its head is
//    closed to make room, so stalled clients from many sources cannot lock a probe out);
//  * a fixed pool of workers runs httplib on complete heads only (one request per connection,
//    bounded queue); a response still being written `serve_deadline` after its first byte is
//    cut (the handler's own time does not count);
//  * accept() failing for lack of descriptors or memory (EMFILE, ENFILE, ...) pauses accepting
//    with a growing back-off instead of spinning.
//
// Routes are exact paths (the query string is ignored), GET and HEAD only: 405 for other
// methods, 404 for unknown paths, 400 for what httplib cannot parse, 431 for heads over
// `max_head_bytes`; request bodies are refused.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <string_view>

#include "kube_router/base/status.h"

namespace kr::net {

// Not "HttpResponse": http_client.h defines kr::net::HttpResponse, and two different structs
// of one name in one namespace break the one-definition rule (the linker kept one inline
// destructor for both: /healthz freed a garbage pointer and the agent crashed).
struct HttpServerResponse {
  int status = 200;
  std::string content_type = "text/plain; charset=utf-8";
  std::string body;
};

// Called on a worker thread for each GET/HEAD of its path; must be thread-safe.
using HttpHandler = std::function<HttpServerResponse()>;
using HttpRoutes = std::map<std::string, HttpHandler>;  // exact path → handler

struct HttpServerLimits {
  size_t workers = 2;                              // threads running requests
  size_t queue = 16;                               // complete requests waiting for a worker
  size_t max_connections = 256;                    // open connections in every state
  size_t max_connections_per_source = 8;           // ... from one source address
  std::chrono::milliseconds head_deadline{3000};   // accept → complete request head
  std::chrono::milliseconds serve_deadline{5000};  // request read; first byte → response written
  size_t max_head_bytes = 8192;
};

// Counters since Start (for tests and logs).
struct HttpServerStats {
  uint64_t served = 0;              // connections handed to a worker
  uint64_t refused_per_source = 0;  // closed at accept: source over its cap
  uint64_t refused_full = 0;        // closed at accept or dispatch: server full
  uint64_t head_timeouts = 0;       // closed: head incomplete at its deadline
  uint64_t evicted_for_room = 0;    // closed: oldest waiting head, to admit a new client
  uint64_t serve_timeouts = 0;      // cut: response not written by its deadline
  uint64_t accept_backoffs = 0;     // accept() out of descriptors/memory
};

class HttpServer {
 public:
  // Listens on `address` ("" = every IPv4 and IPv6 address; otherwise a literal IP, no name
  // lookups) and `port` (0 = a free port, see port()). Fails naming address, port and reason.
  static Result<std::unique_ptr<HttpServer>> Start(const std::string& address, uint16_t port,
                                                   HttpRoutes routes, HttpServerLimits limits = {});
  ~HttpServer();  // Stop()
  HttpServer(const HttpServer&) = delete;
  HttpServer& operator=(const HttpServer&) = delete;

  uint16_t port() const;
  HttpServerStats stats() const;
  // Stops accepting, closes waiting connections, cuts the ones in progress and joins every
  // thread. Idempotent.
  void Stop();

  // Serves one request from `fd` on the calling thread and closes it (fuzzing and tests).
  void ServeConnectionForTest(int fd);

  class Impl;

 private:
  explicit HttpServer(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

enum class HeadScan { kIncomplete, kComplete, kTooLarge };
// Whether `bytes` (the start of a connection) hold a whole request head: an empty line ends
// it (CRLF CRLF, or LF LF as lenient parsers accept). kTooLarge when no end is within
// `max_head_bytes`.
HeadScan ScanRequestHead(std::string_view bytes, size_t max_head_bytes);

}  // namespace kr::net
