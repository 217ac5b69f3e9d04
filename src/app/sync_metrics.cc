#include "sync_metrics.h"

#include <chrono>

namespace kr::app {
namespace {

constexpr char kSyncsHelp[] = "Controller syncs by result (success or failure).";
constexpr char kDurationHelp[] = "Duration of successful controller syncs in seconds.";
constexpr char kLastSuccessHelp[] =
    "Unix time of the controller's last successful sync (0 = none yet).";

}  // namespace

void SyncMetrics::Register(const std::string& controller) {
  for (const char* result : {"success", "failure"}) {
    registry_->GetCounter(kMetricSyncs, kSyncsHelp,
                          {{"controller", controller}, {"result", result}});
  }
  registry_->GetHistogram(kMetricSyncDuration, kDurationHelp, metrics::Registry::DefaultBuckets(),
                          {{"controller", controller}});
  registry_->GetGauge(kMetricLastSuccess, kLastSuccessHelp, {{"controller", controller}});
}

void SyncMetrics::OnSyncSucceeded(const std::string& controller, SyncReason,
                                  std::chrono::nanoseconds took) {
  registry_
      ->GetCounter(kMetricSyncs, kSyncsHelp, {{"controller", controller}, {"result", "success"}})
      .Inc();
  registry_
      ->GetHistogram(kMetricSyncDuration, kDurationHelp, metrics::Registry::DefaultBuckets(),
                     {{"controller", controller}})
      .Observe(std::chrono::duration<double>(took).count());
  auto now = std::chrono::system_clock::now().time_since_epoch();
  registry_->GetGauge(kMetricLastSuccess, kLastSuccessHelp, {{"controller", controller}})
      .Set(std::chrono::duration<double>(now).count());
}

void SyncMetrics::OnSyncFailed(const std::string& controller, SyncReason, const Status&) {
  registry_
      ->GetCounter(kMetricSyncs, kSyncsHelp, {{"controller", controller}, {"result", "failure"}})
      .Inc();
}

void RecordBuildInfo(metrics::Registry* registry) {
  registry
      ->GetGauge(kMetricBuildInfo, "Build information of the running kube-router (always 1).",
                 {{"version", "v" KR_VERSION}, {"compiler", __VERSION__}})
      .Set(1);
}

std::string VersionLine() {
  return std::string("kube-router v") + KR_VERSION + " (C++ implementation), compiler " +
         __VERSION__;
}

}  // namespace kr::app
