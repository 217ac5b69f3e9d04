// Per-controller sync metrics, recorded for every controller by the runtime (controllers add
// their own kube-router-named metrics, e.g. kube_router_controller_routes_sync_time).
#pragma once

#include <string>

#include "kube_router/metrics/registry.h"
#include "kube_router/runtime/runner.h"

namespace kr::app {

inline constexpr char kMetricSyncs[] = "kube_router_controller_syncs_total";
inline constexpr char kMetricSyncDuration[] = "kube_router_controller_sync_duration_seconds";
inline constexpr char kMetricLastSuccess[] =
    "kube_router_controller_last_successful_sync_timestamp_seconds";
inline constexpr char kMetricBuildInfo[] = "kube_router_build_info";

// Counts syncs by outcome, times successful ones and stamps the last success (wall clock, so
// an alert can compare it with time()). A sync taken in steps counts once, at its last step,
// with the steps' summed time (the runner reports it so).
class SyncMetrics : public SyncObserver {
 public:
  explicit SyncMetrics(metrics::Registry* registry) : registry_(registry) {}
  // Creates the series of `controller` at zero, so they exist before its first sync.
  void Register(const std::string& controller);

  void OnSyncSucceeded(const std::string& controller, SyncReason reason,
                       std::chrono::nanoseconds took) override;
  void OnSyncFailed(const std::string& controller, SyncReason reason, const Status& error) override;

 private:
  metrics::Registry* registry_;
};

// Forwards every sync outcome to both observers (health first).
class FanOutObserver : public SyncObserver {
 public:
  FanOutObserver(SyncObserver* first, SyncObserver* second) : first_(first), second_(second) {}
  void OnSyncSucceeded(const std::string& c, SyncReason r, std::chrono::nanoseconds t) override {
    first_->OnSyncSucceeded(c, r, t);
    second_->OnSyncSucceeded(c, r, t);
  }
  void OnSyncFailed(const std::string& c, SyncReason r, const Status& e) override {
    first_->OnSyncFailed(c, r, e);
    second_->OnSyncFailed(c, r, e);
  }
  void OnSyncStepSucceeded(const std::string& c, SyncReason r,
                           std::chrono::nanoseconds t) override {
    first_->OnSyncStepSucceeded(c, r, t);
    second_->OnSyncStepSucceeded(c, r, t);
  }

 private:
  SyncObserver* first_;
  SyncObserver* second_;
};

// kube_router_build_info{version=...,compiler=...} 1
void RecordBuildInfo(metrics::Registry* registry);

// The version line printed by --version.
std::string VersionLine();

}  // namespace kr::app
