// IPv6 enforcement with real traffic: the x/y/z world of netpol_netns_test, dual-stack (every
// pod has an IPv4 and an IPv6 address, both in status.podIPs), one controller per node running
// with both families (iptables and ip6tables, `inet6:` sets). TCP and UDP probes over IPv6
// decide every verdict, and IPv4 probes prove that an ipBlock of one family never opens the
// other. Both iptables backends.
#include <gtest/gtest.h>

#include "kube_router/netpol/network_policy_controller.h"
#include "lib/netns.h"
#include "lib/podnet.h"
#include "node_firewalls.h"

namespace kr::netpol::netpol_ipv6_netns_test {
namespace {

using kr::testing::PodNetwork;
using kr::testing::Proto;
using kr::testing::ScopedNetns;
using namespace kr::netpol::testing;  // NOLINT: builders

using testing::Reachability;
using testing::XyzPodKeys;

enum class Family { kV4, kV6 };

std::string Ns(const std::string& pod) { return testing::NsOf(pod); }

k8s::NetworkPolicyRule Rule(std::vector<k8s::NetworkPolicyPeer> peers,
                            std::vector<k8s::NetworkPolicyPort> ports = {}) {
  return {std::move(peers), std::move(ports)};
}

const Reachability kAll = [](const std::string&, const std::string&) { return true; };

class NetpolIpv6 : public testing::XyzFirewallTest<const char*> {
 protected:
  void SetUp() override {
    ASSERT_TRUE(kr::testing::IsRoot()) << "netns tests need root";
    world_ = std::make_unique<PodNetwork>("n6", /*dual_stack=*/true);
    testing::BuildXyz(*world_);
    for (const auto& key : XyzPodKeys()) ASSERT_FALSE(world_->pod(key).ip6.empty()) << key;
    // Start from "off" to prove the controller turns bridged IPv6 filtering on.
    for (auto& node : world_->nodes()) {
      ASSERT_TRUE(node.ns
                      ->Sh("sysctl -qw net.bridge.bridge-nf-call-iptables=0 "
                           "net.bridge.bridge-nf-call-ip6tables=0")
                      .ok());
    }
    StartFirewalls(*world_, nullptr, [](NetpolConfig& config) {
      config.iptables_mode = GetParam();
      config.enable_ipv4 = true;
      config.enable_ipv6 = true;
    });
    for (auto& node : world_->nodes()) {
      EXPECT_EQ(*node.ns->Sh("cat /proc/sys/net/bridge/bridge-nf-call-ip6tables"), "1\n");
    }
  }

  const std::string& Address(const std::string& pod, Family family) {
    const auto& p = net_->pod(pod);
    return family == Family::kV6 ? p.ip6 : p.ip;
  }

  bool Probe(const std::string& from, const std::string& to, Family family, Proto proto,
             int port = 80) {
    return net_->Probe(from, Address(to, family), port, proto);
  }

  // Probes every ordered pair of distinct pods over `family`.
  void ExpectMatrix(Family family, Proto proto, const Reachability& allowed) {
    std::string mismatches;
    for (const auto& from : XyzPodKeys()) {
      for (const auto& to : XyzPodKeys()) {
        if (from == to) continue;
        bool expected = allowed(from, to);
        bool got = Probe(from, to, family, proto);
        if (got == expected) continue;
        mismatches += "  " + from + " -> " + to + " [" + Address(to, family) + "]:80" +
                      (proto == Proto::kTcp ? "/tcp" : "/udp") + " expected " +
                      (expected ? "allowed" : "denied") + ", got " + (got ? "allowed" : "denied") +
                      "\n";
      }
    }
    EXPECT_TRUE(mismatches.empty()) << (family == Family::kV6 ? "IPv6" : "IPv4") << " mismatches:\n"
                                    << mismatches;
  }

