// Issue 16 item 2 with real traffic: a connection needs BOTH the sender's egress and the
// receiver's ingress to allow it. The old compiler jumped from a pod chain into a policy chain
// holding both directions' rules without saying which direction was being evaluated, so an
// ingress rule of the receiver satisfied the sender's egress check (and vice versa). The
// issue's two examples, same node (x on node 0) and across nodes (x/d on node 1); nft and
// legacy.
#include <gtest/gtest.h>

#include "lib/netns.h"
#include "lib/podnet.h"
#include "node_firewalls.h"

namespace kr::netpol::both_directions_netns_test {
namespace {

using kr::testing::PodNetwork;
using kr::testing::Proto;
using namespace kr::netpol::testing;  // NOLINT: builders and the xyz world

constexpr char kRemote[] = "x/d";  // namespace x, but on node 1

class BothDirectionsE2E : public XyzFirewallTest<const char*> {
 protected:
  void SetUp() override {
    ASSERT_TRUE(kr::testing::IsRoot()) << "netns tests need root";
    world_ = std::make_unique<PodNetwork>("bd");
    BuildXyz(*world_);
    world_->AddPod(1, kRemote);
    for (int port : {80, 81}) {
      for (auto proto : {Proto::kTcp, Proto::kUdp}) world_->Serve(kRemote, port, proto);
    }
    StartFirewalls(
        *world_, nullptr, [](NetpolConfig& config) { config.iptables_mode = GetParam(); },
        [this](k8s::Cluster& cluster) {
          Put(cluster, Pod("x", "d", net_->pod(kRemote).ip, net_->nodes()[1].name, {{"pod", "d"}}));
        });
  }

  bool Probe(const std::string& from, const std::string& to, int port, Proto proto) {
    return net_->Probe(from, net_->pod(to).ip, port, proto);
  }

  std::unique_ptr<PodNetwork> world_;
};

TEST_P(BothDirectionsE2E, EgressOnlyRulesDoNotOpenTheIsolatedIngressOfThePeer) {
  // Every pod of x but c; egress to pods b, c and d on TCP 81 and UDP 80-90; no ingress rules,
  // so ingress is isolated by the default policyTypes (Ingress, plus Egress as there are
  // egress rules).
  k8s::NetworkPolicyPort udp_range = Port(80, "UDP");
  udp_range.end_port = 90;
  Apply(Policy("x", "egress-only", Expr("pod", "NotIn", {"c"}), true, true, {},
               {{{PodPeer(Expr("pod", "In", {"b", "c", "d"}))}, {Port(81), udp_range}}}));
  for (const char* to : {"x/b", kRemote}) {
    // Egress of x/a allows these, but the receiver is selected for ingress with no rule.
    EXPECT_FALSE(Probe("x/a", to, 81, Proto::kTcp)) << "x/a -> " << to << ":81/tcp";
    EXPECT_FALSE(Probe("x/a", to, 80, Proto::kUdp)) << "x/a -> " << to << ":80/udp";
  }
  // x/c is not selected: its ingress is open, and x/a's egress allows these ports.
  EXPECT_TRUE(Probe("x/a", "x/c", 81, Proto::kTcp));
  EXPECT_TRUE(Probe("x/a", "x/c", 80, Proto::kUdp));
  EXPECT_FALSE(Probe("x/a", "x/c", 80, Proto::kTcp));  // not an allowed port
  EXPECT_TRUE(Probe(kRemote, "x/c", 81, Proto::kTcp));
  // Nobody reaches the selected pods.
  for (const char* from : {"x/c", "y/a", "z/b"}) {
    EXPECT_FALSE(Probe(from, "x/b", 81, Proto::kTcp)) << from;
    EXPECT_FALSE(Probe(from, kRemote, 81, Proto::kTcp)) << from;
  }
}

TEST_P(BothDirectionsE2E, IngressOnlyRulesDoNotOpenTheIsolatedEgressOfTheSender) {
  // Both directions isolated for every pod of x; ingress allowed from x's pods; no egress rule.
  Apply(Policy("x", "ingress-only", {}, true, true, {{{PodPeer({})}, {}}}));
  for (const char* from : {"x/a", "x/b", kRemote}) {
    for (const char* to : {"x/a", "x/c", kRemote, "y/a", "z/a"}) {
      if (std::string(from) == to) continue;
      EXPECT_FALSE(Probe(from, to, 80, Proto::kTcp)) << from << " -> " << to;
    }
  }
  // Other namespaces are neither senders x accepts nor receivers x may reach.
  EXPECT_FALSE(Probe("y/a", "x/a", 80, Proto::kTcp));
  EXPECT_TRUE(Probe("y/a", "z/a", 80, Proto::kTcp));

  // With an egress rule towards x as well, x's pods talk to each other (both sides allow).
  Apply(Policy("x", "ingress-only", {}, true, true, {{{PodPeer({})}, {}}}, {{{PodPeer({})}, {}}}));
  EXPECT_TRUE(Probe("x/a", "x/b", 80, Proto::kTcp));
  EXPECT_TRUE(Probe("x/a", kRemote, 80, Proto::kTcp));
  EXPECT_TRUE(Probe(kRemote, "x/c", 81, Proto::kUdp));
  EXPECT_FALSE(Probe("x/a", "y/a", 80, Proto::kTcp));
}

INSTANTIATE_TEST_SUITE_P(Backends, BothDirectionsE2E, ::testing::Values("nft", "legacy"),
                         [](const auto& info) { return std::string(info.param); });

}  // namespace
}  // namespace kr::netpol::both_directions_netns_test
