// IPIP / ip6ip6 tunnels (plain and FoU/GUE), FoU ports and dummy links (modules the host kernel
// lacks) against the guest kernel, plus the overlay routes through them.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "kube_router/netlink/libnl.h"
#include "lib/netns.h"
#include "netns/netlink/in_netns.h"
#include "vm/netlink/tcp.h"

namespace kr::netlink::tunnels_vm_test {
namespace {

using kr::testing::InNetns;
using kr::testing::Netns;

IpAddress A(const char* text) { return *IpAddress::Parse(text); }

class TunnelsVmTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(kr::testing::IsRoot());
    auto links = InNetns(ns_.name(), [] { return MakeNetlinkLinks(); });
    auto routes = InNetns(ns_.name(), [] { return MakeNetlinkRouteTable(); });
    ASSERT_TRUE(links.ok()) << links.error();
    ASSERT_TRUE(routes.ok()) << routes.error();
    links_ = std::move(*links);
    routes_ = std::move(*routes);
  }
  std::string Ip(const std::string& args) {
    auto out = ns_.Sh("ip " + args);
    EXPECT_TRUE(out.ok()) << out.error();
    return out.ok() ? *out : "";
  }
  static bool Has(const std::string& text, const std::string& what) {
    return text.find(what) != std::string::npos;
  }

  Netns ns_{"krtn"};
  std::unique_ptr<Links> links_;
  std::unique_ptr<RouteTable> routes_;
};

TEST_F(TunnelsVmTest, OverlayTunnelToARemoteNodeAndARouteThroughIt) {
  const IpAddress node = A("192.0.2.1"), remote = A("198.51.100.2");
  const std::string name = OverlayTunnelName(remote);
  ASSERT_TRUE(links_->CreateTunnel({name, node, remote, 1400}).ok());
  EXPECT_FALSE(links_->CreateTunnel({name, node, remote}).ok()) << "exists";
  ASSERT_TRUE(links_->SetUp(name, true).ok());

  const std::string shown = Ip("-d link show " + name);
  EXPECT_TRUE(Has(shown, "mtu 1400")) << shown;
  EXPECT_TRUE(Has(shown, "remote 198.51.100.2 local 192.0.2.1")) << shown;
  auto link = links_->Get(name);
  ASSERT_TRUE(link.ok() && link->has_value());
  EXPECT_EQ((*link)->kind, "ipip");
  EXPECT_EQ((*link)->tunnel_local, node);
  EXPECT_EQ((*link)->tunnel_remote, remote);
  EXPECT_TRUE((*link)->up);

  // kube-router's overlay route: pod CIDR of the remote node via the tunnel, node IP as source.
  Ip("link add kr-u0 type dummy && ip link set kr-u0 up && ip addr add 192.0.2.1/24 dev kr-u0");
  Route pods;
  pods.destination = *IpPrefix::Parse("10.244.7.0/24");
  pods.device = name;
  pods.source = node;
  Status added = routes_->Add(pods);
  ASSERT_TRUE(added.ok()) << added.message();
  EXPECT_TRUE(
      Has(Ip("route show proto 17"), "10.244.7.0/24 dev " + name + " scope link src 192.0.2.1") ||
      Has(Ip("route show proto 17"), "10.244.7.0/24 dev " + name + " src 192.0.2.1"))
      << Ip("route show proto 17");

  ASSERT_TRUE(links_->Delete(name).ok());
  EXPECT_FALSE(links_->Get(name)->has_value());
  EXPECT_FALSE(Has(Ip("route show proto 17"), "10.244.7.0/24")) << "the route goes with the tunnel";
}

TEST_F(TunnelsVmTest, Ip6Ip6Tunnel) {
  const std::string name = OverlayTunnelName(A("fd00:198::2"));
  ASSERT_TRUE(links_->CreateTunnel({name, A("fd00:192::1"), A("fd00:198::2")}).ok());
  auto link = links_->Get(name);
  ASSERT_TRUE(link.ok() && link->has_value());
  EXPECT_EQ((*link)->kind, "ip6tnl");
  EXPECT_EQ((*link)->tunnel_remote, A("fd00:198::2"));
  const std::string shown = Ip("-d link show " + name);
  EXPECT_TRUE(Has(shown, "ip6ip6 remote fd00:198::2 local fd00:192::1")) << shown;
}

