// The upstream NetworkPolicy e2e scenarios (namespaces x/y/z, pods a/b/c, ports 80/81) with
// real TCP and UDP connections between pod namespaces. x and y run on node 0, z on node 1, so
// cross-node traffic is covered; one controller per node runs in that node's namespace.
#include <gtest/gtest.h>

#include "kube_router/netfilter/iptables.h"
#include "kube_router/netpol/naming.h"
#include "kube_router/netpol/network_policy_controller.h"
#include "lib/netns.h"
#include "lib/podnet.h"
#include "node_firewalls.h"

namespace kr::netpol::netpol_netns_test {
namespace {

using kr::testing::PodNetwork;
using kr::testing::Proto;
using kr::testing::ScopedNetns;
using namespace kr::netpol::testing;  // NOLINT: builders

using testing::BuildXyz;
using testing::MatrixMismatches;
using testing::XyzPodKeys;

std::string Ns(const std::string& pod) { return testing::NsOf(pod); }

k8s::NetworkPolicyRule Rule(std::vector<k8s::NetworkPolicyPeer> peers,
                            std::vector<k8s::NetworkPolicyPort> ports = {}) {
  return {std::move(peers), std::move(ports)};
}

class NetpolE2E : public testing::XyzFirewallTest<const char*> {
 protected:
  void SetUp() override {
    ASSERT_TRUE(kr::testing::IsRoot()) << "netns tests need root";
    world_ = std::make_unique<PodNetwork>("np");
    BuildXyz(*world_);
    // Start from "off" to prove the controller turns bridged filtering on.
    for (auto& node : world_->nodes()) {
      ASSERT_TRUE(node.ns->Sh("sysctl -qw net.bridge.bridge-nf-call-iptables=0").ok());
    }
    StartFirewalls(
        *world_,
        [](const std::string&) {
          return std::vector<k8s::ContainerPort>{{"serve-80-tcp", 80, "TCP"},
                                                 {"serve-81-tcp", 81, "TCP"},
                                                 {"serve-80-udp", 80, "UDP"},
                                                 {"serve-81-udp", 81, "UDP"}};
        },
        [](NetpolConfig& config) { config.iptables_mode = GetParam(); });
    for (auto& node : world_->nodes()) {
      EXPECT_EQ(*node.ns->Sh("cat /proc/sys/net/bridge/bridge-nf-call-iptables"), "1\n");
    }
  }

