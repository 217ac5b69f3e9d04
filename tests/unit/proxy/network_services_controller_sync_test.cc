// NetworkServicesController over the stateful fakes: the cold start, events that write only what
// they changed, a restart that adopts the kernel state, periodic repair, cleanup that spares
// foreign state, kernel failures and the latency metric.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "kube_router/netlink/fakes.h"
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

// A virtual service of someone else's (the protocol left at its default).
IpvsService VirtualService(const std::string& address, uint16_t port) {
  IpvsService s;
  s.address = Ip(address);
  s.port = port;
  return s;
}

TEST_F(ProxyControllerTest, ColdStartProgramsDummyLinkVipRouteServicesAndDestinations) {
  StandardServices();
  ASSERT_TRUE(Controller().Sync(SyncReason::kStartup).ok());
  auto dummy = links.links().find(netlink::kKubeDummyName);
  ASSERT_NE(dummy, links.links().end());
  EXPECT_TRUE(dummy->second.up);
  EXPECT_EQ(dummy->second.kind, "dummy");
  EXPECT_THAT(DummyAddresses(), ElementsAre("10.96.0.1", "10.96.0.10", "10.96.0.53"));
  const auto* route = VipRoute("10.96.0.10");
  ASSERT_NE(route, nullptr);
  EXPECT_EQ(route->source, Ip("192.0.2.10"));
  EXPECT_EQ(route->type, netlink::RouteType::kLocal);
  EXPECT_EQ(route->scope, netlink::Scope::kHost);
  EXPECT_EQ(route->device, netlink::kKubeDummyName);
  EXPECT_THAT(Services(), ::testing::UnorderedElementsAre("TCP 10.96.0.10:80", "UDP 10.96.0.53:53",
                                                          "TCP 10.96.0.1:443"));
  EXPECT_THAT(Dests("10.96.0.10", 80), ElementsAre("10.1.0.1:8080 w1", "10.1.0.2:8080 w1"));
  EXPECT_THAT(Dests("10.96.0.53", 53, netlink::IpvsProtocol::kUdp),
              ElementsAre("10.1.0.3:5353 w1"));
  EXPECT_EQ(registry.GetGauge("kube_router_controller_ipvs_services", "").Value(), 3);
}

// A cold start sends every IPVS change in one batch (the netlink adapter packs it into few
// round trips), not one call per object; an event is one batch too.
TEST_F(ProxyControllerTest, IpvsChangesAreWrittenAsOneBatchPerSync) {
  StandardServices();
  ASSERT_TRUE(Controller().Sync(SyncReason::kStartup).ok());
  using Op = netlink::FakeIpvs::Op;
  EXPECT_EQ(ipvs.failures().Calls({Op::kApply}), 1);
  EXPECT_EQ(ipvs.failures().Calls({Op::kAddService}), 3);  // inside that batch
  EXPECT_EQ(ipvs.failures().Calls({Op::kAddDestination}), 4);
  ResetCounts();
  Upsert(Slice("web", "web-1", {{"10.1.0.7"}}, {{"http", 8080}}));
  ASSERT_TRUE(Controller().Sync(SyncReason::kRequested).ok());
  EXPECT_EQ(ipvs.failures().Calls({Op::kApply}), 1);
  EXPECT_EQ(Writes(), 3);  // one destination in, two out
}

