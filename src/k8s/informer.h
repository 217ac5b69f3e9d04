// SPDX-License-Identifier: Apache-2.0
// One informer: list + watch of one resource kind with client-go reflector semantics, keeping
// a Store current and posting every change to the EventSink. Runs on its own thread.
//
//   list (paginated, RV "0" first) -> Replace (diff -> add/update/delete events) -> synced
//   watch from the list RV (bookmarks on, timeoutSeconds random 300-600 s)
//     clean close                 -> watch again from the last RV
//     410 or too-large RV         -> relist with RV "" (consistent read)
//     other ERROR event, 4xx      -> backoff, relist from the last RV (a failing list with
//                                    410/too-large falls back to RV "")
//     transport error, 5xx, 429   -> backoff (Retry-After for 429), watch again
//   A failed or partial list leaves the cache as it was.
#pragma once

#include <atomic>
#include <condition_variable>
#include <memory>
#include <nlohmann/json_fwd.hpp>
#include <optional>
#include <random>
#include <string>
#include <thread>

#include "kube_router/base/mutex.h"
#include "kube_router/k8s/api_client.h"
#include "kube_router/k8s/backoff.h"
#include "kube_router/k8s/store.h"
#include "kube_router/k8s/types.h"
#include "kube_router/k8s/watch_stream.h"
#include "kube_router/metrics/registry.h"

namespace kr::k8s {

// Type-erased access to one of the Cluster's typed stores.
class KindStore {
 public:
  virtual ~KindStore() = default;
  virtual AnyObject Get(const std::string& key) const = 0;
  virtual AnyObject Upsert(const std::string& key, const AnyObject& object) = 0;
  virtual AnyObject Remove(const std::string& key) = 0;
  virtual std::vector<std::string> Keys() const = 0;
};
std::unique_ptr<KindStore> MakeKindStore(ResourceKind kind, Cluster* cluster);

// Collection path of a kind ("/api/v1/pods").
std::string CollectionPath(ResourceKind kind);
// Where API servers older than 1.7 serve NetworkPolicies (beta semantics).
inline constexpr char kBetaNetworkPolicyPath[] = "/apis/extensions/v1beta1/networkpolicies";

class Informer {
 public:
  // `registry` (where skipped objects are counted) must outlive the informer.
  Informer(ResourceKind kind, std::shared_ptr<ApiClient> client, Cluster* cluster, EventSink* sink,
           metrics::Registry& registry, int page_size, BackoffParams backoff = {});
  ~Informer();

  void Start();
  void Stop();  // returns once the thread has ended (within ~100 ms of I/O polling)
  bool synced() const { return synced_.load(); }
  ResourceKind kind() const { return kind_; }
  std::string last_error() const;
  // How long the cache has gone without a way to be refreshed while the server is up but
  // refuses (401, 403, 404, ERROR events, undecodable lists: a restart may cure those): the
  // time since the last successful list or watch. 0 while a watch is open, before the first
  // sync, and during an outage (no answer, 5xx, 429).
  std::chrono::milliseconds StaleFor() const;

 private:
  enum class WatchEnd { kClosed, kGone, kTooLarge, kError, kFailed };
  enum class ListError { kOther, kGone, kTooLarge };
  struct Failure {
    std::string message;
    std::optional<std::chrono::seconds> retry_after;  // from a 429
    bool refused = false;  // the server answered (not 5xx/429) but gave us no data
  };

  void Run();
  // Lists every page; on success replaces the cache. `error` tells 410 and too-large answers.
  bool List(const std::string& resource_version, ListError* error, Failure* failure);
  void MarkFresh();
  WatchEnd Watch(Failure* failure, bool* got_events);
  void Replace(std::map<std::string, AnyObject> items);
  void Apply(const WatchEvent& event);
  void Post(EventType type, const std::string& key, AnyObject old_object, AnyObject new_object);
  void CountMalformed(const std::string& what);
  metrics::Counter& MalformedCounter();
  // Sleeps up to `d`; false if stopped meanwhile.
  bool Sleep(std::chrono::milliseconds d);
  void SetError(const std::string& error);

  const ResourceKind kind_;
  const std::shared_ptr<ApiClient> client_;
  EventSink* const sink_;
  metrics::Registry& registry_;
  const std::unique_ptr<KindStore> store_;
  Cluster* const cluster_;
  // CollectionPath(kind_), except for NetworkPolicies on a server without networking.k8s.io/v1
  // (older than Kubernetes 1.7): extensions/v1beta1, as kube-router did there.
  std::string collection_path_;
  // Switches collection_path_ to the other NetworkPolicy API after a 404; false for other kinds.
  bool SwitchNetworkPolicyApi();
  const int page_size_;
  std::string last_rv_;
  Backoff backoff_;
  std::mt19937 rng_{std::random_device{}()};

  std::atomic<bool> stop_{false};
  std::atomic<bool> synced_{false};
  std::atomic<bool> watching_{false};    // a watch stream is open (HTTP 200 received)
  std::atomic<int64_t> fresh_at_ns_{0};  // steady clock: last successful list or watch
  std::atomic<bool> refused_{false};     // the last failure was a refusal, not an outage
  mutable Mutex mu_;
  std::condition_variable_any cv_;
  std::string last_error_ KR_GUARDED_BY(mu_);
  std::thread thread_;
};

}  // namespace kr::k8s
