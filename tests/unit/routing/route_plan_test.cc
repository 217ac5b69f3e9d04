#include "kube_router/routing/route_plan.h"

#include <gtest/gtest.h>

#include "kube_router/base/hashed_name.h"

namespace kr::routing::route_plan_test {
namespace {

IpAddress Ip(const std::string& text) { return *IpAddress::Parse(text); }
IpPrefix Cidr(const std::string& text) { return *IpPrefix::Parse(text); }

TEST(TunnelNameTest, HashesTheCanonicalAddress) {
  // Python: "tun-" + base32(sha256(b"4:tun-" + len + b":" + address))[:11].
  EXPECT_EQ(TunnelName(Ip("10.0.0.1")), "tun-PQ5C4ZFSGXK");
  EXPECT_EQ(TunnelName(Ip("10.0.0.1")).size(), 15u);  // IFNAMSIZ - 1
  EXPECT_TRUE(IsOurTunnelName(TunnelName(Ip("fd00::1"))));
  EXPECT_FALSE(IsOurTunnelName("tun-PQ5C4ZFSGX"));
  EXPECT_FALSE(IsOurTunnelName("tun-PQ5C4ZFSGX1"));  // 1 is not base32
}

TEST(TunnelNameTest, AddressesThatKubeRouterConfusesGetDistinctNames) {
  // kube-router hashes "101234" for both (separators removed).
  EXPECT_NE(TunnelName(Ip("10.1.23.4")), TunnelName(Ip("10.12.3.4")));
  EXPECT_NE(TunnelName(Ip("fd00::1:2")), TunnelName(Ip("fd00:1::2")));
}

TEST(TunnelNameTest, KubeRoutersOldNamesStayOursSoTheyAreCleanedUp) {
  EXPECT_TRUE(IsOurTunnelName("tun-28c98c87e81"));
  EXPECT_FALSE(IsOurTunnelName("tun-28c98c87e8"));
  EXPECT_FALSE(IsOurTunnelName("tun-28c98c87eZ1"));
  EXPECT_FALSE(IsOurTunnelName("tunl0"));
  EXPECT_FALSE(IsOurTunnelName("eth0"));
}

std::string SameDigest(std::string_view, size_t digits) { return std::string(digits, 'A'); }

TEST(TunnelNameTest, ASecondRemoteOnACollidingNameIsRefused) {
  ScopedNameHashForTesting collide(&SameDigest);
  RoutingConfig config;
  std::vector<UnderlayRoute> underlay = {{Cidr("0.0.0.0/0"), Ip("192.0.2.254")}};
  auto plan = PlanRoutes(config, Ip("192.0.2.1"), {Cidr("10.1.1.0/24")},
                         {{Cidr("10.1.2.0/24"), Ip("198.51.100.2")},
                          {Cidr("10.1.3.0/24"), Ip("198.51.100.3")},
                          {Cidr("10.1.4.0/24"), Ip("198.51.100.2")}},
                         underlay, {Ip("198.51.100.2"), Ip("198.51.100.3")});
  ASSERT_EQ(plan.tunnels.size(), 1u);
  EXPECT_EQ(plan.tunnels[0].remote, Ip("198.51.100.2"));
  ASSERT_EQ(plan.routes.size(), 2u);  // both prefixes of the first remote
  for (const auto& route : plan.routes) EXPECT_NE(route.destination, Cidr("10.1.3.0/24"));
  ASSERT_EQ(plan.name_collisions.size(), 1u);
  EXPECT_NE(plan.name_collisions[0].find("198.51.100.3"), std::string::npos);
  EXPECT_NE(plan.name_collisions[0].find("already used by next hop 198.51.100.2"),
            std::string::npos);
}

class PlanRoutesTest : public ::testing::Test {
 protected:
  IpAddress node_ = Ip("192.0.2.1");
  std::vector<IpPrefix> own_ = {Cidr("10.1.1.0/24")};
  // 192.0.2.0/24 is on-link; everything else goes via the router 192.0.2.254.
  std::vector<UnderlayRoute> underlay_ = {{Cidr("192.0.2.0/24"), std::nullopt},
                                          {Cidr("0.0.0.0/0"), Ip("192.0.2.254")}};
  RoutingConfig config_;
  // The cluster's nodes: us, one on-link, eleven behind the router.
  std::set<IpAddress> nodes_ = [] {
    std::set<IpAddress> out = {Ip("192.0.2.1"), Ip("192.0.2.2")};
    for (int i = 2; i < 13; ++i) out.insert(Ip(("198.51.100." + std::to_string(i)).c_str()));
    return out;
  }();
};

TEST_F(PlanRoutesTest, SameSubnetIsDirect) {
  auto plan =
      PlanRoutes(config_, node_, own_, {{Cidr("10.1.2.0/24"), Ip("192.0.2.2")}}, underlay_, nodes_);
  ASSERT_EQ(plan.routes.size(), 1u);
  EXPECT_EQ(plan.routes[0], (DesiredRoute{Cidr("10.1.2.0/24"), Ip("192.0.2.2"), "", std::nullopt}));
  EXPECT_TRUE(plan.tunnels.empty());
}

TEST_F(PlanRoutesTest, OtherSubnetUsesTunnelWithOverlay) {
  auto plan = PlanRoutes(config_, node_, own_, {{Cidr("10.1.3.0/24"), Ip("198.51.100.3")}},
                         underlay_, nodes_);
  ASSERT_EQ(plan.tunnels.size(), 1u);
  EXPECT_EQ(plan.tunnels[0].name, TunnelName(Ip("198.51.100.3")));
  EXPECT_EQ(plan.tunnels[0].local, node_);
  EXPECT_EQ(plan.tunnels[0].remote, Ip("198.51.100.3"));
  ASSERT_EQ(plan.routes.size(), 1u);
  EXPECT_EQ(plan.routes[0],
            (DesiredRoute{Cidr("10.1.3.0/24"), std::nullopt, plan.tunnels[0].name, node_}));
}

TEST_F(PlanRoutesTest, FullOverlayTunnelsEvenOnLink) {
  config_.overlay_type = OverlayType::kFull;
  auto plan =
      PlanRoutes(config_, node_, own_, {{Cidr("10.1.2.0/24"), Ip("192.0.2.2")}}, underlay_, nodes_);
  ASSERT_EQ(plan.tunnels.size(), 1u);
  EXPECT_EQ(plan.routes[0].device, plan.tunnels[0].name);
}

TEST_F(PlanRoutesTest, NoOverlayGoesViaUnderlayGateway) {
  config_.enable_overlay = false;
  auto plan = PlanRoutes(
      config_, node_, own_,
      {{Cidr("10.1.3.0/24"), Ip("198.51.100.3")}, {Cidr("10.1.2.0/24"), Ip("192.0.2.2")}},
      underlay_, nodes_);
  EXPECT_TRUE(plan.tunnels.empty());
  ASSERT_EQ(plan.routes.size(), 2u);
  EXPECT_EQ(plan.routes[0].gateway, Ip("192.0.2.2"));
  EXPECT_EQ(plan.routes[1].gateway, Ip("192.0.2.254"));
}

TEST_F(PlanRoutesTest, UnreachableNextHopIsSkippedWithReason) {
  config_.enable_overlay = false;
  auto plan = PlanRoutes(config_, node_, own_, {{Cidr("10.1.3.0/24"), Ip("198.51.100.3")}},
                         {{Cidr("192.0.2.0/24"), std::nullopt}}, nodes_);
  EXPECT_TRUE(plan.routes.empty());
  ASSERT_EQ(plan.skipped.size(), 1u);
  EXPECT_NE(plan.skipped[0].find("10.1.3.0/24"), std::string::npos);
}

TEST_F(PlanRoutesTest, OwnRoutesAndOtherFamilyAreIgnored) {
  auto plan = PlanRoutes(config_, node_, own_,
                         {{Cidr("10.1.1.0/24"), Ip("192.0.2.2")},
                          {Cidr("10.1.5.0/24"), node_},
                          {Cidr("fd00:5::/64"), Ip("2001:db8::5")}},
                         underlay_, nodes_);
  EXPECT_TRUE(plan.routes.empty());
  EXPECT_EQ(plan.skipped.size(), 1u);
}

TEST_F(PlanRoutesTest, ManyNodesOneTunnelPerRemote) {
  std::vector<LearnedPath> paths;
  for (int i = 2; i < 12; ++i) {
    paths.push_back(
        {Cidr("10.2." + std::to_string(i) + ".0/24"), Ip("198.51.100." + std::to_string(i))});
  }
  // A second prefix behind the same remote node shares its tunnel.
  paths.push_back({Cidr("10.3.2.0/24"), Ip("198.51.100.2")});
  auto plan = PlanRoutes(config_, node_, own_, paths, underlay_, nodes_);
  EXPECT_EQ(plan.routes.size(), 11u);
  EXPECT_EQ(plan.tunnels.size(), 10u);
}

// Issue 16 item 9: next hops announced by peers that are not nodes get no tunnel, however
// many there are; they are routed through the underlay like without overlay.
TEST_F(PlanRoutesTest, TunnelsOnlyTowardsNodes) {
  std::vector<LearnedPath> paths;
  for (int i = 1; i <= 200; ++i) {
    paths.push_back({Cidr(("172.16." + std::to_string(i) + ".0/24").c_str()),
                     Ip(("203.0.113." + std::to_string(i)).c_str())});
  }
  paths.push_back({Cidr("10.2.2.0/24"), Ip("198.51.100.2")});  // a node: tunnel
  auto plan = PlanRoutes(config_, node_, own_, paths, underlay_, nodes_);
  ASSERT_EQ(plan.tunnels.size(), 1u);
  EXPECT_EQ(plan.tunnels[0].remote, Ip("198.51.100.2"));
  ASSERT_EQ(plan.routes.size(), 201u);
  for (const auto& route : plan.routes) {
    if (route.destination == Cidr("10.2.2.0/24")) continue;
    EXPECT_EQ(route.gateway, Ip("192.0.2.254")) << route.destination.ToString();
    EXPECT_TRUE(route.device.empty());
  }
}

// The kernel's view of one of our routes: what we set plus what the kernel fills in.
netlink::Route KernelRoute(const std::string& destination, std::optional<std::string> gateway,
                           std::string device, std::optional<std::string> source = std::nullopt,
                           uint32_t metric = 0) {
  netlink::Route route;
  route.destination = Cidr(destination);
  if (gateway) route.gateway = Ip(*gateway);
  route.device = std::move(device);
  if (source) route.source = Ip(*source);
  route.protocol = kRouteProtocol;
  route.metric = metric;
  return route;
}

TEST(ToKernelRouteTest, MainTableAndOurProtocol) {
  auto route = ToKernelRoute({Cidr("10.1.3.0/24"), std::nullopt, "tun-X", Ip("192.0.2.1")});
  EXPECT_EQ(route, KernelRoute("10.1.3.0/24", std::nullopt, "tun-X", "192.0.2.1"));
  EXPECT_EQ(route.table, netlink::kMainTable);
  EXPECT_EQ(route.protocol, 17);
}

TEST(DiffKernelRoutesTest, Table) {
  using Op = netlink::RouteChange::Op;
  const auto via2 = KernelRoute("10.1.2.0/24", "192.0.2.2", "");
  const auto via2_on_eth0 = KernelRoute("10.1.2.0/24", "192.0.2.2", "eth0");  // kernel's copy
  const auto via9 = KernelRoute("10.1.2.0/24", "192.0.2.9", "eth0");
  const auto tunnel = KernelRoute("10.1.3.0/24", std::nullopt, "tun-A", "192.0.2.1");
  const auto other_tunnel = KernelRoute("10.1.3.0/24", std::nullopt, "tun-B", "192.0.2.1");
  const auto other_source = KernelRoute("10.1.3.0/24", std::nullopt, "tun-A", "192.0.2.7");
  const auto no_source = KernelRoute("10.1.3.0/24", std::nullopt, "tun-A");
  const auto stale = KernelRoute("10.1.99.0/24", "192.0.2.99", "eth0");
  const auto metric100 = KernelRoute("10.1.2.0/24", "192.0.2.2", "eth0", std::nullopt, 100);
  struct Case {
    std::string name;
    std::vector<netlink::Route> want;
    std::vector<netlink::Route> have;
    std::vector<std::pair<Op, netlink::Route>> changes;
  };
  const std::vector<Case> cases = {
      {"nothing", {}, {}, {}},
      {"missing route is added", {via2}, {}, {{Op::kReplace, via2}}},
      {"equal route stays", {via2}, {via2}, {}},
      {"device the kernel filled in is not a difference", {via2}, {via2_on_eth0}, {}},
      {"other gateway is replaced", {via2}, {via9}, {{Op::kReplace, via2}}},
      {"other tunnel device is replaced", {tunnel}, {other_tunnel}, {{Op::kReplace, tunnel}}},
      {"other source is replaced", {tunnel}, {other_source}, {{Op::kReplace, tunnel}}},
      {"missing source is replaced", {tunnel}, {no_source}, {{Op::kReplace, tunnel}}},
      {"unwanted route is deleted as the kernel has it", {}, {stale}, {{Op::kDelete, stale}}},
      {"another metric is another route",
       {via2},
       {metric100},
       {{Op::kReplace, via2}, {Op::kDelete, metric100}}},
      {"replaces before deletes, unchanged routes left alone",
       {tunnel, via2},
       {stale, via2_on_eth0, other_tunnel},
       {{Op::kReplace, tunnel}, {Op::kDelete, stale}}},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.name);
    KernelRouteDiff diff = DiffKernelRoutes(c.want, c.have);
    std::vector<std::pair<Op, netlink::Route>> got;
    size_t replaced = 0, deleted = 0;
    for (const auto& change : diff.changes) {
      got.emplace_back(change.op, change.route);
      ++(change.op == Op::kDelete ? deleted : replaced);
    }
    ASSERT_EQ(got.size(), c.changes.size());
    for (size_t i = 0; i < got.size(); ++i) {
      EXPECT_EQ(got[i].first, c.changes[i].first) << i;
      EXPECT_EQ(got[i].second, c.changes[i].second) << i << ": " << got[i].second.ToString();
    }
    EXPECT_EQ(diff.replaced, replaced);
    EXPECT_EQ(diff.deleted, deleted);
  }
}

}  // namespace
}  // namespace kr::routing::route_plan_test