// A full sync diffs and writes its virtual services a chunk at a time (full_sync_chunk, in id
// order): the cold start's plan and write batch hold one chunk's changes, not all of them
// (docs/memory.md), and the kernel ends the same. A stale service of ours and its VIP go too,
// the VIP with the last chunk; a restart with chunks adopts the kernel without writing.
TEST_F(ProxyControllerTest, AFullSyncDiffsAndWritesAChunkOfVirtualServicesAtATime) {
  config.full_sync_chunk = 2;
  StandardServices();
  ASSERT_TRUE(links.CreateDummy(netlink::kKubeDummyName).ok());
  ASSERT_TRUE(
      links.AddAddress({netlink::kKubeDummyName, Ip("10.96.0.99"), 32, netlink::Scope::kLink})
          .ok());
  IpvsService stale = VirtualService("10.96.0.99", 80);
  ASSERT_TRUE(ipvs.AddService(stale).ok());
  ASSERT_TRUE(
      ipvs.AddDestination(stale, IpvsDestination{.address = Ip("10.1.0.9"), .port = 80}).ok());
  ResetCounts();
  ASSERT_TRUE(Controller().Sync(SyncReason::kStartup).ok());
  using Op = netlink::FakeIpvs::Op;
  // In id order: TCP 10.96.0.1:443 and 10.96.0.10:80 (2 + 3 changes), then UDP 10.96.0.53:53
  // and the stale TCP 10.96.0.99:80 (2 + 1).
  EXPECT_EQ(ipvs.failures().Calls({Op::kApply}), 2);
  EXPECT_EQ(Controller().last_full_sync().largest_plan, 5u);
  EXPECT_EQ(Controller().last_full_sync().repairs, 8u + 3u + 1u);  // changes, VIPs in and out
  EXPECT_THAT(Services(), ::testing::UnorderedElementsAre("TCP 10.96.0.10:80", "UDP 10.96.0.53:53",
                                                          "TCP 10.96.0.1:443"));
  EXPECT_THAT(Dests("10.96.0.10", 80), ElementsAre("10.1.0.1:8080 w1", "10.1.0.2:8080 w1"));
  EXPECT_THAT(Dests("10.96.0.53", 53, netlink::IpvsProtocol::kUdp),
              ElementsAre("10.1.0.3:5353 w1"));
  EXPECT_THAT(Dests("10.96.0.1", 443), ElementsAre("10.1.0.4:6443 w1"));
  EXPECT_THAT(DummyAddresses(), ElementsAre("10.96.0.1", "10.96.0.10", "10.96.0.53"));
  // Each chunk's programmed destinations became the wanted ones' (shared), as one plan's do.
  size_t shared = 0;
  for (const auto& [name, svc] : Controller().services()) {
    for (const auto& d : svc.virtual_services) {
      const auto& have = Controller().programmed().services.at(d.vs.id());
      EXPECT_TRUE(have.destinations.SharesWith(d.vs.destinations)) << d.vs.id().ToString();
      ++shared;
    }
  }
  EXPECT_EQ(shared, 3u);

  ResetCounts();
  auto restarted = Make();
  ASSERT_TRUE(restarted->Sync(SyncReason::kStartup).ok());
  EXPECT_EQ(Writes(), 0);
  EXPECT_EQ(restarted->last_full_sync().largest_plan, 0u);
  EXPECT_EQ(restarted->programmed(), Controller().programmed());
}

// The VIP addresses of a sync are one batch too (AddAddresses: the netlink adapter packs them
// like RouteTable::Apply), not one AddAddress round trip each; a refused address fails only its
// VIP, and the next (full) sync adds it in one batch again.
TEST_F(ProxyControllerTest, VipAddressesAreAddedAsOneBatchPerSync) {
  StandardServices();
  using LinkOp = netlink::FakeLinks::Op;
  links.failures().FailNext(LinkOp::kAddAddress, "No space left on device");
  EXPECT_FALSE(Controller().Sync(SyncReason::kStartup).ok());
  EXPECT_EQ(links.failures().Calls({LinkOp::kAddAddresses}), 1);
  EXPECT_EQ(links.failures().Calls({LinkOp::kAddAddress}), 3);  // inside that batch
  EXPECT_EQ(DummyAddresses().size(), 2u);  // the refused VIP is missing, the others are in
  EXPECT_EQ(Services().size(), 3u);
  ResetCounts();
  ASSERT_TRUE(Controller().Sync(SyncReason::kRequested).ok());  // full: repairs the VIP
  EXPECT_THAT(DummyAddresses(), ElementsAre("10.96.0.1", "10.96.0.10", "10.96.0.53"));
  EXPECT_EQ(links.failures().Calls({LinkOp::kAddAddresses}), 1);
  EXPECT_EQ(links.failures().Calls({LinkOp::kAddAddress}), 1);
}

