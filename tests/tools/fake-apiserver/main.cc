// SPDX-License-Identifier: Apache-2.0
// fake-apiserver: a small Kubernetes API server for tests (see docs/fake-apiserver.md). It
// implements the REST semantics of the resources the agent watches well enough for real
// clients (kubectl, client-go, our informers), plus fault-injection endpoints under /_fake/.
#include <httplib.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <deque>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <memory>
#include <mutex>
#include <random>
#include <sstream>
#include <thread>

#include "lib/files.h"
#include "manifests.h"
#include "object_store.h"
#include "resources.h"

namespace fake_apiserver {
namespace {

using Clock = std::chrono::steady_clock;
using kr::testing::ReadFile;

struct Flags {
  std::string listen = "127.0.0.1:0";
  std::string tls_cert, tls_key, client_ca;
  std::string token;
  std::string basic_auth;  // "user:password"
  std::vector<std::string> manifests;
  std::string kubeconfig_out;
  std::string kubeconfig_ca;  // CA written into --kubeconfig-out (default: --tls-cert)
  std::string kubeconfig_client_cert, kubeconfig_client_key;
  size_t history_limit = 200000;
  int bookmark_interval_ms = 10000;
  bool gzip = false;  // --gzip: gzip JSON responses for clients that accept it
  bool verbose = false;
  // Service ClusterIP/NodePort allocation (service_allocator.h); off when no range is given.
  std::string service_cidrs, node_port_range;
  bool graceful_pod_deletion = false;  // object_store.h: EnableGracefulPodDeletion
};

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
};

std::string Base64(const std::string& in) {
  static const char kAlphabet[] =
      "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  size_t i = 0;
  for (; i + 2 < in.size(); i += 3) {
    uint32_t v = (uint8_t(in[i]) << 16) | (uint8_t(in[i + 1]) << 8) | uint8_t(in[i + 2]);
    for (int s = 18; s >= 0; s -= 6) out += kAlphabet[(v >> s) & 63];
  }
  if (i + 1 == in.size()) {
    uint32_t v = uint8_t(in[i]) << 16;
    out += kAlphabet[(v >> 18) & 63];
    out += kAlphabet[(v >> 12) & 63];
    out += "==";
  } else if (i + 2 == in.size()) {
    uint32_t v = (uint8_t(in[i]) << 16) | (uint8_t(in[i + 1]) << 8);
    out += kAlphabet[(v >> 18) & 63];
    out += kAlphabet[(v >> 12) & 63];
    out += kAlphabet[(v >> 6) & 63];
    out += '=';
  }
  return out;
}

void SendJson(httplib::Response& res, int code, const json& body) {
  res.status = code;
  res.set_content(body.dump(), "application/json");
}

void SendError(httplib::Response& res, const ApiError& e) {
  if (e.code == 429) res.set_header("Retry-After", "1");
  SendJson(res, e.code, StatusBody(e));
}

template <typename T>
void SendOutcome(httplib::Response& res, Outcome<T>& outcome, int ok_code = 200) {
  if (auto* e = std::get_if<ApiError>(&outcome)) return SendError(res, *e);
  SendJson(res, ok_code, std::get<T>(outcome));
}

// What an API path names: a collection, an object or its status.
struct Target {
  const ResourceType* type = nullptr;
  std::string namespace_;
  std::string name;
  bool status = false;
};

std::vector<std::string> Split(const std::string& path) {
  std::vector<std::string> out;
  std::stringstream ss(path);
  std::string part;
  while (std::getline(ss, part, '/'))
    if (!part.empty()) out.push_back(part);
  return out;
}

// /api/v1/... or /apis/<group>/<version>/...: nullopt if not a resource path.
std::optional<Target> ParseTarget(const std::string& path) {
  auto parts = Split(path);
  std::string group, version;
  size_t i;
  if (parts.size() >= 3 && parts[0] == "api") {
    version = parts[1];
    i = 2;
  } else if (parts.size() >= 4 && parts[0] == "apis") {
    group = parts[1];
    version = parts[2];
    i = 3;
  } else {
    return std::nullopt;
  }
  std::vector<std::string> rest(parts.begin() + i, parts.end());
  Target t;
  // namespaces/<ns>/<resource>/... addresses a namespaced resource.
  if (rest.size() >= 3 && rest[0] == "namespaces") {
    t.namespace_ = rest[1];
    rest.erase(rest.begin(), rest.begin() + 2);
    t.type = FindByPath(group, version, rest[0]);
    if (!t.type || !t.type->namespaced) return std::nullopt;
  } else {
    t.type = FindByPath(group, version, rest[0]);
    if (!t.type) return std::nullopt;
  }
  if (rest.size() >= 2) t.name = rest[1];
  if (rest.size() == 3) {
    if (rest[2] != "status") return std::nullopt;
    t.status = true;
  }
  if (rest.size() > 3) return std::nullopt;
  return t;
}

json ApiResourceList(const std::string& group_version) {
  json resources = json::array();
  for (const auto& r : AllResources()) {
    if (r.ApiVersion() != group_version) continue;
    json verbs = {"create", "delete", "get", "list", "patch", "update", "watch"};
    resources.push_back({{"name", r.plural},
                         {"singularName", r.singular},
                         {"namespaced", r.namespaced},
                         {"kind", r.kind},
                         {"verbs", verbs},
                         {"shortNames", r.short_names}});
    resources.push_back({{"name", r.plural + "/status"},
                         {"singularName", ""},
                         {"namespaced", r.namespaced},
                         {"kind", r.kind},
                         {"verbs", {"get", "patch", "update"}}});
  }
  return {{"kind", "APIResourceList"},
          {"apiVersion", "v1"},
          {"groupVersion", group_version},
          {"resources", resources}};
}

json ApiGroup(const std::string& group) {
  std::string gv = group + "/v1";
  return {{"kind", "APIGroup"},
          {"apiVersion", "v1"},
          {"name", group},
          {"versions", {{{"groupVersion", gv}, {"version", "v1"}}}},
          {"preferredVersion", {{"groupVersion", gv}, {"version", "v1"}}}};
}

class Server {
 public:
  Server(const Flags& flags, httplib::Server* http) : flags_(flags), http_(http) {
    faults_.token = flags.token;
    faults_.bookmark_interval_ms = flags.bookmark_interval_ms;
    faults_.gzip = flags.gzip;
  }

