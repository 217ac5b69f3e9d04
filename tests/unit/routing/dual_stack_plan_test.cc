// Dual stack (--enable-ipv6, issue 15): the planners over both families.
#include <gtest/gtest.h>

#include "kube_router/routing/bgp_plan.h"
#include "kube_router/routing/pod_egress.h"
#include "kube_router/routing/route_plan.h"

namespace kr::routing::dual_stack_plan_test {
namespace {

IpAddress Ip(const std::string& text) { return *IpAddress::Parse(text); }
IpPrefix Cidr(const std::string& text) { return *IpPrefix::Parse(text); }

k8s::Node DualNode(const std::string& name, int index) {
  k8s::Node node;
  node.meta.name = name;
  const std::string n = std::to_string(index);
  node.addresses = {{"InternalIP", "192.0.2." + n}, {"InternalIP", "2001:db8::" + n}};
  node.pod_cidrs = {"10.1." + n + ".0/24", "fd00:" + n + "::/64"};
  return node;
}

RoutingConfig DualStack() {
  RoutingConfig config;
  config.node_name = "n1";
  config.enable_ipv6 = true;
  return config;
}

// This node (n1, dual-stack) as the planners see it with `config`'s families.
NodeInfo Self(const RoutingConfig& config) {
  NodeInfo self = ParseNode(DualNode("n1", 1)).info;
  ApplyFamilies(config, self);
  return self;
}

TEST(DualStackNodeTest, ParseNodeKeepsOneAddressPerFamily) {
  k8s::Node node = DualNode("n1", 1);
  node.addresses.insert(node.addresses.begin(), {"ExternalIP", "2001:db8:ff::1"});
  ParsedNode parsed = ParseNode(node);
  EXPECT_EQ(parsed.info.ip, Ip("192.0.2.1"));
  EXPECT_EQ(parsed.info.ipv4, Ip("192.0.2.1"));
  EXPECT_EQ(parsed.info.ipv6, Ip("2001:db8::1"));  // InternalIP before ExternalIP
  EXPECT_EQ(parsed.info.pod_cidrs.size(), 2u);
}

TEST(DualStackNodeTest, ApplyFamiliesKeepsOnlyEnabledFamilies) {
  NodeInfo v4_only = ParseNode(DualNode("n1", 1)).info;
  RoutingConfig config;  // IPv4 only: kube-router's default
  EXPECT_TRUE(ApplyFamilies(config, v4_only).empty());
  EXPECT_EQ(v4_only.pod_cidrs, std::vector<IpPrefix>{Cidr("10.1.1.0/24")});
  EXPECT_FALSE(v4_only.ipv6);

  NodeInfo v6_only = ParseNode(DualNode("n1", 1)).info;
  config.enable_ipv4 = false;
  config.enable_ipv6 = true;
  EXPECT_TRUE(ApplyFamilies(config, v6_only).empty());
  EXPECT_EQ(v6_only.ip, Ip("2001:db8::1"));  // sessions move to the enabled family
  EXPECT_EQ(v6_only.pod_cidrs, std::vector<IpPrefix>{Cidr("fd00:1::/64")});

  NodeInfo both = ParseNode(DualNode("n1", 1)).info;
  EXPECT_TRUE(ApplyFamilies(DualStack(), both).empty());
  EXPECT_EQ(both.ip, Ip("192.0.2.1"));
  EXPECT_EQ(both.pod_cidrs.size(), 2u);
}

TEST(DualStackNodeTest, AnIpv6CidrWithoutAnIpv6AddressIsSkippedNamingTheNode) {
  k8s::Node node = DualNode("n7", 7);
  node.addresses = {{"InternalIP", "192.0.2.7"}};
  NodeInfo info = ParseNode(node).info;
  auto problems = ApplyFamilies(DualStack(), info);
  ASSERT_EQ(problems.size(), 1u);
  EXPECT_NE(problems[0].find("node n7"), std::string::npos) << problems[0];
  EXPECT_NE(problems[0].find("fd00:7::/64"), std::string::npos) << problems[0];
  // The IPv4 half goes on.
  EXPECT_EQ(info.pod_cidrs, std::vector<IpPrefix>{Cidr("10.1.7.0/24")});
  EXPECT_EQ(PlanPodCidrAdvertisements(info).size(), 1u);
}

TEST(DualStackBgpTest, PodCidrsAdvertisedWithTheNextHopOfTheirFamily) {
  auto ads = PlanPodCidrAdvertisements(Self(DualStack()));
  ASSERT_EQ(ads.size(), 2u);
  EXPECT_EQ(ads[0].prefix, Cidr("10.1.1.0/24"));
  EXPECT_EQ(ads[0].next_hop, Ip("192.0.2.1"));
  EXPECT_EQ(ads[1].prefix, Cidr("fd00:1::/64"));
  EXPECT_EQ(ads[1].next_hop, Ip("2001:db8::1"));
}

TEST(DualStackBgpTest, NodePeersUseTheSessionAddressOnce) {
  RoutingConfig config = DualStack();
  std::vector<NodeInfo> nodes;
  for (int i = 1; i <= 3; ++i) {
    nodes.push_back(ParseNode(DualNode("n" + std::to_string(i), i)).info);
    ApplyFamilies(config, nodes.back());
  }
  // One session per node pair, over IPv4, carrying both families.
  auto peers = PlanInternalPeers(config, nodes[0], 64512, nodes);
  ASSERT_EQ(peers.size(), 2u);
  EXPECT_EQ(peers[0].address, Ip("192.0.2.2"));
  EXPECT_EQ(peers[0].local_address, Ip("192.0.2.1"));
}

TEST(DualStackBgpTest, ExternalPeersRunInTheirFamilyAndBadOnesAreNamed) {
  RoutingConfig config = DualStack();
  PeerSpec v4{Ip("192.0.2.100"), 65000};
  PeerSpec v6{Ip("2001:db8::100"), 65000};
  PeerSpec mismatched{Ip("2001:db8::101"), 65001};
  mismatched.local_address = Ip("192.0.2.1");
  config.global_peers = {v4, v6, mismatched};
  std::vector<std::string> problems;
  // The external peers this node plans with `flags`; their problems in `problems`.
  auto plan = [&problems](const RoutingConfig& flags) {
    problems.clear();
    return PlanExternalPeers(flags, Self(flags), &problems);
  };
  auto peers = plan(config);
  ASSERT_EQ(peers.size(), 2u);
  EXPECT_EQ(peers[0].local_address, Ip("192.0.2.1"));
  EXPECT_EQ(peers[1].address, Ip("2001:db8::100"));
  EXPECT_EQ(peers[1].local_address, Ip("2001:db8::1"));
  ASSERT_EQ(problems.size(), 1u);
  EXPECT_NE(problems[0].find("2001:db8::101"), std::string::npos) << problems[0];

  // IPv6 disabled: the IPv6 peer is skipped, naming it; the IPv4 one stays.
  RoutingConfig v4_only = config;
  v4_only.enable_ipv6 = false;
  peers = plan(v4_only);
  ASSERT_EQ(peers.size(), 1u);
  EXPECT_EQ(peers[0].address, Ip("192.0.2.100"));
  ASSERT_EQ(problems.size(), 2u);
  EXPECT_NE(problems[0].find("2001:db8::100"), std::string::npos) << problems[0];
  EXPECT_NE(problems[0].find("--enable-ipv6=false"), std::string::npos) << problems[0];

  // IPv4 disabled: the IPv4 peer is the one skipped.
  RoutingConfig v6_only = config;
  v6_only.enable_ipv4 = false;
  peers = plan(v6_only);
  ASSERT_EQ(peers.size(), 1u);
  EXPECT_EQ(peers[0].address, Ip("2001:db8::100"));
  ASSERT_FALSE(problems.empty());
  EXPECT_NE(problems[0].find("192.0.2.100"), std::string::npos);
  EXPECT_NE(problems[0].find("--enable-ipv4=false"), std::string::npos);
}

TEST(DualStackBgpTest, Ipv6PeersFromNodeAnnotations) {
  k8s::Node node = DualNode("n1", 1);
  node.meta.annotations = {{"kube-router.io/peers",
                            "- remoteip: 2001:db8::100\n  remoteasn: 65000\n"
                            "- remoteip: 2001:db8::101\n  remoteasn: 65001\n  localip: 192.0.2.1\n"
                            "- remoteip: 192.0.2.100\n  remoteasn: 65002\n"}};
  ParsedNode parsed = ParseNode(node);
  ASSERT_TRUE(parsed.problems.empty()) << parsed.problems[0];
  RoutingConfig config = DualStack();
  ApplyFamilies(config, parsed.info);
  std::vector<std::string> problems;
  auto peers = PlanExternalPeers(config, parsed.info, &problems);
  ASSERT_EQ(peers.size(), 2u);
  EXPECT_EQ(peers[0].address, Ip("2001:db8::100"));
  EXPECT_EQ(peers[0].local_address, Ip("2001:db8::1"));
  EXPECT_EQ(peers[1].address, Ip("192.0.2.100"));
  EXPECT_EQ(peers[1].local_address, Ip("192.0.2.1"));
  ASSERT_EQ(problems.size(), 1u);
  EXPECT_NE(problems[0].find("external BGP peer 2001:db8::101 (AS 65001)"), std::string::npos)
      << problems[0];
  EXPECT_NE(problems[0].find("local address 192.0.2.1 is not IPv6"), std::string::npos)
      << problems[0];
}

TEST(DualStackBgpTest, Ipv6ServiceVipsAdvertisedWithTheIpv6NextHop) {
  RoutingConfig config = DualStack();
  config.advertise_cluster_ip = true;
  config.advertise_external_ip = true;
  config.advertise_loadbalancer_ip = true;
  const NodeInfo self = Self(config);
  auto service = std::make_shared<k8s::Service>();
  service->meta.name = "web";
  service->meta.namespace_ = "default";
  service->type = "LoadBalancer";
  service->cluster_ips = {"10.96.0.10", "fd00:96::10"};
  service->external_ips = {"2001:db8:e::5"};
  service->load_balancer_ingress = {{"2001:db8:1b::7", ""}};
  auto ads = PlanServiceAdvertisements(config, self, {service}, {});
  ASSERT_EQ(ads.size(), 4u);
  EXPECT_EQ(ads[0].prefix, Cidr("10.96.0.10/32"));
  EXPECT_EQ(ads[0].next_hop, Ip("192.0.2.1"));
  EXPECT_EQ(ads[1].prefix, Cidr("2001:db8:e::5/128"));
  EXPECT_EQ(ads[1].next_hop, Ip("2001:db8::1"));
  EXPECT_EQ(ads[2].prefix, Cidr("2001:db8:1b::7/128"));
  EXPECT_EQ(ads[2].kind, RouteKind::kLoadBalancerIp);
  EXPECT_EQ(ads[2].next_hop, Ip("2001:db8::1"));
  EXPECT_EQ(ads[3].prefix, Cidr("fd00:96::10/128"));
  EXPECT_EQ(ads[3].next_hop, Ip("2001:db8::1"));

  config.enable_ipv6 = false;  // an IPv6 VIP is not advertised with IPv6 disabled
  ads = PlanServiceAdvertisements(config, self, {service}, {});
  ASSERT_EQ(ads.size(), 1u);
  EXPECT_EQ(ads[0].prefix, Cidr("10.96.0.10/32"));
}

TEST(DualStackRoutePlanTest, EachFamilyRoutedFromTheNodesAddressOfThatFamily) {
  RoutingConfig config = DualStack();
  const std::vector<IpAddress> node_ips = {Ip("192.0.2.1"), Ip("2001:db8::1")};
  const std::vector<UnderlayRoute> underlay = {
      {Cidr("192.0.2.0/24"), std::nullopt},
      {Cidr("2001:db8::/64"), std::nullopt},
      {Cidr("::/0"), Ip("2001:db8::fe")},
  };
  const std::set<IpAddress> nodes = {Ip("192.0.2.2"), Ip("2001:db8::2"), Ip("2001:db8:3::3")};
  const std::vector<LearnedPath> paths = {
      {Cidr("10.1.2.0/24"), Ip("192.0.2.2")},
      {Cidr("fd00:2::/64"), Ip("2001:db8::2")},    // same subnet: direct
      {Cidr("fd00:3::/64"), Ip("2001:db8:3::3")},  // another subnet: a tunnel
      {Cidr("fd00:9::/64"), Ip("2001:db8:9::9")},  // not a node: via the gateway
      {Cidr("fd00:1::/64"), Ip("2001:db8::1")},    // ours, reflected back
      {Cidr("fd00:8::/64"), Ip("192.0.2.2")},      // mismatched families
  };
  RoutePlan plan = PlanRoutes(config, node_ips, {Cidr("fd00:1::/64")}, paths, underlay, nodes);
  const std::string tunnel = TunnelName(Ip("2001:db8:3::3"));
  ASSERT_EQ(plan.routes.size(), 4u);
  EXPECT_EQ(plan.routes[0], (DesiredRoute{Cidr("10.1.2.0/24"), Ip("192.0.2.2"), "", std::nullopt}));
  EXPECT_EQ(plan.routes[1],
            (DesiredRoute{Cidr("fd00:2::/64"), Ip("2001:db8::2"), "", std::nullopt}));
  EXPECT_EQ(plan.routes[2],
            (DesiredRoute{Cidr("fd00:3::/64"), std::nullopt, tunnel, Ip("2001:db8::1")}));
  EXPECT_EQ(plan.routes[3],
            (DesiredRoute{Cidr("fd00:9::/64"), Ip("2001:db8::fe"), "", std::nullopt}));
  ASSERT_EQ(plan.tunnels.size(), 1u);
  EXPECT_EQ(plan.tunnels[0], (DesiredTunnel{tunnel, Ip("2001:db8::1"), Ip("2001:db8:3::3")}));
  ASSERT_EQ(plan.skipped.size(), 1u);
  EXPECT_NE(plan.skipped[0].find("fd00:8::/64"), std::string::npos);

  // A node without an IPv6 address routes no IPv6 path, and says why.
  plan = PlanRoutes(config, {Ip("192.0.2.1")}, {}, paths, underlay, nodes);
  EXPECT_EQ(plan.routes.size(), 1u);
  EXPECT_EQ(plan.skipped.size(), 5u);
  EXPECT_NE(plan.skipped[0].find("no address of the next hop's family"), std::string::npos)
      << plan.skipped[0];
}

TEST(DualStackPodEgressTest, Ipv6SetsAndRule) {
  std::vector<NodeInfo> nodes;
  for (int i = 1; i <= 2; ++i)
    nodes.push_back(ParseNode(DualNode("n" + std::to_string(i), i)).info);
  auto sets = DesiredEgressSets(nodes, netfilter::IpFamily::kV6);
  ASSERT_EQ(sets.size(), 2u);
  EXPECT_EQ(sets[0].name, "inet6:kube-router-pod-subnets");
  EXPECT_EQ(sets[0].family, netfilter::IpFamily::kV6);
  EXPECT_EQ(sets[0].entries.size(), 2u);
  EXPECT_TRUE(sets[0].entries.count({"fd00:2::/64", false}));
  EXPECT_EQ(sets[1].name, "inet6:kube-router-node-ips");
  EXPECT_TRUE(sets[1].entries.count({"2001:db8::2", false}));
  EXPECT_EQ(sets[1].entries.size(), 2u);
  // The IPv4 sets hold the IPv4 halves only.
  auto v4 = DesiredEgressSets(nodes);
  EXPECT_EQ(v4[0].name, "kube-router-pod-subnets");
  EXPECT_TRUE(v4[0].entries.count({"10.1.2.0/24", false}));
  EXPECT_EQ(v4[0].entries.size(), 2u);

  const std::string rule = PodEgressRule(netfilter::IpFamily::kV6);
  EXPECT_EQ(rule,
            "-m set --match-set inet6:kube-router-pod-subnets src -m set ! --match-set "
            "inet6:kube-router-pod-subnets dst -m set ! --match-set inet6:kube-router-node-ips "
            "dst -j MASQUERADE");
  netfilter::TableSnapshot nat;
  auto update = PlanPodEgress(nat, true, netfilter::IpFamily::kV6);
  ASSERT_EQ(update.replace_chains.size(), 1u);
  EXPECT_EQ(update.replace_chains[0].rules, std::vector<std::string>{rule});
}

}  // namespace
}  // namespace kr::routing::dual_stack_plan_test
