#include "sync_metrics.h"

#include <gtest/gtest.h>

#include "kube_router/health/health.h"

namespace kr::app {
namespace {

using namespace std::chrono_literals;

TEST(SyncMetrics, SeriesExistAtZeroBeforeTheFirstSync) {
  metrics::Registry registry;
  SyncMetrics sync(&registry);
  sync.Register("NetworkPolicy");
  std::string text = registry.Render();
  EXPECT_NE(text.find("kube_router_controller_syncs_total{controller=\"NetworkPolicy\","
                      "result=\"success\"} 0\n"),
            std::string::npos)
      << text;
  EXPECT_NE(text.find("kube_router_controller_syncs_total{controller=\"NetworkPolicy\","
                      "result=\"failure\"} 0\n"),
            std::string::npos)
      << text;
  EXPECT_NE(text.find("kube_router_controller_last_successful_sync_timestamp_seconds{controller="
                      "\"NetworkPolicy\"} 0\n"),
            std::string::npos)
      << text;
}

TEST(SyncMetrics, CountsOutcomesAndTimesSuccesses) {
  metrics::Registry registry;
  SyncMetrics sync(&registry);
  sync.Register("NetworkRoutes");
  sync.OnSyncSucceeded("NetworkRoutes", SyncReason::kStartup, 250ms);
  sync.OnSyncSucceeded("NetworkRoutes", SyncReason::kPeriodic, 2s);
  sync.OnSyncFailed("NetworkRoutes", SyncReason::kRequested, Status::Error("x"));
  const metrics::LabelSet ok{{"controller", "NetworkRoutes"}, {"result", "success"}};
  const metrics::LabelSet failed{{"controller", "NetworkRoutes"}, {"result", "failure"}};
  EXPECT_EQ(registry.GetCounter(kMetricSyncs, "", ok).Value(), 2);
  EXPECT_EQ(registry.GetCounter(kMetricSyncs, "", failed).Value(), 1);
  auto& histogram =
      registry.GetHistogram(kMetricSyncDuration, "", {}, {{"controller", "NetworkRoutes"}});
  EXPECT_EQ(histogram.Count(), 2u);
  std::string text = registry.Render();
  EXPECT_NE(text.find("kube_router_controller_sync_duration_seconds_sum{controller=\""
                      "NetworkRoutes\"} 2.25\n"),
            std::string::npos)
      << text;
  // A wall-clock Unix time, not a steady-clock reading: after 2020-01-01.
  double last =
      registry.GetGauge(kMetricLastSuccess, "", {{"controller", "NetworkRoutes"}}).Value();
  EXPECT_GT(last, 1577836800.0);
}

TEST(SyncMetrics, BuildInfoIsOne) {
  metrics::Registry registry;
  RecordBuildInfo(&registry);
  std::string text = registry.Render();
  EXPECT_NE(text.find("# TYPE kube_router_build_info gauge\n"), std::string::npos) << text;
  EXPECT_NE(text.find("version=\"v" KR_VERSION "\"} 1\n"), std::string::npos) << text;
  EXPECT_EQ(VersionLine().rfind("kube-router v" KR_VERSION, 0), 0u);
}

TEST(FanOutObserver, HealthAndMetricsBothHearEveryOutcome) {
  metrics::Registry registry;
  SyncMetrics sync(&registry);
  health::HealthChecker checker(1s);
  checker.Register("NetworkPolicy", 1s);
  auto start = health::Clock::now() - 10s;
  checker.MarkStarted(start);
  FanOutObserver both(&checker, &sync);
  both.OnSyncFailed("NetworkPolicy", SyncReason::kPeriodic, Status::Error("x"));
  EXPECT_FALSE(checker.Check().healthy);
  both.OnSyncSucceeded("NetworkPolicy", SyncReason::kPeriodic, 1ms);
  EXPECT_TRUE(checker.Check().healthy);
  EXPECT_EQ(
      registry
          .GetCounter(kMetricSyncs, "", {{"controller", "NetworkPolicy"}, {"result", "failure"}})
          .Value(),
      1);
  EXPECT_EQ(
      registry
          .GetCounter(kMetricSyncs, "", {{"controller", "NetworkPolicy"}, {"result", "success"}})
          .Value(),
      1);
}

}  // namespace
}  // namespace kr::app
