// SPDX-License-Identifier: Apache-2.0
// The request log and injected failures (PreRoute), and the /_fake/ endpoints that arm faults,
// change settings and report what the server saw (docs/fake-apiserver.md).
#include <cctype>
#include <cstdlib>
#include <iostream>
#include <thread>
#include <vector>

#include "server.h"

namespace fake_apiserver {
namespace {

using Clock = std::chrono::steady_clock;

}  // namespace

httplib::Server::HandlerResponse Server::PreRoute(const httplib::Request& req,
                                                  httplib::Response& res) {
  // gzip off: the request is answered as if it had no Accept-Encoding, so cpp-httplib sends
  // identity bodies. The pre-routing handler gets the server's own (non-const) Request
  // object, which it only reads from here on.
  if (!faults_.gzip) {
    auto& headers = const_cast<httplib::Request&>(req).headers;
    headers.erase("Accept-Encoding");
  }
  if (req.path.rfind("/_fake/", 0) == 0) return httplib::Server::HandlerResponse::Unhandled;
  std::string line = req.method + " " + req.path;
  if (!req.params.empty()) {
    std::string q;
    for (const auto& [k, v] : req.params) q += (q.empty() ? "?" : "&") + k + "=" + v;
    line += q;
  }
  if (flags_.verbose) std::cerr << line << std::endl;
  int delay_ms;
  {
    std::lock_guard lock(faults_.mu);
    faults_.requests.push_back(line);
    faults_.request_times_ms.push_back(
        std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now().time_since_epoch())
            .count());
    if (faults_.requests.size() > 10000) {
      faults_.requests.pop_front();
      faults_.request_times_ms.pop_front();
    }
    ++faults_.request_count;
    delay_ms = faults_.delay_ms;
  }
  if (delay_ms > 0) std::this_thread::sleep_for(std::chrono::milliseconds(delay_ms));
  if (!Authorized(req)) {
    SendError(res, {401, "Unauthorized", "Unauthorized"});
    return httplib::Server::HandlerResponse::Handled;
  }
  std::lock_guard lock(faults_.mu);
  if (faults_.fail_count > 0 && line.find(faults_.fail_match) != std::string::npos) {
    --faults_.fail_count;
    int code = faults_.fail_code;
    if (code == 0) {
      // A connection dropped mid-body: 200 with a Content-Length the body never reaches.
      res.status = 200;
      res.set_content_provider(
          1 << 20, "application/json", [](size_t offset, size_t, httplib::DataSink& sink) {
            if (offset > 0) return false;  // abort: cpp-httplib closes the connection
            static const std::string kStart = R"({"kind":"List","apiVersion":"v1","items":[)";
            return sink.write(kStart.data(), kStart.size());
          });
      return httplib::Server::HandlerResponse::Handled;
    }
    ApiError e{code,
               code == 429   ? "TooManyRequests"
               : code == 403 ? "Forbidden"
               : code == 401 ? "Unauthorized"
                             : "InternalError",
               "injected failure (fake-apiserver)"};
    SendJson(res, code, StatusBody(e));
    if (code == 429) res.set_header("Retry-After", std::to_string(faults_.retry_after_s));
    return httplib::Server::HandlerResponse::Handled;
  }
  return httplib::Server::HandlerResponse::Unhandled;
}

