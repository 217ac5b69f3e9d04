// NetworkServicesController and its extensions (firewall, health checks, metrics, conntrack,
// DSR): what each sync and event shows them, and the Pods watched only when they need them.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "kube_router/proxy/network_services_controller.h"
#include "unit/proxy/network_services_controller_fixture.h"
#include "unit/proxy/proxy_test_util.h"

namespace kr::proxy {
namespace {

using namespace testing;  // NOLINT: builders and the fixture
using ::testing::ElementsAre;

TEST_F(ProxyControllerTest, ExtensionsSeeChangesRemovalsAndDsr) {
  auto ext = std::make_unique<RecordingExtension>(/*dsr=*/true);
  auto* recorder = ext.get();
  Controller().AddExtension(std::move(ext));
  StandardServices();
  auto dsr = Svc("dsr", "10.96.0.60", {Port("", 80)});
  dsr.external_ips = {"198.51.100.60"};
  dsr.meta.annotations[kAnnotationDsr] = "tunnel";
  Upsert(dsr);
  ASSERT_TRUE(Controller().Init().ok());
  ASSERT_TRUE(Controller().Sync(SyncReason::kStartup).ok());
  EXPECT_TRUE(recorder->last_full);
  EXPECT_EQ(recorder->last_changed.size(), 4u);
  EXPECT_THAT(recorder->dsr_services, ElementsAre("TCP 198.51.100.60:80"));
  // The DSR extension programs it: the plain path leaves its external IP alone.
  EXPECT_THAT(Services(), ::testing::Not(::testing::Contains("TCP 198.51.100.60:80")));
  EXPECT_THAT(DummyAddresses(), ::testing::Not(::testing::Contains("198.51.100.60")));

  Upsert(Slice("web", "web-1", {{"10.1.0.1"}}, {{"http", 8080}}));
  ASSERT_TRUE(Controller().Sync(SyncReason::kRequested).ok());
  EXPECT_FALSE(recorder->last_full);
  EXPECT_THAT(recorder->last_changed, ElementsAre(ServiceName{"default", "web"}));
  EXPECT_THAT(recorder->removed, ElementsAre("TCP 10.96.0.10:80 10.1.0.2:8080"));

  auto removed = Controller().Cleanup();
  ASSERT_TRUE(removed.ok());
  EXPECT_EQ(recorder->cleanups, 1);
  EXPECT_THAT(*removed, ::testing::Contains("recorder state"));
}

// The work an event costs the extensions (firewall, health checks, metrics, conntrack, DSR) is
// bounded by what it touched: at N Services one endpoint change shows them one Service and its
// one virtual service, not N (the snapshot is all they can read).
TEST_F(ProxyControllerTest, AnEventShowsTheExtensionsOnlyWhatItTouched) {
  auto ext = std::make_unique<RecordingExtension>();
  auto* recorder = ext.get();
  Controller().AddExtension(std::move(ext));
  constexpr int kServices = 300;
  auto vip = [](int i) {
    return "10.96." + std::to_string(i / 250) + "." + std::to_string(i % 250 + 1);
  };
  for (int i = 0; i < kServices; ++i) {
    const std::string name = "s" + std::to_string(i);
    Upsert(Svc(name, vip(i), {Port("http", 80)}));
    Upsert(Slice(name, name + "-1", {{"10.1.0.1"}, {"10.1.0.2"}}, {{"http", 8080}}));
  }
  ASSERT_TRUE(Controller().Sync(SyncReason::kStartup).ok());
  EXPECT_TRUE(recorder->last_full);
  EXPECT_EQ(recorder->last_services, static_cast<size_t>(kServices));
  EXPECT_EQ(recorder->last_programmed, static_cast<size_t>(kServices));

  ResetCounts();
  Upsert(Slice("s7", "s7-1", {{"10.1.0.1"}, {"10.1.0.3"}}, {{"http", 8080}}));
  ASSERT_TRUE(Controller().Sync(SyncReason::kRequested).ok());
  EXPECT_EQ(Writes(), 2);  // one destination in, one out
  EXPECT_FALSE(recorder->last_full);
  EXPECT_EQ(recorder->last_services, 1u);
  EXPECT_EQ(recorder->last_programmed, 1u);
  EXPECT_EQ(recorder->last_touched.size(), 1u);
  EXPECT_EQ(recorder->last_ipvs_services, static_cast<size_t>(kServices));

  // A deleted Service: shown as touched but no longer programmed.
  RemoveService("default/s9");
  ASSERT_TRUE(Controller().Sync(SyncReason::kRequested).ok());
  EXPECT_EQ(recorder->last_services, 0u);
  EXPECT_EQ(recorder->last_programmed, 0u);
  EXPECT_EQ(recorder->last_touched.size(), 1u);
  EXPECT_EQ(recorder->last_ipvs_services, static_cast<size_t>(kServices - 1));
}

TEST_F(ProxyControllerTest, PodsAreWatchedOnlyWhenGracefulTerminationOrDsrNeedThem) {
  auto watches_pods = [](const NetworkServicesController& c) {
    auto kinds = c.WatchedKinds();
    return std::find(kinds.begin(), kinds.end(), k8s::ResourceKind::kPod) != kinds.end();
  };
  EXPECT_FALSE(watches_pods(*Make()));
  auto dsr = Make();
  dsr->AddExtension(std::make_unique<RecordingExtension>(/*dsr=*/true));
  EXPECT_TRUE(watches_pods(*dsr));
  config.graceful_termination = true;
  EXPECT_TRUE(watches_pods(*Make()));
}

TEST_F(ProxyControllerTest, WithoutADsrExtensionDsrServicesAreProgrammedNormally) {
  auto dsr = Svc("dsr", "10.96.0.60", {Port("", 80)});
  dsr.external_ips = {"198.51.100.60"};
  dsr.meta.annotations[kAnnotationDsr] = "tunnel";
  Upsert(dsr);
  ASSERT_TRUE(Controller().Sync(SyncReason::kStartup).ok());
  EXPECT_THAT(Services(), ::testing::Contains("TCP 198.51.100.60:80"));
  EXPECT_THAT(DummyAddresses(), ::testing::Contains("198.51.100.60"));
}

}  // namespace
}  // namespace kr::proxy
