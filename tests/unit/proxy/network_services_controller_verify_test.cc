// The periodic verification in steps (docs/proxy.md, "Periodic verification in steps"): it asks
// for the next step after each, repairs drift, reads the kernel's services once and writes
// nothing when nothing drifted, and an event served between its steps is programmed by its own
// sync and never judged by the verification's older read.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "kube_router/netlink/fakes.h"
#include "kube_router/proxy/network_services_controller.h"
#include "unit/proxy/network_services_controller_fixture.h"
#include "unit/proxy/proxy_test_util.h"

namespace kr::proxy {
namespace {

using namespace testing;  // NOLINT: builders and the fixture
using ::testing::ElementsAre;

class VerifyStepTest : public ProxyControllerTest {
 protected:
  VerifyStepTest() {
    config.verify_step_items = 1;  // every Service and virtual service its own step
    StandardServices();
  }
  void Start() {
    Controller().SetSyncRequester([this] { ++requests; });
    ASSERT_TRUE(Controller().Sync(SyncReason::kStartup).ok());
    ASSERT_FALSE(Controller().verifying());
  }
  // Takes the remaining steps as the runner would (one requested sync per request); returns
  // how many it took.
  int Finish() {
    int steps = 0;
    while (Controller().verifying() && steps < 100) {
      const int before = requests;
      EXPECT_TRUE(Controller().Sync(SyncReason::kRequested).ok());
      EXPECT_EQ(requests, before + (Controller().verifying() ? 1 : 0));
      ++steps;
    }
    EXPECT_FALSE(Controller().verifying());
    return steps;
  }
  std::string SchedulerOf(const std::string& vip, uint16_t port) {
    // (The Result is kept: a range-for over `*temporary` would outlive the temporary.)
    auto services = ipvs.ListServices();
    for (const auto& s : *services) {
      if (s.address == Ip(vip) && s.port == port) return s.scheduler;
    }
    return "<none>";
  }
  int requests = 0;
};

TEST_F(VerifyStepTest, ANoOpVerificationInStepsReadsServicesOnceAndWritesNothing) {
  Start();
  ResetCounts();
  const uint64_t before = Controller().full_syncs();
  ASSERT_TRUE(Controller().Sync(SyncReason::kPeriodic).ok());
  EXPECT_TRUE(Controller().verifying());  // one Service rebuilt, the rest follows
  EXPECT_EQ(requests, 1);
  EXPECT_GT(Finish(), 3);
  EXPECT_EQ(Writes(), 0);
  using Op = netlink::FakeIpvs::Op;
  EXPECT_EQ(ipvs.failures().Calls({Op::kListServices}), 1);
  EXPECT_EQ(ipvs.failures().Calls({Op::kListDestinations}), 3);  // one per virtual service
  EXPECT_EQ(Controller().full_syncs(), before + 1);
  const FullSyncStats& stats = Controller().last_full_sync();
  EXPECT_EQ(stats.services, 3u);
  EXPECT_EQ(stats.virtual_services, 3u);
  EXPECT_EQ(stats.repairs, 0u);
  EXPECT_GT(stats.steps, 3);
}

TEST_F(VerifyStepTest, AVerificationInStepsRepairsDrift) {
  Start();
  ASSERT_NO_FATAL_FAILURE(DriftStandardServices());

  ASSERT_TRUE(Controller().Sync(SyncReason::kPeriodic).ok());
  // A periodic sync while the verification is under way continues it instead of restarting.
  ASSERT_TRUE(Controller().Sync(SyncReason::kPeriodic).ok());
  Finish();
  EXPECT_THAT(Dests("10.96.0.10", 80), ElementsAre("10.1.0.1:8080 w1", "10.1.0.2:8080 w1"));
  EXPECT_THAT(Dests("10.96.0.53", 53, netlink::IpvsProtocol::kUdp),
              ElementsAre("10.1.0.3:5353 w1"));
  EXPECT_EQ(SchedulerOf("10.96.0.10", 80), "rr");
  EXPECT_EQ(VipRoute("10.96.0.1")->source, Ip("192.0.2.10"));
  EXPECT_GT(Controller().last_full_sync().repairs, 0u);
  // The image is the kernel again: the next verification finds nothing to do.
  ResetCounts();
  ASSERT_TRUE(Controller().Sync(SyncReason::kPeriodic).ok());
  Finish();
  EXPECT_EQ(Writes(), 0);
}

// The images keep a destination in 24 B without the thresholds the proxy never sets
// (docs/memory.md), but a kernel read-back keeps them: thresholds set behind the proxy's back
// are drift like a changed weight, and the verification writes the wanted ones back.
TEST_F(VerifyStepTest, AVerificationRepairsThresholdsSetBehindItsBack) {
  Start();
  const netlink::IpvsService web = WebPort80();
  netlink::IpvsDestination limited;
  limited.address = Ip("10.1.0.2");
  limited.port = 8080;
  limited.upper_threshold = 50;
  limited.lower_threshold = 5;
  ASSERT_TRUE(ipvs.UpdateDestination(web, limited).ok());
  auto thresholds = [&] {
    auto list = ipvs.ListDestinations(web);
    std::string out;
    for (const auto& d : *list) {
      out += DestinationId{d.address, d.port}.ToString() + " " + std::to_string(d.upper_threshold) +
             "/" + std::to_string(d.lower_threshold) + " w" + std::to_string(d.weight) + ";";
    }
    return out;
  };
  ASSERT_EQ(thresholds(), "10.1.0.1:8080 0/0 w1;10.1.0.2:8080 50/5 w1;");

  ASSERT_TRUE(Controller().Sync(SyncReason::kPeriodic).ok());
  Finish();
  EXPECT_EQ(thresholds(), "10.1.0.1:8080 0/0 w1;10.1.0.2:8080 0/0 w1;");
  EXPECT_GT(Controller().last_full_sync().repairs, 0u);
  ResetCounts();
  ASSERT_TRUE(Controller().Sync(SyncReason::kPeriodic).ok());
  Finish();
  EXPECT_EQ(Writes(), 0);
}

// The event comes after `GetParam()` steps: before the kernel was read, between the read and
// the comparison of the Services it changes, or after them.
class EventDuringVerifyTest : public VerifyStepTest, public ::testing::WithParamInterface<int> {};

TEST_P(EventDuringVerifyTest, IsProgrammedByItsOwnSyncAndNotJudgedByTheOlderRead) {
  Start();
  ASSERT_TRUE(Controller().Sync(SyncReason::kPeriodic).ok());
  for (int i = 0; i < GetParam() && Controller().verifying(); ++i) {
    ASSERT_TRUE(Controller().Sync(SyncReason::kRequested).ok());
  }
  auto web = Svc("web", "10.96.0.10", {Port("http", 80)});
  web.meta.annotations[kAnnotationScheduler] = "sh";
  Upsert(web);
  Upsert(Slice("web", "web-1", {{"10.1.0.1"}, {"10.1.0.2"}, {"10.1.0.9"}}, {{"http", 8080}}));
  Upsert(Svc("late", "10.96.0.77", {Port("http", 80)}));
  Upsert(Slice("late", "late-1", {{"10.1.0.7"}}, {{"http", 8080}}));
  RemoveService("kube-system/dns");  // its VIP and virtual service go
  ResetCounts();
  ASSERT_TRUE(Controller().Sync(SyncReason::kRequested).ok());
  // Programmed by the event's sync, not after the verification.
  EXPECT_EQ(SchedulerOf("10.96.0.10", 80), "sh");
  EXPECT_THAT(Dests("10.96.0.10", 80),
              ElementsAre("10.1.0.1:8080 w1", "10.1.0.2:8080 w1", "10.1.0.9:8080 w1"));
  EXPECT_THAT(Dests("10.96.0.77", 80), ElementsAre("10.1.0.7:8080 w1"));
  EXPECT_THAT(DummyAddresses(), ElementsAre("10.96.0.1", "10.96.0.10", "10.96.0.77"));

  // The rest of the verification neither undoes nor rewrites what the event wrote.
  ResetCounts();
  Finish();
  EXPECT_EQ(Writes(), 0);
  EXPECT_EQ(SchedulerOf("10.96.0.10", 80), "sh");
  EXPECT_THAT(Dests("10.96.0.10", 80),
              ElementsAre("10.1.0.1:8080 w1", "10.1.0.2:8080 w1", "10.1.0.9:8080 w1"));
  EXPECT_THAT(Dests("10.96.0.77", 80), ElementsAre("10.1.0.7:8080 w1"));
  EXPECT_THAT(DummyAddresses(), ElementsAre("10.96.0.1", "10.96.0.10", "10.96.0.77"));
  EXPECT_THAT(Services(), ::testing::Not(::testing::Contains(::testing::HasSubstr("10.96.0.53"))));
  // And the next verification agrees with all of it.
  ASSERT_TRUE(Controller().Sync(SyncReason::kPeriodic).ok());
  Finish();
  EXPECT_EQ(Writes(), 0);
}

// Every step of the verification of the three standard Services (about 20), and beyond.
INSTANTIATE_TEST_SUITE_P(AfterSteps, EventDuringVerifyTest, ::testing::Range(0, 30));

// A step costs O(its items): each kernel dump is a step of its own, and what a dump returned is
// sorted and compared a chunk per step. With every VIP's route and every virtual service's
// scheduler drifted, no step reads more than one dump or repairs more than its items.
TEST_F(VerifyStepTest, EveryStepDoesAtMostItsItemsOfWork) {
  constexpr int kServices = 120;
  constexpr int kItems = 8;
  std::vector<std::string> vips = {"10.96.0.1", "10.96.0.10", "10.96.0.53"};
  for (int i = 0; i < kServices; ++i) {
    const std::string name = "s" + std::to_string(i);
    vips.push_back("10.97.0." + std::to_string(i + 1));
    Upsert(Svc(name, vips.back(), {Port("http", 80)}));
    Upsert(Slice(name, name + "-1", {{"10.2.0.1"}}, {{"http", 8080}}));
  }
  config.verify_step_items = kItems;
  config.verify_step_time = std::chrono::microseconds(0);  // items only: deterministic
  Start();
  auto listed = ipvs.ListServices();  // (kept alive across the loop)
  for (IpvsService s : *listed) {
    s.scheduler = "lc";
    ASSERT_TRUE(ipvs.UpdateService(s).ok());
  }
  for (const auto& vip : vips) {
    auto bad_route = *VipRoute(vip);
    bad_route.source = Ip(vip);
    ASSERT_TRUE(routes.Replace(bad_route).ok());
  }
  using Op = netlink::FakeIpvs::Op;
  ASSERT_TRUE(Controller().Sync(SyncReason::kPeriodic).ok());
  int steps = 1;
  while (Controller().verifying() && steps < 1000) {
    ResetCounts();
    ASSERT_TRUE(Controller().Sync(SyncReason::kRequested).ok());
    ++steps;
    const int dumps = ipvs.failures().Calls({Op::kListServices}) +
                      links.failures().Calls({netlink::FakeLinks::Op::kListAddresses}) +
                      routes.failures().Calls({netlink::FakeRouteTable::Op::kList});
    EXPECT_LE(dumps, 1) << "step " << steps;
    EXPECT_LE(ipvs.failures().Calls({Op::kListDestinations}), kItems) << "step " << steps;
    EXPECT_LE(ipvs.failures().Calls(netlink::FakeIpvs::kWrites), kItems) << "step " << steps;
    EXPECT_LE(routes.applied_changes(), static_cast<size_t>(kItems)) << "step " << steps;
  }
  EXPECT_GE(Controller().last_full_sync().repairs, 2 * vips.size());
  for (const auto& vip : vips) {
    EXPECT_EQ(VipRoute(vip)->source, Ip("192.0.2.10")) << vip;
    EXPECT_EQ(
        SchedulerOf(vip, vip.starts_with("10.96.0.53") ? 53 : (vip == "10.96.0.1" ? 443 : 80)),
        "rr")
        << vip;
  }
  ResetCounts();
  ASSERT_TRUE(Controller().Sync(SyncReason::kPeriodic).ok());
  Finish();
  EXPECT_EQ(Writes(), 0);
}

}  // namespace
}  // namespace kr::proxy
