#include "kube_router/health/health.h"

#include <algorithm>

namespace kr::health {
namespace {

std::string Seconds(Clock::duration d) {
  auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(d).count();
  return std::to_string(ms / 1000) + "." + std::to_string(ms % 1000 / 100) + "s";
}

}  // namespace

void HealthChecker::Register(const std::string& controller, std::chrono::milliseconds period,
                             bool until_first_sync) {
  std::lock_guard lock(mu_);
  controllers_[controller].period = period;
  controllers_[controller].until_first_sync = until_first_sync;
}

void HealthChecker::MarkStarted(Clock::time_point now) {
  std::lock_guard lock(mu_);
  started_ = now;
}

void HealthChecker::Heartbeat(const std::string& controller, Clock::time_point now) {
  std::lock_guard lock(mu_);
  auto it = controllers_.find(controller);
  if (it == controllers_.end()) return;  // not an enabled controller
  Entry& e = it->second;
  // kube-router's AliveTTL: the first success tells how long this controller takes to start.
  if (!e.last_success && started_ && now > *started_) e.startup = now - *started_;
  e.last_success = now;
}

void HealthChecker::SetStaleCacheProbe(StaleCacheProbe probe) {
  std::lock_guard lock(mu_);
  stale_caches_ = std::move(probe);
}

Verdict HealthChecker::Check(Clock::time_point now) const {
  StaleCacheProbe probe;
  std::vector<std::string> names;
  {
    std::lock_guard lock(mu_);
    bool gated = std::any_of(controllers_.begin(), controllers_.end(), [](const auto& c) {
      return c.second.until_first_sync && !c.second.last_success;
    });
    if (!started_ && !gated) return {true, "OK (starting: waiting for the API caches)"};
    probe = stale_caches_;
    for (const auto& [name, e] : controllers_) names.push_back(name);
  }
  std::vector<std::string> stale;
  if (probe) {
    for (const auto& name : names) {
      for (const auto& cache : probe(name)) stale.push_back(name + ": " + cache);
    }
  }
  std::lock_guard lock(mu_);
  Verdict v{true, ""};
  for (const auto& [name, e] : controllers_) {
    if (e.until_first_sync && !e.last_success) {
      v.healthy = false;
      v.detail += (v.detail.empty() ? "" : "; ") + name + " has not synced yet";
    }
  }
  if (!v.healthy) return v;
  if (!started_) return {true, "OK (starting: waiting for the API caches)"};
  for (const auto& [name, e] : controllers_) {
    Clock::time_point since = e.last_success ? *e.last_success : *started_;
    Clock::duration allowed = e.period + e.startup + grace_;
    if (now - since > allowed) {
      v.healthy = false;
      v.detail += (v.detail.empty() ? "" : "; ") + name + " has not synced successfully for " +
                  Seconds(now - since) + " (allowed " + Seconds(allowed) + ")";
    }
  }
  for (const auto& s : stale) {
    v.healthy = false;
    v.detail += (v.detail.empty() ? "" : "; ") + s;
  }
  if (v.healthy) v.detail = "OK";
  return v;
}

void HealthChecker::OnSyncSucceeded(const std::string& controller, SyncReason,
                                    std::chrono::nanoseconds) {
  Heartbeat(controller, Clock::now());
}

void HealthChecker::OnSyncStepSucceeded(const std::string& controller, SyncReason,
                                        std::chrono::nanoseconds) {
  Heartbeat(controller, Clock::now());
}

void HealthChecker::OnSyncFailed(const std::string&, SyncReason, const Status&) {
  // Deliberately no heartbeat: a failing controller must eventually look unhealthy.
}

}  // namespace kr::health
