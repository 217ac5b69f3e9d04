// SPDX-License-Identifier: Apache-2.0
// fake-apiserver's HTTP server: discovery and the REST semantics of the resources
// (server.cc), fault injection and the request log (fault_injection.cc) and watch streams
// (watch_stream.cc), all over one ObjectStore.
#pragma once

#include <httplib.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <deque>
#include <map>
#include <mutex>
#include <optional>
#include <string>

#include "api_http.h"
#include "flags.h"
#include "object_store.h"

namespace fake_apiserver {

// Fault injection and run-time settings, changed through /_fake/ endpoints.
struct Faults {
  std::mutex mu;
  int fail_count = 0;
  int fail_code = 500;
  int retry_after_s = 1;
  std::string fail_match;  // only requests whose line contains this fail ("" = all)
  int delay_ms = 0;
  bool gone_as_http_status = false;  // watch from a compacted RV: HTTP 410 instead of ERROR
  int too_large_wait_ms = 1000;      // how long an RV beyond the current one is waited for
  int bookmark_interval_ms = 10000;
  std::string token;  // accepted bearer token ("" = none accepted unless no auth configured)
  std::deque<std::string> requests;      // recent API requests, "METHOD /path?query"
  std::deque<int64_t> request_times_ms;  // when each of `requests` arrived (steady clock)
  uint64_t request_count = 0;
  std::atomic<uint64_t> bookmarks_sent{0};  // BOOKMARK events written into watches
  std::atomic<bool> gzip{false};            // gzip JSON responses (--gzip, settings "gzip")
  std::atomic<uint64_t> gzip_responses{0};  // responses sent with Content-Encoding: gzip
  // Open watch streams by kind ("Pod", ...), as GET /_fake/watches reports them (OpenWatch in
  // watch_stream.cc keeps the count).
  std::map<std::string, int> open_watches;
};

class Server {
 public:
  Server(const Flags& flags, httplib::Server* http);

  ObjectStore& store() { return store_; }

  // Routes every endpoint on the httplib server given at construction.
  void Install();

 private:
  // server.cc
  bool Authorized(const httplib::Request& req);
  Filter FilterFrom(const httplib::Request& req, const Target& t, std::optional<ApiError>* err);
  void HandleResource(const httplib::Request& req, httplib::Response& res);
  std::chrono::milliseconds TooLargeWait();
  // fault_injection.cc: logs each API request and answers it with an injected failure when
  // one is armed; the /_fake/ endpoints.
  httplib::Server::HandlerResponse PreRoute(const httplib::Request& req, httplib::Response& res);
  void InstallFaultEndpoints();
  // watch_stream.cc
  void Watch(const httplib::Request& req, httplib::Response& res, const Target& t,
             const Filter& filter);

  const Flags& flags_;
  httplib::Server* http_;
  ObjectStore store_;
  Faults faults_;
};

}  // namespace fake_apiserver
