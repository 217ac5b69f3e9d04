// Content-addressed, shared policy ipsets over the stateful fakes: policies whose peers select
// the same pods use one set; the set splits when one user's selector changes, stays while any
// user is left, and is destroyed only after the last rule matching it is gone. Every assertion
// is about the fake kernel: at every intermediate write, each --match-set names an existing set.
// A restart adopts the sets it made before and removes the stale ones, and nothing else.
#include <gtest/gtest.h>

#include <random>
#include <string_view>

#include "controller_fixture.h"
#include "kube_router/netfilter/fakes.h"
#include "kube_router/netlink/fakes.h"
#include "kube_router/netpol/naming.h"
#include "kube_router/netpol/network_policy_controller.h"
#include "objects.h"

namespace kr::netpol::shared_sets_test {
namespace {

using netfilter::IpFamily;
using netfilter::IpsetEntry;
using namespace testing;  // NOLINT: builders

// The set names a rule matches.
std::vector<std::string> MatchedSets(const std::string& rule) {
  static constexpr std::string_view kMatchSet = "--match-set ";
  std::vector<std::string> out;
  for (size_t at = rule.find(kMatchSet); at != std::string::npos; at = rule.find(kMatchSet, at)) {
    at += kMatchSet.size();
    size_t end = rule.find(' ', at);
    out.push_back(rule.substr(at, end - at));
  }
  return out;
}

k8s::NetworkPolicy FromTeam(const std::string& name, const std::string& target,
                            const std::string& team) {
  return Policy("x", name, Labels({{"pod", target}}), true, false,
                {{{NamespacePeer(Labels({{"team", team}}))}, {Port(80)}}});
}

class SharedSetsTest : public ControllerFixture {
 protected:
  void SetUp() override {
    Put(*cluster_, Namespace("x", {{"team", "a"}}));
    Put(*cluster_, Namespace("y", {{"team", "a"}}));
    Put(*cluster_, Namespace("z", {{"team", "b"}}));
    int n = 0;
    for (const char* ns : {"x", "y", "z"}) {
      ++n;
      for (int p = 1; p <= 3; ++p) {
        std::string name = "p" + std::to_string(p);
        Put(*cluster_, Pod(ns, name, "10.0." + std::to_string(n) + "." + std::to_string(p),
                           p == 3 ? "node2" : kNode, {{"pod", name}}));
      }
    }
    StartController();
  }

  // StartController again is an agent restarted after kill -9 (the kernel keeps what the
  // previous process wrote). At every write, no rule may name a set that does not exist.
  void OnNewFakes() override {
    auto check = [this] {
      for (const auto& [chain, rules] : iptables_->table("filter").chains) {
        for (const auto& rule : rules) {
          for (const auto& set : MatchedSets(rule)) {
            EXPECT_TRUE(ipset_->sets().contains(set))
                << chain << " matches " << set << ", which does not exist";
          }
        }
      }
    };
    iptables_->AfterEachApply(check);
    ipset_->AfterEachApply(check);
  }

  void Sync(SyncReason reason = SyncReason::kRequested) {
    auto s = controller_->Sync(reason);
    ASSERT_TRUE(s.ok()) << s.message();
  }

  // What a policy's ingress chain decides, as the kernel holds it: its rules with every set
  // name replaced by the set's members. Equal text = equal verdicts for every packet.
  std::string Verdicts(const std::string& policy) {
    std::string out;
    auto chain =
        iptables_->table("filter").chains.find(PolicyChainName("x", policy, IpFamily::kV4, true));
    if (chain == iptables_->table("filter").chains.end()) return "(no chain)";
    for (std::string rule : chain->second) {
      for (const auto& set : MatchedSets(rule)) {
        std::string members = "{";
        for (const auto& e : ipset_->sets().at(set).entries) members += e.address + " ";
        rule.replace(rule.find(set), set.size(), members + "}");
      }
      out += rule + "\n";
    }
    return out;
  }

  std::string PeerSetOf(const std::string& policy) {
    auto& rules =
        iptables_->table("filter").chains.at(PolicyChainName("x", policy, IpFamily::kV4, true));
    return MatchedSets(rules.at(0)).at(0);  // the peers (src), then the targets (dst)
  }

  // Our sets in the fake kernel that no rule matches (leaks), and rules matching missing sets.
  std::vector<std::string> Leaks() {
    std::set<std::string> used;
    for (const auto& [chain, rules] : iptables_->table("filter").chains) {
      for (const auto& rule : rules) {
        for (const auto& set : MatchedSets(rule)) used.insert(set);
      }
    }
    std::vector<std::string> out;
    for (const auto& [name, set] : ipset_->sets()) {
      if (IsOwnedSet(name) && !used.contains(name)) out.push_back(name);
    }
    return out;
  }