  std::unique_ptr<PodNetwork> world_;
};

TEST_P(NetpolIpv6, NoPolicyAllowsEverythingOverBothFamilies) {
  ExpectMatrix(Family::kV6, Proto::kTcp, kAll);
  ExpectMatrix(Family::kV6, Proto::kUdp, kAll);
  ExpectMatrix(Family::kV4, Proto::kTcp, kAll);
  // The IPv6 half is really in ip6tables, with IPv6 sets.
  std::string save = std::string("ip6tables-") + GetParam() + "-save -t filter";
  auto rules = net_->nodes()[0].ns->Sh(save);
  ASSERT_TRUE(rules.ok());
  EXPECT_NE(rules->find("-A INPUT -m comment --comment \"kube-router netpol"), std::string::npos)
      << *rules;
  EXPECT_NE(rules->find("-d " + net_->pod("x/a").ip6 + "/128"), std::string::npos) << *rules;
}

TEST_P(NetpolIpv6, DefaultDenyIngressOverIpv6) {
  Apply(Policy("x", "deny-ingress", {}, true, false));
  auto not_to_x = [](const std::string&, const std::string& to) { return Ns(to) != "x"; };
  ExpectMatrix(Family::kV6, Proto::kTcp, not_to_x);
  ExpectMatrix(Family::kV6, Proto::kUdp, not_to_x);
  ExpectMatrix(Family::kV4, Proto::kTcp, not_to_x);

  // Default deny egress as well: x can reach nobody, nobody reaches x.
  Apply(Policy("x", "deny-ingress", {}, true, true));
  ExpectMatrix(Family::kV6, Proto::kTcp,
               [](auto& from, auto& to) { return Ns(from) != "x" && Ns(to) != "x"; });

  Remove("x/deny-ingress");
  ExpectMatrix(Family::kV6, Proto::kTcp, kAll);
  ExpectMatrix(Family::kV6, Proto::kUdp, kAll);
}

TEST_P(NetpolIpv6, PodAndNamespaceSelectorsOverIpv6) {
  // x/a accepts only from pod=b in its own namespace (on TCP 80 only).
  Apply(Policy("x", "from-b", Labels({{"pod", "a"}}), true, false,
               {Rule({PodPeer(Labels({{"pod", "b"}}))}, {Port(80)})}));
  auto only_b = [](const std::string& from, const std::string& to) {
    return to != "x/a" || from == "x/b";
  };
  ExpectMatrix(Family::kV6, Proto::kTcp, only_b);
  EXPECT_FALSE(Probe("x/b", "x/a", Family::kV6, Proto::kUdp));
  EXPECT_FALSE(Probe("x/b", "x/a", Family::kV6, Proto::kTcp, 81));
  ExpectMatrix(Family::kV4, Proto::kTcp, only_b);

  // Namespace z (on the other node) instead, UDP and TCP.
  Apply(Policy("x", "from-b", Labels({{"pod", "a"}}), true, false,
               {Rule({NamespacePeer(Labels({{"ns", "z"}}))})}));
  auto from_z = [](const std::string& from, const std::string& to) {
    return to != "x/a" || Ns(from) == "z";
  };
  ExpectMatrix(Family::kV6, Proto::kTcp, from_z);
  ExpectMatrix(Family::kV6, Proto::kUdp, from_z);
}

TEST_P(NetpolIpv6, Ipv6BlockWithExcept) {
  // Ingress to x/a from node 0's IPv6 pod CIDR except x/b's /120.
  const std::string cidr = net_->nodes()[0].pod_cidr6;
  ASSERT_EQ(cidr, "fd00:10::/64");
  const std::string x_b = net_->pod("x/b").ip6;
  ASSERT_EQ(x_b, "fd00:10::300");
  Apply(Policy("x", "block6", Labels({{"pod", "a"}}), true, false,
               {Rule({BlockPeer(cidr, {"fd00:10::300/120"})})}));
  auto node0_but_b = [](const std::string& from, const std::string& to) {
    return to != "x/a" || (Ns(from) != "z" && from != "x/b");
  };
  ExpectMatrix(Family::kV6, Proto::kTcp, node0_but_b);
  ExpectMatrix(Family::kV6, Proto::kUdp, node0_but_b);
  // The IPv6 block does not open IPv4: over IPv4, x/a accepts nobody.
  auto nobody_to_xa = [](const std::string&, const std::string& to) { return to != "x/a"; };
  ExpectMatrix(Family::kV4, Proto::kTcp, nobody_to_xa);
  ExpectMatrix(Family::kV4, Proto::kUdp, nobody_to_xa);

  // Both pod CIDRs (a /48 covering node 0 and node 1), except z/c's /120 on the other node.
  Apply(Policy("x", "block6", Labels({{"pod", "a"}}), true, false,
               {Rule({BlockPeer("fd00:10::/48", {net_->pod("z/c").ip6 + "/120"})})}));
  ExpectMatrix(Family::kV6, Proto::kTcp,
               [](auto& from, auto& to) { return to != "x/a" || from != "z/c"; });
  ExpectMatrix(Family::kV4, Proto::kTcp, nobody_to_xa);
}

TEST_P(NetpolIpv6, Ipv4BlockDoesNotOpenIpv6) {
  Apply(Policy("x", "block4", Labels({{"pod", "a"}}), true, false,
               {Rule({BlockPeer("10.71.0.0/16")})}));
  auto nobody_to_xa = [](const std::string&, const std::string& to) { return to != "x/a"; };
  ExpectMatrix(Family::kV4, Proto::kTcp, kAll);
  ExpectMatrix(Family::kV6, Proto::kTcp, nobody_to_xa);
  ExpectMatrix(Family::kV6, Proto::kUdp, nobody_to_xa);

  // Both blocks in one rule: each family opens through its own block only.
  Apply(Policy(
      "x", "block4", Labels({{"pod", "a"}}), true, false,
      {Rule({BlockPeer(net_->nodes()[1].pod_cidr), BlockPeer(net_->nodes()[0].pod_cidr6)})}));
  ExpectMatrix(Family::kV4, Proto::kTcp,
               [](auto& from, auto& to) { return to != "x/a" || Ns(from) == "z"; });
  ExpectMatrix(Family::kV6, Proto::kTcp,
               [](auto& from, auto& to) { return to != "x/a" || Ns(from) != "z"; });
}

TEST_P(NetpolIpv6, EgressToIpv6Cidr) {
  // x/a may only send to node 1's IPv6 pod CIDR (namespace z), on UDP and TCP 80.
  Apply(Policy("x", "egress6", Labels({{"pod", "a"}}), false, true, {},
               {Rule({BlockPeer(net_->nodes()[1].pod_cidr6)})}));
  auto only_to_z = [](const std::string& from, const std::string& to) {
    return from != "x/a" || Ns(to) == "z";
  };
  ExpectMatrix(Family::kV6, Proto::kTcp, only_to_z);
  ExpectMatrix(Family::kV6, Proto::kUdp, only_to_z);
  ExpectMatrix(Family::kV4, Proto::kTcp, [](auto& from, auto&) { return from != "x/a"; });
}

INSTANTIATE_TEST_SUITE_P(Backends, NetpolIpv6, ::testing::Values("nft", "legacy"),
                         [](const auto& info) { return std::string(info.param); });

}  // namespace
}  // namespace kr::netpol::netpol_ipv6_netns_test
