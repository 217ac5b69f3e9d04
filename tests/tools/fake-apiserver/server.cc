// SPDX-License-Identifier: Apache-2.0
#include "server.h"

#include <openssl/ssl.h>
#include <openssl/x509.h>

#include <cstdlib>
#include <vector>

#include "kube_router/base/base64.h"
#include "resources.h"

namespace fake_apiserver {
namespace {

using Clock = std::chrono::steady_clock;

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

// gracePeriodSeconds from the query or a DeleteOptions body (kubectl sends the body).
std::optional<ApiError> GracePeriod(const httplib::Request& req, std::optional<int64_t>* grace) {
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
std::optional<uint64_t> ExplicitRv(const httplib::Request& req) {
  std::string rv = req.get_param_value("resourceVersion");
  char* end = nullptr;
  uint64_t n = std::strtoull(rv.c_str(), &end, 10);
  if (rv.empty() || !end || *end || n == 0) return std::nullopt;
  return n;
}

}  // namespace

Server::Server(const Flags& flags, httplib::Server* http) : flags_(flags), http_(http) {
  faults_.token = flags.token;
  faults_.bookmark_interval_ms = flags.bookmark_interval_ms;
  faults_.gzip = flags.gzip;
}

void Server::Install() {
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
      return SendError(res, {404, "NotFound", "the server could not find the requested resource"});
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

bool Server::Authorized(const httplib::Request& req) {
  bool cert_auth = !flags_.client_ca.empty();
  std::string token;
  {
    std::lock_guard lock(faults_.mu);
    token = faults_.token;
  }
  bool basic = !flags_.basic_auth.empty();
  if (!cert_auth && token.empty() && !basic) return true;  // no authentication configured
  if (basic &&
      req.get_header_value("Authorization") == "Basic " + kr::Base64Encode(flags_.basic_auth))
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

Filter Server::FilterFrom(const httplib::Request& req, const Target& t,
                          std::optional<ApiError>* err) {
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

void Server::HandleResource(const httplib::Request& req, httplib::Response& res) {
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
      if (auto e = store_.WaitForRv(*rv, Clock::now() + TooLargeWait())) return SendError(res, *e);
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

std::chrono::milliseconds Server::TooLargeWait() {
  std::lock_guard lock(faults_.mu);
  return std::chrono::milliseconds(faults_.too_large_wait_ms);
}

}  // namespace fake_apiserver
