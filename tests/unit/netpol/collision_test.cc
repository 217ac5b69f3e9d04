// A second owner of a derived name (a real hash collision, forced here by a test digest) is
// refused with an error naming both owners; the first keeps its name, and nothing of the second
// is programmed where it would change the first's rules or sets.
#include <gtest/gtest.h>

#include "kube_router/base/hashed_name.h"
#include "kube_router/netpol/compiler.h"
#include "kube_router/netpol/naming.h"
#include "objects.h"

namespace kr::netpol::collision_test {
namespace {

using netfilter::IpFamily;
using namespace testing;  // NOLINT: builders

constexpr char kNode[] = "node1";

// SHA-256 of the encoding, except that the attacker's fields hash as the victim's: the chain
// names of team-ab/x are those of team-a/bx, the set of every pod of team-ab is the set of every
// pod of team-a (a different identity, so not a shared set), and pod team-ad/b's chain is pod
// team-a/db's.
std::string CollidingDigest(std::string_view encoded, size_t digits) {
  std::string text(encoded);
  for (auto [from, to] : {std::pair{"7:team-ab1:x", "6:team-a2:bx"},
                          std::pair{"25:22:9:namespace7:team-ab0:", "24:21:9:namespace6:team-a0:"},
                          std::pair{"7:team-ad1:b", "6:team-a2:db"}}) {
    for (size_t at = text.find(from); at != std::string::npos; at = text.find(from)) {
      text.replace(at, std::string_view(from).size(), to);
    }
  }
  return NameDigest(text, digits);
}

// The ingress target set of a policy selecting every pod of `ns`.
std::string TargetSet(const std::string& ns) {
  return PodSetName(false, {PodSelectionKey(ns, nullptr, nullptr)}, IpFamily::kV4);
}

std::shared_ptr<const k8s::Pod> LocalPod(const std::string& ns, const std::string& name,
                                         const std::string& ip) {
  return std::make_shared<k8s::Pod>(Pod(ns, name, ip, kNode, {{"app", name}}));
}

class NameCollisionTest : public ::testing::Test {
 protected:
  NameCollisionTest() {
    for (const char* ns : {"team-a", "team-ab", "team-ad"}) {
      view_.namespaces.push_back(std::make_shared<k8s::Namespace>(Namespace(ns)));
    }
    view_.pods = {LocalPod("team-a", "db", "10.0.0.2"), LocalPod("team-ab", "web", "10.0.0.3"),
                  LocalPod("team-ad", "b", "10.0.0.4")};
    config_.node_name = kNode;
  }

  // team-a's deny-all ingress, and team-ab's policy that allows all ingress to its pods.
  static std::shared_ptr<const k8s::NetworkPolicy> Victim() {
    return std::make_shared<k8s::NetworkPolicy>(Policy("team-a", "bx", {}, true, false));
  }
  static std::shared_ptr<const k8s::NetworkPolicy> Attacker() {
    return std::make_shared<k8s::NetworkPolicy>(
        Policy("team-ab", "x", {}, true, false, {k8s::NetworkPolicyRule{}}));
  }

  // The victim's chain and sets as they are without the attacker.
  DesiredState Alone() {
    ClusterView alone = view_;
    alone.policies = {Victim()};
    return Compile(alone, config_, IpFamily::kV4);
  }

  static bool Mentions(const std::vector<std::string>& lines, const std::string& a,
                       const std::string& b) {
    for (const auto& line : lines) {
      if (line.find(a) != std::string::npos && line.find(b) != std::string::npos) return true;
    }
    return false;
  }