// A write the kernel refuses inside a batch fails only itself: the rest of the batch is in, the
// sync reports the error and the next (full) sync repairs it.
TEST_F(ProxyControllerTest, ARefusedWriteInABatchFailsOnlyItself) {
  StandardServices();
  ipvs.failures().FailNext(netlink::FakeIpvs::Op::kAddDestination, "No space left on device");
  EXPECT_FALSE(Controller().Sync(SyncReason::kStartup).ok());
  EXPECT_EQ(Services().size(), 3u);
  int dests = 0;
  for (const auto& [vip, port] :
       std::vector<std::pair<std::string, uint16_t>>{{"10.96.0.10", 80}, {"10.96.0.1", 443}}) {
    dests += static_cast<int>(Dests(vip, port).size());
  }
  dests += static_cast<int>(Dests("10.96.0.53", 53, netlink::IpvsProtocol::kUdp).size());
  EXPECT_EQ(dests, 3);                                          // four wanted, one refused
  ASSERT_TRUE(Controller().Sync(SyncReason::kRequested).ok());  // full: the image is untrusted
  EXPECT_THAT(Dests("10.96.0.10", 80), ElementsAre("10.1.0.1:8080 w1", "10.1.0.2:8080 w1"));
}

// The kernel gives an IPv6-enabled kube-dummy-if its own fe80:: address. It is not a VIP of
// ours: a sync must neither treat it as stale nor try to delete it (the kernel refuses that, and
// every sync on a dual-stack node failed).
TEST_F(ProxyControllerTest, TheKernelsLinkLocalAddressOnTheDummyLinkIsNotAStaleVip) {
  StandardServices();
  ASSERT_TRUE(Controller().Sync(SyncReason::kStartup).ok());
  ASSERT_TRUE(links
                  .AddAddress({.device = netlink::kKubeDummyName,
                               .address = Ip("fe80::c8a1:5eff:fe4b:1"),
                               .prefix_length = 64,
                               .scope = netlink::Scope::kLink})
                  .ok());
  ResetCounts();
  ASSERT_TRUE(Controller().Sync(SyncReason::kPeriodic).ok());
  EXPECT_EQ(Writes(), 0);
  EXPECT_THAT(DummyAddresses(),
              ElementsAre("10.96.0.1", "10.96.0.10", "10.96.0.53", "fe80::c8a1:5eff:fe4b:1"));
}

TEST_F(ProxyControllerTest, AnExistingDownDummyLinkIsBroughtUp) {
  links.Seed({.name = netlink::kKubeDummyName, .kind = "dummy", .mtu = 1500, .up = false});
  StandardServices();
  ASSERT_TRUE(Controller().Sync(SyncReason::kStartup).ok());
  EXPECT_TRUE(links.links().at(netlink::kKubeDummyName).up);
}

TEST_F(ProxyControllerTest, AnEventWritesOnlyWhatItsServiceChanged) {
  StandardServices();
  ASSERT_TRUE(Controller().Sync(SyncReason::kStartup).ok());
  ResetCounts();
  Upsert(Slice("web", "web-1", {{"10.1.0.1"}, {"10.1.0.2"}, {"10.1.0.9"}}, {{"http", 8080}}));
  ASSERT_TRUE(Controller().Sync(SyncReason::kRequested).ok());
  EXPECT_EQ(Writes(), 1);     // one AddDestination
  EXPECT_EQ(IpvsReads(), 0);  // no kernel dump on the event path
  EXPECT_THAT(Dests("10.96.0.10", 80),
              ElementsAre("10.1.0.1:8080 w1", "10.1.0.2:8080 w1", "10.1.0.9:8080 w1"));

  ResetCounts();
  Upsert(Slice("web", "web-1", {{"10.1.0.9"}}, {{"http", 8080}}));
  ASSERT_TRUE(Controller().Sync(SyncReason::kRequested).ok());
  EXPECT_EQ(Writes(), 2);  // two DeleteDestination
  EXPECT_THAT(Dests("10.96.0.10", 80), ElementsAre("10.1.0.9:8080 w1"));

  // An event that changes nothing programmed writes nothing.
  ResetCounts();
  auto web = Svc("web", "10.96.0.10", {Port("http", 80)});
  web.meta.labels["app"] = "web";
  Upsert(web);
  ASSERT_TRUE(Controller().Sync(SyncReason::kRequested).ok());
  EXPECT_EQ(Writes(), 0);
}