  ObjectStore& store() { return store_; }

  void Install() {
    http_->new_task_queue = [] { return new httplib::ThreadPool(256); };
    http_->set_keep_alive_timeout(30);
    http_->set_payload_max_length(64 << 20);
    http_->set_pre_routing_handler(
        [this](const httplib::Request& req, httplib::Response& res) { return PreRoute(req, res); });
    // cpp-httplib (built with CPPHTTPLIB_ZLIB_SUPPORT) gzips a response with a compressible
    // content type (application/json, not the watch's application/json;stream=watch) when the
    // request's Accept-Encoding allows it; this runs after that, before the head is written.
    http_->set_post_routing_handler([this](const httplib::Request&, httplib::Response& res) {
      if (res.get_header_value("Content-Encoding") == "gzip") ++faults_.gzip_responses;
    });
    http_->Get("/version", [](const httplib::Request&, httplib::Response& res) {
      SendJson(res, 200,
               {{"major", "1"},
                {"minor", "29"},
                {"gitVersion", "v1.29.0-fake"},
                {"gitCommit", "fake"},
                {"gitTreeState", "clean"},
                {"buildDate", "2024-01-01T00:00:00Z"},
                {"goVersion", "go1.21"},
                {"compiler", "gc"},
                {"platform", "linux/amd64"}});
    });
    http_->Get("/api", [](const httplib::Request&, httplib::Response& res) {
      SendJson(res, 200,
               {{"kind", "APIVersions"},
                {"versions", {"v1"}},
                {"serverAddressByClientCIDRs",
                 {{{"clientCIDR", "0.0.0.0/0"}, {"serverAddress", "127.0.0.1"}}}}});
    });
    http_->Get("/api/v1", [](const httplib::Request&, httplib::Response& res) {
      SendJson(res, 200, ApiResourceList("v1"));
    });
    http_->Get("/apis", [](const httplib::Request&, httplib::Response& res) {
      json groups = json::array();
      for (const char* g : {"discovery.k8s.io", "networking.k8s.io", "coordination.k8s.io"})
        groups.push_back(ApiGroup(g));
      SendJson(res, 200, {{"kind", "APIGroupList"}, {"apiVersion", "v1"}, {"groups", groups}});
    });
    http_->Get(R"(/apis/([^/]+))", [](const httplib::Request& req, httplib::Response& res) {
      std::string g = req.matches[1];
      for (const auto& r : AllResources()) {
        if (r.group == g) return SendJson(res, 200, ApiGroup(g));
      }
      SendError(res, {404, "NotFound", "the server could not find the requested resource"});
    });
    http_->Get(R"(/apis/([^/]+)/([^/]+))", [](const httplib::Request& req, httplib::Response& res) {
      std::string gv = std::string(req.matches[1]) + "/" + std::string(req.matches[2]);
      json list = ApiResourceList(gv);
      if (list["resources"].empty())
        return SendError(res,
                         {404, "NotFound", "the server could not find the requested resource"});
      SendJson(res, 200, list);
    });
    InstallFaultEndpoints();
    auto handler = [this](const httplib::Request& req, httplib::Response& res) {
      HandleResource(req, res);
    };
    http_->Get(R"(/apis?/.*)", handler);
    http_->Post(R"(/apis?/.*)", handler);
    http_->Put(R"(/apis?/.*)", handler);
    http_->Patch(R"(/apis?/.*)", handler);
    http_->Delete(R"(/apis?/.*)", handler);
  }

