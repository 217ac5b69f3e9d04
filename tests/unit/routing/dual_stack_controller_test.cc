// The routes controller in both address families (--enable-ipv4/--enable-ipv6, issue 15), over
// routes_controller_fixture.h with an IPv6 underlay added.
#include <gtest/gtest.h>

#include <algorithm>
#include <map>
#include <nlohmann/json.hpp>
#include <set>
#include <string>
#include <vector>

#include "kube_router/routing/cni_config.h"
#include "kube_router/routing/network_routes_controller.h"
#include "kube_router/routing/pod_egress.h"
#include "unit/routing/routes_controller_fixture.h"

// In the fixture's namespace: its helpers (Ip, Cidr) need no using-declarations.
namespace kr::routing::testing {
namespace {

std::shared_ptr<const k8s::Node> DualNode(const std::string& name, const std::string& ipv4,
                                          const std::string& ipv6, std::vector<std::string> cidrs) {
  auto node = std::make_shared<k8s::Node>();
  node->meta.name = name;
  if (!ipv4.empty()) node->addresses.push_back({"InternalIP", ipv4});
  if (!ipv6.empty()) node->addresses.push_back({"InternalIP", ipv6});
  node->pod_cidrs = std::move(cidrs);
  return node;
}

// Issue 15: three dual-stack nodes; n1 and n2 share both underlay subnets, n3 is elsewhere.
class DualStackControllerTest : public RoutesControllerTest {
 protected:
  void SetUp() override {
    RoutesControllerTest::SetUp();
    config_.enable_ipv6 = true;
    iptables6_ = &v6_;
    SeedUnderlay("2001:db8::1", "2001:db8::/64", "2001:db8::fe");
    AddNode(DualNode("n1", "192.0.2.1", "2001:db8::1", {"10.1.1.0/24", "fd00:1::/64"}));
    AddNode(DualNode("n2", "192.0.2.2", "2001:db8::2", {"10.1.2.0/24", "fd00:2::/64"}));
    AddNode(DualNode("n3", "198.51.100.3", "2001:db8:3::3", {"10.1.3.0/24", "fd00:3::/64"}));
  }

