#include "kube_router/routing/bgp_plan.h"

#include <gtest/gtest.h>

namespace kr::routing::bgp_plan_test {
namespace {

IpAddress Ip(const std::string& text) { return *IpAddress::Parse(text); }
IpPrefix Cidr(const std::string& text) { return *IpPrefix::Parse(text); }

NodeInfo Node(const std::string& name, const std::string& ip, const std::string& cidr) {
  NodeInfo node;
  node.name = name;
  node.ip = Ip(ip);
  if (!cidr.empty()) node.pod_cidrs = {Cidr(cidr)};
  return node;
}

std::vector<std::string> Addresses(const std::vector<PeerSpec>& peers) {
  std::vector<std::string> out;
  for (const auto& p : peers) out.push_back(p.address.ToString());
  return out;
}

TEST(PeerPlanTest, FullMeshPeersWithEveryOtherNode) {
  RoutingConfig config;
  auto self = Node("n1", "192.0.2.1", "10.1.1.0/24");
  std::vector<NodeInfo> nodes = {self, Node("n3", "192.0.2.3", "10.1.3.0/24"),
                                 Node("n2", "192.0.2.2", "10.1.2.0/24"),
                                 Node("v6", "2001:db8::4", "")};
  auto asn = LocalAsn(config, self);
  ASSERT_TRUE(asn);
  EXPECT_EQ(*asn, 64512u);
  auto peers = PlanInternalPeers(config, self, *asn, nodes);
  EXPECT_EQ(Addresses(peers), (std::vector<std::string>{"192.0.2.2", "192.0.2.3"}));
  EXPECT_EQ(peers[0].asn, 64512u);
  EXPECT_EQ(peers[0].node_name, "n2");
  EXPECT_FALSE(peers[0].external);
  EXPECT_EQ(peers[0].local_address, self.ip);
}

TEST(PeerPlanTest, IbgpDisabledMeansNoNodePeers) {
  RoutingConfig config;
  config.enable_ibgp = false;
  auto self = Node("n1", "192.0.2.1", "10.1.1.0/24");
  EXPECT_TRUE(PlanInternalPeers(config, self, 64512, {self, Node("n2", "192.0.2.2", "")}).empty());
}

TEST(PeerPlanTest, NoFullMeshNeedsNodeAsnAndPeersOnlyWithinIt) {
  RoutingConfig config;
  config.nodes_full_mesh = false;
  auto self = Node("n1", "192.0.2.1", "10.1.1.0/24");
  auto missing = LocalAsn(config, self);
  ASSERT_FALSE(missing);
  EXPECT_NE(missing.error().find("n1"), std::string::npos);

  self.asn = 65010;
  auto same = Node("n2", "192.0.2.2", "");
  same.asn = 65010;
  auto other = Node("n3", "192.0.2.3", "");
  other.asn = 65020;
  auto none = Node("n4", "192.0.2.4", "");
  ASSERT_EQ(*LocalAsn(config, self), 65010u);
  auto peers = PlanInternalPeers(config, self, 65010, {self, same, other, none});
  EXPECT_EQ(Addresses(peers), (std::vector<std::string>{"192.0.2.2"}));
}

TEST(PeerPlanTest, RouteReflectorTopology) {
  RoutingConfig config;
  auto rr = Node("rr", "192.0.2.1", "10.1.1.0/24");
  rr.rr_server_cluster_id = 42;
  auto c1 = Node("c1", "192.0.2.2", "10.1.2.0/24");
  c1.rr_client_cluster_id = 42;
  auto c2 = Node("c2", "192.0.2.3", "10.1.3.0/24");
  c2.rr_client_cluster_id = 42;
  auto plain = Node("plain", "192.0.2.4", "10.1.4.0/24");
  std::vector<NodeInfo> all = {rr, c1, c2, plain};

  auto from_rr = PlanInternalPeers(config, rr, 64512, all);
  ASSERT_EQ(Addresses(from_rr), (std::vector<std::string>{"192.0.2.2", "192.0.2.3", "192.0.2.4"}));
  EXPECT_TRUE(from_rr[0].route_reflector_client);
  EXPECT_EQ(from_rr[0].cluster_id, 42u);
  EXPECT_TRUE(from_rr[1].route_reflector_client);
  EXPECT_FALSE(from_rr[2].route_reflector_client);

  // A client talks only to the server.
  auto from_client = PlanInternalPeers(config, c1, 64512, all);
  EXPECT_EQ(Addresses(from_client), (std::vector<std::string>{"192.0.2.1"}));
  EXPECT_FALSE(from_client[0].route_reflector_client);
}

TEST(PeerPlanTest, GlobalExternalPeersWinOverNodeAnnotations) {
  RoutingConfig config;
  auto self = Node("n1", "192.0.2.1", "10.1.1.0/24");
  PeerSpec annotated;
  annotated.address = Ip("192.0.2.200");
  annotated.asn = 65100;
  self.external_peers = {annotated};
  EXPECT_EQ(Addresses(PlanExternalPeers(config, self)), (std::vector<std::string>{"192.0.2.200"}));

  PeerSpec global;
  global.address = Ip("192.0.2.254");
  global.asn = 65200;
  PeerSpec other_family;
  other_family.address = Ip("2001:db8::1");
  other_family.asn = 65201;
  config.global_peers = {global, other_family};
  config.peer_multihop_ttl = 5;
  auto peers = PlanExternalPeers(config, self);
  ASSERT_EQ(Addresses(peers), (std::vector<std::string>{"192.0.2.254"}));
  EXPECT_TRUE(peers[0].external);
  EXPECT_EQ(peers[0].local_address, self.ip);
  EXPECT_EQ(peers[0].multihop_ttl, 5);
}

TEST(AdvertisementTest, PodCidrWithNodeNextHop) {
  auto self = Node("n1", "192.0.2.1", "10.1.1.0/24");
  self.pod_cidrs.push_back(Cidr("fd00:1::/64"));  // other family: needs an IPv6 next hop
  auto ads = PlanPodCidrAdvertisements(self);
  ASSERT_EQ(ads.size(), 1u);
  EXPECT_EQ(ads[0].prefix.ToString(), "10.1.1.0/24");
  EXPECT_EQ(ads[0].next_hop.ToString(), "192.0.2.1");
  EXPECT_EQ(ads[0].kind, RouteKind::kPodCidr);
}

std::shared_ptr<const k8s::Service> Service(const std::string& name, const std::string& cluster_ip,
                                            std::vector<std::string> external_ips = {},
                                            std::string lb_ip = "", k8s::Labels annotations = {}) {
  auto s = std::make_shared<k8s::Service>();
  s->meta.name = name;
  s->meta.namespace_ = "default";
  s->meta.annotations = std::move(annotations);
  s->cluster_ips = {cluster_ip};
  s->external_ips = std::move(external_ips);
  if (!lb_ip.empty()) {
    s->type = "LoadBalancer";
    s->load_balancer_ingress = {{lb_ip, ""}};
  }
  return s;
}

std::shared_ptr<const k8s::EndpointSlice> Slice(const std::string& service,
                                                const std::string& node) {
  auto slice = std::make_shared<k8s::EndpointSlice>();
  slice->meta.name = service + "-abc";
  slice->meta.namespace_ = "default";
  slice->service_name = service;
  k8s::Endpoint endpoint;
  endpoint.addresses = {"10.1.9.9"};
  endpoint.node_name = node;
  slice->endpoints = {endpoint};
  return slice;
}

std::vector<std::string> Prefixes(const std::vector<Advertisement>& ads) {
  std::vector<std::string> out;
  for (const auto& a : ads) out.push_back(a.prefix.ToString());
  return out;
}

TEST(AdvertisementTest, ServiceVipsFollowFlags) {
  auto self = Node("n1", "192.0.2.1", "10.1.1.0/24");
  std::vector<std::shared_ptr<const k8s::Service>> services = {
      Service("web", "10.96.0.10", {"198.51.100.10"}, "203.0.113.10"), Service("headless", "None")};
  RoutingConfig config;
  EXPECT_TRUE(PlanServiceAdvertisements(config, self, services, {}).empty());

  config.advertise_cluster_ip = true;
  EXPECT_EQ(Prefixes(PlanServiceAdvertisements(config, self, services, {})),
            (std::vector<std::string>{"10.96.0.10/32"}));
  config.advertise_external_ip = true;
  config.advertise_loadbalancer_ip = true;
  auto ads = PlanServiceAdvertisements(config, self, services, {});
  EXPECT_EQ(Prefixes(ads),
            (std::vector<std::string>{"10.96.0.10/32", "198.51.100.10/32", "203.0.113.10/32"}));
  EXPECT_EQ(ads[1].kind, RouteKind::kExternalIp);
  EXPECT_EQ(ads[2].kind, RouteKind::kLoadBalancerIp);
  EXPECT_EQ(ads[2].next_hop.ToString(), "192.0.2.1");
}

TEST(AdvertisementTest, PerServiceAnnotationsOverrideFlags) {
  auto self = Node("n1", "192.0.2.1", "10.1.1.0/24");
  RoutingConfig config;
  config.advertise_loadbalancer_ip = true;
  std::vector<std::shared_ptr<const k8s::Service>> services = {
      Service("a", "10.96.0.1", {}, "", {{kAnnotationAdvertiseClusterIp, "true"}}),
      Service("b", "10.96.0.2", {}, "203.0.113.2", {{kAnnotationSkipLbIps, ""}}),
      Service("c", "10.96.0.3", {}, "203.0.113.3", {{kAnnotationAdvertiseLbIp, "false"}}),
      Service("d", "10.96.0.4", {}, "203.0.113.4")};
  EXPECT_EQ(Prefixes(PlanServiceAdvertisements(config, self, services, {})),
            (std::vector<std::string>{"10.96.0.1/32", "203.0.113.4/32"}));
}

TEST(AdvertisementTest, LocalTrafficPolicyNeedsLocalEndpoint) {
  RoutingConfig config;
  config.advertise_cluster_ip = true;
  config.advertise_external_ip = true;
  auto etp_local = std::make_shared<k8s::Service>(*Service("etp", "10.96.0.5", {"198.51.100.5"}));
  etp_local->external_traffic_policy = "Local";
  auto svc_local =
      Service("legacy", "10.96.0.6", {"198.51.100.6"}, "", {{kAnnotationServiceLocal, "true"}});
  auto itp_local = std::make_shared<k8s::Service>(*Service("itp", "10.96.0.7"));
  itp_local->internal_traffic_policy = "Local";
  std::vector<std::shared_ptr<const k8s::Service>> services = {etp_local, svc_local, itp_local};
  std::vector<std::shared_ptr<const k8s::EndpointSlice>> slices = {
      Slice("etp", "n2"), Slice("legacy", "n2"), Slice("itp", "n2")};

  // n1 has no endpoint: only the cluster IPs whose internal policy is Cluster.
  auto n1 = Node("n1", "192.0.2.1", "10.1.1.0/24");
  EXPECT_EQ(Prefixes(PlanServiceAdvertisements(config, n1, services, slices)),
            (std::vector<std::string>{"10.96.0.5/32", "10.96.0.6/32"}));
  // n2 hosts every endpoint: everything.
  auto n2 = Node("n2", "192.0.2.2", "10.1.2.0/24");
  EXPECT_EQ(Prefixes(PlanServiceAdvertisements(config, n2, services, slices)),
            (std::vector<std::string>{"10.96.0.5/32", "10.96.0.6/32", "10.96.0.7/32",
                                      "198.51.100.5/32", "198.51.100.6/32"}));
}

TEST(AdvertisementTest, SharedVipAdvertisedOnceAndBadIpsIgnored) {
  RoutingConfig config;
  config.advertise_external_ip = true;
  auto self = Node("n1", "192.0.2.1", "10.1.1.0/24");
  std::vector<std::shared_ptr<const k8s::Service>> services = {
      Service("a", "10.96.0.1", {"198.51.100.1", "bogus", "2001:db8::5"}),
      Service("b", "10.96.0.2", {"198.51.100.1"})};
  EXPECT_EQ(Prefixes(PlanServiceAdvertisements(config, self, services, {})),
            (std::vector<std::string>{"198.51.100.1/32"}));
}

TEST(PolicyTest, ExportPolicy) {
  RoutingConfig config;
  auto self = Node("n1", "192.0.2.1", "10.1.1.0/24");
  self.communities = {100};
  self.prepend = PathPrepend{64512, 2};
  PeerSpec ibgp;
  PeerSpec ebgp;
  ebgp.external = true;

  EXPECT_TRUE(DecideExport(config, self, ibgp, RouteKind::kPodCidr).accept);
  EXPECT_FALSE(DecideExport(config, self, ibgp, RouteKind::kClusterIp).accept);
  EXPECT_FALSE(DecideExport(config, self, ibgp, RouteKind::kLoadBalancerIp).accept);
  // iBGP routes carry no external decorations.
  EXPECT_TRUE(DecideExport(config, self, ibgp, RouteKind::kPodCidr).communities.empty());

  auto vip = DecideExport(config, self, ebgp, RouteKind::kExternalIp);
  EXPECT_TRUE(vip.accept);
  EXPECT_EQ(vip.communities, std::vector<uint32_t>{100});
  EXPECT_EQ(vip.prepend, self.prepend);
  EXPECT_FALSE(vip.next_hop_self);
  config.override_nexthop = true;
  EXPECT_TRUE(DecideExport(config, self, ebgp, RouteKind::kPodCidr).next_hop_self);
  config.advertise_pod_cidr = false;
  EXPECT_FALSE(DecideExport(config, self, ebgp, RouteKind::kPodCidr).accept);
}

TEST(PolicyTest, ImportPolicy) {
  ImportFilter filter;
  filter.service_vips = AllServiceVips({Service("a", "10.96.0.1", {"198.51.100.1"})});
  filter.reject = {Cidr("172.16.0.0/12")};
  EXPECT_TRUE(AcceptImport(filter, Cidr("10.1.2.0/24")));
  EXPECT_FALSE(AcceptImport(filter, Cidr("0.0.0.0/0")));
  EXPECT_FALSE(AcceptImport(filter, Cidr("::/0")));
  EXPECT_FALSE(AcceptImport(filter, Cidr("10.96.0.1/32")));
  EXPECT_FALSE(AcceptImport(filter, Cidr("198.51.100.1/32")));
  EXPECT_TRUE(AcceptImport(filter, Cidr("198.51.100.0/24")));
  EXPECT_FALSE(AcceptImport(filter, Cidr("172.20.0.0/16")));
  EXPECT_TRUE(AcceptImport(filter, Cidr("172.0.0.0/8")));
}

// Issue 16 item 9: the import filter, one row per rule and peer kind.
TEST(PolicyTest, ImportFilterTable) {
  ImportFilter filter;
  filter.service_vips = AllServiceVips({Service("a", "10.96.0.1", {"198.51.100.1"})});
  filter.reject = {Cidr("172.16.0.0/12")};
  filter.service_ranges = {Cidr("10.96.0.0/12"), Cidr("203.0.113.0/24")};
  filter.node_addresses = {Ip("192.0.2.1"), Ip("192.0.2.2"), Ip("2001:db8::2")};
  filter.node_subnets = {Cidr("192.0.2.0/24"), Cidr("10.244.1.0/24")};
  filter.pod_cidr_owners = {{Cidr("10.244.2.0/24"), {Ip("192.0.2.2"), Ip("2001:db8::2")}},
                            {Cidr("fd00:244:2::/64"), {Ip("192.0.2.2"), Ip("2001:db8::2")}}};
  struct Row {
    const char* prefix;
    const char* next_hop;
    bool node_peer;
    ImportVerdict want;
  };
  using V = ImportVerdict;
  const Row rows[] = {
      // external peers: anything routable that is not ours
      {"198.18.0.0/15", "192.0.2.100", false, V::kAccept},
      {"10.244.2.0/24", "192.0.2.2", false, V::kAccept},  // a ToR passing on a node's pod CIDR
      {"2001:db8:100::/48", "2001:db8::100", false, V::kAccept},
      {"0.0.0.0/0", "192.0.2.100", false, V::kDefaultRoute},
      {"10.96.0.1/32", "192.0.2.100", false, V::kServiceVip},
      {"172.20.0.0/16", "192.0.2.100", false, V::kCustomReject},
      {"0.0.0.0/8", "192.0.2.100", false, V::kUnspecified},
      {"0.0.0.0/1", "192.0.2.100", false, V::kUnspecified},  // covers 0/8 and 127/8
      {"127.0.0.0/8", "192.0.2.100", false, V::kLoopback},
      {"127.0.0.1/32", "192.0.2.100", false, V::kLoopback},
      {"169.254.169.254/32", "192.0.2.100", false, V::kLinkLocal},
      {"169.0.0.0/8", "192.0.2.100", false, V::kLinkLocal},
      {"224.0.0.0/4", "192.0.2.100", false, V::kMulticast},
      {"239.1.1.0/24", "192.0.2.100", false, V::kMulticast},
      {"::1/128", "2001:db8::100", false, V::kLoopback},
      {"fe80::/64", "2001:db8::100", false, V::kLinkLocal},
      {"ff02::/16", "2001:db8::100", false, V::kMulticast},
      {"10.96.0.0/12", "192.0.2.100", false, V::kServiceRange},
      {"10.100.0.0/16", "192.0.2.100", false, V::kServiceRange},   // inside the range
      {"10.0.0.0/8", "192.0.2.100", false, V::kServiceRange},      // covers it
      {"203.0.113.7/32", "192.0.2.100", false, V::kServiceRange},  // external IP range
      {"192.0.2.2/32", "192.0.2.100", false, V::kNodeAddress},
      {"192.0.0.0/16", "192.0.2.100", false, V::kNodeAddress},
      {"2001:db8::/32", "2001:db8::100", false, V::kNodeAddress},
      {"10.244.0.0/16", "192.0.2.100", false, V::kNodeSubnet},  // covers our pod bridge
      {"10.244.1.0/24", "192.0.2.100", false, V::kNodeSubnet},
      {"198.18.0.0/15", "127.0.0.1", false, V::kUnusableNextHop},
      {"198.18.0.0/15", "169.254.1.1", false, V::kUnusableNextHop},
      {"198.18.0.0/15", "0.0.0.0", false, V::kUnusableNextHop},
      // iBGP node peers: a node's pod CIDR with that node as next hop, nothing else
      {"10.244.2.0/24", "192.0.2.2", true, V::kAccept},
      {"fd00:244:2::/64", "2001:db8::2", true, V::kAccept},
      {"10.244.2.0/24", "192.0.2.66", true, V::kNotANodesPodCidr},  // someone else's next hop
      {"10.244.2.0/25", "192.0.2.2", true, V::kNotANodesPodCidr},   // more specific
      {"198.18.0.0/15", "192.0.2.2", true, V::kNotANodesPodCidr},
      {"169.254.169.254/32", "192.0.2.2", true, V::kLinkLocal},
  };
  for (const auto& row : rows) {
    SCOPED_TRACE(std::string(row.prefix) + " via " + row.next_hop +
                 (row.node_peer ? " from a node" : " from an external peer"));
    EXPECT_EQ(
        ImportVerdictName(DecideImport(filter, row.node_peer, Cidr(row.prefix), Ip(row.next_hop))),
        std::string(ImportVerdictName(row.want)));
  }
}

}  // namespace
}  // namespace kr::routing::bgp_plan_test
