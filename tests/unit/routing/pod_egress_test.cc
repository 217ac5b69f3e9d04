#include "kube_router/routing/pod_egress.h"

#include <gtest/gtest.h>

namespace kr::routing::pod_egress_test {
namespace {

NodeInfo Node(const std::string& ip, const std::string& cidr) {
  NodeInfo node;
  node.ip = IpAddress::Parse(ip);
  if (!cidr.empty()) node.pod_cidrs = {*IpPrefix::Parse(cidr)};
  return node;
}

TEST(PodEgressTest, SetsHoldEveryPodCidrAndNodeAddress) {
  auto sets = DesiredEgressSets({Node("192.0.2.1", "10.1.1.0/24"), Node("192.0.2.2", ""),
                                 Node("2001:db8::3", "fd00:3::/64")});
  ASSERT_EQ(sets.size(), 2u);
  EXPECT_EQ(sets[0].name, kPodSubnetsSet);
  EXPECT_EQ(sets[0].type, netfilter::IpsetType::kHashNet);
  EXPECT_EQ(sets[0].entries, (std::set<netfilter::IpsetEntry>{{"10.1.1.0/24", false}}));
  EXPECT_EQ(sets[1].name, kNodeIpsSet);
  EXPECT_EQ(sets[1].entries,
            (std::set<netfilter::IpsetEntry>{{"192.0.2.1", false}, {"192.0.2.2", false}}));
}

TEST(PodEgressTest, SetUpdateCreatesThenSendsDeltas) {
  auto desired = DesiredEgressSets({Node("192.0.2.1", "10.1.1.0/24")});
  auto create = PlanSetUpdate(desired, {});
  EXPECT_EQ(create.replace.size(), 2u);
  EXPECT_TRUE(create.deltas.empty());

  std::map<std::string, netfilter::IpsetSet> existing;
  for (const auto& set : desired) existing[set.name] = set;
  EXPECT_TRUE(PlanSetUpdate(desired, existing).empty());

  existing[kNodeIpsSet].entries.insert({"192.0.2.9", false});
  auto delta = PlanSetUpdate(desired, existing);
  ASSERT_EQ(delta.deltas.size(), 1u);
  EXPECT_EQ(delta.deltas[0].set, kNodeIpsSet);
  EXPECT_TRUE(delta.deltas[0].add.empty());
  EXPECT_EQ(delta.deltas[0].del, (std::vector<netfilter::IpsetEntry>{{"192.0.2.9", false}}));

  // A set of the wrong type is rebuilt.
  existing[kPodSubnetsSet].type = netfilter::IpsetType::kHashIp;
  EXPECT_EQ(PlanSetUpdate(desired, existing).replace.size(), 1u);
}

TEST(PodEgressTest, ChainAndJumpInstalledOnceAndRemovedWhenDisabled) {
  netfilter::TableSnapshot nat;
  nat.chains["POSTROUTING"] = {"-s 10.0.0.0/8 -j MASQUERADE"};
  auto install = PlanPodEgress(nat, true);
  EXPECT_EQ(install.table, "nat");
  ASSERT_EQ(install.replace_chains.size(), 1u);
  EXPECT_EQ(install.replace_chains[0].rules, std::vector<std::string>{PodEgressRule()});
  ASSERT_EQ(install.insert_rules.size(), 1u);
  EXPECT_EQ(install.insert_rules[0].chain, "POSTROUTING");

  nat.chains[kPodEgressChain] = {PodEgressRule()};
  nat.chains["POSTROUTING"].insert(nat.chains["POSTROUTING"].begin(),
                                   "-m comment --comment x -j KUBE-ROUTER-POD-EGRESS");
  EXPECT_TRUE(PlanPodEgress(nat, true).empty());

  auto remove = PlanPodEgress(nat, false);
  ASSERT_EQ(remove.delete_rules.size(), 1u);
  EXPECT_EQ(remove.delete_rules[0].rule, "-m comment --comment x -j KUBE-ROUTER-POD-EGRESS");
  EXPECT_EQ(remove.delete_chains, std::vector<std::string>{kPodEgressChain});
  // The foreign MASQUERADE rule is never touched.
  EXPECT_TRUE(
      PlanPodEgress(netfilter::TableSnapshot{{{"POSTROUTING", {"-j MASQUERADE"}}}}, false).empty());
}

}  // namespace
}  // namespace kr::routing::pod_egress_test