// --overlay-encap=fou: GUE receive ports in both families (the adapter loads fou and fou6) and
// tunnels whose encapsulation reads back as created.
TEST_F(TunnelsVmTest, FouPortsAndGueTunnelsInBothFamilies) {
  auto made = InNetns(ns_.name(), [] { return MakeNetlinkFouPorts(); });
  ASSERT_TRUE(made.ok()) << made.error();
  auto& fou = *made;
  const FouPort gue4{IpAddress::Family::kV4, 5555, FouKind::kGue, 0};
  const FouPort gue6{IpAddress::Family::kV6, 5555, FouKind::kGue, 0};
  const FouPort direct{IpAddress::Family::kV4, 7777, FouKind::kDirect, 4};
  for (const auto& port : {gue4, gue6, direct}) {
    Status added = fou->Add(port);
    ASSERT_TRUE(added.ok()) << added.message();
  }
  EXPECT_FALSE(fou->Add(gue4).ok()) << "exists";
  auto ports = fou->List();
  ASSERT_TRUE(ports.ok()) << ports.error();
  std::sort(ports->begin(), ports->end());
  std::vector<FouPort> want{gue4, direct, gue6};
  std::sort(want.begin(), want.end());
  EXPECT_EQ(*ports, want);
  EXPECT_TRUE(Has(Ip("fou show"), "port 5555 gue")) << Ip("fou show");
  EXPECT_TRUE(Has(Ip("-6 fou show"), "port 5555 gue")) << Ip("-6 fou show");

  const TunnelEncap encap{TunnelEncapType::kGue, 0, 5555};
  const std::string v4 = OverlayTunnelName(A("198.51.100.2"));
  const std::string v6 = OverlayTunnelName(A("fd00:198::2"));
  Status created = links_->CreateTunnel({v4, A("192.0.2.1"), A("198.51.100.2"), 0, 0, encap});
  ASSERT_TRUE(created.ok()) << created.message();
  created = links_->CreateTunnel({v6, A("fd00:192::1"), A("fd00:198::2"), 0, 0, encap});
  ASSERT_TRUE(created.ok()) << created.message();
  for (const auto& name : {v4, v6}) {
    auto link = links_->Get(name);
    ASSERT_TRUE(link.ok() && link->has_value());
    EXPECT_EQ((*link)->tunnel_encap, encap) << name;
    const std::string shown = Ip("-d link show " + name);
    EXPECT_TRUE(Has(shown, "encap gue encap-sport auto encap-dport 5555")) << shown;
  }
  EXPECT_TRUE(Has(Ip("-d link show " + v6), "encap-csum6")) << "RFC 8200: IPv6 UDP checksums";
  auto listed = links_->List();
  ASSERT_TRUE(listed.ok());
  for (const auto& link : *listed) {
    if (link.name == v4) {
      EXPECT_EQ(link.tunnel_encap, encap);
    }
    if (link.name == "tunl0") {
      EXPECT_EQ(link.tunnel_encap, TunnelEncap{});
    }
  }

  for (const auto& port : {gue4, gue6, direct}) EXPECT_TRUE(fou->Delete(port).ok());
  EXPECT_TRUE(fou->List()->empty());
  EXPECT_EQ(Ip("fou show"), "");
}

TEST_F(TunnelsVmTest, DummyLinkHoldsServiceVipsWithLocalRoutes) {
  ASSERT_TRUE(links_->CreateDummy(kKubeDummyName).ok());
  ASSERT_TRUE(links_->SetUp(kKubeDummyName, true).ok());
  auto link = links_->Get(kKubeDummyName);
  ASSERT_TRUE(link.ok() && link->has_value());
  EXPECT_EQ((*link)->kind, "dummy");

  Address vip{kKubeDummyName, A("10.96.0.10"), 32, Scope::kLink};
  ASSERT_TRUE(links_->AddAddress(vip).ok());
  Route local;
  local.destination = *IpPrefix::Parse("10.96.0.10/32");
  local.device = kKubeDummyName;
  local.table = kLocalTable;
  local.type = RouteType::kLocal;
  local.scope = Scope::kHost;
  local.protocol = kProtocolKernel;
  Status replaced = routes_->Replace(local);
  ASSERT_TRUE(replaced.ok()) << replaced.message();
  EXPECT_TRUE(Has(Ip("route show table local"),
                  "local 10.96.0.10 dev kube-dummy-if proto kernel scope host"))
      << Ip("route show table local");
  ASSERT_TRUE(links_->Delete(kKubeDummyName).ok());
}

}  // namespace
}  // namespace kr::netlink::tunnels_vm_test

