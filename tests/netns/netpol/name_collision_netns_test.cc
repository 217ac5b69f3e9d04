// Issue 16 item 1 with real traffic: chain and set names derived from namespace + name must not
// let one tenant take over another's. kube-router (and this agent before HashedName) hashed
// namespace and name concatenated, so policy team-ab/x shared the chain and target set of
// team-a/bx, and pod team-ad/b the chain of team-a/db. Here a policy in team-ab must not open
// team-a's deny-all protected pod, and a pod team-ad/b must not cut team-a/db's traffic. The
// xyz world (x, y on node 0, z on node 1) provides the other pods; both iptables backends.
#include <gtest/gtest.h>

#include "lib/netns.h"
#include "lib/podnet.h"
#include "node_firewalls.h"

namespace kr::netpol::name_collision_netns_test {
namespace {

using kr::testing::PodNetwork;
using kr::testing::Proto;
using namespace kr::netpol::testing;  // NOLINT: builders and the xyz world

constexpr char kVictim[] = "team-a/db";      // node 0
constexpr char kAttacker[] = "team-ab/web";  // node 0
constexpr char kLookalike[] = "team-ad/b";   // node 0, in the network from the start

class NameCollisionE2E : public XyzFirewallTest<const char*> {
 protected:
  void SetUp() override {
    ASSERT_TRUE(kr::testing::IsRoot()) << "netns tests need root";
    world_ = std::make_unique<PodNetwork>("nc");
    BuildXyz(*world_, {Proto::kTcp});
    for (const char* pod : {kVictim, kAttacker, kLookalike}) {
      world_->AddPod(0, pod);
      world_->Serve(pod, 80, Proto::kTcp);
    }
    StartFirewalls(
        *world_, nullptr, [](NetpolConfig& config) { config.iptables_mode = GetParam(); },
        [this](k8s::Cluster& cluster) {
          for (const char* ns : {"team-a", "team-ab", "team-ad"}) Put(cluster, Namespace(ns));
          for (const char* pod : {kVictim, kAttacker}) PutPod(cluster, pod);
        });
  }

  void PutPod(k8s::Cluster& cluster, const std::string& key) {
    Put(cluster, Pod(NsOf(key), NameOf(key), net_->pod(key).ip, net_->nodes()[0].name,
                     {{"app", NameOf(key)}}));
  }

  bool Probe(const std::string& from, const std::string& to) {
    return net_->Probe(from, net_->pod(to).ip, 80, Proto::kTcp);
  }

  std::unique_ptr<PodNetwork> world_;
};

TEST_P(NameCollisionE2E, APolicyOfTeamAbDoesNotOpenTeamAsProtectedPod) {
  // team-a protects all its pods: deny all ingress.
  Apply(Policy("team-a", "bx", {}, true, false));
  for (const char* from : {"x/a", "z/a", kAttacker}) EXPECT_FALSE(Probe(from, kVictim)) << from;
  // The attacker's policy in team-ab allows all ingress to team-ab's pods.
  Apply(Policy("team-ab", "x", {}, true, false, {k8s::NetworkPolicyRule{}}));
  for (const char* from : {"x/a", "y/b", "z/a", "z/c", kAttacker}) {
    EXPECT_FALSE(Probe(from, kVictim)) << from << " reached the protected pod";
  }
  // The attacker's own policy still works for its own pods, and after a full sync as well.
  EXPECT_TRUE(Probe("z/a", kAttacker));
  Sync(SyncReason::kPeriodic);
  EXPECT_FALSE(Probe("z/a", kVictim));
  EXPECT_FALSE(Probe("x/b", kVictim));
  EXPECT_TRUE(Probe("z/a", kAttacker));
}

TEST_P(NameCollisionE2E, PodTeamAdBDoesNotCutTeamADb) {
  EXPECT_TRUE(Probe("x/a", kVictim));
  EXPECT_TRUE(Probe(kVictim, "z/b"));
  PutPod(*cluster_, kLookalike);
  Sync(SyncReason::kRequested);
  for (const char* peer : {"x/a", "z/b"}) {
    EXPECT_TRUE(Probe(peer, kVictim)) << peer << " -> " << kVictim;
    EXPECT_TRUE(Probe(kVictim, peer)) << kVictim << " -> " << peer;
    EXPECT_TRUE(Probe(peer, kLookalike)) << peer << " -> " << kLookalike;
  }
  // A policy isolating the look-alike must not touch team-a/db either.
  Apply(Policy("team-ad", "deny", {}, true, true));
  EXPECT_FALSE(Probe("x/a", kLookalike));
  EXPECT_TRUE(Probe("x/a", kVictim));
  EXPECT_TRUE(Probe(kVictim, "z/b"));
}

INSTANTIATE_TEST_SUITE_P(Backends, NameCollisionE2E, ::testing::Values("nft", "legacy"),
                         [](const auto& info) { return std::string(info.param); });

}  // namespace
}  // namespace kr::netpol::name_collision_netns_test
