// SPDX-License-Identifier: Apache-2.0
// The state of the fake API server: every object, one monotonically increasing
// resourceVersion, and a bounded history of changes that watches replay. Compaction (manual or
// when the history is full) makes older resourceVersions answer 410 Gone, as etcd compaction
// does. Thread-safe: HTTP handler threads call it concurrently; watches block in WaitEvents.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <variant>
#include <vector>

#include "resources.h"
#include "service_allocator.h"

namespace fake_apiserver {

using nlohmann::json;

// A Kubernetes API error: becomes a metav1.Status body.
struct ApiError {
  int code = 500;
  std::string reason;  // NotFound, AlreadyExists, Conflict, Expired, BadRequest, ...
  std::string message;
  std::string cause;  // details.causes[0].type, e.g. ResourceVersionTooLarge
  // A validation error (422 Invalid) also names the field and the object in details.
  std::string field;          // details.causes[0].field, e.g. spec.ports[0].nodePort
  std::string details_name;   // details.name
  std::string details_kind;   // details.kind
  std::string cause_message;  // details.causes[0].message (default: message)
};
json StatusBody(const ApiError& error);

template <typename T>
using Outcome = std::variant<T, ApiError>;

// Which objects a list or watch wants.
struct Filter {
  std::string namespace_;  // empty = all namespaces
  // labelSelector / fieldSelector terms: key (field path for fields), op ("=", "!=", "exists",
  // "!exists"), value.
  struct Term {
    std::string key, op, value;
  };
  std::vector<Term> labels;
  std::vector<Term> fields;
  bool Matches(const json& object) const;
};
// Parses the equality-based selector syntax ("a=b,c!=d,e,!f"); set-based terms are rejected.
Outcome<std::vector<Filter::Term>> ParseSelector(const std::string& text);

struct WatchEvent {
  uint64_t rv = 0;
  std::string type;  // ADDED, MODIFIED, DELETED
  json object;
};

// Counters a watch compares against to notice fault-injection requests.
struct WatchSignals {
  uint64_t drop = 0, close = 0, expire = 0, bookmark = 0, stop = 0;
  ApiError expire_error{410, "Expired", ""};  // what the last ExpireWatches sends
};

enum class PatchType { kMerge, kStrategicMerge, kJsonPatch };

class ObjectStore {
 public:
  explicit ObjectStore(size_t history_limit = 200000);
  // From now on Services get ClusterIPs and NodePorts as kube-apiserver allocates them (see
  // service_allocator.h). Call before anything is stored.
  void EnableServiceAllocation(const ServiceRanges& ranges);
  // From now on Pods bound to a node are deleted gracefully, as kube-apiserver does: DELETE
  // marks the Pod terminating (metadata.deletionTimestamp, deletionGracePeriodSeconds; a
  // MODIFIED event) and ReapTerminatingPods removes it when the grace period ends. A grace
  // period of 0 (kubectl delete --force --grace-period=0, the pod GC, a kubelet finalising)
  // removes it at once. Without this, every DELETE removes at once (what most tests want).
  void EnableGracefulPodDeletion();

  // Adds an object from a manifest (kept as is, status included); replaces an existing one.
  // At start-up (no change recorded yet) it is restored state, not an event: no history entry,
  // and watches from an RV before it answer 410 (a watch from "0" lists it as ADDED).
  Outcome<json> Load(const ResourceType& type, json object);

  Outcome<json> Create(const ResourceType& type, const std::string& ns, json object);
  Outcome<json> Get(const ResourceType& type, const std::string& ns, const std::string& name);
  // PUT. `status_only` (the /status subresource) changes only .status, otherwise .status is
  // preserved from the stored object, as the real server does.
  Outcome<json> Update(const ResourceType& type, const std::string& ns, const std::string& name,
                       json object, bool status_only);
  Outcome<json> Patch(const ResourceType& type, const std::string& ns, const std::string& name,
                      PatchType patch_type, const json& patch, bool status_only);
  // `grace_seconds`: the request's gracePeriodSeconds (query or DeleteOptions body), if any;
  // only graceful Pod deletion (above) reads it.
  Outcome<json> Delete(const ResourceType& type, const std::string& ns, const std::string& name,
                       std::optional<int64_t> grace_seconds = std::nullopt);
  // Removes the terminating Pods whose grace period ended by `now` (DELETED events); how many.
  size_t ReapTerminatingPods(std::chrono::steady_clock::time_point now);