TEST_F(ProxyControllerTest, ServiceDeletionRemovesItsServiceVipAndRouteOnly) {
  StandardServices();
  ASSERT_TRUE(Controller().Sync(SyncReason::kStartup).ok());
  RemoveService("default/web");
  ASSERT_TRUE(Controller().Sync(SyncReason::kRequested).ok());
  EXPECT_THAT(Services(),
              ::testing::UnorderedElementsAre("UDP 10.96.0.53:53", "TCP 10.96.0.1:443"));
  EXPECT_THAT(DummyAddresses(), ElementsAre("10.96.0.1", "10.96.0.53"));
  EXPECT_EQ(VipRoute("10.96.0.10"), nullptr);
  EXPECT_NE(VipRoute("10.96.0.1"), nullptr);
}

TEST_F(ProxyControllerTest, RestartAdoptsTheKernelStateWithoutWriting) {
  StandardServices();
  ASSERT_TRUE(Controller().Sync(SyncReason::kStartup).ok());
  ResetCounts();
  ASSERT_TRUE(Controller().Sync(SyncReason::kPeriodic).ok());
  EXPECT_EQ(Writes(), 0) << "a no-op periodic sync writes nothing";

  auto restarted = Make();  // a new process: no memory, same kernel
  ASSERT_TRUE(restarted->Init().ok());
  ASSERT_TRUE(restarted->Sync(SyncReason::kStartup).ok());
  EXPECT_EQ(Writes(), 0) << "restart adopts existing state";
  EXPECT_EQ(Flushes(), 0);
  EXPECT_EQ(restarted->programmed().services.size(), 3u);
}

TEST_F(ProxyControllerTest, PeriodicSyncRepairsDrift) {
  StandardServices();
  ASSERT_TRUE(Controller().Sync(SyncReason::kStartup).ok());
  ASSERT_NO_FATAL_FAILURE(DriftStandardServices());

  ASSERT_TRUE(Controller().Sync(SyncReason::kPeriodic).ok());
  EXPECT_THAT(Dests("10.96.0.10", 80), ElementsAre("10.1.0.1:8080 w1", "10.1.0.2:8080 w1"));
  EXPECT_THAT(Dests("10.96.0.53", 53, netlink::IpvsProtocol::kUdp),
              ElementsAre("10.1.0.3:5353 w1"));
  auto listed = ipvs.ListServices();
  for (const auto& s : *listed) EXPECT_EQ(s.scheduler, "rr") << s.ToString();
  EXPECT_EQ(VipRoute("10.96.0.1")->source, Ip("192.0.2.10"));
}

TEST_F(ProxyControllerTest, AKernelFailureIsRetriedByAFullSync) {
  StandardServices();
  ASSERT_TRUE(Controller().Sync(SyncReason::kStartup).ok());
  ipvs.failures().FailNext(netlink::FakeIpvs::Op::kAddDestination, "Cannot allocate memory");
  Upsert(Slice("web", "web-1", {{"10.1.0.1"}, {"10.1.0.2"}, {"10.1.0.9"}}, {{"http", 8080}}));
  Upsert(Slice("dns", "dns-1", {{"10.1.0.3"}, {"10.1.0.8"}}, {{"dns", 5353}}, "kube-system"));
  EXPECT_FALSE(Controller().Sync(SyncReason::kRequested).ok());
  // The other service's change went in regardless.
  EXPECT_THAT(Dests("10.96.0.53", 53, netlink::IpvsProtocol::kUdp),
              ElementsAre("10.1.0.3:5353 w1", "10.1.0.8:5353 w1"));
  EXPECT_EQ(Dests("10.96.0.10", 80).size(), 2u);
  ASSERT_TRUE(Controller().Sync(SyncReason::kRequested).ok());  // becomes a full sync
  EXPECT_THAT(Dests("10.96.0.10", 80),
              ElementsAre("10.1.0.1:8080 w1", "10.1.0.2:8080 w1", "10.1.0.9:8080 w1"));
  EXPECT_THAT(Dests("10.96.0.53", 53, netlink::IpvsProtocol::kUdp),
              ElementsAre("10.1.0.3:5353 w1", "10.1.0.8:5353 w1"));
}