  std::unique_ptr<PodNetwork> world_;
};

const auto kAll = [](const std::string&, const std::string&) { return true; };

TEST_P(NetpolE2E, NoPolicyAllowsEverything) {
  ExpectMatrix(80, Proto::kTcp, kAll);
  ExpectMatrix(81, Proto::kUdp, kAll);
}

TEST_P(NetpolE2E, DefaultDenyIngressEgressAndAll) {
  Apply(Policy("x", "deny-ingress", {}, true, false));
  ExpectMatrix(80, Proto::kTcp, [](auto&, auto& to) { return Ns(to) != "x"; });
  ExpectMatrix(80, Proto::kUdp, [](auto&, auto& to) { return Ns(to) != "x"; });
  cluster_->network_policies.Remove("x/deny-ingress");
  Apply(Policy("x", "deny-egress", {}, false, true));
  ExpectMatrix(80, Proto::kTcp, [](auto& from, auto&) { return Ns(from) != "x"; });
  cluster_->network_policies.Remove("x/deny-egress");
  Apply(Policy("x", "deny-all", {}, true, true));
  ExpectMatrix(81, Proto::kTcp,
               [](auto& from, auto& to) { return Ns(from) != "x" && Ns(to) != "x"; });
  // Deleting the policy opens everything again.
  cluster_->network_policies.Remove("x/deny-all");
  Sync(SyncReason::kRequested);
  ExpectMatrix(81, Proto::kTcp, kAll);
}

TEST_P(NetpolE2E, PodAndNamespaceSelectorsAndVersusOr) {
  // x/a accepts only from pod=b in its own namespace.
  Apply(Policy("x", "from-b", Labels({{"pod", "a"}}), true, false,
               {Rule({PodPeer(Labels({{"pod", "b"}}))})}));
  ExpectMatrix(80, Proto::kTcp, [](auto& from, auto& to) { return to != "x/a" || from == "x/b"; });

  // One peer with both selectors: pods b in namespaces matching ns In (y, z).
  k8s::NetworkPolicyPeer and_peer = NamespacePeer(Expr("ns", "In", {"y", "z"}));
  and_peer.pod_selector = Labels({{"pod", "b"}});
  Apply(Policy("x", "from-b", Labels({{"pod", "a"}}), true, false, {Rule({and_peer})}));
  ExpectMatrix(80, Proto::kTcp,
               [](auto& from, auto& to) { return to != "x/a" || from == "y/b" || from == "z/b"; });

  // Two peers: namespace y OR pod c of x.
  Apply(Policy("x", "from-b", Labels({{"pod", "a"}}), true, false,
               {Rule({NamespacePeer(Labels({{"ns", "y"}})), PodPeer(Labels({{"pod", "c"}}))})}));
  ExpectMatrix(80, Proto::kTcp, [](auto& from, auto& to) {
    return to != "x/a" || Ns(from) == "y" || from == "x/c";
  });
}

TEST_P(NetpolE2E, NumericNamedAndRangePortsTcpAndUdp) {
  Apply(Policy("x", "port-81", Labels({{"pod", "a"}}), true, false, {Rule({}, {Port(81)})}));
  ExpectProbe("y/b", "x/a", 81, Proto::kTcp, true);
  ExpectProbe("z/b", "x/a", 81, Proto::kTcp, true);
  ExpectProbe("y/b", "x/a", 80, Proto::kTcp, false);
  ExpectProbe("y/b", "x/a", 81, Proto::kUdp, false);
  ExpectProbe("y/b", "x/b", 80, Proto::kTcp, true);

  Apply(Policy("x", "port-81", Labels({{"pod", "a"}}), true, false,
               {Rule({}, {NamedPort("serve-80-udp", "UDP")})}));
  ExpectProbe("z/c", "x/a", 80, Proto::kUdp, true);
  ExpectProbe("z/c", "x/a", 81, Proto::kUdp, false);
  ExpectProbe("z/c", "x/a", 80, Proto::kTcp, false);

  k8s::NetworkPolicyPort range = Port(80);
  range.end_port = 81;
  Apply(Policy("x", "port-81", Labels({{"pod", "a"}}), true, false, {Rule({}, {range})}));
  ExpectProbe("x/b", "x/a", 80, Proto::kTcp, true);
  ExpectProbe("x/b", "x/a", 81, Proto::kTcp, true);
  ExpectProbe("x/b", "x/a", 80, Proto::kUdp, false);
}

TEST_P(NetpolE2E, IpBlockWithExceptAndEgressToCidr) {
  // Ingress to x/a from node 1's pod CIDR except z/b.
  std::string z_b = net_->pod("z/b").ip + "/32";
  Apply(Policy("x", "block", Labels({{"pod", "a"}}), true, false,
               {Rule({BlockPeer(net_->nodes()[1].pod_cidr, {z_b})})}));
  ExpectMatrix(80, Proto::kTcp, [](auto& from, auto& to) {
    return to != "x/a" || (Ns(from) == "z" && from != "z/b");
  });
  cluster_->network_policies.Remove("x/block");
  // Egress from x/a only to node 1's pod CIDR.
  Apply(Policy("x", "egress-cidr", Labels({{"pod", "a"}}), false, true, {},
               {Rule({BlockPeer(net_->nodes()[1].pod_cidr)})}));
  ExpectMatrix(80, Proto::kTcp,
               [](auto& from, auto& to) { return from != "x/a" || Ns(to) == "z"; });
}

TEST_P(NetpolE2E, LabelChangesOfPodsAndNamespacesChangeVerdicts) {
  Apply(Policy("x", "from-allowed", {}, true, false,
               {Rule({NamespacePeer(Labels({{"allowed", "yes"}}))}),
                Rule({PodPeer(Labels({{"role", "client"}}))})}));
  ExpectProbe("y/a", "x/a", 80, Proto::kTcp, false);
  ExpectProbe("x/b", "x/a", 80, Proto::kTcp, false);

  auto ns = *cluster_->namespaces.Get("y");
  ns.meta.labels["allowed"] = "yes";
  Put(*cluster_, ns);
  Sync(SyncReason::kRequested);
  ExpectProbe("y/a", "x/a", 80, Proto::kTcp, true);
  ExpectProbe("z/a", "x/a", 80, Proto::kTcp, false);

  Relabel("x/b", {{"pod", "b"}, {"role", "client"}});
  ExpectProbe("x/b", "x/a", 80, Proto::kTcp, true);
  Relabel("x/b", {{"pod", "b"}});
  ExpectProbe("x/b", "x/a", 80, Proto::kTcp, false);
}

TEST_P(NetpolE2E, MultiplePoliciesAreAUnion) {
  Apply(Policy("x", "from-y", Labels({{"pod", "a"}}), true, false,
               {Rule({NamespacePeer(Labels({{"ns", "y"}}))}, {Port(80)})}));
  Apply(Policy("x", "from-z-81", Labels({{"pod", "a"}}), true, false,
               {Rule({NamespacePeer(Labels({{"ns", "z"}}))}, {Port(81)})}));
  ExpectProbe("y/c", "x/a", 80, Proto::kTcp, true);
  ExpectProbe("y/c", "x/a", 81, Proto::kTcp, false);
  ExpectProbe("z/c", "x/a", 81, Proto::kTcp, true);
  ExpectProbe("z/c", "x/a", 80, Proto::kTcp, false);
  ExpectProbe("x/b", "x/a", 80, Proto::kTcp, false);
}

TEST_P(NetpolE2E, SctpRulesAreRenderedAndDriftIsRepaired) {
  // SCTP sockets do not exist on the host kernel: prove the rule is in the kernel instead.
  Apply(Policy("x", "sctp", Labels({{"pod", "a"}}), true, false, {Rule({}, {Port(80, "SCTP")})}));
  auto& node = net_->nodes()[0];
  std::string save = std::string("iptables-") + GetParam() + "-save -t filter";
  auto rules = node.ns->Sh(save);
  ASSERT_TRUE(rules.ok());
  EXPECT_NE(rules->find("-m sctp --dport 80 -j MARK --set-xmark 0x10000/0x10000"),
            std::string::npos)
      << *rules;
  ExpectProbe("x/b", "x/a", 80, Proto::kTcp, false);

  // Someone deletes our FORWARD jump: the periodic sync puts it back.
  std::string del = std::string("iptables-") + GetParam() + " -D FORWARD 1";
  ASSERT_TRUE(node.ns->Sh(del).ok());
  ExpectProbe("x/b", "x/a", 80, Proto::kTcp, true);
  Sync(SyncReason::kPeriodic);
  ExpectProbe("x/b", "x/a", 80, Proto::kTcp, false);
}

TEST_P(NetpolE2E, CleanupRemovesOnlyOursAndOpensTraffic) {
  auto& node = net_->nodes()[0];
  std::string ipt = std::string("iptables-") + GetParam();
  // Docker- and kube-proxy-shaped neighbours.
  ASSERT_TRUE(node.ns
                  ->Sh(ipt + " -N DOCKER-USER && " + ipt + " -A DOCKER-USER -j RETURN && " + ipt +
                       " -A FORWARD -j DOCKER-USER && " + ipt + " -N KUBE-SERVICES && " + ipt +
                       " -A OUTPUT -j KUBE-SERVICES && " +
                       "ipset create KUBE-CLUSTER-IP hash:ip,port && "
                       "ipset create docker-nets hash:net")
                  .ok());
  Apply(Policy("x", "deny", {}, true, false));
  ExpectProbe("y/a", "x/a", 80, Proto::kTcp, false);
  {
    ScopedNetns inside(node.ns->name());
    auto removed = firewalls_.controller(0).Cleanup();
    ASSERT_TRUE(removed.ok()) << removed.error();
    EXPECT_FALSE(removed->empty());
  }
  ExpectProbe("y/a", "x/a", 80, Proto::kTcp, true);
  auto rules = node.ns->Sh(ipt + "-save -t filter");
  ASSERT_TRUE(rules.ok());
  EXPECT_EQ(rules->find("KUBE-ROUTER"), std::string::npos) << *rules;
  EXPECT_EQ(rules->find("KUBE-POD-FW"), std::string::npos) << *rules;
  EXPECT_EQ(rules->find("KUBE-NWPLCY"), std::string::npos) << *rules;
  EXPECT_NE(rules->find("-A FORWARD -j DOCKER-USER"), std::string::npos) << *rules;
  EXPECT_NE(rules->find("-A OUTPUT -j KUBE-SERVICES"), std::string::npos) << *rules;
  auto sets = node.ns->Sh("ipset list -n");
  ASSERT_TRUE(sets.ok());
  EXPECT_EQ(*sets, "KUBE-CLUSTER-IP\ndocker-nets\n");
}

INSTANTIATE_TEST_SUITE_P(Backends, NetpolE2E, ::testing::Values("nft", "legacy"),
                         [](const auto& info) { return std::string(info.param); });

}  // namespace
}  // namespace kr::netpol::netpol_netns_test