void Server::InstallFaultEndpoints() {
  auto ok = [](httplib::Response& res) { SendJson(res, 200, {{"ok", true}}); };
  http_->Post("/_fake/drop-watches", [this, ok](const httplib::Request&, httplib::Response& res) {
    store_.DropWatches();
    ok(res);
  });
  http_->Post("/_fake/close-watches", [this, ok](const httplib::Request&, httplib::Response& res) {
    store_.CloseWatches();
    ok(res);
  });
  http_->Post("/_fake/expire-watches",
              [this, ok](const httplib::Request& req, httplib::Response& res) {
                // ?code=N&reason=R sends another Status (a 500 InternalError, ...).
                ApiError e{410, "Expired", ""};
                if (req.has_param("code")) e.code = std::atoi(req.get_param_value("code").c_str());
                if (req.has_param("reason"))
                  e.reason = req.get_param_value("reason");
                else if (e.code != 410)
                  e.reason = "InternalError";
                store_.ExpireWatches(e);
                ok(res);
              });
  http_->Post("/_fake/restart", [this, ok](const httplib::Request&, httplib::Response& res) {
    store_.RestartWithResetResourceVersions();
    ok(res);
  });
  http_->Post("/_fake/compact", [this, ok](const httplib::Request&, httplib::Response& res) {
    store_.Compact();
    ok(res);
  });
  http_->Post("/_fake/bookmark", [this, ok](const httplib::Request&, httplib::Response& res) {
    store_.BookmarkNow();
    ok(res);
  });
  http_->Post("/_fake/fail", [this, ok](const httplib::Request& req, httplib::Response& res) {
    std::lock_guard lock(faults_.mu);
    faults_.fail_count = std::atoi(req.get_param_value("count").c_str());
    faults_.fail_code =
        req.has_param("code") ? std::atoi(req.get_param_value("code").c_str()) : 500;
    faults_.fail_match = req.get_param_value("match");
    faults_.retry_after_s =
        req.has_param("retryAfter") ? std::atoi(req.get_param_value("retryAfter").c_str()) : 1;
    ok(res);
  });
  http_->Post("/_fake/delay", [this, ok](const httplib::Request& req, httplib::Response& res) {
    std::lock_guard lock(faults_.mu);
    faults_.delay_ms = std::atoi(req.get_param_value("ms").c_str());
    ok(res);
  });
  http_->Post("/_fake/token", [this, ok](const httplib::Request& req, httplib::Response& res) {
    std::lock_guard lock(faults_.mu);
    faults_.token = req.body;
    while (!faults_.token.empty() && isspace(uint8_t(faults_.token.back())))
      faults_.token.pop_back();
    ok(res);
  });
  http_->Post("/_fake/settings", [this, ok](const httplib::Request& req, httplib::Response& res) {
    json s = json::parse(req.body, nullptr, false);
    if (!s.is_object()) return SendError(res, {400, "BadRequest", "JSON object expected"});
    std::lock_guard lock(faults_.mu);
    if (s.contains("goneAsHttpStatus") && s["goneAsHttpStatus"].is_boolean())
      faults_.gone_as_http_status = s["goneAsHttpStatus"].get<bool>();
    if (s.contains("bookmarkIntervalMs") && s["bookmarkIntervalMs"].is_number())
      faults_.bookmark_interval_ms = s["bookmarkIntervalMs"].get<int>();
    if (s.contains("gzip") && s["gzip"].is_boolean()) faults_.gzip = s["gzip"].get<bool>();
    if (s.contains("tooLargeWaitMs") && s["tooLargeWaitMs"].is_number())
      faults_.too_large_wait_ms = s["tooLargeWaitMs"].get<int>();
    ok(res);
  });
  http_->Get("/_fake/requests", [this](const httplib::Request&, httplib::Response& res) {
    std::lock_guard lock(faults_.mu);
    SendJson(res, 200,
             {{"count", faults_.request_count},
              {"bookmarksSent", faults_.bookmarks_sent.load()},
              {"gzipResponses", faults_.gzip_responses.load()},
              {"recent",
               json(std::vector<std::string>(faults_.requests.begin(), faults_.requests.end()))},
              {"recentTimesMs", json(std::vector<int64_t>(faults_.request_times_ms.begin(),
                                                          faults_.request_times_ms.end()))}});
  });
  http_->Get("/_fake/watches", [this](const httplib::Request&, httplib::Response& res) {
    std::lock_guard lock(faults_.mu);
    SendJson(res, 200, {{"open", faults_.open_watches}});
  });
  http_->Get("/_fake/healthz", [ok](const httplib::Request&, httplib::Response& res) { ok(res); });
}

}  // namespace fake_apiserver