TEST_F(ProxyControllerTest, MissingNodeFailsTheSyncWithoutWriting) {
  cluster->nodes.Remove("node-a");
  StandardServices();
  auto status = Controller().Sync(SyncReason::kStartup);
  EXPECT_FALSE(status.ok());
  EXPECT_THAT(status.message(), ::testing::HasSubstr("node-a"));
  EXPECT_EQ(Writes(), 0);
}

TEST_F(ProxyControllerTest, NetworkProgrammingLatencyIsObserved) {
  StandardServices();
  ASSERT_TRUE(Controller().Sync(SyncReason::kStartup).ok());
  auto slice = Slice("web", "web-1", {{"10.1.0.7"}}, {{"http", 8080}});
  slice.meta.annotations[kAnnotationLastChangeTriggerTime] = "2020-01-01T00:00:00Z";
  Upsert(slice);
  ASSERT_TRUE(Controller().Sync(SyncReason::kRequested).ok());
  auto& h =
      registry.GetHistogram("kube_router_controller_network_programming_duration_seconds", "", {});
  EXPECT_EQ(h.Count(), 1u);
  EXPECT_THAT(registry.Render(),
              ::testing::HasSubstr("kube_router_controller_network_programming_duration_seconds_"
                                   "bucket{le=\"+Inf\"} 1"));
  auto t = ParseRfc3339("2026-12-06T05:17:17.250Z");
  ASSERT_TRUE(t.has_value());
  EXPECT_EQ(
      std::chrono::duration_cast<std::chrono::milliseconds>(t->time_since_epoch()).count() % 1000,
      250);
  EXPECT_FALSE(ParseRfc3339("yesterday").has_value());
}

TEST_F(ProxyControllerTest, ForeignStateSurvivesSyncsRestartAndCleanup) {
  config.excluded_cidrs = {*IpPrefix::Parse("10.96.255.0/24")};
  // Someone else's: a keepalived VIP, an SSH balancer on the node IP, a service on an
  // excluded address, a fwmark service and an address on another link.
  const IpvsService keepalived = VirtualService("192.0.2.200", 80);
  const IpvsService ssh = VirtualService("192.0.2.10", 22);
  const IpvsService excluded = VirtualService("10.96.255.1", 80);
  IpvsService fwmark = VirtualService("0.0.0.0", 0);
  fwmark.fwmark = 99;
  // A port inside the NodePort range, but on an address that is not this node's.
  const IpvsService remote_range = VirtualService("198.51.100.77", 30500);
  for (const auto& s : {keepalived, ssh, excluded, fwmark, remote_range}) {
    ASSERT_TRUE(ipvs.AddService(s).ok());
  }
  IpvsDestination real;
  real.address = Ip("192.0.2.201");
  real.port = 80;
  real.forward = netlink::IpvsForward::kRoute;
  ASSERT_TRUE(ipvs.AddDestination(keepalived, real).ok());
  ASSERT_TRUE(links.AddAddress({"eth0", Ip("192.0.2.200"), 32, netlink::Scope::kUniverse}).ok());
  const std::vector<std::string> foreign = {"TCP 192.0.2.200:80", "TCP 192.0.2.10:22",
                                            "TCP 10.96.255.1:80", "FWM 99 IPv4",
                                            "TCP 198.51.100.77:30500"};

  StandardServices();
  ASSERT_TRUE(Controller().Sync(SyncReason::kStartup).ok());
  ASSERT_TRUE(Controller().Sync(SyncReason::kPeriodic).ok());
  RemoveService("default/web");
  ASSERT_TRUE(Controller().Sync(SyncReason::kRequested).ok());
  auto restarted = Make();
  ASSERT_TRUE(restarted->Sync(SyncReason::kStartup).ok());
  for (const auto& f : foreign) EXPECT_THAT(Services(), ::testing::Contains(f));
  EXPECT_EQ(Services().size(), foreign.size() + 2);

  auto removed = restarted->Cleanup();
  ASSERT_TRUE(removed.ok()) << removed.error();
  EXPECT_THAT(Services(), ::testing::UnorderedElementsAreArray(foreign));
  EXPECT_THAT(Dests("192.0.2.200", 80), ElementsAre("192.0.2.201:80 w1"));
  EXPECT_FALSE(links.Has(netlink::kKubeDummyName));
  EXPECT_EQ(VipRoute("10.96.0.1"), nullptr);
  bool foreign_address = false;
  for (const auto& a : links.addresses()) foreign_address |= a.address == Ip("192.0.2.200");
  EXPECT_TRUE(foreign_address);

  // Idempotent: a second cleanup (a fresh process, empty caches) finds nothing of ours.
  auto empty_cluster = k8s::MakeCluster();
  NetworkServicesController fresh(config, empty_cluster.get(),
                                  ProxyDataplane{&ipvs, &links, &routes}, nullptr);
  auto again = fresh.Cleanup();
  ASSERT_TRUE(again.ok()) << again.error();
  EXPECT_THAT(*again, IsEmpty());
  EXPECT_THAT(Services(), ::testing::UnorderedElementsAreArray(foreign));
  EXPECT_EQ(Flushes(), 0);
}