  netfilter::FakeIptables v6_{netfilter::IpFamily::kV6};
};

TEST_F(DualStackControllerTest, BothFamiliesAdvertisedOverOneSessionPerNodeAndRouted) {
  SyncOk(SyncReason::kStartup);
  // One iBGP session per node, on the IPv4 addresses; the speaker listens on both.
  ASSERT_EQ(speaker_->peers().size(), 2u);
  EXPECT_TRUE(speaker_->peers().count(Ip("192.0.2.2")));
  const auto& listen = speaker_->config().listen_addresses;
  EXPECT_NE(std::find(listen.begin(), listen.end(), Ip("2001:db8::1")), listen.end());
  ASSERT_EQ(speaker_->paths().size(), 2u);
  EXPECT_EQ(speaker_->paths().at(Cidr("fd00:1::/64")).next_hop, Ip("2001:db8::1"));
  EXPECT_EQ(speaker_->paths().at(Cidr("10.1.1.0/24")).next_hop, Ip("192.0.2.1"));
  EXPECT_EQ(speaker_->ExportedTo(Ip("192.0.2.2")).size(), 2u);

  // The nodes' IPv6 pod CIDRs with their IPv6 next hops pass the import filter.
  EXPECT_TRUE(speaker_->Announce(Ip("192.0.2.2"), Cidr("fd00:2::/64"), Ip("2001:db8::2")));
  EXPECT_TRUE(speaker_->Announce(Ip("198.51.100.3"), Cidr("fd00:3::/64"), Ip("2001:db8:3::3")));
  EXPECT_TRUE(speaker_->Announce(Ip("192.0.2.2"), Cidr("10.1.2.0/24"), Ip("192.0.2.2")));
  // A node announcing its IPv6 pod CIDR with another node's next hop is refused.
  EXPECT_FALSE(speaker_->Announce(Ip("192.0.2.2"), Cidr("fd00:3::/64"), Ip("2001:db8::2")));
  SyncOk();
  const std::string tunnel = TunnelName(Ip("2001:db8:3::3"));
  EXPECT_EQ(OurRoutes(),
            (std::vector<std::string>{"10.1.2.0/24 via 192.0.2.2", "fd00:2::/64 via 2001:db8::2",
                                      "fd00:3::/64 dev " + tunnel}));
  // The cross-subnet IPv6 route goes through an ip6tnl tunnel from our IPv6 address.
  EXPECT_EQ(Tunnels("ip6tnl"), (std::vector<std::string>{tunnel + " up"}));
  EXPECT_EQ(links_.links().at(tunnel).tunnel_local, Ip("2001:db8::1"));
  for (const auto& route : routes_.RoutesWithProtocol(kRouteProtocol)) {
    if (route.device == tunnel) {
      EXPECT_EQ(route.source, Ip("2001:db8::1"));
    }
  }

  // Withdrawal removes the IPv6 route and the tunnel.
  speaker_->Withdraw(Cidr("fd00:3::/64"));
  SyncOk();
  EXPECT_EQ(OurRoutes(),
            (std::vector<std::string>{"10.1.2.0/24 via 192.0.2.2", "fd00:2::/64 via 2001:db8::2"}));
  EXPECT_TRUE(Tunnels("ip6tnl").empty());
}

TEST_F(DualStackControllerTest, Ipv6ServiceVipsGoToExternalPeersWithTheIpv6NextHop) {
  config_.advertise_cluster_ip = true;
  config_.global_peers = {PeerSpec{Ip("2001:db8::100"), 65000}, PeerSpec{Ip("192.0.2.100"), 65000}};
  AddService("web", {"10.96.0.10", "fd00:96::10"});
  SyncOk();
  ASSERT_TRUE(speaker_->peers().count(Ip("2001:db8::100")));
  EXPECT_EQ(speaker_->peers().at(Ip("2001:db8::100")).local_address, Ip("2001:db8::1"));
  std::map<std::string, std::string> exported;
  for (const auto& route : speaker_->ExportedTo(Ip("2001:db8::100"))) {
    exported[route.prefix.ToString()] = route.next_hop.ToString();
  }
  EXPECT_EQ(exported["fd00:96::10/128"], "2001:db8::1");
  EXPECT_EQ(exported["fd00:1::/64"], "2001:db8::1");
  EXPECT_EQ(exported["10.96.0.10/32"], "192.0.2.1");
  // Not to the other nodes.
  for (const auto& route : speaker_->ExportedTo(Ip("192.0.2.2"))) {
    EXPECT_NE(route.prefix, Cidr("fd00:96::10/128"));
  }
  // An IPv6 route refused as a VIP on the way in.
  EXPECT_FALSE(
      speaker_->Announce(Ip("2001:db8::100"), Cidr("fd00:96::10/128"), Ip("2001:db8::100")));
}

TEST_F(DualStackControllerTest, OverrideNexthopKeepsTheIpv6NextHopOverAnIpv4Session) {
  config_.override_nexthop = true;
  config_.global_peers = {PeerSpec{Ip("192.0.2.100"), 65000}};
  SyncOk();
  std::map<std::string, std::string> exported;
  for (const auto& route : speaker_->ExportedTo(Ip("192.0.2.100"))) {
    exported[route.prefix.ToString()] = route.next_hop.ToString();
  }
  EXPECT_EQ(exported["fd00:1::/64"], "2001:db8::1");
  EXPECT_EQ(exported["10.1.1.0/24"], "192.0.2.1");
}

TEST_F(DualStackControllerTest, PodEgressCniAndBridgeCoverBothFamilies) {
  SyncOk();
  auto& sets = ipset_.sets();
  ASSERT_TRUE(sets.count("inet6:kube-router-pod-subnets"));
  EXPECT_EQ(sets["inet6:kube-router-pod-subnets"].family, netfilter::IpFamily::kV6);
  EXPECT_EQ(sets["inet6:kube-router-pod-subnets"].entries.size(), 3u);
  EXPECT_TRUE(sets["inet6:kube-router-node-ips"].entries.count({"2001:db8:3::3", false}));
  EXPECT_EQ(sets[kPodSubnetsSet].entries.size(), 3u);
  EXPECT_TRUE(sets[kPodSubnetsSet].entries.count({"10.1.2.0/24", false}));
  auto& nat6 = v6_.table("nat");
  EXPECT_EQ(nat6.chains[kPodEgressChain],
            std::vector<std::string>{PodEgressRule(netfilter::IpFamily::kV6)});
  EXPECT_EQ(nat6.chains["POSTROUTING"].front(), std::string("-j ") + kPodEgressChain);
  EXPECT_EQ(iptables_.table("nat").chains[kPodEgressChain],
            std::vector<std::string>{PodEgressRule()});

  const std::string text = CniConfText();
  auto conf = nlohmann::json::parse(text);
  const auto& ranges = conf["plugins"][0]["ipam"]["ranges"];
  ASSERT_EQ(ranges.size(), 2u) << text;
  EXPECT_EQ(ranges[0][0]["subnet"], "10.1.1.0/24");
  EXPECT_EQ(ranges[1][0]["subnet"], "fd00:1::/64");
  const std::set<std::string> gateways = BridgeAddresses();
  EXPECT_TRUE(gateways.count("10.1.1.1/24 dev kube-bridge")) << gateways.size();
  EXPECT_TRUE(gateways.count("fd00:1::1/64 dev kube-bridge"));

  // Egress off: the IPv6 chain goes too.
  controller_.reset();
  config_.enable_pod_egress = false;
  SyncOk();
  EXPECT_FALSE(v6_.table("nat").chains.count(kPodEgressChain));
  EXPECT_TRUE(v6_.table("nat").chains["POSTROUTING"].empty());
}

TEST_F(DualStackControllerTest, WithIpv6DisabledNothingIpv6IsTouched) {
  config_.enable_ipv6 = false;
  SyncOk();
  ASSERT_EQ(speaker_->paths().size(), 1u);
  EXPECT_TRUE(speaker_->paths().count(Cidr("10.1.1.0/24")));
  // IPv6 pod CIDRs are not the cluster's here: refused on import, never routed.
  EXPECT_FALSE(speaker_->Announce(Ip("192.0.2.2"), Cidr("fd00:2::/64"), Ip("2001:db8::2")));
  SyncOk();
  EXPECT_TRUE(OurRoutes().empty());
  EXPECT_FALSE(ipset_.sets().count("inet6:kube-router-pod-subnets"));
  EXPECT_EQ(v6_.apply_calls(), 0);
  const std::string text = CniConfText();
  EXPECT_EQ(text.find("fd00:"), std::string::npos) << text;
}

TEST_F(DualStackControllerTest, BadInputSkipsOnlyTheItem) {
  // n4 has an IPv6 pod CIDR but no IPv6 address; n5 has IPv6 only.
  AddNode(DualNode("n4", "192.0.2.4", "", {"10.1.4.0/24", "fd00:4::/64"}));
  AddNode(DualNode("n5", "", "2001:db8::5", {"fd00:5::/64"}));
  // An IPv6 peer whose local address is IPv4, and a good one.
  PeerSpec mismatched{Ip("2001:db8::101"), 65001};
  mismatched.local_address = Ip("192.0.2.1");
  config_.global_peers = {mismatched, PeerSpec{Ip("2001:db8::100"), 65000}};
  SyncOk();
  EXPECT_TRUE(speaker_->peers().count(Ip("192.0.2.4")));
  EXPECT_FALSE(speaker_->peers().count(Ip("2001:db8::101")));
  EXPECT_TRUE(speaker_->peers().count(Ip("2001:db8::100")));
  // n4's IPv4 half is routed and masqueraded as usual; its IPv6 CIDR has no next hop.
  EXPECT_TRUE(ipset_.sets()[kPodSubnetsSet].entries.count({"10.1.4.0/24", false}));
  EXPECT_FALSE(
      ipset_.sets()["inet6:kube-router-pod-subnets"].entries.count({"fd00:4::/64", false}));
  // n5 (IPv6 only) is not an IPv4 session peer, but its pod CIDR is a pod subnet.
  EXPECT_FALSE(speaker_->peers().count(Ip("2001:db8::5")));
  EXPECT_TRUE(ipset_.sets()["inet6:kube-router-pod-subnets"].entries.count({"fd00:5::/64", false}));
  // Every other node's IPv6 routes still work.
  EXPECT_TRUE(speaker_->Announce(Ip("192.0.2.2"), Cidr("fd00:2::/64"), Ip("2001:db8::2")));
  SyncOk();
  EXPECT_EQ(OurRoutes(), (std::vector<std::string>{"fd00:2::/64 via 2001:db8::2"}));
}

// Issue 15: bad input is logged once naming the node, peer or path, not at every sync.
TEST_F(DualStackControllerTest, BadInputIsLoggedOnceNamingTheItem) {
  CapturedLog log;
  AddNode(DualNode("n4", "192.0.2.4", "", {"10.1.4.0/24", "fd00:4::/64"}));
  PeerSpec mismatched{Ip("2001:db8::101"), 65001};
  mismatched.local_address = Ip("192.0.2.1");
  config_.global_peers = {mismatched};
  SyncOk(SyncReason::kStartup);
  // n2's own IPv6 pod CIDR with its IPv4 address as next hop passes the (family-blind) import
  // filter but cannot be routed.
  EXPECT_TRUE(speaker_->Announce(Ip("192.0.2.2"), Cidr("fd00:2::/64"), Ip("192.0.2.2")));
  for (int i = 0; i < 3; ++i) {
    SyncOk(SyncReason::kPeriodic);
    SyncOk(SyncReason::kRequested);
  }
  EXPECT_EQ(log.Count("node n4: pod CIDR fd00:4::/64"), 1u) << log.Text();
  EXPECT_EQ(log.Count("2001:db8::101"), 1u) << log.Text();
  EXPECT_EQ(log.Count("fd00:2::/64 via 192.0.2.2"), 1u) << log.Text();
}

TEST_F(DualStackControllerTest, CleanupRemovesTheIpv6StateToo) {
  SyncOk();
  speaker_->Announce(Ip("192.0.2.2"), Cidr("fd00:2::/64"), Ip("2001:db8::2"));
  speaker_->Announce(Ip("198.51.100.3"), Cidr("fd00:3::/64"), Ip("2001:db8:3::3"));
  SyncOk();
  ASSERT_EQ(OurRoutes().size(), 2u);
  ASSERT_EQ(Tunnels("ip6tnl").size(), 1u);
  controller_->Shutdown();
  auto removed = Controller().Cleanup();
  ASSERT_TRUE(removed.ok()) << removed.error();
  EXPECT_TRUE(OurRoutes().empty());
  EXPECT_TRUE(Tunnels("ip6tnl").empty());
  EXPECT_FALSE(ipset_.sets().count("inet6:kube-router-pod-subnets"));
  EXPECT_FALSE(ipset_.sets().count("inet6:kube-router-node-ips"));
  EXPECT_FALSE(v6_.table("nat").chains.count(kPodEgressChain));
  EXPECT_TRUE(v6_.table("nat").chains["POSTROUTING"].empty());
  EXPECT_TRUE(BridgeAddresses().empty());
}

TEST_F(DualStackControllerTest, Ipv6OnlySessionsAndRoutesWithIpv4Disabled) {
  config_.enable_ipv4 = false;
  config_.generate_router_id = true;  // an IPv6 session address needs a router ID
  config_.global_peers = {PeerSpec{Ip("192.0.2.100"), 65000}, PeerSpec{Ip("2001:db8::100"), 65000}};
  SyncOk();
  // Sessions move to the IPv6 addresses; the IPv4 peer is skipped.
  std::vector<std::string> peers;
  for (const auto& [address, peer] : speaker_->peers()) peers.push_back(address.ToString());
  std::sort(peers.begin(), peers.end());
  EXPECT_EQ(peers, (std::vector<std::string>{"2001:db8:3::3", "2001:db8::100", "2001:db8::2"}));
  EXPECT_EQ(speaker_->peers().at(Ip("2001:db8::2")).local_address, Ip("2001:db8::1"));
  EXPECT_EQ(speaker_->config().listen_addresses, std::vector<IpAddress>{Ip("2001:db8::1")});
  ASSERT_EQ(speaker_->paths().size(), 1u);
  EXPECT_EQ(speaker_->paths().begin()->first, Cidr("fd00:1::/64"));
  EXPECT_TRUE(speaker_->Announce(Ip("2001:db8::2"), Cidr("fd00:2::/64"), Ip("2001:db8::2")));
  SyncOk();
  EXPECT_EQ(OurRoutes(), (std::vector<std::string>{"fd00:2::/64 via 2001:db8::2"}));
  EXPECT_FALSE(iptables_.table("nat").chains.count(kPodEgressChain));  // no IPv4 egress
  EXPECT_TRUE(v6_.table("nat").chains.count(kPodEgressChain));
}

}  // namespace
}  // namespace kr::routing::testing