namespace kr::netlink::tunnels_vm_test {
namespace {

// Two nodes in different subnets behind a router that knows nothing about pod CIDRs: pod
// traffic can only cross through the IPIP tunnels our adapters create, as kube-router's overlay
// does (tunnel per remote node, pod CIDR routed into it with protocol 17).
TEST(OverlayVmTest, PodsOnNodesInDifferentSubnetsTalkThroughIpipTunnels) {
  Netns router("krrouter"), node_a("krnodea"), node_b("krnodeb");
  const std::string ra = "kr-ra", rb = "kr-rb";
  ASSERT_TRUE(router
                  .Sh("ip link add " + ra + " type veth peer name eth0 netns " + node_a.name() +
                      " && ip link add " + rb + " type veth peer name eth0 netns " + node_b.name() +
                      " && ip addr add 192.0.2.1/24 dev " + ra +
                      " && ip addr add 198.51.100.1/24 dev " + rb + " && ip link set " + ra +
                      " up && ip link set " + rb + " up && sysctl -qw net.ipv4.ip_forward=1")
                  .ok());
  struct Node {
    Netns* ns;
    const char* ip;
    const char* gateway;
    const char* pod_gateway;
    const char* pod_cidr;
  } nodes[] = {{&node_a, "192.0.2.2", "192.0.2.1", "10.244.1.1", "10.244.1.0/24"},
               {&node_b, "198.51.100.2", "198.51.100.1", "10.244.2.1", "10.244.2.0/24"}};
  for (const Node& n : nodes) {
    ASSERT_TRUE(n.ns->Sh(std::string("ip addr add ") + n.ip +
                         "/24 dev eth0 && ip link set eth0 up" + " && ip route add default via " +
                         n.gateway)
                    .ok());
  }
  for (int i = 0; i < 2; ++i) {
    const Node& self = nodes[i];
    const Node& peer = nodes[1 - i];
    auto links = InNetns(self.ns->name(), [] { return MakeNetlinkLinks(); });
    auto routes = InNetns(self.ns->name(), [] { return MakeNetlinkRouteTable(); });
    ASSERT_TRUE(links.ok() && routes.ok());
    // The "pods" of this node: a bridge holding the pod gateway address.
    ASSERT_TRUE((*links)->CreateBridge(kKubeBridgeName, 0).ok());
    ASSERT_TRUE((*links)->AddAddress({kKubeBridgeName, A(self.pod_gateway), 24}).ok());
    ASSERT_TRUE((*links)->SetUp(kKubeBridgeName, true).ok());
    const std::string tunnel = OverlayTunnelName(A(peer.ip));
    ASSERT_TRUE((*links)->CreateTunnel({tunnel, A(self.ip), A(peer.ip)}).ok());
    ASSERT_TRUE((*links)->SetUp(tunnel, true).ok());
    Route to_peer_pods;
    to_peer_pods.destination = *IpPrefix::Parse(peer.pod_cidr);
    to_peer_pods.device = tunnel;
    to_peer_pods.source = A(self.ip);
    Status added = (*routes)->Add(to_peer_pods);
    ASSERT_TRUE(added.ok()) << added.message();
  }

  uint16_t port = 0;
  int listener = InNetns(node_b.name(), [&] { return Listen(A("10.244.2.1"), &port); });
  ASSERT_GE(listener, 0);
  const bool connected =
      InNetns(node_a.name(), [&] { return Connects(A("10.244.1.1"), A("10.244.2.1"), port); });
  close(listener);
  EXPECT_TRUE(connected) << "pod 10.244.1.1 on node A reaches pod 10.244.2.1 on node B";
  auto sent = node_a.Sh("cat /sys/class/net/" + OverlayTunnelName(A("198.51.100.2")) +
                        "/statistics/tx_packets");
  ASSERT_TRUE(sent.ok()) << sent.error();
  EXPECT_GT(std::stoi(*sent), 0) << "the traffic left node A through its tunnel";
  auto router_routes = router.Sh("ip route show");
  ASSERT_TRUE(router_routes.ok());
  EXPECT_EQ(router_routes->find("10.244."), std::string::npos) << "the router knows no pod routes";
}

}  // namespace
}  // namespace kr::netlink::tunnels_vm_test
