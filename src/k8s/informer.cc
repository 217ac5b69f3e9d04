// SPDX-License-Identifier: Apache-2.0
// Semantics follow client-go tools/cache/reflector.go, pager.go and shared_informer.go (see the
// shared reference kubernetes-api.md sections 1.1-1.5).
#include "informer.h"

#include <nlohmann/json.hpp>

#include "kube_router/base/log.h"
#include "kube_router/k8s/decode.h"
#include "kube_router/k8s/watch_stream.h"
#include "kube_router/metrics/registry.h"

namespace kr::k8s {
namespace {

using Clock = std::chrono::steady_clock;
using nlohmann::json;

template <typename T>
class TypedKindStore : public KindStore {
 public:
  explicit TypedKindStore(Store<T>* store) : store_(store) {}
  AnyObject Get(const std::string& key) const override { return Wrap(store_->Get(key)); }
  AnyObject Upsert(const std::string& key, const AnyObject& object) override {
    return Wrap(store_->Upsert(key, std::get<std::shared_ptr<const T>>(object)));
  }
  AnyObject Remove(const std::string& key) override { return Wrap(store_->Remove(key)); }
  std::vector<std::string> Keys() const override { return store_->Keys(); }

 private:
  static AnyObject Wrap(std::shared_ptr<const T> p) {
    if (!p) return AnyObject{};
    return AnyObject(std::move(p));
  }
  Store<T>* store_;
};

std::string RvOf(const AnyObject& o) {
  const ObjectMeta* m = MetaOf(o);
  return m ? m->resource_version : "";
}

std::string StatusMessage(const json& status) {
  if (status.is_object() && status.contains("message") && status["message"].is_string())
    return status["message"].get<std::string>();
  return "no message";
}

int StatusCode(const json& status) {
  if (status.is_object() && status.contains("code") && status["code"].is_number_integer())
    return status["code"].get<int>();
  return 0;
}

std::string Reason(const json& status) {
  if (status.is_object() && status.contains("reason") && status["reason"].is_string())
    return status["reason"].get<std::string>();
  return "";
}

bool IsGone(int http_status, const json& status) {
  std::string reason = Reason(status);
  return http_status == 410 || StatusCode(status) == 410 || reason == "Expired" || reason == "Gone";
}

// client-go's isTooLargeResourceVersionError: the cause type, or the message of servers that
// predate it. A server restarted with reset resource versions answers this way.
bool IsTooLarge(const json& status) {
  if (!status.is_object()) return false;
  auto details = status.find("details");
  if (details != status.end() && details->is_object()) {
    auto causes = details->find("causes");
    if (causes != details->end() && causes->is_array()) {
      for (const auto& c : *causes) {
        if (c.is_object() && c.value("type", "") == "ResourceVersionTooLarge") return true;
      }
    }
  }
  return StatusMessage(status).find("Too large resource version") != std::string::npos;
}

// An answer that says the server is up but will not give us the data (401, 403, 404, a
// malformed list...), as opposed to an outage (no answer, 5xx, 429).
bool IsRefusal(int code) { return code != 429 && code < 500; }

std::optional<std::chrono::seconds> RetryAfter(const HttpResponse& res) {
  if (res.status != 429) return std::nullopt;
  std::string v = res.Header("retry-after");
  char* end = nullptr;
  long s = std::strtol(v.c_str(), &end, 10);
  if (v.empty() || !end || *end || s < 0) return std::chrono::seconds(1);
  return std::chrono::seconds(std::min<long>(s, 300));
}

std::string UrlEscape(const std::string& s) {
  static const char kHex[] = "0123456789ABCDEF";
  std::string out;
  for (unsigned char c : s) {
    if (isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~') {
      out += static_cast<char>(c);
    } else {
      out += '%';
      out += kHex[c >> 4];
      out += kHex[c & 15];
    }
  }
  return out;
}

}  // namespace

std::unique_ptr<KindStore> MakeKindStore(ResourceKind kind, Cluster* c) {
  switch (kind) {
    case ResourceKind::kService:
      return std::make_unique<TypedKindStore<Service>>(&c->services);
    case ResourceKind::kEndpointSlice:
      return std::make_unique<TypedKindStore<EndpointSlice>>(&c->endpoint_slices);
    case ResourceKind::kPod:
      return std::make_unique<TypedKindStore<Pod>>(&c->pods);
    case ResourceKind::kNode:
      return std::make_unique<TypedKindStore<Node>>(&c->nodes);
    case ResourceKind::kNamespace:
      return std::make_unique<TypedKindStore<Namespace>>(&c->namespaces);
    case ResourceKind::kNetworkPolicy:
      return std::make_unique<TypedKindStore<NetworkPolicy>>(&c->network_policies);
  }
  return nullptr;
}

std::string CollectionPath(ResourceKind kind) {
  switch (kind) {
    case ResourceKind::kService:
      return "/api/v1/services";
    case ResourceKind::kEndpointSlice:
      return "/apis/discovery.k8s.io/v1/endpointslices";
    case ResourceKind::kPod:
      return "/api/v1/pods";
    case ResourceKind::kNode:
      return "/api/v1/nodes";
    case ResourceKind::kNamespace:
      return "/api/v1/namespaces";
    case ResourceKind::kNetworkPolicy:
      return "/apis/networking.k8s.io/v1/networkpolicies";
  }
  return "";
}

Informer::Informer(ResourceKind kind, std::shared_ptr<ApiClient> client, Cluster* cluster,
                   EventSink* sink, metrics::Registry& registry, int page_size,
                   BackoffParams backoff)
    : kind_(kind),
      client_(std::move(client)),
      sink_(sink),
      registry_(registry),
      store_(MakeKindStore(kind, cluster)),
      cluster_(cluster),
      collection_path_(CollectionPath(kind)),
      page_size_(page_size),
      backoff_(backoff) {
  // Registered up front so /metrics shows the series (at 0) before anything goes wrong.
  MalformedCounter();
}

Informer::~Informer() { Stop(); }

void Informer::Start() {
  thread_ = std::thread([this] { Run(); });
}

void Informer::Stop() {
  {
    MutexLock lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

std::string Informer::last_error() const {
  MutexLock lock(mu_);
  return last_error_;
}

void Informer::SetError(const std::string& error) {
  MutexLock lock(mu_);
  last_error_ = error;
}

bool Informer::Sleep(std::chrono::milliseconds d) {
  MutexLock lock(mu_);
  cv_.wait_for(lock, d, [this] { return stop_.load(); });
  return !stop_;
}

metrics::Counter& Informer::MalformedCounter() {
  return registry_.GetCounter("kube_router_k8s_malformed_objects_total",
                              "API objects skipped because they could not be decoded",
                              {{"kind", ResourceKindName(kind_)}});
}

void Informer::CountMalformed(const std::string& what) {
  KR_LOG_WARN("{} informer: skipping malformed object: {}", ResourceKindName(kind_), what);
  MalformedCounter().Inc();
}

void Informer::Post(EventType type, const std::string& key, AnyObject old_object,
                    AnyObject new_object) {
  if (!sink_) return;
  Event e;
  e.kind = kind_;
  e.type = type;
  e.key = key;
  e.old_object = std::move(old_object);
  e.new_object = std::move(new_object);
  sink_->Post(e);
}

void Informer::Run() {
  std::string list_rv = "0";  // first list may be served from the watch cache
  bool need_list = true;
  while (!stop_) {
    if (need_list) {
      ListError error = ListError::kOther;
      Failure failure;
      if (!List(list_rv, &error, &failure)) {
        if (stop_) break;
        SetError(failure.message);
        refused_ = failure.refused;
        // Our RV is too old (410) or unknown to the server (a restart reset its resource
        // versions): a consistent read (client-go: RV ""), at once unless that was one already.
        if (error != ListError::kOther && !list_rv.empty()) {
          KR_LOG_INFO("{} informer: list at resourceVersion {} failed ({}); listing afresh",
                      ResourceKindName(kind_), list_rv, failure.message);
          list_rv = "";
          continue;
        }
        auto delay = failure.retry_after ? std::chrono::milliseconds(*failure.retry_after)
                                         : backoff_.Next(Clock::now());
        KR_LOG_WARN("{} informer: list failed ({}); retrying in {} ms", ResourceKindName(kind_),
                    failure.message, delay.count());
        Sleep(delay);
        continue;
      }
      need_list = false;
      refused_ = false;
      MarkFresh();
      if (!synced_) KR_LOG_INFO("{} informer synced", ResourceKindName(kind_));
      synced_ = true;
    }
    Failure failure;
    bool got_events = false;
    auto started = Clock::now();
    WatchEnd end = Watch(&failure, &got_events);
    if (stop_) break;
    switch (end) {
      case WatchEnd::kClosed:
        // Re-watch from the last RV. A server that keeps closing at once gets a backoff.
        MarkFresh();
        refused_ = false;
        if (!got_events && Clock::now() - started < std::chrono::seconds(1))
          Sleep(backoff_.Next(Clock::now()));
        break;
      case WatchEnd::kGone:
      case WatchEnd::kTooLarge:
        KR_LOG_INFO("{} informer: resourceVersion {} {}; relisting", ResourceKindName(kind_),
                    last_rv_,
                    end == WatchEnd::kGone ? "expired" : "is unknown to the server (too large)");
        need_list = true;
        list_rv = "";
        break;
      case WatchEnd::kError: {
        // client-go ends ListAndWatch on any other watch error (an ERROR event, a status
        // the server will not retry): back off, then relist from the last RV.
        SetError(failure.message);
        refused_ = failure.refused;
        auto delay = backoff_.Next(Clock::now());
        KR_LOG_WARN("{} informer: watch failed ({}); relisting in {} ms", ResourceKindName(kind_),
                    failure.message, delay.count());
        Sleep(delay);
        need_list = true;
        list_rv = last_rv_;
        break;
      }
      case WatchEnd::kFailed: {
        SetError(failure.message);
        refused_ = failure.refused;
        auto delay = failure.retry_after ? std::chrono::milliseconds(*failure.retry_after)
                                         : backoff_.Next(Clock::now());
        KR_LOG_WARN("{} informer: watch failed ({}); retrying in {} ms", ResourceKindName(kind_),
                    failure.message, delay.count());
        Sleep(delay);
        break;
      }
    }
  }
}

void Informer::MarkFresh() { fresh_at_ns_ = Clock::now().time_since_epoch().count(); }

std::chrono::milliseconds Informer::StaleFor() const {
  // An outage (no answer, 5xx, 429) is not counted: a restart cannot cure it, and failing
  // every node's liveness probe for it is kube-router issue #912.
  if (!synced_ || watching_ || !refused_) return std::chrono::milliseconds(0);
  auto since = Clock::now() - Clock::time_point(Clock::duration(fresh_at_ns_.load()));
  return std::chrono::duration_cast<std::chrono::milliseconds>(since);
}

bool Informer::SwitchNetworkPolicyApi() {
  if (kind_ != ResourceKind::kNetworkPolicy) return false;
  bool beta = collection_path_ != kBetaNetworkPolicyPath;
  collection_path_ = beta ? kBetaNetworkPolicyPath : CollectionPath(kind_);
  cluster_->network_policies_beta_api = beta;
  if (beta) {
    KR_LOG_WARN(
        "NetworkPolicy informer: the API server has no networking.k8s.io/v1 NetworkPolicies "
        "(Kubernetes older than 1.7); trying extensions/v1beta1 with the beta semantics "
        "(namespaces isolate ingress through net.beta.kubernetes.io/network-policy)");
  }
  return true;
}

bool Informer::List(const std::string& resource_version, ListError* error, Failure* failure) {
  std::map<std::string, AnyObject> items;
  std::string cont;
  std::string list_rv;
  bool switched_api = false;
  for (;;) {
    std::string path = collection_path_ + "?";
    if (!cont.empty()) {
      path += "continue=" + UrlEscape(cont) + "&";
    }
    path += "limit=" + std::to_string(page_size_);
    if (cont.empty() && !resource_version.empty())
      path += "&resourceVersion=" + UrlEscape(resource_version);
    auto res =
        client_->Request("GET", path, "", "application/json", std::chrono::seconds(60), &stop_);
    if (!res.ok()) {
      failure->message = "GET " + path + ": " + res.error();
      return false;
    }
    json body = json::parse(res->body, nullptr, false);
    // No such NetworkPolicy API on this server: once per list, the other one.
    if (res->status == 404 && cont.empty() && !switched_api && SwitchNetworkPolicyApi()) {
      switched_api = true;
      continue;
    }
    if (res->status != 200) {
      failure->message =
          "GET " + path + ": HTTP " + std::to_string(res->status) + ": " + StatusMessage(body);
      failure->retry_after = RetryAfter(*res);
      failure->refused = IsRefusal(res->status);
      // An expired continue token or RV, or an RV the server never reached: start over with a
      // consistent list.
      if (IsGone(res->status, body)) *error = ListError::kGone;
      if (IsTooLarge(body)) *error = ListError::kTooLarge;
      return false;
    }
    if (!body.is_object() || !body.contains("items") || !body["items"].is_array()) {
      failure->message = "GET " + path + ": response is not a list";
      failure->refused = true;
      return false;
    }
    for (const auto& item : body["items"]) {
      auto decoded = DecodeObject(kind_, item);
      if (!decoded.ok()) {
        CountMalformed(decoded.error());
        continue;
      }
      std::string key = MetaOf(*decoded)->Key();
      items[key] = std::move(*decoded);
    }
    const json& meta = body.contains("metadata") && body["metadata"].is_object() ? body["metadata"]
                                                                                 : json::object();
    if (list_rv.empty() && meta.contains("resourceVersion") && meta["resourceVersion"].is_string())
      list_rv = meta["resourceVersion"].get<std::string>();
    cont = meta.contains("continue") && meta["continue"].is_string()
               ? meta["continue"].get<std::string>()
               : "";
    if (cont.empty()) break;
    if (stop_) return false;
  }
  Replace(std::move(items));
  last_rv_ = list_rv;
  return true;
}

// client-go DeltaFIFO.Replace + processDeltas: keys present before become updates (suppressed
// when the resourceVersion did not change, as with resync 0), new keys adds, missing keys
// deletes carrying the last known object (the tombstone).
void Informer::Replace(std::map<std::string, AnyObject> items) {
  for (const auto& key : store_->Keys()) {
    if (items.count(key)) continue;
    AnyObject old = store_->Remove(key);
    if (MetaOf(old)) Post(EventType::kDeleted, key, std::move(old), AnyObject{});
  }
  for (auto& [key, obj] : items) {
    AnyObject old = store_->Get(key);
    if (MetaOf(old) && RvOf(old) == RvOf(obj)) continue;
    store_->Upsert(key, obj);
    EventType type = MetaOf(old) ? EventType::kUpdated : EventType::kAdded;
    Post(type, key, std::move(old), obj);
  }
}

void Informer::Apply(const WatchEvent& event) {
  if (event.type == WatchEventType::kBookmark) {
    auto meta = event.object.find("metadata");
    if (meta != event.object.end() && meta->is_object() && meta->contains("resourceVersion") &&
        (*meta)["resourceVersion"].is_string())
      last_rv_ = (*meta)["resourceVersion"].get<std::string>();
    return;
  }
  auto decoded = DecodeObject(kind_, event.object);
  if (!decoded.ok()) {
    CountMalformed(decoded.error());
    // Still move past it: its RV is valid even if its content is not.
    if (auto meta = DecodeObjectMeta(event.object); meta.ok() && !meta->resource_version.empty())
      last_rv_ = meta->resource_version;
    return;
  }
  const ObjectMeta* meta = MetaOf(*decoded);
  std::string key = meta->Key();
  if (!meta->resource_version.empty()) last_rv_ = meta->resource_version;
  if (event.type == WatchEventType::kDeleted) {
    AnyObject old = store_->Remove(key);
    // The final state from the server is the better tombstone when we had never seen it.
    AnyObject last = MetaOf(old) ? std::move(old) : *decoded;
    Post(EventType::kDeleted, key, std::move(last), AnyObject{});
    return;
  }
  AnyObject old = store_->Get(key);
  if (MetaOf(old) && RvOf(old) == meta->resource_version) return;  // nothing new
  store_->Upsert(key, *decoded);
  EventType type = MetaOf(old) ? EventType::kUpdated : EventType::kAdded;
  Post(type, key, std::move(old), *decoded);
}

Informer::WatchEnd Informer::Watch(Failure* failure, bool* got_events) {
  // client-go randomises the server-side timeout so watches do not all expire together.
  int timeout_s = std::uniform_int_distribution<int>(300, 600)(rng_);
  std::string path = collection_path_ +
                     "?allowWatchBookmarks=true&resourceVersion=" + UrlEscape(last_rv_) +
                     "&timeoutSeconds=" + std::to_string(timeout_s) + "&watch=true";
  WatchStreamDecoder decoder;
  std::vector<Result<WatchEvent>> events;
  HttpResponse head;
  std::string error_body;
  WatchEnd end = WatchEnd::kClosed;
  bool ok_stream = false;
  auto res = client_->Stream(
      path,
      [&](const HttpResponse& h) {
        head = h;
        ok_stream = h.status == 200;
        // An open stream keeps the cache current; staleness counts only while it is not.
        if (ok_stream) watching_ = true;
        return true;
      },
      [&](std::string_view bytes) {
        if (!ok_stream) {
          error_body.append(
              bytes.substr(0, 64 * 1024 - std::min<size_t>(error_body.size(), 64 * 1024)));
          return true;
        }
        events.clear();
        decoder.Feed(bytes, &events);
        for (auto& e : events) {
          if (!e.ok()) {
            CountMalformed("watch stream: " + e.error());
            continue;
          }
          if (e->type == WatchEventType::kError) {
            if (IsGone(0, e->object)) {
              end = WatchEnd::kGone;
            } else if (IsTooLarge(e->object)) {
              end = WatchEnd::kTooLarge;
            } else {
              end = WatchEnd::kError;
              failure->message = "watch ERROR event: " + StatusMessage(e->object);
              failure->refused = IsRefusal(StatusCode(e->object));
            }
            return false;
          }
          *got_events = true;
          Apply(*e);
        }
        return !stop_.load();
      },
      std::chrono::seconds(timeout_s + 30), &stop_);
  if (ok_stream) MarkFresh();  // current up to the moment the stream ended
  watching_ = false;
  if (!res.ok()) {
    if (end != WatchEnd::kClosed) return end;
    failure->message = "watch " + path + ": " + res.error();
    return WatchEnd::kFailed;
  }
  if (!ok_stream) {
    json status = json::parse(error_body, nullptr, false);
    if (IsGone(head.status, status)) return WatchEnd::kGone;
    if (IsTooLarge(status)) return WatchEnd::kTooLarge;
    failure->message =
        "watch " + path + ": HTTP " + std::to_string(head.status) + ": " + StatusMessage(status);
    failure->retry_after = RetryAfter(head);
    failure->refused = IsRefusal(head.status);
    // 429 and server errors: retry the watch from the last RV (a stale RV then meets a 410 or
    // too-large answer). Any other status (403, 404, 400...) will not fix itself: relist.
    if (head.status == 429 || head.status >= 500) return WatchEnd::kFailed;
    return WatchEnd::kError;
  }
  if (end == WatchEnd::kClosed && decoder.pending() > 0) {
    CountMalformed("watch stream ended inside an event");
  }
  return end;
}

}  // namespace kr::k8s
