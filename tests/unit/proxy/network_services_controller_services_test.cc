// NetworkServicesController over the stateful fakes: what a Service's settings program (session
// affinity and schedulers, local traffic policy, NodePorts following the node's addresses,
// graceful termination) and bad input skipped item by item.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <map>
#include <string>
#include <vector>

#include "kube_router/proxy/network_services_controller.h"
#include "unit/proxy/network_services_controller_fixture.h"
#include "unit/proxy/proxy_test_util.h"

namespace kr::proxy {
namespace {

using namespace testing;  // NOLINT: builders and the fixture
using netlink::IpvsDestination;
using netlink::IpvsService;
using ::testing::ElementsAre;
using ::testing::IsEmpty;

TEST_F(ProxyControllerTest, SessionAffinityAndSchedulerSwitchInPlace) {
  StandardServices();
  ASSERT_TRUE(Controller().Sync(SyncReason::kStartup).ok());
  ResetCounts();
  auto web = Svc("web", "10.96.0.10", {Port("http", 80)});
  web.session_affinity = "ClientIP";
  web.session_affinity_timeout_seconds = 10;
  web.meta.annotations[kAnnotationScheduler] = "sh";
  Upsert(web);
  ASSERT_TRUE(Controller().Sync(SyncReason::kRequested).ok());
  EXPECT_EQ(Writes(), 1);  // one UpdateService: no delete, connections survive
  auto listed = ipvs.ListServices();
  for (const auto& s : *listed) {
    if (s.port != 80) continue;
    EXPECT_EQ(s.scheduler, "sh");
    EXPECT_EQ(s.flags, netlink::ipvs_flags::kPersistent);
    EXPECT_EQ(s.timeout, 10u);
  }
  EXPECT_THAT(Dests("10.96.0.10", 80), ElementsAre("10.1.0.1:8080 w1", "10.1.0.2:8080 w1"));
}

TEST_F(ProxyControllerTest, LocalPolicyWithoutLocalEndpointKeepsAnEmptyServiceAndItsVip) {
  auto svc = Svc("loc", "10.96.0.40", {Port("", 80)});
  svc.internal_traffic_policy = "Local";
  Upsert(svc);
  Upsert(Slice("loc", "loc-1", {{"10.1.0.1", "node-b"}}, {{"", 8080}}));
  ASSERT_TRUE(Controller().Sync(SyncReason::kStartup).ok());
  EXPECT_THAT(Services(), ElementsAre("TCP 10.96.0.40:80"));
  EXPECT_THAT(Dests("10.96.0.40", 80), IsEmpty());
  EXPECT_THAT(DummyAddresses(), ElementsAre("10.96.0.40"));
  Upsert(Slice("loc", "loc-1", {{"10.1.0.1", "node-b"}, {"10.1.0.5", "node-a"}}, {{"", 8080}}));
  ASSERT_TRUE(Controller().Sync(SyncReason::kRequested).ok());
  EXPECT_THAT(Dests("10.96.0.40", 80), ElementsAre("10.1.0.5:8080 w1"));
}

TEST_F(ProxyControllerTest, BadInputSkipsOnlyItsItem) {
  StandardServices();
  auto bad = Svc("bad", "10.96.0.50", {Port("p", 80), Port("q", 81, "ICMP")});
  bad.meta.annotations[kAnnotationScheduler] = "nope";
  bad.external_ips = {"192.0.2.99", "not-an-ip"};
  bad.session_affinity = "ClientIP";
  bad.session_affinity_timeout_seconds = -5;
  Upsert(bad);
  Upsert(Slice("bad", "bad-1", {{"10.1.0.7"}, {"fd00::7"}}, {{"p", 8080}}));
  auto garbage = Svc("garbage", "not-an-ip", {Port("", 80)});
  Upsert(garbage);
  ASSERT_TRUE(Controller().Sync(SyncReason::kStartup).ok());
  EXPECT_THAT(Services(),
              ::testing::UnorderedElementsAre("TCP 10.96.0.10:80", "UDP 10.96.0.53:53",
                                              "TCP 10.96.0.1:443", "TCP 10.96.0.50:80"));
  EXPECT_THAT(Dests("10.96.0.50", 80), ElementsAre("10.1.0.7:8080 w1"));
  const auto& svc = Controller().services().at({"default", "bad"});
  EXPECT_EQ(svc.problems().size(), 6u);
}

TEST_F(ProxyControllerTest, NodePortFollowsAddressChangesWithBindOnAllIp) {
  config.nodeport_bindon_all_ip = true;
  auto np = Svc("np", "10.96.0.30", {Port("", 80, "TCP", 30080)});
  np.type = "NodePort";
  Upsert(np);
  ASSERT_TRUE(Controller().Sync(SyncReason::kStartup).ok());
  EXPECT_THAT(Services(), ::testing::UnorderedElementsAre(
                              "TCP 10.96.0.30:80", "TCP 192.0.2.10:30080", "TCP 127.0.0.1:30080"));
  ASSERT_TRUE(links.AddAddress({"eth0", Ip("192.0.2.11"), 24, netlink::Scope::kUniverse}).ok());
  ASSERT_TRUE(Controller().Sync(SyncReason::kRequested).ok());
  EXPECT_THAT(Services(), ::testing::Contains("TCP 192.0.2.11:30080"));
  ASSERT_TRUE(links.DeleteAddress({"eth0", Ip("192.0.2.11"), 24, netlink::Scope::kUniverse}).ok());
  ASSERT_TRUE(Controller().Sync(SyncReason::kRequested).ok());
  EXPECT_THAT(Services(), ::testing::Not(::testing::Contains("TCP 192.0.2.11:30080")));
  // The dummy link's VIPs never get NodePorts.
  EXPECT_THAT(Services(), ::testing::Not(::testing::Contains("TCP 10.96.0.30:30080")));
}

TEST_F(ProxyControllerTest, GracefulTerminationDrainsThenDeletes) {
  config.graceful_termination = true;
  config.graceful_period = std::chrono::seconds(30);
  auto ext = std::make_unique<RecordingExtension>();
  auto* recorder = ext.get();
  Controller().AddExtension(std::move(ext));
  StandardServices();
  k8s::Pod pod;
  pod.meta.name = "web-2";
  pod.meta.namespace_ = "default";
  pod.pod_ips = {"10.1.0.2"};
  pod.termination_grace_period_seconds = 60;
  Upsert(pod);
  ASSERT_TRUE(Controller().Sync(SyncReason::kStartup).ok());
  const IpvsService web = WebPort80();
  IpvsDestination two;
  two.address = Ip("10.1.0.2");
  two.port = 8080;

  // The endpoint goes while it holds connections: weight 0, still there.
  ASSERT_TRUE(ipvs.SetConnections(web, two, 3, 1).ok());
  Upsert(Slice("web", "web-1", {{"10.1.0.1"}}, {{"http", 8080}}));
  ASSERT_TRUE(Controller().Sync(SyncReason::kRequested).ok());
  EXPECT_THAT(Dests("10.96.0.10", 80), ElementsAre("10.1.0.1:8080 w1", "10.1.0.2:8080 w0"));
  EXPECT_EQ(Controller().draining(), 1u);
  EXPECT_THAT(recorder->removed, IsEmpty());

  // It comes back during the drain: weight 1 again and never deleted later.
  Upsert(Slice("web", "web-1", {{"10.1.0.1"}, {"10.1.0.2"}}, {{"http", 8080}}));
  ASSERT_TRUE(Controller().Sync(SyncReason::kRequested).ok());
  EXPECT_EQ(Controller().draining(), 0u);
  now += std::chrono::minutes(5);
  ASSERT_TRUE(Controller().Sync(SyncReason::kRequested).ok());
  EXPECT_THAT(Dests("10.96.0.10", 80), ElementsAre("10.1.0.1:8080 w1", "10.1.0.2:8080 w1"));

  // Gone again; a restart in between rebuilds the drain from the kernel's weight 0.
  Upsert(Slice("web", "web-1", {{"10.1.0.1"}}, {{"http", 8080}}));
  ASSERT_TRUE(Controller().Sync(SyncReason::kRequested).ok());
  ASSERT_TRUE(ipvs.SetConnections(web, two, 3, 1).ok());
  controller.reset();
  auto restarted = Make();
  ASSERT_TRUE(restarted->Sync(SyncReason::kStartup).ok());
  EXPECT_EQ(restarted->draining(), 1u);
  EXPECT_THAT(Dests("10.96.0.10", 80), ElementsAre("10.1.0.1:8080 w1", "10.1.0.2:8080 w0"));
  // Connections still open, pod grace (60 s) not over: kept.
  now += std::chrono::seconds(59);
  ASSERT_TRUE(restarted->Sync(SyncReason::kRequested).ok());
  EXPECT_EQ(restarted->draining(), 1u);
  // The grace period ends: deleted although connections remain.
  now += std::chrono::seconds(2);
  ASSERT_TRUE(restarted->Sync(SyncReason::kRequested).ok());
  EXPECT_EQ(restarted->draining(), 0u);
  EXPECT_THAT(Dests("10.96.0.10", 80), ElementsAre("10.1.0.1:8080 w1"));

  // Drained connections end the wait early.
  IpvsDestination one;
  one.address = Ip("10.1.0.1");
  one.port = 8080;
  ASSERT_TRUE(ipvs.SetConnections(web, one, 1, 0).ok());
  Upsert(Slice("web", "web-1", {}, {{"http", 8080}}));
  ASSERT_TRUE(restarted->Sync(SyncReason::kPeriodic).ok());
  EXPECT_THAT(Dests("10.96.0.10", 80), ElementsAre("10.1.0.1:8080 w0"));
  ASSERT_TRUE(ipvs.SetConnections(web, one, 0, 0).ok());
  ASSERT_TRUE(restarted->Sync(SyncReason::kRequested).ok());
  EXPECT_THAT(Dests("10.96.0.10", 80), IsEmpty());
}

// Two Services that want one virtual service (here: the same cluster IP and port): the first by
// name owns it, the other waits and takes over when the owner lets go; a change of the waiting
// one does not touch the owner's; the VIP stays while any Service wants it (counted per Service).
TEST_F(ProxyControllerTest, AVirtualServiceTwoServicesWantFollowsTheFirstByName) {
  Upsert(Svc("b", "10.96.0.77", {Port("p80", 80), Port("p81", 81)}));
  Upsert(Slice("b", "b-1", {{"10.1.0.2"}}, {{"p80", 8080}, {"p81", 8081}}));
  Upsert(Svc("a", "10.96.0.77", {Port("p80", 80)}));
  Upsert(Slice("a", "a-1", {{"10.1.0.1"}}, {{"p80", 8080}}));
  ASSERT_TRUE(Controller().Sync(SyncReason::kStartup).ok());
  EXPECT_THAT(Dests("10.96.0.77", 80), ElementsAre("10.1.0.1:8080 w1"));
  EXPECT_THAT(Dests("10.96.0.77", 81), ElementsAre("10.1.0.2:8081 w1"));
  EXPECT_THAT(DummyAddresses(), ElementsAre("10.96.0.77"));

  auto event = [&] { ASSERT_TRUE(Controller().Sync(SyncReason::kRequested).ok()); };
  Upsert(Slice("b", "b-1", {{"10.1.0.3"}}, {{"p80", 8080}, {"p81", 8081}}));
  event();
  EXPECT_THAT(Dests("10.96.0.77", 80), ElementsAre("10.1.0.1:8080 w1"));  // still a's
  EXPECT_THAT(Dests("10.96.0.77", 81), ElementsAre("10.1.0.3:8081 w1"));

  RemoveService("default/a");
  event();
  EXPECT_THAT(Dests("10.96.0.77", 80), ElementsAre("10.1.0.3:8080 w1"));  // b took it over
  EXPECT_THAT(DummyAddresses(), ElementsAre("10.96.0.77"));

  Upsert(Svc("a", "10.96.0.77", {Port("p80", 80)}));
  event();
  EXPECT_THAT(Dests("10.96.0.77", 80), ElementsAre("10.1.0.1:8080 w1"));  // a first again

  RemoveService("default/b");
  event();
  EXPECT_THAT(Services(), ElementsAre("TCP 10.96.0.77:80"));
  EXPECT_THAT(Dests("10.96.0.77", 80), ElementsAre("10.1.0.1:8080 w1"));
  EXPECT_THAT(DummyAddresses(), ElementsAre("10.96.0.77"));  // a still wants the VIP

  RemoveService("default/a");
  event();
  EXPECT_THAT(Services(), IsEmpty());
  EXPECT_THAT(DummyAddresses(), IsEmpty());
  EXPECT_TRUE(Controller().programmed().vips.empty());
}

// The desired image points into the Services (not copies): every wanted entry must point at the
// live entry of its owner in services() and at that Service's own virtual service, whatever
// replaced, removed or took over. Checked without dereferencing a pointer that is not a live
// entry's (the ASan build reports any read of a freed Service the controller does itself).
void ExpectDesiredPointsIntoServices(const NetworkServicesController& c) {
  std::map<VirtualServiceId, const DesiredService*> first;  // the first Service by name per id
  std::map<IpAddress, uint32_t> vips;                       // how many Services want a VIP
  for (const auto& [name, svc] : c.services()) {
    for (const auto& d : svc.virtual_services) first.emplace(d.vs.id(), &svc);
    for (const auto& vip : svc.vips) ++vips[vip];
  }
  EXPECT_EQ(c.desired().vips, vips);
  EXPECT_EQ(c.desired().services.size(), first.size());
  for (const auto& entry : c.desired().services) {
    const VirtualServiceId& id = entry.first;
    const Wanted& wanted = entry.second;  // (not a structured binding: a lambda captures it)
    SCOPED_TRACE(id.ToString());
    auto owner = first.find(id);
    ASSERT_NE(owner, first.end()) << "wanted by no Service";
    ASSERT_EQ(wanted.owner, owner->second) << "not the live entry of the first Service by name";
    const auto& vss = wanted.owner->virtual_services;
    auto in =
        std::find_if(vss.begin(), vss.end(), [&](const auto& d) { return &d.vs == wanted.vs; });
    ASSERT_NE(in, vss.end()) << "not one of the owner's virtual services";
    EXPECT_EQ(wanted.vs->id(), id);
  }
}

// Three Services want one virtual service (the same cluster IP and port; c with scheduler lc).
// Each is rebuilt (a new DesiredService), removed, or takes over from the waiting set, and the
// fake kernel must hold exactly the owner's programming after every event sync, a periodic
// verification that repairs drift and a full sync: a desired entry left pointing at a replaced
// or removed Service would program (or, under ASan, read) the old one.
TEST_F(ProxyControllerTest, TheDesiredViewFollowsReplacementsRemovalsAndTakeovers) {
  auto svc = [&](const std::string& name, std::vector<k8s::ServicePort> ports,
                 const std::string& scheduler = "") {
    k8s::Service s = Svc(name, "10.96.0.77", std::move(ports));
    if (!scheduler.empty()) s.meta.annotations[kAnnotationScheduler] = scheduler;
    Upsert(s);
  };
  svc("a", {Port("p80", 80)});
  Upsert(Slice("a", "a-1", {{"10.1.0.1"}}, {{"p80", 8080}}));
  svc("b", {Port("p80", 80), Port("p81", 81)});
  Upsert(Slice("b", "b-1", {{"10.1.0.2"}}, {{"p80", 8080}, {"p81", 8081}}));
  svc("c", {Port("p80", 80)}, "lc");
  Upsert(Slice("c", "c-1", {{"10.1.0.3"}, {"10.1.0.4"}}, {{"p80", 8080}}));
  ASSERT_TRUE(Controller().Sync(SyncReason::kStartup).ok());
  ExpectDesiredPointsIntoServices(Controller());
  auto scheduler80 = [&] {
    auto list = ipvs.ListServices();
    for (const auto& s : *list) {
      if (s.port == 80) return s.scheduler;
    }
    return std::string("<none>");
  };
  auto event = [&] {
    ASSERT_TRUE(Controller().Sync(SyncReason::kRequested).ok());
    ExpectDesiredPointsIntoServices(Controller());
  };
  EXPECT_THAT(Dests("10.96.0.77", 80), ElementsAre("10.1.0.1:8080 w1"));
  EXPECT_EQ(scheduler80(), "rr");

  // The owner rebuilt: b takes over while a is unclaimed, a takes it back when claimed again.
  Upsert(Slice("a", "a-1", {{"10.1.0.5"}}, {{"p80", 8080}}));
  ASSERT_NO_FATAL_FAILURE(event());
  EXPECT_THAT(Dests("10.96.0.77", 80), ElementsAre("10.1.0.5:8080 w1"));

  // The owner removed: the first waiting one (b) takes over; c still waits.
  RemoveService("default/a");
  ASSERT_NO_FATAL_FAILURE(event());
  EXPECT_THAT(Dests("10.96.0.77", 80), ElementsAre("10.1.0.2:8080 w1"));
  EXPECT_THAT(Dests("10.96.0.77", 81), ElementsAre("10.1.0.2:8081 w1"));

  // The new owner rebuilt (c holds it in between), then a waiting one rebuilt.
  Upsert(Slice("b", "b-1", {{"10.1.0.6"}}, {{"p80", 8080}, {"p81", 8081}}));
  ASSERT_NO_FATAL_FAILURE(event());
  EXPECT_THAT(Dests("10.96.0.77", 80), ElementsAre("10.1.0.6:8080 w1"));
  EXPECT_EQ(scheduler80(), "rr");
  Upsert(Slice("c", "c-1", {{"10.1.0.3"}, {"10.1.0.7"}}, {{"p80", 8080}}));
  ASSERT_NO_FATAL_FAILURE(event());
  EXPECT_THAT(Dests("10.96.0.77", 80), ElementsAre("10.1.0.6:8080 w1"));

  // The owner removed again: c, the last one waiting, takes over with its scheduler.
  RemoveService("default/b");
  ASSERT_NO_FATAL_FAILURE(event());
  EXPECT_THAT(Services(), ElementsAre("TCP 10.96.0.77:80"));
  EXPECT_THAT(Dests("10.96.0.77", 80), ElementsAre("10.1.0.3:8080 w1", "10.1.0.7:8080 w1"));
  EXPECT_EQ(scheduler80(), "lc");

  // Drift behind the controller's back: the periodic verification compares the view with the
  // kernel and puts c's programming back.
  IpvsDestination gone;
  gone.address = Ip("10.1.0.7");
  gone.port = 8080;
  IpvsService vs80;
  vs80.address = Ip("10.96.0.77");
  vs80.port = 80;
  ASSERT_TRUE(ipvs.DeleteDestination(vs80, gone).ok());
  vs80.scheduler = "rr";
  ASSERT_TRUE(ipvs.UpdateService(vs80).ok());
  ASSERT_TRUE(Controller().Sync(SyncReason::kPeriodic).ok());
  for (int i = 0; i < 100 && Controller().verifying(); ++i) {
    ASSERT_TRUE(Controller().Sync(SyncReason::kRequested).ok());
  }
  ASSERT_FALSE(Controller().verifying());
  ExpectDesiredPointsIntoServices(Controller());
  EXPECT_THAT(Dests("10.96.0.77", 80), ElementsAre("10.1.0.3:8080 w1", "10.1.0.7:8080 w1"));
  EXPECT_EQ(scheduler80(), "lc");

  // A full sync rebuilds every Service (all new entries) and finds nothing to write.
  ResetCounts();
  ASSERT_TRUE(Controller().Sync(SyncReason::kStartup).ok());
  ExpectDesiredPointsIntoServices(Controller());
  EXPECT_EQ(Writes(), 0);

  // And a's return after the full sync: first by name again.
  svc("a", {Port("p80", 80)});
  ASSERT_NO_FATAL_FAILURE(event());
  EXPECT_THAT(Dests("10.96.0.77", 80), ElementsAre("10.1.0.5:8080 w1"));
  EXPECT_EQ(scheduler80(), "rr");
  RemoveService("default/a");
  RemoveService("default/c");
  ASSERT_NO_FATAL_FAILURE(event());
  EXPECT_THAT(Services(), IsEmpty());
  EXPECT_THAT(DummyAddresses(), IsEmpty());
  EXPECT_TRUE(Controller().desired().services.empty());
}

}  // namespace
}  // namespace kr::proxy