  // A list document (kind XList) with metadata.resourceVersion and, when `limit` cut it short,
  // metadata.continue.
  Outcome<json> List(const ResourceType& type, const Filter& filter, size_t limit,
                     const std::string& continue_token);

  uint64_t CurrentRv();
  // 410 when events after `rv` are no longer all in the history.
  std::optional<ApiError> CheckWatchable(uint64_t rv);
  // Objects of `type` matching `filter` as synthetic ADDED events, and the RV they are at.
  std::vector<WatchEvent> Snapshot(const ResourceType& type, const Filter& filter, uint64_t* at_rv);
  struct WaitResult {
    WatchSignals signals;
    uint64_t now_rv = 0;   // every event up to here has been examined
    bool too_old = false;  // events after `after_rv` were compacted away: answer 410
  };
  // Blocks until there are changes after `after_rv`, the signals differ from `seen`, or
  // `deadline` passes. Appends the events for `type` matching `filter` to `out`.
  WaitResult WaitEvents(const ResourceType& type, const Filter& filter, uint64_t after_rv,
                        const WatchSignals& seen, std::chrono::steady_clock::time_point deadline,
                        std::vector<WatchEvent>* out);
  WatchSignals Signals();
  // The apiserver's answer to a resourceVersion it has not reached: it waits up to `deadline`
  // for the RV to appear (the watch cache's freshness wait), then 504 "Too large resource
  // version" with cause ResourceVersionTooLarge.
  std::optional<ApiError> WaitForRv(uint64_t rv, std::chrono::steady_clock::time_point deadline);

  // Fault injection.
  void Compact();
  void DropWatches();
  void CloseWatches();
  // Every open watch gets one ERROR event with `error` (by default 410 Expired), then ends.
  void ExpireWatches(const ApiError& error = {410, "Expired", ""});
  void BookmarkNow();
  void StopAll();
  // A server restarted on restored data with a new resourceVersion sequence: every object is
  // renumbered from 2 in key order, the history is gone (older RVs answer 410) and every open
  // watch is cut abruptly. Clients holding an RV from before see it as "too large" or stale.
  void RestartWithResetResourceVersions();

 private:
  using Objects = std::map<std::string, json>;  // key "ns/name" or "name"
  static std::string Id(const ResourceType& type) { return type.group + "/" + type.plural; }
  static std::string Key(const ResourceType& type, const std::string& ns, const std::string& name);
  // Stamps a new resourceVersion, records the event, wakes watches. Caller holds mu_.
  json Commit(const ResourceType& type, const std::string& event_type, json object);

  // Admission of Services (allocation); no-op without an allocator or for other types.
  std::optional<ApiError> AdmitLocked(const ResourceType& type, json* object, const json* old);
  void ReleaseLocked(const ResourceType& type, const json& object);

  std::mutex mu_;
  std::condition_variable changed_;
  std::unique_ptr<ServiceAllocator> services_;  // null: Services are stored as given
  bool graceful_pods_ = false;
  // Terminating Pods (key "ns/name") and when their grace period ends.
  std::map<std::string, std::chrono::steady_clock::time_point> pod_deadlines_;
  std::map<std::string, Objects> objects_;
  uint64_t rv_ = 1;
  uint64_t compacted_rv_ = 0;  // highest RV no longer in history_
  struct HistoryEntry {
    std::string resource;
    WatchEvent event;
  };
  std::deque<HistoryEntry> history_;
  size_t history_limit_;
  WatchSignals signals_;
};

}  // namespace fake_apiserver
