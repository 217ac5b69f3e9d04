#include "kube_router/netlink/fakes.h"

#include <gtest/gtest.h>

namespace kr::netlink {
namespace {

IpPrefix P(const char* text) { return *IpPrefix::Parse(text); }
IpAddress A(const char* text) { return *IpAddress::Parse(text); }

Route PodRoute(const char* cidr, const char* via) {
  Route r;
  r.destination = P(cidr);
  r.gateway = A(via);
  r.device = "eth0";
  return r;
}

class FakeRouteTableTest : public ::testing::Test {
 protected:
  void SetUp() override {
    Link eth0;
    eth0.name = "eth0";
    eth0.mtu = 1500;
    links_.Seed(eth0);
  }
  FakeLinks links_;
  FakeRouteTable table_{&links_};
};

TEST_F(FakeRouteTableTest, AddReplaceDeleteFollowKernelRules) {
  ASSERT_TRUE(table_.Add(PodRoute("10.1.0.0/24", "192.0.2.2")).ok());
  EXPECT_FALSE(table_.Add(PodRoute("10.1.0.0/24", "192.0.2.3")).ok()) << "duplicate add";
  ASSERT_TRUE(table_.Replace(PodRoute("10.1.0.0/24", "192.0.2.3")).ok());
  auto routes = table_.List({});
  ASSERT_TRUE(routes.ok());
  ASSERT_EQ(routes->size(), 1u);
  EXPECT_EQ(routes->front().gateway, A("192.0.2.3"));

  Route other_owner = PodRoute("10.1.0.0/24", "192.0.2.3");
  other_owner.protocol = kProtocolBoot;
  EXPECT_FALSE(table_.Delete(other_owner).ok()) << "delete must match the protocol";
  EXPECT_TRUE(table_.Delete(PodRoute("10.1.0.0/24", "192.0.2.9")).ok())
      << "gateway is not part of the identity";
  EXPECT_TRUE(table_.routes().empty());
  EXPECT_FALSE(table_.Delete(PodRoute("10.1.0.0/24", "192.0.2.9")).ok());
}

TEST_F(FakeRouteTableTest, UnknownDeviceAndMixedFamiliesAreRefused) {
  Route r = PodRoute("10.1.0.0/24", "192.0.2.2");
  r.device = "tun-missing";
  EXPECT_FALSE(table_.Add(r).ok());
  EXPECT_FALSE(table_.Add(PodRoute("fd00:1::/64", "192.0.2.2")).ok());
  EXPECT_TRUE(table_.routes().empty());
}

TEST_F(FakeRouteTableTest, Ipv6MetricZeroBecomes1024AndFiltersApply) {
  Route v6;
  v6.destination = P("fd00:1::/64");
  v6.device = "eth0";
  ASSERT_TRUE(table_.Add(v6).ok());
  ASSERT_TRUE(table_.Add(PodRoute("10.1.0.0/24", "192.0.2.2")).ok());
  Route foreign = PodRoute("10.2.0.0/24", "192.0.2.2");
  foreign.protocol = kProtocolBoot;
  table_.Seed(foreign);

  RouteFilter v6_only;
  v6_only.family = IpAddress::Family::kV6;
  auto routes = table_.List(v6_only);
  ASSERT_TRUE(routes.ok());
  ASSERT_EQ(routes->size(), 1u);
  EXPECT_EQ(routes->front().metric, 1024u);

  RouteFilter ours;
  ours.protocol = kKubeRouterRouteProtocol;
  ours.family = IpAddress::Family::kV4;
  EXPECT_EQ(table_.List(ours)->size(), 1u);
  EXPECT_EQ(table_.RoutesWithProtocol(kProtocolBoot).size(), 1u);
}

TEST_F(FakeRouteTableTest, BatchReportsOnlyRefusedChangesAndFailuresAreOneShot) {
  table_.RejectDestination(P("10.2.0.0/24"), "simulated ENOMEM");
  std::vector<RouteChange> batch = {
      {RouteChange::Op::kAdd, PodRoute("10.1.0.0/24", "192.0.2.2")},
      {RouteChange::Op::kAdd, PodRoute("10.2.0.0/24", "192.0.2.2")},
      {RouteChange::Op::kDelete, PodRoute("10.3.0.0/24", "192.0.2.2")},
      {RouteChange::Op::kReplace, PodRoute("10.4.0.0/24", "192.0.2.2")},
  };
  auto errors = table_.Apply(batch);
  ASSERT_TRUE(errors.ok());
  ASSERT_EQ(errors->size(), 2u);
  EXPECT_EQ((*errors)[0].index, 1u);
  EXPECT_EQ((*errors)[0].message, "simulated ENOMEM");
  EXPECT_EQ((*errors)[1].index, 2u);
  EXPECT_EQ(table_.routes().size(), 2u);

  table_.failures().FailNext(FakeRouteTable::Op::kApply, "netlink socket closed");
  auto failed = table_.Apply(batch);
  ASSERT_FALSE(failed.ok());
  EXPECT_EQ(failed.error(), "netlink socket closed");
  EXPECT_TRUE(table_.Apply({}).ok()) << "one-shot failure consumed";
  EXPECT_EQ(table_.apply_calls(), 3u);
}

TEST(FakeLinks, TunnelsBridgesAndAddressesBehaveLikeTheKernel) {
  FakeLinks links;
  TunnelSpec tunnel{OverlayTunnelName(A("192.0.2.3")), A("192.0.2.2"), A("192.0.2.3")};
  ASSERT_TRUE(links.CreateTunnel(tunnel).ok());
  EXPECT_FALSE(links.CreateTunnel(tunnel).ok()) << "name taken";
  auto link = links.Get(tunnel.name);
  ASSERT_TRUE(link.ok() && link->has_value());
  EXPECT_EQ((*link)->kind, "ipip");
  EXPECT_EQ((*link)->mtu, 1480u);
  EXPECT_EQ((*link)->tunnel_remote, A("192.0.2.3"));
  EXPECT_FALSE((*link)->up);
  EXPECT_FALSE(links.CreateTunnel({"tun-mixed", A("192.0.2.2"), A("fd00::3")}).ok());
  EXPECT_FALSE(links.CreateBridge("a-name-longer-than-15", 0).ok());

  ASSERT_TRUE(links.CreateBridge(kKubeBridgeName, 1450).ok());
  ASSERT_TRUE(links.SetUp(kKubeBridgeName, true).ok());
  ASSERT_TRUE(links.SetMtu(kKubeBridgeName, 1400).ok());
  Address gw{kKubeBridgeName, A("10.1.0.1"), 24};
  ASSERT_TRUE(links.AddAddress(gw).ok());
  EXPECT_FALSE(links.AddAddress(gw).ok());
  EXPECT_FALSE(links.AddAddress({"nope", A("10.9.0.1"), 24}).ok());
  EXPECT_EQ(links.ListAddresses(kKubeBridgeName)->size(), 1u);

  ASSERT_TRUE(links.Delete(kKubeBridgeName).ok());
  EXPECT_TRUE(links.ListAddresses("")->empty()) << "addresses go with their link";
  EXPECT_FALSE(links.Get(kKubeBridgeName)->has_value());
  EXPECT_FALSE(links.Delete(kKubeBridgeName).ok());

  links.failures().FailNext(FakeLinks::Op::kCreateDummy, "EPERM", 2);
  EXPECT_FALSE(links.CreateDummy(kKubeDummyName).ok());
  EXPECT_FALSE(links.CreateDummy(kKubeDummyName).ok());
  EXPECT_TRUE(links.CreateDummy(kKubeDummyName).ok());
}

TEST(FakeIpvs, ServicesAndDestinationsWithFailureInjection) {
  FakeIpvs ipvs;
  IpvsService svc{A("10.96.0.1"), IpvsProtocol::kTcp, 443};
  ASSERT_TRUE(ipvs.AddService(svc).ok());
  EXPECT_FALSE(ipvs.AddService(svc).ok());
  IpvsService fwmark;
  fwmark.address = A("0.0.0.0");
  fwmark.fwmark = 17;
  ASSERT_TRUE(ipvs.AddService(fwmark).ok());
  EXPECT_EQ(ipvs.service_count(), 2u);

  svc.scheduler = "lc";
  svc.flags = ipvs_flags::kPersistent;
  svc.timeout = 10800;
  ASSERT_TRUE(ipvs.UpdateService(svc).ok());
  auto services = ipvs.ListServices();
  ASSERT_TRUE(services.ok());
  EXPECT_EQ(services->front(), svc);

  IpvsDestination pod{A("10.1.0.5"), 8443};
  ASSERT_TRUE(ipvs.AddDestination(svc, pod).ok());
  EXPECT_FALSE(ipvs.AddDestination(svc, pod).ok());
  pod.weight = 0;  // graceful termination drains with weight 0
  ASSERT_TRUE(ipvs.UpdateDestination(svc, pod).ok());
  ASSERT_TRUE(ipvs.SetConnections(svc, pod, 3, 1).ok());
  auto dests = ipvs.ListDestinations(svc);
  ASSERT_TRUE(dests.ok());
  ASSERT_EQ(dests->size(), 1u);
  EXPECT_EQ(dests->front().weight, 0u);
  EXPECT_EQ(dests->front().active_connections, 3u);

  ipvs.failures().FailNext(FakeIpvs::Op::kDeleteDestination);
  EXPECT_FALSE(ipvs.DeleteDestination(svc, pod).ok());
  EXPECT_EQ(ipvs.ListDestinations(svc)->size(), 1u) << "a failed delete changes nothing";
  ASSERT_TRUE(ipvs.DeleteDestination(svc, pod).ok());
  ASSERT_TRUE(ipvs.DeleteService(svc).ok());
  EXPECT_FALSE(ipvs.ListDestinations(svc).ok());

  IpvsStats counted;
  counted.connections = 5;
  ASSERT_TRUE(ipvs.SetStats(fwmark, counted).ok());
  auto stats = ipvs.ListServiceStats();
  ASSERT_TRUE(stats.ok());
  ASSERT_EQ(stats->size(), 1u);
  EXPECT_EQ(stats->front().service, fwmark);
  EXPECT_EQ(stats->front().stats.connections, 5u);
  EXPECT_FALSE(ipvs.SetStats(svc, counted).ok()) << "deleted service";

  ASSERT_TRUE(ipvs.SetTimeouts({900, 0, 300}).ok());
  ASSERT_TRUE(ipvs.SetTimeouts({0, 120, 0}).ok());
  EXPECT_EQ(ipvs.timeouts().tcp, 900u);
  EXPECT_EQ(ipvs.timeouts().tcp_fin, 120u);
  ASSERT_TRUE(ipvs.Flush().ok());
  EXPECT_EQ(ipvs.service_count(), 0u);
}

TEST(FakeSysctl, OnlySeededKeysExist) {
  FakeSysctl sysctl;
  sysctl.Seed("net.ipv4.vs.conntrack", "0");
  EXPECT_FALSE(sysctl.Set("net.ipv4.vs.nonexistent", "1").ok());
  ASSERT_TRUE(sysctl.Set("net/ipv4/vs/conntrack", "1").ok());
  EXPECT_EQ(*sysctl.Get("net.ipv4.vs.conntrack"), "1");
  sysctl.failures().FailNext(FakeSysctl::Op::kGet);
  EXPECT_FALSE(sysctl.Get("net.ipv4.vs.conntrack").ok());
  EXPECT_EQ(sysctl.writes().size(), 1u);
}

}  // namespace
}  // namespace kr::netlink

