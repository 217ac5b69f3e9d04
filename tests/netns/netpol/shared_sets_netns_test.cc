// Issue 14 with real traffic: two policies whose peers select the same pods share one
// content-addressed ipset. Through every transition (one policy's peers change and the set
// splits, a full sync, a restart of the agents over the kernel state the old ones left, one user
// deleted, the last one deleted) each policy keeps exactly its own verdicts, and at the end no
// set of ours is left in the kernel. nft and legacy.
#include <gtest/gtest.h>

#include <set>
#include <sstream>

#include "kube_router/base/exec.h"
#include "kube_router/netpol/naming.h"
#include "lib/netns.h"
#include "lib/podnet.h"
#include "node_firewalls.h"

namespace kr::netpol::shared_sets_netns_test {
namespace {

using kr::testing::PodNetwork;
using kr::testing::Proto;
using namespace kr::netpol::testing;  // NOLINT: builders and the xyz world

// x/<target> lets in the pods of the namespaces labelled ns=<from> on TCP 80.
k8s::NetworkPolicy From(const std::string& name, const std::string& target,
                        const std::string& from) {
  return Policy("x", name, Labels({{"pod", target}}), true, false,
                {{{NamespacePeer(Labels({{"ns", from}}))}, {Port(80)}}});
}

class SharedSetsE2E : public XyzFirewallTest<const char*> {
 protected:
  void SetUp() override {
    ASSERT_TRUE(kr::testing::IsRoot()) << "netns tests need root";
    world_ = std::make_unique<PodNetwork>("ss");
    BuildXyz(*world_);
    StartFirewalls(*world_, nullptr,
                   [](NetpolConfig& config) { config.iptables_mode = GetParam(); });
  }

  // Who reaches x/a and x/b on TCP 80, from y (same node) and z (the other node).
  void ExpectReach(bool y_to_a, bool z_to_a, bool y_to_b, bool z_to_b, const char* when) {
    SCOPED_TRACE(when);
    ExpectProbe("y/a", "x/a", 80, Proto::kTcp, y_to_a);
    ExpectProbe("z/a", "x/a", 80, Proto::kTcp, z_to_a);
    ExpectProbe("y/b", "x/b", 80, Proto::kTcp, y_to_b);
    ExpectProbe("z/b", "x/b", 80, Proto::kTcp, z_to_b);
  }

  // Our ipsets in each node's namespace.
  std::vector<std::set<std::string>> OurSets() {
    std::vector<std::set<std::string>> out;
    for (auto& node : net_->nodes()) {
      kr::testing::ScopedNetns inside(node.ns->name());
      auto names = kr::ExecChecked({"ipset", "list", "-n"});
      EXPECT_TRUE(names.ok()) << names.error();
      std::set<std::string> ours;
      std::istringstream lines(names.ok() ? *names : "");
      for (std::string line; std::getline(lines, line);) {
        if (IsOwnedSet(line)) ours.insert(line);
      }
      out.push_back(std::move(ours));
    }
    return out;
  }

  std::unique_ptr<PodNetwork> world_;
};

TEST_P(SharedSetsE2E, VerdictsStayRightWhileASharedSetSplitsAndLosesItsUsers) {
  Apply(From("to-a", "a", "y"));
  Apply(From("to-b", "b", "y"));
  ExpectReach(true, false, true, false, "both policies share the set of namespace y's pods");
  // Two target sets and one shared peer set on each node.
  for (const auto& sets : OurSets()) EXPECT_EQ(sets.size(), 3u) << ::testing::PrintToString(sets);

  Apply(From("to-a", "a", "z"));
  ExpectReach(false, true, true, false, "to-a's peers moved to z: the set split");
  for (const auto& sets : OurSets()) EXPECT_EQ(sets.size(), 4u) << ::testing::PrintToString(sets);

  Sync(SyncReason::kPeriodic);
  ExpectReach(false, true, true, false, "after a full sync");

  // The agents restart over the kernel state they left (kill -9: no cleanup), and while they are
  // down to-a goes back to y: the restart adopts the shared set and removes the z set.
  firewalls_.Stop();
  Put(*cluster_, From("to-a", "a", "y"));
  ASSERT_EQ(firewalls_.Start(*world_, cluster_.get(),
                             [](NetpolConfig& config) { config.iptables_mode = GetParam(); }),
            "");
  Sync(SyncReason::kStartup);
  ExpectReach(true, false, true, false, "restarted; to-a shares namespace y's set again");
  for (const auto& sets : OurSets()) EXPECT_EQ(sets.size(), 3u) << ::testing::PrintToString(sets);

  Remove("x/to-a");
  ExpectReach(true, true, true, false, "to-a deleted: x/a is open, x/b keeps the shared set");
  for (const auto& sets : OurSets()) EXPECT_EQ(sets.size(), 2u) << ::testing::PrintToString(sets);

  Remove("x/to-b");
  ExpectReach(true, true, true, true, "no policy left");
  for (const auto& sets : OurSets()) EXPECT_TRUE(sets.empty()) << ::testing::PrintToString(sets);
  EXPECT_EQ(firewalls_.Cleanup(), "");
}

INSTANTIATE_TEST_SUITE_P(Backends, SharedSetsE2E, ::testing::Values("nft", "legacy"),
                         [](const auto& info) { return std::string(info.param); });

}  // namespace
}  // namespace kr::netpol::shared_sets_netns_test
