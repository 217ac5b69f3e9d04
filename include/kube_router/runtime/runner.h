// The controller runtime. A ControllerRunner owns one Controller and gives it a thread and an
// inbox; an EventDispatcher fans API events out to every runner whose controller watches that
// kind. Posting an event only appends to an inbox under a short lock, so a controller stuck in
// a long Sync never blocks the watchers, the dispatcher or another controller.
//
// Loop of each runner thread (see docs/runtime.md):
//   Init (retried until it succeeds) → Sync(kStartup) →
//   loop { wait for inbox | RequestSync | period elapsed | stop
//          drain inbox → OnUpdate(event) for each
//          Sync(kPeriodic) when the period elapsed, else Sync(kRequested) if asked
//          tell the SyncObserver (health heartbeat only after success) }
// A successful Sync that marked a full read (Controller::SetFullReadMarker) drops the pending
// events posted before the mark: it has read them from the caches already. A sync taken in
// steps (Controller::SyncContinues) is reported to the SyncObserver as one, at its last step.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <list>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <unordered_map>
#include <vector>

#include "kube_router/base/mutex.h"
#include "kube_router/base/status.h"
#include "kube_router/k8s/types.h"
#include "kube_router/runtime/controller.h"

namespace kr {

// Told about every Sync outcome, on the controller's thread. Health and metrics listen here.
// Implementations must be thread-safe (several runners report concurrently).
class SyncObserver {
 public:
  virtual ~SyncObserver() = default;
  virtual void OnSyncSucceeded(const std::string& controller, SyncReason reason,
                               std::chrono::nanoseconds took) = 0;
  virtual void OnSyncFailed(const std::string& controller, SyncReason reason,
                            const Status& error) = 0;
  // A step of a longer sync succeeded (Controller::SyncContinues); OnSyncSucceeded follows when
  // its last step has. Health takes it as a heartbeat; counters and trims wait for the end.
  virtual void OnSyncStepSucceeded(const std::string& controller, SyncReason reason,
                                   std::chrono::nanoseconds took) {
    (void)controller;
    (void)reason;
    (void)took;
  }
};

// Pending events of one controller. Events for the same object coalesce into one that spans
// from the first pending old state to the latest new state, so the inbox never holds more
// entries than there are objects, however slow the controller. Added then Deleted cancels out,
// unless a sync ran meanwhile (it may have read the object from the caches and programmed it):
// then the controller gets the Deleted with the last known object.
//
// Every Push takes the next sequence number (a merged entry the latest one), so a full read
// can later drop exactly the entries whose latest change it saw (DropUpTo).
class Inbox {
 public:
  using Clock = std::chrono::steady_clock;
  // `arrived`: when the event reached the runner; a new entry keeps it in its event's `arrived`
  // (a coalesced entry: its first arrival, the oldest change it spans).
  void Push(const k8s::Event& event, Clock::time_point arrived);
  void Push(const k8s::Event& event) { Push(event, Clock::now()); }
  // Every pending event, in first-arrival order, each stamped with its first arrival.
  std::vector<k8s::Event> TakeAll();
  size_t size() const { return order_.size(); }
  bool empty() const { return order_.empty(); }

  // The sequence number of the latest Push (0 before any): what a cache read starting now
  // covers.
  uint64_t last_sequence() const { return pushed_; }
  // The controller's Sync starts / ended (it may read the caches in between).
  void SyncStarted();
  void SyncEnded() { syncing_ = false; }
  // Drops the entries whose latest change was pushed at or before `sequence`; returns them, in
  // first-arrival order.
  std::vector<k8s::Event> DropUpTo(uint64_t sequence);