TEST_F(ProxyControllerTest, CleanupRemovesNodePortsOfServicesDeletedWhileDown) {
  auto np = Svc("np", "10.96.0.30", {Port("", 80, "TCP", 30080)});
  np.type = "NodePort";
  Upsert(np);
  ASSERT_TRUE(Controller().Sync(SyncReason::kStartup).ok());
  EXPECT_THAT(Services(), ::testing::Contains("TCP 192.0.2.10:30080"));
  // The Service is deleted while the agent is down: the restarted agent still knows the
  // NodePort service is its own (a local address, a port in the NodePort range).
  cluster->services.Remove("default/np");
  auto restarted = Make();
  ASSERT_TRUE(restarted->Sync(SyncReason::kStartup).ok());
  EXPECT_THAT(Services(), IsEmpty());
}

// Memory (docs/memory.md): a virtual service programmed as wanted holds one destination vector
// between the Service's entry, the desired and the programmed image; an event that changes
// one Service's endpoints gives only that one a new vector, and the image follows the kernel.
TEST_F(ProxyControllerTest, ProgrammedImageSharesTheWantedDestinations) {
  StandardServices();
  ASSERT_TRUE(Controller().Sync(SyncReason::kStartup).ok());
  auto wanted = [&](const std::string& ns, const std::string& name) -> const Destinations& {
    return Controller().services().at({ns, name}).virtual_services.at(0).vs.destinations;
  };
  auto programmed = [&](const std::string& vip, uint16_t port,
                        netlink::IpvsProtocol proto) -> const Destinations& {
    return Controller().programmed().services.at({Ip(vip), proto, port, 0}).destinations;
  };
  const auto tcp = netlink::IpvsProtocol::kTcp;
  EXPECT_TRUE(programmed("10.96.0.10", 80, tcp).SharesWith(wanted("default", "web")));
  EXPECT_TRUE(programmed("10.96.0.53", 53, netlink::IpvsProtocol::kUdp)
                  .SharesWith(wanted("kube-system", "dns")));
  const Destinations api_before = programmed("10.96.0.1", 443, tcp);

  Upsert(Slice("web", "web-1", {{"10.1.0.1"}, {"10.1.0.7"}}, {{"http", 8080}}));
  ASSERT_TRUE(Controller().Sync(SyncReason::kRequested).ok());
  EXPECT_THAT(Dests("10.96.0.10", 80), ElementsAre("10.1.0.1:8080 w1", "10.1.0.7:8080 w1"));
  std::vector<std::string> image;
  for (const auto& d : programmed("10.96.0.10", 80, tcp)) image.push_back(IdOf(d).ToString());
  EXPECT_THAT(image, ElementsAre("10.1.0.1:8080", "10.1.0.7:8080"));
  EXPECT_TRUE(programmed("10.96.0.10", 80, tcp).SharesWith(wanted("default", "web")));
  EXPECT_TRUE(programmed("10.96.0.1", 443, tcp).SharesWith(api_before));  // untouched
  // A periodic sync over the unchanged kernel writes nothing and keeps the sharing.
  ResetCounts();
  ASSERT_TRUE(Controller().Sync(SyncReason::kPeriodic).ok());
  EXPECT_EQ(Writes(), 0);
  EXPECT_TRUE(programmed("10.96.0.10", 80, tcp).SharesWith(wanted("default", "web")));
}

}  // namespace
}  // namespace kr::proxy
