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
  ResetCounts();
  ASSERT_TRUE(Controller().Sync(SyncReason::kRequested).ok());
  // Programmed by the event's sync, not after the verification.
  EXPECT_EQ(SchedulerOf("10.96.0.10", 80), "sh");
  EXPECT_THAT(Dests("10.96.0.10", 80),
              ElementsAre("10.1.0.1:8080 w1", "10.1.0.2:8080 w1", "10.1.0.9:8080 w1"));
  EXPECT_THAT(Dests("10.96.0.77", 80), ElementsAre("10.1.0.7:8080 w1"));

  // The rest of the verification neither undoes nor rewrites what the event wrote.
  ResetCounts();
  Finish();
  EXPECT_EQ(Writes(), 0);
  EXPECT_EQ(SchedulerOf("10.96.0.10", 80), "sh");
  EXPECT_THAT(Dests("10.96.0.10", 80),
              ElementsAre("10.1.0.1:8080 w1", "10.1.0.2:8080 w1", "10.1.0.9:8080 w1"));
  EXPECT_THAT(Dests("10.96.0.77", 80), ElementsAre("10.1.0.7:8080 w1"));
  EXPECT_THAT(DummyAddresses(), ElementsAre("10.96.0.1", "10.96.0.10", "10.96.0.53", "10.96.0.77"));
  // And the next verification agrees with all of it.
  ASSERT_TRUE(Controller().Sync(SyncReason::kPeriodic).ok());
  Finish();
  EXPECT_EQ(Writes(), 0);
}

INSTANTIATE_TEST_SUITE_P(AfterSteps, EventDuringVerifyTest, ::testing::Range(0, 14));

}  // namespace
}  // namespace kr::proxy
