// The overlay tunnel plan per family and encapsulation: which tunnel (ipip / ip6tnl) for which
// next hop under --overlay-type, the FoU/GUE parameters, the FoU ports and the MTU overhead.
#include <gtest/gtest.h>

#include "kube_router/routing/route_plan.h"

namespace kr::routing::overlay_encap_test {
namespace {

IpAddress Ip(const std::string& text) { return *IpAddress::Parse(text); }
IpPrefix Cidr(const std::string& text) { return *IpPrefix::Parse(text); }

RoutingConfig Fou(uint16_t port = kDefaultOverlayEncapPort) {
  RoutingConfig config;
  config.overlay_encap = OverlayEncap::kFou;
  config.overlay_encap_port = port;
  return config;
}

// An IPv6 node 2001:db8:1::1 on 2001:db8:1::/64; one node on the same subnet, one behind the
// gateway.
struct V6Cluster {
  IpAddress node = Ip("2001:db8:1::1");
  std::vector<IpPrefix> own = {Cidr("fd00:10:1:1::/64")};
  std::vector<LearnedPath> paths = {{Cidr("fd00:10:1:2::/64"), Ip("2001:db8:1::2")},
                                    {Cidr("fd00:10:1:3::/64"), Ip("2001:db8:2::3")}};
  std::vector<UnderlayRoute> underlay = {{Cidr("2001:db8:1::/64"), std::nullopt},
                                         {Cidr("::/0"), Ip("2001:db8:1::fe")}};
  std::set<IpAddress> nodes = {Ip("2001:db8:1::2"), Ip("2001:db8:2::3")};

