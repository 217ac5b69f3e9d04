// SPDX-License-Identifier: Apache-2.0
// Watch streams: the "get state and start" snapshot, the replay from a resourceVersion, BOOKMARKs,
// keep-alive newlines, and the ends the fault endpoints ask for (drop, close, expire).
#include <algorithm>
#include <cstdlib>
#include <memory>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include "server.h"

namespace fake_apiserver {
namespace {

using Clock = std::chrono::steady_clock;

// Counts a stream in Faults::open_watches for as long as it lives: from the moment it took its
// snapshot of the fault signals (a drop, close or expire asked for from then on reaches it)
// until cpp-httplib releases it. Tests wait for their clients' watches to be counted before they
// inject a fault meant for an open watch or for the next request (GET /_fake/watches).
class OpenWatch {
 public:
  OpenWatch(Faults* faults, std::string kind) : faults_(faults), kind_(std::move(kind)) {
    std::lock_guard lock(faults_->mu);
    ++faults_->open_watches[kind_];
  }
  ~OpenWatch() {
    std::lock_guard lock(faults_->mu);
    if (--faults_->open_watches[kind_] <= 0) faults_->open_watches.erase(kind_);
  }
  OpenWatch(const OpenWatch&) = delete;
  OpenWatch& operator=(const OpenWatch&) = delete;

 private:
  Faults* faults_;
  std::string kind_;
};

struct WatchState {
  const ResourceType* type;
  Filter filter;
  uint64_t after_rv = 0;
  WatchSignals seen;
  Clock::time_point deadline;
  Clock::time_point next_bookmark;
  Clock::time_point next_keepalive;
  bool bookmarks = false;
  std::vector<WatchEvent> initial;  // synthetic ADDED events still to send
  size_t initial_sent = 0;
  std::unique_ptr<OpenWatch> open;
};

std::string EventLine(const std::string& type, const json& object) {
  return json{{"type", type}, {"object", object}}.dump() + "\n";
}

}  // namespace

void Server::Watch(const httplib::Request& req, httplib::Response& res, const Target& t,
                   const Filter& filter) {
  auto st = std::make_shared<WatchState>();
  st->type = t.type;
  st->filter = filter;
  st->seen = store_.Signals();
  st->open = std::make_unique<OpenWatch>(&faults_, t.type->kind);
  std::string rv = req.get_param_value("resourceVersion");
  int timeout_s = 1800;
  if (req.has_param("timeoutSeconds"))
    timeout_s = std::atoi(req.get_param_value("timeoutSeconds").c_str());
  st->deadline = Clock::now() + std::chrono::seconds(timeout_s);
  st->bookmarks = req.get_param_value("allowWatchBookmarks") == "true";
  int bookmark_ms, gone_as_status;
  {
    std::lock_guard lock(faults_.mu);
    bookmark_ms = faults_.bookmark_interval_ms;
    gone_as_status = faults_.gone_as_http_status;
  }
  st->next_bookmark = Clock::now() + std::chrono::milliseconds(bookmark_ms);
  st->next_keepalive = Clock::now() + std::chrono::seconds(5);
  std::optional<ApiError> too_old;
  if (rv.empty() || rv == "0") {
    // "Get state and start": synthetic ADDED events for what exists now.
    st->initial = store_.Snapshot(*t.type, filter, &st->after_rv);
  } else {
    char* end = nullptr;
    st->after_rv = std::strtoull(rv.c_str(), &end, 10);
    if (!end || *end) return SendError(res, {400, "BadRequest", "invalid resourceVersion: " + rv});
    too_old = store_.CheckWatchable(st->after_rv);
    if (too_old && gone_as_status) return SendError(res, *too_old);
    // The watch cache waits for an RV it has not seen, then sends one ERROR event (504
    // ResourceVersionTooLarge) on an HTTP 200 stream.
    if (!too_old) too_old = store_.WaitForRv(st->after_rv, Clock::now() + TooLargeWait());
  }
  res.status = 200;
  // The parameter keeps cpp-httplib from gzip-compressing the stream (it would hold events
  // back in the compressor); clients pick the JSON decoder from the media type alone.
  res.set_chunked_content_provider("application/json;stream=watch", [this, st, too_old,
                                                                     bookmark_ms](
                                                                        size_t, httplib::DataSink&
                                                                                    sink) mutable {
    auto write = [&](const std::string& s) { return sink.write(s.data(), s.size()); };
    if (too_old) {
      bool ok = write(EventLine("ERROR", StatusBody(*too_old)));
      sink.done();
      return ok;
    }
    if (st->initial_sent < st->initial.size()) {
      std::string batch;
      for (size_t n = 0; n < 500 && st->initial_sent < st->initial.size(); ++n)
        batch += EventLine("ADDED", st->initial[st->initial_sent++].object);
      if (st->initial_sent == st->initial.size()) st->initial.clear();
      return write(batch);
    }
    auto now = Clock::now();
    auto wake = std::min({st->deadline, st->next_bookmark, st->next_keepalive});
    std::vector<WatchEvent> events;
    auto r = store_.WaitEvents(*st->type, st->filter, st->after_rv, st->seen, wake, &events);
    if (r.signals.stop != st->seen.stop || r.signals.drop != st->seen.drop) {
      return false;  // abrupt close: no terminating chunk
    }
    if (r.too_old || r.signals.expire != st->seen.expire) {
      ApiError gone{410, "Expired", "too old resource version: " + std::to_string(st->after_rv)};
      if (!r.too_old && r.signals.expire_error.code != 410) {
        gone = r.signals.expire_error;
        gone.message = "injected watch error (fake-apiserver)";
      }
      bool ok = write(EventLine("ERROR", StatusBody(gone)));
      sink.done();
      return ok;
    }
    std::string batch;
    for (const auto& e : events) batch += EventLine(e.type, e.object);
    st->after_rv = std::max(st->after_rv, r.now_rv);
    now = Clock::now();
    bool bookmark_now = r.signals.bookmark != st->seen.bookmark;
    bool bookmarked = false;
    if (st->bookmarks && (bookmark_now || now >= st->next_bookmark)) {
      json obj = {{"kind", st->type->kind},
                  {"apiVersion", st->type->ApiVersion()},
                  {"metadata", {{"resourceVersion", std::to_string(st->after_rv)}}}};
      batch += EventLine("BOOKMARK", obj);
      bookmarked = true;
    }
    if (now >= st->next_bookmark) st->next_bookmark = now + std::chrono::milliseconds(bookmark_ms);
    // A lone newline (whitespace between JSON values) lets a dead client be noticed:
    // the write after the peer went away fails.
    if (batch.empty() && now >= st->next_keepalive) batch = "\n";
    if (now >= st->next_keepalive) st->next_keepalive = now + std::chrono::seconds(5);
    st->seen.bookmark = r.signals.bookmark;
    if (!batch.empty() && !write(batch)) return false;
    if (bookmarked) ++faults_.bookmarks_sent;
    if (r.signals.close != st->seen.close || now >= st->deadline) sink.done();
    return true;
  });
}

}  // namespace fake_apiserver
