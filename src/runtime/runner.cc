#include "kube_router/runtime/runner.h"

#include <algorithm>
#include <exception>

#include "kube_router/base/log.h"

namespace kr {
namespace {

using Clock = std::chrono::steady_clock;

// After a failed Init or Sync the next attempt comes sooner than the full period: 1s, 2s, 4s
// ... capped at the period, so a transient failure does not cost a whole period.
constexpr std::chrono::milliseconds kFirstRetry{1000};

const char* ReasonName(SyncReason r) {
  switch (r) {
    case SyncReason::kStartup:
      return "startup";
    case SyncReason::kRequested:
      return "requested";
    case SyncReason::kPeriodic:
      return "periodic";
  }
  return "unknown";
}

}  // namespace

void Inbox::Push(const k8s::Event& event, Clock::time_point arrived) {
  const uint64_t sequence = ++pushed_;
  auto found = by_object_.find(ObjectRef{event.kind, event.key});
  if (found == by_object_.end()) {
    order_.push_back(
        {event, sequence, syncs_started_, syncing_, event.type == k8s::EventType::kAdded});
    order_.back().event.arrived = arrived;
    by_object_.emplace(ObjectRef{event.kind, order_.back().event.key}, std::prev(order_.end()));
    return;
  }
  Entry& entry = *found->second;
  k8s::Event& pending = entry.event;
  entry.last = sequence;
  if (event.type == k8s::EventType::kDeleted) {
    if (entry.added_first && pending.type != k8s::EventType::kDeleted) {
      if (!entry.during_sync && entry.syncs_at_first == syncs_started_) {
        // No sync can have seen it: drop both (the index first: its key views the entry).
        const auto entry_at = found->second;
        by_object_.erase(found);
        order_.erase(entry_at);
        return;
      }
      // A sync may have read and programmed it: the controller must hear of its end, with the
      // last known object (the tombstone) to tell what it was.
      pending.old_object = event.old_object;
    }
    pending.type = k8s::EventType::kDeleted;
    pending.new_object = event.new_object;
    return;
  }
  if (entry.added_first) {
    // Not told about the object yet (an old state kept by a Deleted above is only a tombstone):
    // it is new to the controller.
    pending.type = k8s::EventType::kAdded;
    pending.old_object = k8s::AnyObject{};
  } else {
    pending.type = k8s::EventType::kUpdated;  // Deleted then re-Added = an update
  }
  pending.new_object = event.new_object;
}

std::vector<k8s::Event> Inbox::TakeAll() {
  std::vector<k8s::Event> out;
  out.reserve(order_.size());
  for (Entry& entry : order_) out.push_back(std::move(entry.event));
  order_.clear();
  by_object_.clear();
  return out;
}

void Inbox::SyncStarted() {
  ++syncs_started_;
  syncing_ = true;
}

std::vector<k8s::Event> Inbox::DropUpTo(uint64_t sequence) {
  std::vector<k8s::Event> dropped;
  for (auto it = order_.begin(); it != order_.end();) {
    if (it->last > sequence) {
      ++it;
      continue;
    }
    by_object_.erase(ObjectRef{it->event.kind, it->event.key});  // before the key moves
    dropped.push_back(std::move(it->event));
    it = order_.erase(it);
  }
  return dropped;
}

ControllerRunner::ControllerRunner(std::unique_ptr<Controller> controller, SyncObserver* observer)
    : controller_(std::move(controller)),
      observer_(observer),
      name_(controller_->Name()),
      kinds_(controller_->WatchedKinds()),
      period_(controller_->SyncPeriod()) {
  controller_->SetSyncRequester([this] { RequestSync(); });
  controller_->SetFullReadMarker([this] { MarkFullRead(); });
}

ControllerRunner::~ControllerRunner() { Stop(); }

void ControllerRunner::Start() {
  thread_ = std::jthread([this](std::stop_token stop) { Loop(stop); });
}

void ControllerRunner::Stop() {
  if (!thread_.joinable()) return;
  thread_.request_stop();  // also wakes wake_.wait(lock, stop, ...)
  thread_.join();
}

void ControllerRunner::Post(const k8s::Event& event) {
  const auto arrived = Clock::now();
  {
    MutexLock lock(mu_);
    inbox_.Push(event, arrived);
  }
  wake_.notify_one();
}

void ControllerRunner::RequestSync() {
  {
    MutexLock lock(mu_);
    sync_requested_ = true;
  }
  wake_.notify_one();
}

size_t ControllerRunner::PendingEvents() const {
  MutexLock lock(mu_);
  return inbox_.size();
}

uint64_t ControllerRunner::SuccessfulSyncs() const {
  MutexLock lock(mu_);
  return successful_syncs_;
}

uint64_t ControllerRunner::FailedSyncs() const {
  MutexLock lock(mu_);
  return failed_syncs_;
}

uint64_t ControllerRunner::AbsorbedEvents() const {
  MutexLock lock(mu_);
  return absorbed_events_;
}

void ControllerRunner::MarkFullRead() {
  MutexLock lock(mu_);
  if (!full_read_) full_read_ = inbox_.last_sequence();
}

bool ControllerRunner::RunInit(std::stop_token stop) {
  auto retry = kFirstRetry;
  while (!stop.stop_requested()) {
    Status s;
    try {
      s = controller_->Init();
    } catch (const std::exception& e) {
      s = Status::Error(std::string("exception: ") + e.what());
    }
    if (s.ok()) return true;
    KR_LOG_ERROR("{}: initialisation failed, retrying in {}ms: {}", name_, retry.count(),
                 s.message());
    MutexLock lock(mu_);
    wake_.wait_for(lock, stop, retry, [] { return false; });
    retry = std::min<std::chrono::milliseconds>(retry * 2, period_);
  }
  return false;
}

bool ControllerRunner::RunSync(SyncReason reason) {
  auto start = Clock::now();
  {
    MutexLock lock(mu_);
    full_read_.reset();
    inbox_.SyncStarted();
  }
  Status s;
  try {
    s = controller_->Sync(reason);
  } catch (const std::exception& e) {
    // A controller bug must not take the agent down; report it like any failed sync.
    s = Status::Error(std::string("exception: ") + e.what());
  }
  const auto end = Clock::now();
  const auto took = end - start;
  std::vector<k8s::Event> absorbed;
  {
    MutexLock lock(mu_);
    ++(s.ok() ? successful_syncs_ : failed_syncs_);
    // Only a sync that succeeded programmed what it read; after a failure every event counts.
    inbox_.SyncEnded();
    if (s.ok() && full_read_) absorbed = inbox_.DropUpTo(*full_read_);
    absorbed_events_ += absorbed.size();
    full_read_.reset();
  }
  if (!absorbed.empty()) {
    KR_VLOG(1, "{}: {} pending event(s) already read by this {} sync", name_, absorbed.size(),
            ReasonName(reason));
    try {
      controller_->OnEventsAbsorbed(absorbed, end);
    } catch (const std::exception& e) {
      KR_LOG_ERROR("{}: OnEventsAbsorbed: exception: {}", name_, e.what());
    }
  }
  if (!s.ok()) {
    KR_LOG_ERROR("{}: {} sync failed: {}", name_, ReasonName(reason), s.message());
    pass_reason_.reset();  // a failed step ends the sync it belonged to
    pass_took_ = {};
    if (observer_) observer_->OnSyncFailed(name_, reason, s);
    return false;
  }
  bool continues = false;
  try {
    continues = controller_->SyncContinues();
  } catch (const std::exception& e) {
    KR_LOG_ERROR("{}: SyncContinues: exception: {}", name_, e.what());
  }
  if (continues) {
    // One step of a longer sync: counted, timed and trimmed once, when its last step ends.
    if (!pass_reason_) pass_reason_ = reason;
    pass_took_ += std::chrono::duration_cast<std::chrono::nanoseconds>(took);
    KR_VLOG(2, "{}: {} sync step done in {}ms", name_, ReasonName(reason),
            std::chrono::duration_cast<std::chrono::milliseconds>(took).count());
    if (observer_) observer_->OnSyncStepSucceeded(name_, reason, took);
    return true;
  }
  const SyncReason whole = pass_reason_.value_or(reason);
  const auto whole_took = pass_took_ + std::chrono::duration_cast<std::chrono::nanoseconds>(took);
  pass_reason_.reset();
  pass_took_ = {};
  KR_VLOG(1, "{}: {} sync done in {}ms", name_, ReasonName(whole),
          std::chrono::duration_cast<std::chrono::milliseconds>(whole_took).count());
  if (observer_) observer_->OnSyncSucceeded(name_, whole, whole_took);
  return true;
}

void ControllerRunner::Loop(std::stop_token stop) {
  KR_LOG_INFO("{}: starting (sync period {}ms)", name_, period_.count());
  if (RunInit(stop)) {
    bool ok = RunSync(SyncReason::kStartup);
    auto retry = kFirstRetry;
    // Until the next sync is due; after a failure, sooner (see kFirstRetry).
    auto next_due = Clock::now() + (ok ? period_ : retry);
    while (true) {
      std::vector<k8s::Event> events;
      bool requested = false;
      {
        MutexLock lock(mu_);
        wake_.wait_until(lock, stop, next_due, [this] {
          mu_.AssertHeld();
          return !inbox_.empty() || sync_requested_;
        });
        if (stop.stop_requested()) break;
        events = inbox_.TakeAll();
        requested = sync_requested_;
        sync_requested_ = false;
      }
      for (const k8s::Event& event : events) {
        try {
          if (controller_->OnUpdate(event)) requested = true;
        } catch (const std::exception& e) {
          KR_LOG_ERROR("{}: dropping event for {} {}: exception: {}", name_,
                       k8s::ResourceKindName(event.kind), event.key, e.what());
        }
      }
      bool periodic = Clock::now() >= next_due;
      if (!periodic && !requested) continue;
      ok = RunSync(periodic ? SyncReason::kPeriodic : SyncReason::kRequested);
      if (ok) {
        retry = kFirstRetry;
        if (periodic) next_due = Clock::now() + period_;
      } else {
        auto soon = Clock::now() + retry;
        next_due = periodic ? soon : std::min(next_due, soon);
        retry = std::min<std::chrono::milliseconds>(retry * 2, period_);
      }
    }
  }
  try {
    controller_->Shutdown();
  } catch (const std::exception& e) {
    KR_LOG_ERROR("{}: shutdown failed: exception: {}", name_, e.what());
  }
  KR_LOG_INFO("{}: stopped", name_);
}

void EventDispatcher::Add(ControllerRunner* runner) { runners_.push_back(runner); }

void EventDispatcher::Post(const k8s::Event& event) {
  for (ControllerRunner* runner : runners_) {
    const auto& kinds = runner->watched_kinds();
    if (std::find(kinds.begin(), kinds.end(), event.kind) != kinds.end()) runner->Post(event);
  }
}

std::vector<k8s::ResourceKind> EventDispatcher::WatchedKinds() const {
  std::vector<k8s::ResourceKind> kinds;
  for (const ControllerRunner* runner : runners_) {
    for (k8s::ResourceKind k : runner->watched_kinds()) {
      if (std::find(kinds.begin(), kinds.end(), k) == kinds.end()) kinds.push_back(k);
    }
  }
  std::sort(kinds.begin(), kinds.end());
  return kinds;
}

}  // namespace kr