  ScopedNameHashForTesting collide_{&CollidingDigest};
  ClusterView view_;
  NetpolConfig config_;
};

TEST_F(NameCollisionTest, TheTestDigestReallyCollides) {
  EXPECT_EQ(PolicyChainName("team-a", "bx", IpFamily::kV4, true),
            PolicyChainName("team-ab", "x", IpFamily::kV4, true));
  EXPECT_EQ(TargetSet("team-a"), TargetSet("team-ab"));
  EXPECT_EQ(PodChainName("team-a", "db"), PodChainName("team-ad", "b"));
}

TEST_F(NameCollisionTest, ASecondPolicyOnTheSameNamesIsRefusedAndTheFirstKeepsThem) {
  view_.policies = {Attacker(), Victim()};
  DesiredState state = Compile(view_, config_, IpFamily::kV4);
  DesiredState alone = Alone();
  const std::string chain = PolicyChainName("team-a", "bx", IpFamily::kV4, true);
  const std::string set = TargetSet("team-a");
  // The victim's chain and target set are exactly what they are without the attacker.
  EXPECT_EQ(state.chains.at(chain), alone.chains.at(chain));
  EXPECT_EQ(state.sets.at(set), alone.sets.at(set));
  EXPECT_TRUE(Mentions(state.name_collisions, "NetworkPolicy team-ab/x", "NetworkPolicy team-a/bx"))
      << ::testing::PrintToString(state.name_collisions);
  // The attacker's pod is isolated for ingress (the refused policy selects it) and allows
  // nothing: no DEFAULT for ingress, no jump.
  const auto& web = state.chains.at(PodChainName("team-ab", "web"));
  for (const auto& rule : web.rules) {
    EXPECT_EQ(rule.find("-d 10.0.0.3 -j KUBE-NWPLCY-DEFAULT"), std::string::npos) << rule;
    EXPECT_EQ(rule.find(chain), std::string::npos) << rule;
  }
}

TEST_F(NameCollisionTest, IncrementallyTheHolderKeepsTheNameAndTheOtherGetsItWhenFreed) {
  IncrementalCompiler compiler(config_, IpFamily::kV4);
  auto attacker = Attacker(), victim = Victim();
  view_.policies = {attacker};
  compiler.Update(view_);
  // The victim arrives second: refused, its pods isolated (fail closed), the error names both.
  view_.policies = {attacker, victim};
  compiler.Update(view_);
  const std::string set = TargetSet("team-a");
  EXPECT_EQ(compiler.state().sets.at(set).entries, (std::set<netfilter::IpsetEntry>{{"10.0.0.3"}}));
  EXPECT_TRUE(Mentions(compiler.state().name_collisions, "NetworkPolicy team-a/bx",
                       "NetworkPolicy team-ab/x"));
  for (const auto& rule : compiler.state().chains.at(PodChainName("team-a", "db")).rules) {
    EXPECT_EQ(rule.find("-d 10.0.0.2 -j KUBE-NWPLCY-DEFAULT"), std::string::npos) << rule;
  }
  // The attacker goes: the victim is retried and programmed as if alone.
  view_.policies = {victim};
  compiler.Update(view_);
  EXPECT_FALSE(Mentions(compiler.state().name_collisions, "NetworkPolicy", ""));
  DesiredState alone = Alone();
  EXPECT_EQ(compiler.state().chains, alone.chains);
  EXPECT_EQ(compiler.state().sets, alone.sets);
}

TEST_F(NameCollisionTest, ASecondPodOnTheSameChainNameIsRejectedNotMerged) {
  view_.policies = {Victim()};
  DesiredState state = Compile(view_, config_, IpFamily::kV4);
  const std::string chain = PodChainName("team-a", "db");
  // team-a/db keeps its chain (its own address in it), and the forward chain sends only its
  // traffic there; team-ad/b's traffic is rejected.
  EXPECT_NE(state.chains.at(chain).rules[1].find("-d 10.0.0.2 "), std::string::npos);
  int jumps = 0, rejects = 0;
  for (const auto& rule : state.chains.at(kForwardChain).rules) {
    if (rule.find("-j " + chain) != std::string::npos) {
      ++jumps;
      EXPECT_NE(rule.find("10.0.0.2"), std::string::npos) << rule;
    }
    if (rule.find("10.0.0.4") != std::string::npos) {
      ++rejects;
      EXPECT_TRUE(rule.ends_with("-j REJECT")) << rule;
    }
  }
  EXPECT_EQ(jumps, 2);
  EXPECT_EQ(rejects, 2);
  EXPECT_TRUE(Mentions(state.name_collisions, "Pod team-ad/b", "Pod team-a/db"))
      << ::testing::PrintToString(state.name_collisions);
}

}  // namespace
}  // namespace kr::netpol::collision_test
