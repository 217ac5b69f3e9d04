// The controller contract. A ControllerRunner (runner.h) gives each controller its own thread
// and inbox; every method below runs on that thread, so a controller's dataplane needs no locks.
#pragma once

#include <chrono>
#include <functional>
#include <string>
#include <utility>
#include <vector>

#include "kube_router/base/status.h"
#include "kube_router/k8s/types.h"

namespace kr {

enum class SyncReason {
  kStartup,    // first sync after Init
  kRequested,  // OnUpdate asked for it (coalesced)
  kPeriodic,   // the sync period elapsed: a full reconcile that repairs drift
};

class Controller {
 public:
  virtual ~Controller() = default;

  // Short name used in logs, health answers and metrics ("NetworkPolicy", "NetworkRoutes",
  // "NetworkServices").
  virtual std::string Name() const = 0;
  virtual std::chrono::milliseconds SyncPeriod() const = 0;
  // The resource kinds whose events this controller wants in its inbox.
  virtual std::vector<k8s::ResourceKind> WatchedKinds() const = 0;

  // Gives the controller a thread-safe, coalescing way to ask for a Sync from outside its
  // inbox (e.g. BGP best-path events on the speaker thread). The runner calls it once, before
  // Init. Controllers that only react to API events ignore it.
  virtual void SetSyncRequester(std::function<void()> request_sync) { (void)request_sync; }
  // Lets a full sync absorb the pending events it already covers. The runner calls it once,
  // before Init; a controller opts in by calling MarkFullRead() (below). Virtual only so that a
  // decorator can hand it to the controller it wraps (or withhold it).
  virtual void SetFullReadMarker(std::function<void()> mark_full_read) {
    mark_full_read_ = std::move(mark_full_read);
  }
  // The pending events that the Sync which just succeeded absorbed (it marked a full read before
  // they were last posted; each with its first arrival in `arrived`), and when that Sync (or
  // that step of a sync in steps) ended: it programmed them. Called on the controller's thread
  // right after that Sync, only when it absorbed some. The service proxy observes their latency
  // here (they never reach OnUpdate).
  virtual void OnEventsAbsorbed(const std::vector<k8s::Event>& absorbed,
                                std::chrono::steady_clock::time_point programmed) {
    (void)absorbed;
    (void)programmed;
  }
  // One-time preparation (sysctls, top-level chains, sockets) before the first Sync.
  virtual Status Init() { return Status::Ok(); }
  // Cheap: note what changed. Returns true when a Sync should follow (requests coalesce).
  virtual bool OnUpdate(const k8s::Event& event) = 0;
  // Level-triggered reconcile of the dataplane with the caches.
  virtual Status Sync(SyncReason reason) = 0;
  // True after a Sync that was one step of a longer one which later Syncs continue (the
  // service proxy's periodic verification, taken in steps with events served between them).
  // The runner then reports one sync when the last step ends: its reason is the first step's,
  // its duration the steps' summed (SyncObserver::OnSyncStepSucceeded is told of each step).
  virtual bool SyncContinues() const { return false; }
  // Called once after the loop stops (e.g. a graceful BGP shutdown). Not Cleanup.
  virtual void Shutdown() {}
  // Removes exactly what this controller owns (--cleanup-config). Safe to call when nothing
  // is programmed; returns a human-readable list of what was removed.
  virtual Result<std::vector<std::string>> Cleanup() = 0;

 protected:
  // Called inside a Sync, before that Sync's first cache read, when the Sync reads every object
  // its OnUpdate could have asked about from the caches and OnUpdate remembers nothing the
  // caches cannot tell again (a deletion, say). If that Sync succeeds, the runner drops the
  // pending events posted before the call instead of delivering them: the informers write the
  // cache before they post, so the Sync saw them. Events posted after the call are delivered as
  // usual. Only the first call of a Sync counts. A no-op when no runner gave a marker.
  void MarkFullRead() const {
    if (mark_full_read_) mark_full_read_();
  }

 private:
  std::function<void()> mark_full_read_;  // set before Init, then only read
};

}  // namespace kr