namespace kr::netlink {
namespace {

TEST(FakeFouPorts, OnePortPerFamilyAndNumberLikeTheKernel) {
  FakeFouPorts fou;
  FouPort gue4{IpAddress::Family::kV4, 5555, FouKind::kGue, 0};
  FouPort gue6{IpAddress::Family::kV6, 5555, FouKind::kGue, 0};
  ASSERT_TRUE(fou.Add(gue4).ok());
  ASSERT_TRUE(fou.Add(gue6).ok());  // the same number in the other family is another socket
  EXPECT_FALSE(fou.Add({IpAddress::Family::kV4, 5555, FouKind::kDirect, 4}).ok());
  EXPECT_EQ(fou.List()->size(), 2u);
  ASSERT_TRUE(fou.Delete(gue4).ok());
  EXPECT_FALSE(fou.Delete(gue4).ok());
  EXPECT_EQ(*fou.List(), (std::vector<FouPort>{gue6}));
  EXPECT_EQ(gue6.ToString(), "gue port 5555 (IPv6)");
}

TEST(FakeLinks, EncapsulatedTunnelsKeepTheirEncapAndLoseMtu) {
  FakeLinks links;
  TunnelSpec spec{"tun-X", *IpAddress::Parse("192.0.2.1"),  *IpAddress::Parse("192.0.2.2"), 0,
                  0,       {TunnelEncapType::kGue, 0, 5555}};
  ASSERT_TRUE(links.CreateTunnel(spec).ok());
  auto link = links.Get("tun-X");
  ASSERT_TRUE(link.ok() && *link);
  EXPECT_EQ((*link)->tunnel_encap, spec.encap);
  EXPECT_EQ((*link)->mtu, 1468u);
}

}  // namespace
}  // namespace kr::netlink