 private:
  bool Authorized(const httplib::Request& req) {
    bool cert_auth = !flags_.client_ca.empty();
    std::string token;
    {
      std::lock_guard lock(faults_.mu);
      token = faults_.token;
    }
    bool basic = !flags_.basic_auth.empty();
    if (!cert_auth && token.empty() && !basic) return true;  // no authentication configured
    if (basic && req.get_header_value("Authorization") == "Basic " + Base64(flags_.basic_auth))
      return true;
    if (cert_auth && req.ssl) {
      SSL* ssl = const_cast<SSL*>(req.ssl);
      X509* peer = SSL_get_peer_certificate(ssl);
      bool ok = peer && SSL_get_verify_result(ssl) == X509_V_OK;
      if (peer) X509_free(peer);
      if (ok) return true;
    }
    if (!token.empty() && req.get_header_value("Authorization") == "Bearer " + token) return true;
    return false;
  }

  httplib::Server::HandlerResponse PreRoute(const httplib::Request& req, httplib::Response& res) {
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

  void InstallFaultEndpoints() {
    auto ok = [](httplib::Response& res) { SendJson(res, 200, {{"ok", true}}); };
    http_->Post("/_fake/drop-watches", [this, ok](const httplib::Request&, httplib::Response& res) {
      store_.DropWatches();
      ok(res);
    });
    http_->Post("/_fake/close-watches",
                [this, ok](const httplib::Request&, httplib::Response& res) {
                  store_.CloseWatches();
                  ok(res);
                });
    http_->Post("/_fake/expire-watches",
                [this, ok](const httplib::Request& req, httplib::Response& res) {
                  // ?code=N&reason=R sends another Status (a 500 InternalError, ...).
                  ApiError e{410, "Expired", ""};
                  if (req.has_param("code"))
                    e.code = std::atoi(req.get_param_value("code").c_str());
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
    http_->Get("/_fake/healthz",
               [ok](const httplib::Request&, httplib::Response& res) { ok(res); });
  }

  Filter FilterFrom(const httplib::Request& req, const Target& t, std::optional<ApiError>* err) {
    Filter f;
    f.namespace_ = t.namespace_;
    if (req.has_param("labelSelector")) {
      auto terms = ParseSelector(req.get_param_value("labelSelector"));
      if (auto* e = std::get_if<ApiError>(&terms))
        *err = *e;
      else
        f.labels = std::get<std::vector<Filter::Term>>(terms);
    }
    if (req.has_param("fieldSelector")) {
      auto terms = ParseSelector(req.get_param_value("fieldSelector"));
      if (auto* e = std::get_if<ApiError>(&terms))
        *err = *e;
      else
        f.fields = std::get<std::vector<Filter::Term>>(terms);
    }
    return f;
  }

  void HandleResource(const httplib::Request& req, httplib::Response& res) {
    auto target = ParseTarget(req.path);
    if (!target) {
      return SendError(res, {404, "NotFound", "the server could not find the requested resource"});
    }
    const Target& t = *target;
    if (!t.type->namespaced && !t.namespace_.empty())
      return SendError(res, {404, "NotFound", "the server could not find the requested resource"});
    if (req.method == "GET" && t.name.empty()) {
      std::optional<ApiError> err;
      Filter filter = FilterFrom(req, t, &err);
      if (err) return SendError(res, *err);
      std::string watch = req.get_param_value("watch");
      if (watch == "true" || watch == "1") return Watch(req, res, t, filter);
      size_t limit = req.has_param("limit")
                         ? std::strtoull(req.get_param_value("limit").c_str(), nullptr, 10)
                         : 0;
      // An RV the server has not reached (a client from before a restart): 504 TooLarge.
      if (auto rv = ExplicitRv(req); rv && !req.has_param("continue")) {
        if (auto e = store_.WaitForRv(*rv, Clock::now() + TooLargeWait()))
          return SendError(res, *e);
      }
      auto list = store_.List(*t.type, filter, limit, req.get_param_value("continue"));
      return SendOutcome(res, list);
    }
    if (t.name.empty() && req.method != "POST")
      return SendError(res, {405, "MethodNotAllowed", "method not allowed on a collection"});
    if (t.type->namespaced && t.namespace_.empty() && req.method != "GET")
      return SendError(res, {404, "NotFound", "a namespace is required"});
    if (req.method == "GET") {
      auto got = store_.Get(*t.type, t.namespace_, t.name);
      return SendOutcome(res, got);
    }
    if (req.method == "DELETE") {
      std::optional<int64_t> grace;
      if (auto e = GracePeriod(req, &grace)) return SendError(res, *e);
      auto deleted = store_.Delete(*t.type, t.namespace_, t.name, grace);
      return SendOutcome(res, deleted);
    }
    json body = json::parse(req.body, nullptr, false);
    if (body.is_discarded())
      return SendError(res, {400, "BadRequest", "request body is not valid JSON"});
    if (req.method == "POST") {
      if (!t.name.empty())
        return SendError(res, {405, "MethodNotAllowed", "POST goes to the collection"});
      std::string ns = t.type->namespaced ? t.namespace_ : "";
      auto created = store_.Create(*t.type, ns, std::move(body));
      return SendOutcome(res, created, 201);
    }
    if (req.method == "PUT") {
      auto updated = store_.Update(*t.type, t.namespace_, t.name, std::move(body), t.status);
      return SendOutcome(res, updated);
    }
    if (req.method == "PATCH") {
      std::string ct = req.get_header_value("Content-Type");
      PatchType pt;
      if (ct.rfind("application/merge-patch+json", 0) == 0) {
        pt = PatchType::kMerge;
      } else if (ct.rfind("application/strategic-merge-patch+json", 0) == 0) {
        pt = PatchType::kStrategicMerge;
      } else if (ct.rfind("application/json-patch+json", 0) == 0) {
        pt = PatchType::kJsonPatch;
      } else {
        return SendError(res, {415, "UnsupportedMediaType",
                               "the body of the request was in an unknown format - accepted "
                               "media types include: application/json-patch+json, "
                               "application/merge-patch+json, "
                               "application/strategic-merge-patch+json"});
      }
      auto patched = store_.Patch(*t.type, t.namespace_, t.name, pt, body, t.status);
      return SendOutcome(res, patched);
    }
    SendError(res, {405, "MethodNotAllowed", "method not allowed"});
  }

  // gracePeriodSeconds from the query or a DeleteOptions body (kubectl sends the body).
  static std::optional<ApiError> GracePeriod(const httplib::Request& req,
                                             std::optional<int64_t>* grace) {
    json value;
    if (req.has_param("gracePeriodSeconds")) {
      const std::string text = req.get_param_value("gracePeriodSeconds");
      char* end = nullptr;
      long long n = std::strtoll(text.c_str(), &end, 10);
      if (!text.empty() && end && !*end)
        value = n;
      else
        value = text;
    } else if (!req.body.empty()) {
      json options = json::parse(req.body, nullptr, false);
      if (!options.is_object())
        return ApiError{400, "BadRequest", "DELETE body is not a DeleteOptions object"};
      if (options.contains("gracePeriodSeconds")) value = options["gracePeriodSeconds"];
    }
    if (value.is_null()) return std::nullopt;
    if (!value.is_number_integer() || value.get<int64_t>() < 0)
      return ApiError{400, "BadRequest",
                      "gracePeriodSeconds must be a non-negative integer, got " + value.dump()};
    *grace = value.get<int64_t>();
    return std::nullopt;
  }

  // resourceVersion=N with N a number other than 0; nullopt for "", "0" or garbage.
  static std::optional<uint64_t> ExplicitRv(const httplib::Request& req) {
    std::string rv = req.get_param_value("resourceVersion");
    char* end = nullptr;
    uint64_t n = std::strtoull(rv.c_str(), &end, 10);
    if (rv.empty() || !end || *end || n == 0) return std::nullopt;
    return n;
  }

  std::chrono::milliseconds TooLargeWait() {
    std::lock_guard lock(faults_.mu);
    return std::chrono::milliseconds(faults_.too_large_wait_ms);
  }

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
  };

  static std::string EventLine(const std::string& type, const json& object) {
    return json{{"type", type}, {"object", object}}.dump() + "\n";
  }

  void Watch(const httplib::Request& req, httplib::Response& res, const Target& t,
             const Filter& filter) {
    auto st = std::make_shared<WatchState>();
    st->type = t.type;
    st->filter = filter;
    st->seen = store_.Signals();
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
      if (!end || *end)
        return SendError(res, {400, "BadRequest", "invalid resourceVersion: " + rv});
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
                                                                          size_t,
                                                                          httplib::DataSink&
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
      if (now >= st->next_bookmark)
        st->next_bookmark = now + std::chrono::milliseconds(bookmark_ms);
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

  const Flags& flags_;
  httplib::Server* http_;
  ObjectStore store_;
  Faults faults_;
};

void Usage() {
  std::cerr << "usage: fake-apiserver [--listen HOST:PORT] [--tls-cert F --tls-key F]\n"
               "  [--client-ca F] [--token T] [--basic-auth USER:PASSWORD] [--manifests PATH ...] "
               "[--kubeconfig-out F]\n"
               "  [--kubeconfig-ca F] [--kubeconfig-client-cert F --kubeconfig-client-key F]\n"
               "  [--bookmark-interval-ms N] [--history-limit N] [--gzip] [--beta-networkpolicies] "
               "[-v]\n"
               "  [--service-cluster-ip-range CIDR[,CIDR]] [--service-node-port-range A-B]\n"
               "  [--graceful-pod-deletion]\n";
}

bool ParseFlags(int argc, char** argv, Flags* f) {
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto value = [&](std::string* out) {
      if (i + 1 >= argc) return false;
      *out = argv[++i];
      return true;
    };
    std::string v;
    if (a == "--listen") {
      if (!value(&f->listen)) return false;
    } else if (a == "--tls-cert") {
      if (!value(&f->tls_cert)) return false;
    } else if (a == "--tls-key") {
      if (!value(&f->tls_key)) return false;
    } else if (a == "--client-ca") {
      if (!value(&f->client_ca)) return false;
    } else if (a == "--token") {
      if (!value(&f->token)) return false;
    } else if (a == "--basic-auth") {
      if (!value(&f->basic_auth)) return false;
    } else if (a == "--manifests") {
      // Every following argument up to the next flag is a manifest path.
      while (i + 1 < argc && argv[i + 1][0] != '-') f->manifests.push_back(argv[++i]);
    } else if (a == "--kubeconfig-out") {
      if (!value(&f->kubeconfig_out)) return false;
    } else if (a == "--kubeconfig-ca") {
      if (!value(&f->kubeconfig_ca)) return false;
    } else if (a == "--kubeconfig-client-cert") {
      if (!value(&f->kubeconfig_client_cert)) return false;
    } else if (a == "--kubeconfig-client-key") {
      if (!value(&f->kubeconfig_client_key)) return false;
    } else if (a == "--bookmark-interval-ms") {
      if (!value(&v)) return false;
      f->bookmark_interval_ms = std::atoi(v.c_str());
    } else if (a == "--history-limit") {
      if (!value(&v)) return false;
      f->history_limit = std::strtoull(v.c_str(), nullptr, 10);
    } else if (a == "--gzip") {
      f->gzip = true;
    } else if (a == "--beta-networkpolicies") {
      ServeNetworkPoliciesAsBeta();  // a pre-1.7 server: no networking.k8s.io/v1
    } else if (a == "--service-cluster-ip-range") {
      if (!value(&f->service_cidrs)) return false;
    } else if (a == "--service-node-port-range") {
      if (!value(&f->node_port_range)) return false;
    } else if (a == "--graceful-pod-deletion") {
      f->graceful_pod_deletion = true;
    } else if (a == "-v" || a == "--verbose") {
      f->verbose = true;
    } else {
      std::cerr << "fake-apiserver: unknown argument " << a << "\n";
      return false;
    }
  }
  return true;
}

// "127.0.0.1:6443", "[::1]:0", "0.0.0.0:8080" -> host, port.
bool SplitHostPort(const std::string& s, std::string* host, int* port) {
  size_t colon = s.rfind(':');
  if (colon == std::string::npos) return false;
  *host = s.substr(0, colon);
  if (host->size() >= 2 && host->front() == '[' && host->back() == ']')
    *host = host->substr(1, host->size() - 2);
  char* end = nullptr;
  long p = std::strtol(s.c_str() + colon + 1, &end, 10);
  if (!end || *end || p < 0 || p > 65535) return false;
  *port = static_cast<int>(p);
  return !host->empty();
}

bool WriteKubeconfig(const Flags& f, const std::string& server_url, std::string* error) {
  std::ostringstream y;
  y << "apiVersion: v1\nkind: Config\nclusters:\n- name: fake\n  cluster:\n    server: "
    << server_url << "\n";
  if (!f.tls_cert.empty()) {
    std::string ca = ReadFile(f.kubeconfig_ca.empty() ? f.tls_cert : f.kubeconfig_ca);
    y << "    certificate-authority-data: " << Base64(ca) << "\n";
  }
  y << "users:\n- name: fake\n  user:";
  bool any = false;
  if (!f.token.empty()) {
    y << "\n    token: " << f.token;
    any = true;
  }
  if (!f.kubeconfig_client_cert.empty()) {
    y << "\n    client-certificate-data: " << Base64(ReadFile(f.kubeconfig_client_cert))
      << "\n    client-key-data: " << Base64(ReadFile(f.kubeconfig_client_key));
    any = true;
  }
  if (!any) y << " {}";
  y << "\ncontexts:\n- name: fake\n  context:\n    cluster: fake\n    user: fake\n"
       "current-context: fake\n";
  // Written atomically: tests poll for the file to know the server is up.
  std::string tmp = f.kubeconfig_out + ".tmp";
  {
    std::ofstream out(tmp);
    out << y.str();
    if (!out) {
      *error = "cannot write " + tmp;
      return false;
    }
  }
  std::error_code ec;
  std::filesystem::rename(tmp, f.kubeconfig_out, ec);
  if (ec) {
    *error = "cannot rename " + tmp + ": " + ec.message();
    return false;
  }
  return true;
}

int Main(int argc, char** argv) {
  Flags flags;
  if (!ParseFlags(argc, argv, &flags)) {
    Usage();
    return 2;
  }
  std::string host;
  int port = 0;
  if (!SplitHostPort(flags.listen, &host, &port)) {
    std::cerr << "fake-apiserver: --listen wants HOST:PORT, got " << flags.listen << "\n";
    return 2;
  }
  std::unique_ptr<httplib::Server> http;
  bool tls = !flags.tls_cert.empty();
  if (tls) {
    auto ssl = std::make_unique<httplib::SSLServer>(
        flags.tls_cert.c_str(), flags.tls_key.c_str(),
        flags.client_ca.empty() ? nullptr : flags.client_ca.c_str());
    if (!ssl->is_valid()) {
      std::cerr << "fake-apiserver: cannot load --tls-cert/--tls-key/--client-ca\n";
      return 2;
    }
    // A client certificate is optional at the TLS level (token clients connect too); when
    // one is presented it must verify, and Authorized() accepts it as a credential.
    if (!flags.client_ca.empty()) SSL_CTX_set_verify(ssl->ssl_context(), SSL_VERIFY_PEER, nullptr);
    http = std::move(ssl);
  } else {
    http = std::make_unique<httplib::Server>();
  }
  Server server(flags, http.get());
  server.Install();
  if (!flags.service_cidrs.empty() || !flags.node_port_range.empty()) {
    ServiceRanges ranges;
    std::string error =
        ParseServiceRanges(flags.service_cidrs.empty() ? "10.96.0.0/12" : flags.service_cidrs,
                           flags.node_port_range, &ranges);
    if (!error.empty()) {
      std::cerr << "fake-apiserver: " << error << "\n";
      return 2;
    }
    server.store().EnableServiceAllocation(ranges);
  }
  for (const auto& path : flags.manifests) {
    std::vector<json> objects;
    std::string error;
    if (!LoadManifests(path, &objects, &error)) {
      std::cerr << "fake-apiserver: " << error << "\n";
      return 2;
    }
    for (auto& obj : objects) {
      const ResourceType* type =
          obj.is_object() ? FindByKind(obj.value("apiVersion", ""), obj.value("kind", ""))
                          : nullptr;
      if (!type) {
        std::cerr << "fake-apiserver: " << path << ": unsupported apiVersion/kind "
                  << (obj.is_object() ? obj.value("apiVersion", "") + " " + obj.value("kind", "")
                                      : obj.dump())
                  << "\n";
        return 2;
      }
      auto loaded = server.store().Load(*type, std::move(obj));
      if (auto* e = std::get_if<ApiError>(&loaded)) {
        std::cerr << "fake-apiserver: " << path << ": " << type->kind << ": " << e->message << "\n";
        return 2;
      }
    }
  }
  if (port == 0) {
    port = http->bind_to_any_port(host);
    if (port < 0) {
      std::cerr << "fake-apiserver: cannot listen on " << flags.listen << "\n";
      return 1;
    }
  } else if (!http->bind_to_port(host, port)) {
    std::cerr << "fake-apiserver: cannot listen on " << flags.listen << "\n";
    return 1;
  }
  std::string advertise = host;
  if (advertise == "0.0.0.0") advertise = "127.0.0.1";
  if (advertise == "::") advertise = "::1";
  if (advertise.find(':') != std::string::npos) advertise = "[" + advertise + "]";
  std::string url =
      std::string(tls ? "https://" : "http://") + advertise + ":" + std::to_string(port);
  if (!flags.kubeconfig_out.empty()) {
    std::string error;
    if (!WriteKubeconfig(flags, url, &error)) {
      std::cerr << "fake-apiserver: " << error << "\n";
      return 1;
    }
  }
  // Terminating Pods leave when their grace period ends (checked every 100 ms).
  std::atomic<bool> stopping{false};
  std::thread reaper;
  if (flags.graceful_pod_deletion) {
    server.store().EnableGracefulPodDeletion();
    reaper = std::thread([&] {
      while (!stopping) {
        server.store().ReapTerminatingPods(Clock::now());
        std::this_thread::sleep_for(std::chrono::milliseconds(100));
      }
    });
  }
  std::cout << "fake-apiserver listening on " << url << std::endl;
  bool ok = http->listen_after_bind();
  stopping = true;
  if (reaper.joinable()) reaper.join();
  server.store().StopAll();
  return ok ? 0 : 1;
}

}  // namespace
}  // namespace fake_apiserver

int main(int argc, char** argv) { return fake_apiserver::Main(argc, argv); }