  size_t OwnedSets() {
    size_t n = 0;
    for (const auto& [name, set] : ipset_->sets()) n += IsOwnedSet(name) ? 1 : 0;
    return n;
  }
};

const std::set<IpsetEntry> kTeamA = {{"10.0.1.1"}, {"10.0.1.2"}, {"10.0.1.3"},
                                     {"10.0.2.1"}, {"10.0.2.2"}, {"10.0.2.3"}};
const std::set<IpsetEntry> kTeamB = {{"10.0.3.1"}, {"10.0.3.2"}, {"10.0.3.3"}};

TEST_F(SharedSetsTest, PoliciesWithTheSamePeersShareOneSet) {
  Put(*cluster_, FromTeam("one", "p1", "a"));
  Put(*cluster_, FromTeam("two", "p2", "a"));
  Sync(SyncReason::kStartup);
  EXPECT_EQ(PeerSetOf("one"), PeerSetOf("two"));
  EXPECT_TRUE(PeerSetOf("one").starts_with("KUBE-SRC-"));
  EXPECT_EQ(ipset_->sets().at(PeerSetOf("one")).entries, kTeamA);
  // Two target sets and one peer set.
  EXPECT_EQ(OwnedSets(), 3u);
  EXPECT_TRUE(Leaks().empty());
}

TEST_F(SharedSetsTest, ChangingOnePolicysPeersSplitsTheSetAndLeavesTheOtherPolicyAlone) {
  Put(*cluster_, FromTeam("one", "p1", "a"));
  Put(*cluster_, FromTeam("two", "p2", "a"));
  Sync(SyncReason::kStartup);
  const std::string shared = PeerSetOf("one");
  const std::string two = Verdicts("two");

  Put(*cluster_, FromTeam("one", "p1", "b"));
  Sync();
  EXPECT_NE(PeerSetOf("one"), shared);
  EXPECT_EQ(ipset_->sets().at(PeerSetOf("one")).entries, kTeamB);
  EXPECT_EQ(PeerSetOf("two"), shared);
  EXPECT_EQ(ipset_->sets().at(shared).entries, kTeamA);
  EXPECT_EQ(Verdicts("two"), two);
  // The split wrote no member of the shared set and did not rewrite the other policy's chain.
  for (const auto& delta : ipset_->last_update().deltas) EXPECT_NE(delta.set, shared);
  for (const auto& chain : iptables_->last_update().replace_chains) {
    EXPECT_NE(chain.name, PolicyChainName("x", "two", IpFamily::kV4, true));
  }

  // Back to team a: they share again, and the team-b set (no user left) is gone.
  const std::string team_b = PeerSetOf("one");
  Put(*cluster_, FromTeam("one", "p1", "a"));
  Sync();
  EXPECT_EQ(PeerSetOf("one"), shared);
  EXPECT_FALSE(ipset_->sets().contains(team_b));
  EXPECT_EQ(Verdicts("two"), two);
  EXPECT_TRUE(Leaks().empty());
}

TEST_F(SharedSetsTest, ASetStaysWhileOneUserIsLeftAndGoesAfterTheLastRuleMatchingIt) {
  Put(*cluster_, FromTeam("one", "p1", "a"));
  Put(*cluster_, FromTeam("two", "p2", "a"));
  Sync(SyncReason::kStartup);
  const std::string shared = PeerSetOf("one");
  const std::string two = Verdicts("two");

  cluster_->network_policies.Remove("x/one");
  Sync();
  EXPECT_EQ(ipset_->sets().at(shared).entries, kTeamA);
  EXPECT_EQ(Verdicts("two"), two);
  EXPECT_TRUE(Leaks().empty());

  // A member change reaches the set the remaining user matches.
  auto pod = *cluster_->pods.Get("y/p1");
  cluster_->pods.Remove("y/p1");
  Sync();
  std::set<IpsetEntry> without = kTeamA;
  without.erase({"10.0.2.1"});
  EXPECT_EQ(ipset_->sets().at(shared).entries, without);
  Put(*cluster_, pod);
  Sync();

  // The last user goes: its chain goes first (the fake refuses to destroy a set in use, and the
  // check above refuses a rule naming a missing set), then the set.
  cluster_->network_policies.Remove("x/two");
  Sync();
  EXPECT_FALSE(ipset_->sets().contains(shared));
  EXPECT_FALSE(
      iptables_->table("filter").chains.contains(PolicyChainName("x", "two", IpFamily::kV4, true)));
  EXPECT_EQ(OwnedSets(), 0u);
}

// The property sharing must keep: whatever one policy's peers become, every other policy's
// verdicts stay exactly what they were. A seeded walk over eight policies choosing among
// selectors that overlap (so sets are shared, split and re-joined all the time); every tenth
// step is a full sync.
TEST_F(SharedSetsTest, ChangingOnePolicyNeverChangesAnotherPolicysVerdicts) {
  const std::vector<k8s::NetworkPolicyPeer> peers = {
      NamespacePeer(Labels({{"team", "a"}})),   NamespacePeer(Labels({{"team", "b"}})),
      NamespacePeer(Expr("team", "In", {"a"})),  // the same pods as team=a: the same set
      PodPeer(Labels({{"pod", "p1"}})),         PodPeer({}),
      BlockPeer("10.0.0.0/16", {"10.0.2.0/24"})};
  std::mt19937 rng(20261206);
  auto random_policy = [&](const std::string& name) {
    std::vector<k8s::NetworkPolicyPeer> chosen = {peers[rng() % peers.size()]};
    if (rng() % 3 == 0) chosen.push_back(peers[rng() % peers.size()]);
    return Policy("x", name, Labels({{"pod", "p" + std::to_string(1 + rng() % 2)}}), true, false,
                  {{chosen, {Port(80)}}});
  };
  std::vector<std::string> names;
  for (int i = 0; i < 8; ++i) {
    names.push_back("pol" + std::to_string(i));
    Put(*cluster_, random_policy(names.back()));
  }
  Sync(SyncReason::kStartup);
  for (int step = 0; step < 60; ++step) {
    std::map<std::string, std::string> before;
    for (const auto& name : names) before[name] = Verdicts(name);
    const std::string& changed = names[rng() % names.size()];
    if (rng() % 5 == 0) {
      cluster_->network_policies.Remove("x/" + changed);
    } else {
      Put(*cluster_, random_policy(changed));
    }
    Sync(step % 10 == 9 ? SyncReason::kPeriodic : SyncReason::kRequested);
    for (const auto& name : names) {
      if (name != changed) {
        ASSERT_EQ(Verdicts(name), before[name]) << "step " << step << ": changing " << changed;
      }
    }
    ASSERT_TRUE(Leaks().empty()) << "step " << step << ": " << ::testing::PrintToString(Leaks());
  }
}

TEST_F(SharedSetsTest, ARestartAdoptsItsSetsAndRemovesOnlyItsStaleOnes) {
  Put(*cluster_, FromTeam("one", "p1", "a"));
  Put(*cluster_, FromTeam("two", "p2", "a"));
  Put(*cluster_, FromTeam("three", "p1", "b"));
  Sync(SyncReason::kStartup);
  const std::string team_a = PeerSetOf("one"), team_b = PeerSetOf("three");
  // Other software's sets, one with a name close to ours, and a temporary set a kill -9 during
  // a swap left behind.
  for (const char* foreign : {"docker-nets", "KUBE-SRC", "KUBE-CLUSTER-IP"}) {
    ipset_->sets()[foreign] = {foreign, netfilter::IpsetType::kHashNet, IpFamily::kV4, {}};
  }
  ipset_->sets()["KUBE-TMP-ABCDEFGHIJKLMNOP"] = {
      "KUBE-TMP-ABCDEFGHIJKLMNOP", netfilter::IpsetType::kHashIp, IpFamily::kV4, {}};

  // kill -9: the kernel keeps everything; while the agent is down, policy three goes away and a
  // pod of team a leaves.
  auto filter = iptables_->table("filter");
  auto sets = ipset_->sets();
  cluster_->network_policies.Remove("x/three");
  cluster_->pods.Remove("y/p2");
  StartController(&filter, &sets);
  int replaced_before = ipset_->replaced_sets();
  Sync(SyncReason::kStartup);
  // The shared set is adopted under the same name (rebuilt by swap, as every startup does) with
  // the current members; the set only policy three used is gone; foreign sets stay.
  EXPECT_EQ(PeerSetOf("one"), team_a);
  EXPECT_EQ(PeerSetOf("two"), team_a);
  std::set<IpsetEntry> now = kTeamA;
  now.erase({"10.0.2.2"});
  EXPECT_EQ(ipset_->sets().at(team_a).entries, now);
  EXPECT_FALSE(ipset_->sets().contains(team_b));
  EXPECT_FALSE(ipset_->sets().contains("KUBE-TMP-ABCDEFGHIJKLMNOP"));
  for (const char* foreign : {"docker-nets", "KUBE-SRC", "KUBE-CLUSTER-IP"}) {
    EXPECT_TRUE(ipset_->sets().contains(foreign)) << foreign;
  }
  EXPECT_GT(ipset_->replaced_sets(), replaced_before);
  EXPECT_TRUE(Leaks().empty()) << ::testing::PrintToString(Leaks());

  // --cleanup-config removes every set of ours, shared ones included, and nothing else.
  auto removed = controller_->Cleanup();
  ASSERT_TRUE(removed.ok()) << removed.error();
  EXPECT_EQ(OwnedSets(), 0u);
  for (const char* foreign : {"docker-nets", "KUBE-SRC", "KUBE-CLUSTER-IP"}) {
    EXPECT_TRUE(ipset_->sets().contains(foreign)) << foreign;
  }
}

}  // namespace
}  // namespace kr::netpol::shared_sets_test