  RoutePlan Plan(const RoutingConfig& config) const {
    return PlanRoutes(config, node, own, paths, underlay, nodes);
  }
};

TEST(OverlayEncapTest, IpipTunnelsCarryNoEncapsulation) {
  RoutingConfig config;
  EXPECT_EQ(OverlayTunnelEncap(config), netlink::TunnelEncap{});
  auto plan = PlanRoutes(config, Ip("192.0.2.1"), {}, {{Cidr("10.1.3.0/24"), Ip("198.51.100.3")}},
                         {{Cidr("0.0.0.0/0"), Ip("192.0.2.254")}}, {Ip("198.51.100.3")});
  ASSERT_EQ(plan.tunnels.size(), 1u);
  EXPECT_EQ(plan.tunnels[0].encap.type, netlink::TunnelEncapType::kNone);
  EXPECT_TRUE(PlanFouPorts(config, plan.tunnels).empty());
}

TEST(OverlayEncapTest, FouMeansGueToTheEncapPortWithAPerFlowSourcePort) {
  auto encap = OverlayTunnelEncap(Fou(6000));
  EXPECT_EQ(encap.type, netlink::TunnelEncapType::kGue);
  EXPECT_EQ(encap.destination_port, 6000);
  EXPECT_EQ(encap.source_port, 0);  // auto
  auto plan =
      PlanRoutes(Fou(6000), Ip("192.0.2.1"), {}, {{Cidr("10.1.3.0/24"), Ip("198.51.100.3")}},
                 {{Cidr("0.0.0.0/0"), Ip("192.0.2.254")}}, {Ip("198.51.100.3")});
  ASSERT_EQ(plan.tunnels.size(), 1u);
  EXPECT_EQ(plan.tunnels[0].encap, encap);
  auto ports = PlanFouPorts(Fou(6000), plan.tunnels);
  ASSERT_EQ(ports.size(), 1u);
  EXPECT_EQ(ports[0], (netlink::FouPort{IpAddress::Family::kV4, 6000, netlink::FouKind::kGue, 0}));
}

TEST(OverlayEncapTest, Ipv6NextHopsGetIp6tnlTunnelsUnderTheSameOverlayTypeRules) {
  V6Cluster cluster;
  // subnet: the same-subnet node directly, the other one through a tunnel.
  auto plan = cluster.Plan(RoutingConfig{});
  ASSERT_EQ(plan.tunnels.size(), 1u);
  EXPECT_EQ(plan.tunnels[0].name, TunnelName(Ip("2001:db8:2::3")));
  EXPECT_EQ(plan.tunnels[0].local, cluster.node);
  EXPECT_EQ(plan.tunnels[0].remote, Ip("2001:db8:2::3"));
  ASSERT_EQ(plan.routes.size(), 2u);
  EXPECT_EQ(plan.routes[0].destination, Cidr("fd00:10:1:2::/64"));
  EXPECT_EQ(plan.routes[0].gateway, Ip("2001:db8:1::2"));
  EXPECT_EQ(plan.routes[1].device, plan.tunnels[0].name);
  EXPECT_EQ(plan.routes[1].source, cluster.node);

  // full: a tunnel to every node.
  RoutingConfig full;
  full.overlay_type = OverlayType::kFull;
  plan = cluster.Plan(full);
  ASSERT_EQ(plan.tunnels.size(), 2u);
  for (const auto& route : plan.routes) EXPECT_FALSE(route.gateway) << route.destination.ToString();

  // No overlay: via the gateway.
  RoutingConfig none;
  none.enable_overlay = false;
  plan = cluster.Plan(none);
  EXPECT_TRUE(plan.tunnels.empty());
  ASSERT_EQ(plan.routes.size(), 2u);
  EXPECT_EQ(plan.routes[1].gateway, Ip("2001:db8:1::fe"));
}

TEST(OverlayEncapTest, Ipv6FouTunnelsNeedAnIpv6GuePort) {
  V6Cluster cluster;
  auto plan = cluster.Plan(Fou());
  ASSERT_EQ(plan.tunnels.size(), 1u);
  EXPECT_EQ(plan.tunnels[0].encap.type, netlink::TunnelEncapType::kGue);
  EXPECT_EQ(plan.tunnels[0].encap.destination_port, kDefaultOverlayEncapPort);
  auto ports = PlanFouPorts(Fou(), plan.tunnels);
  ASSERT_EQ(ports.size(), 1u);
  EXPECT_EQ(ports[0].family, IpAddress::Family::kV6);
  EXPECT_EQ(ports[0].port, 5555);
  // Both families: one port each.
  std::vector<DesiredTunnel> both = plan.tunnels;
  both.push_back({"tun-x", Ip("192.0.2.1"), Ip("198.51.100.3"), OverlayTunnelEncap(Fou())});
  EXPECT_EQ(PlanFouPorts(Fou(), both).size(), 2u);
  // No tunnels (all nodes on our subnet): no port is opened.
  EXPECT_TRUE(PlanFouPorts(Fou(), {}).empty());
}

TEST(OverlayEncapTest, OnlyGueOnTheEncapPortIsOurs) {
  auto config = Fou(5555);
  EXPECT_TRUE(IsOurFouPort(config, {IpAddress::Family::kV4, 5555, netlink::FouKind::kGue, 0}));
  EXPECT_TRUE(IsOurFouPort(config, {IpAddress::Family::kV6, 5555, netlink::FouKind::kGue, 0}));
  EXPECT_FALSE(IsOurFouPort(config, {IpAddress::Family::kV4, 5556, netlink::FouKind::kGue, 0}));
  EXPECT_FALSE(IsOurFouPort(config, {IpAddress::Family::kV4, 5555, netlink::FouKind::kDirect, 4}));
  // With ipip the port is still ours to remove (a switch back from fou).
  EXPECT_TRUE(
      IsOurFouPort(RoutingConfig{}, {IpAddress::Family::kV4, 5555, netlink::FouKind::kGue, 0}));
}

TEST(OverlayEncapTest, OverheadPerFamilyAndEncapsulation) {
  RoutingConfig ipip;
  EXPECT_EQ(OverlayOverhead(ipip, IpAddress::Family::kV4), 20u);
  EXPECT_EQ(OverlayOverhead(ipip, IpAddress::Family::kV6), 48u);
  EXPECT_EQ(OverlayOverhead(Fou(), IpAddress::Family::kV4), 32u);
  EXPECT_EQ(OverlayOverhead(Fou(), IpAddress::Family::kV6), 60u);
  RoutingConfig none;
  none.enable_overlay = false;
  EXPECT_EQ(OverlayOverhead(none, IpAddress::Family::kV4), 0u);
}

}  // namespace
}  // namespace kr::routing::overlay_encap_test
