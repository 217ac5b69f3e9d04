// The agent's liveness verdict (/healthz). Every enabled controller must complete a
// successful Sync at least once per (its sync period + its measured start-up time + grace).
// Heartbeats come only from successful syncs, never from timers or failed attempts, so a
// controller that keeps failing turns the agent unhealthy, while losing the API server alone
// does not: controllers keep syncing from their caches. Thread-safe.
#pragma once

#include <atomic>
#include <chrono>
#include <functional>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "kube_router/runtime/runner.h"

namespace kr::health {

using Clock = std::chrono::steady_clock;

// kube-router documents "sync period + 5s" (its code uses 1.5s); we take the documented value.
inline constexpr std::chrono::milliseconds kDefaultGrace{5000};

struct Verdict {
  bool healthy = true;
  std::string detail;  // "OK", or which controllers are late and by how much
};

class HealthChecker : public SyncObserver {
 public:
  explicit HealthChecker(std::chrono::milliseconds grace = kDefaultGrace) : grace_(grace) {}

  // Adds an enabled controller; call before MarkStarted. With `until_first_sync`, the agent is
  // unhealthy until that controller's first successful sync, even while the caches load (the
  // service proxy: a node whose Services are not programmed yet must not look healthy).
  void Register(const std::string& controller, std::chrono::milliseconds sync_period,
                bool until_first_sync = false);
  // The controllers start now; their start-up time is measured from here. Before this the
  // agent is still waiting for its caches and reports healthy ("starting").
  void MarkStarted(Clock::time_point now = Clock::now());
  // A successful sync of `controller` finished at `now`.
  void Heartbeat(const std::string& controller, Clock::time_point now = Clock::now());

  Verdict Check(Clock::time_point now = Clock::now()) const;

  // Caches a controller reads that could not be refreshed for too long make it unhealthy as
  // well: syncing from a cache that has stopped following the API server (deleted objects
  // kept, stale rules enforced) is not health. The probe returns, for one controller, a
  // description of each such cache (empty = all current); it is called outside the lock.
  using StaleCacheProbe = std::function<std::vector<std::string>(const std::string& controller)>;
  void SetStaleCacheProbe(StaleCacheProbe probe);

  // SyncObserver: a heartbeat only after success.
  void OnSyncSucceeded(const std::string& controller, SyncReason reason,
                       std::chrono::nanoseconds took) override;
  void OnSyncFailed(const std::string& controller, SyncReason reason, const Status& error) override;
  // A step of a longer sync is progress as well (a verification in many steps must not look
  // like a stuck controller).
  void OnSyncStepSucceeded(const std::string& controller, SyncReason reason,
                           std::chrono::nanoseconds took) override;

 private:
  struct Entry {
    std::chrono::milliseconds period{0};
    std::optional<Clock::time_point> last_success;
    Clock::duration startup{0};  // start → first success
    bool until_first_sync = false;
  };
  const std::chrono::milliseconds grace_;
  mutable std::mutex mu_;
  std::optional<Clock::time_point> started_;
  std::map<std::string, Entry> controllers_;
  StaleCacheProbe stale_caches_;
};

// Remembers the last verdict so that callers log a state change once, not every probe (an
// unhealthy agent is probed every few seconds). Thread-safe.
class TransitionLog {
 public:
  // True when `verdict` differs in health from the previous one (the first verdict counts as
  // a change only when unhealthy: the agent starts healthy).
  bool Changed(const Verdict& verdict) {
    return last_healthy_.exchange(verdict.healthy) != verdict.healthy;
  }

 private:
  std::atomic<bool> last_healthy_{true};
};

}  // namespace kr::health