 private:
  struct Entry {
    k8s::Event event;   // `arrived`: of its first push
    uint64_t last = 0;  // sequence of its latest push
    // When the entry was created: how many syncs had started, and whether one was running.
    // Both unchanged at a Deleted: no sync can have read the object.
    uint64_t syncs_at_first = 0;
    bool during_sync = false;
    // The first pending event was an Added: the controller was never told about the object,
    // so the merged event keeps no old state and stays an Added unless it ends Deleted.
    bool added_first = false;
  };
  // An object's identity: its kind and a view of the key its entry's event holds (list nodes
  // never move and a pending key never changes), so the index copies no key. At the cold start
  // every object of the caches is queued once per controller (46,000 entries at the issue's
  // scale); a copied "Kind/namespace/name" was a heap chunk each.
  struct ObjectRef {
    k8s::ResourceKind kind;
    std::string_view key;
    bool operator==(const ObjectRef&) const = default;
  };
  struct ObjectRefHash {
    size_t operator()(const ObjectRef& ref) const noexcept {
      return std::hash<std::string_view>{}(ref.key) ^ static_cast<size_t>(ref.kind);
    }
  };
  std::list<Entry> order_;  // first-arrival order
  std::unordered_map<ObjectRef, std::list<Entry>::iterator, ObjectRefHash> by_object_;
  uint64_t pushed_ = 0;  // sequence of the latest Push
  uint64_t syncs_started_ = 0;
  bool syncing_ = false;
};

class ControllerRunner {
 public:
  // `observer` may be null and must outlive the runner.
  ControllerRunner(std::unique_ptr<Controller> controller, SyncObserver* observer);
  ~ControllerRunner();  // Stop()
  ControllerRunner(const ControllerRunner&) = delete;
  ControllerRunner& operator=(const ControllerRunner&) = delete;

  // Starts the controller thread. Call once.
  void Start();
  // Asks the loop to finish, waits for the Sync in progress (if any), calls the controller's
  // Shutdown on its thread and joins. Idempotent.
  void Stop();

  // Queues an event for OnUpdate on the controller's thread. Never waits for the controller.
  void Post(const k8s::Event& event);
  // Coalescing: many requests while a Sync runs cause exactly one more Sync.
  void RequestSync();

  const std::string& name() const { return name_; }
  const std::vector<k8s::ResourceKind>& watched_kinds() const { return kinds_; }
  Controller& controller() { return *controller_; }
  std::chrono::milliseconds sync_period() const { return period_; }

  // Introspection for tests and metrics.
  size_t PendingEvents() const;
  uint64_t SuccessfulSyncs() const;
  uint64_t FailedSyncs() const;
  // Pending events dropped because a successful full sync had already read them.
  uint64_t AbsorbedEvents() const;

 private:
  void Loop(std::stop_token stop);
  bool RunInit(std::stop_token stop);
  bool RunSync(SyncReason reason);
  void MarkFullRead();

  std::unique_ptr<Controller> controller_;
  SyncObserver* observer_;
  const std::string name_;
  const std::vector<k8s::ResourceKind> kinds_;
  const std::chrono::milliseconds period_;

  mutable Mutex mu_;
  std::condition_variable_any wake_;
  Inbox inbox_ KR_GUARDED_BY(mu_);
  bool sync_requested_ KR_GUARDED_BY(mu_) = false;
  uint64_t successful_syncs_ KR_GUARDED_BY(mu_) = 0;
  uint64_t failed_syncs_ KR_GUARDED_BY(mu_) = 0;
  uint64_t absorbed_events_ KR_GUARDED_BY(mu_) = 0;
  // Set by the controller's first MarkFullRead in the Sync that runs: what it covers.
  std::optional<uint64_t> full_read_ KR_GUARDED_BY(mu_);
  // A sync in steps under way (Controller::SyncContinues): its first step's reason and the
  // steps' time so far. Only the runner's thread touches them.
  std::optional<SyncReason> pass_reason_;
  std::chrono::nanoseconds pass_took_{0};
  std::jthread thread_;
};

// Routes every event to the inbox of each runner whose controller watches its kind.
class EventDispatcher : public k8s::EventSink {
 public:
  // Runners must be added before events flow and must outlive the dispatcher's use.
  void Add(ControllerRunner* runner);
  void Post(const k8s::Event& event) override;
  // Union of the kinds the added controllers watch, in ResourceKind order.
  std::vector<k8s::ResourceKind> WatchedKinds() const;

 private:
  std::vector<ControllerRunner*> runners_;
};

}  // namespace kr
