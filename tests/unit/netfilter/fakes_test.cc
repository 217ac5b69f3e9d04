#include "kube_router/netfilter/fakes.h"

#include <gtest/gtest.h>

namespace kr::netfilter {
namespace {

TEST(FakeIptables, AppliesAnUpdateLikeIptablesRestore) {
  FakeIptables ipt;
  TableUpdate update;
  update.replace_chains = {{"KUBE-A", {"-j ACCEPT"}}};
  update.insert_rules = {{"INPUT", 1, "-j KUBE-A"}};
  ASSERT_TRUE(ipt.Apply(update).ok());
  auto snapshot = ipt.Save("filter");
  ASSERT_TRUE(snapshot.ok());
  EXPECT_EQ(snapshot->chains["INPUT"], std::vector<std::string>{"-j KUBE-A"});
  EXPECT_EQ(snapshot->chains["KUBE-A"], std::vector<std::string>{"-j ACCEPT"});
}

TEST(FakeIptables, IsAllOrNothing) {
  FakeIptables ipt;
  TableUpdate update;
  update.replace_chains = {{"KUBE-A", {"-j ACCEPT"}}, {"KUBE-B", {"-j KUBE-MISSING"}}};
  EXPECT_FALSE(ipt.Apply(update).ok());
  EXPECT_FALSE(ipt.table("filter").chains.contains("KUBE-A"));
}

TEST(FakeIptables, RefusesToDeleteAReferencedChainOrAMissingRule) {
  FakeIptables ipt;
  TableUpdate setup;
  setup.replace_chains = {{"KUBE-A", {}}};
  setup.insert_rules = {{"FORWARD", 1, "-j KUBE-A"}};
  ASSERT_TRUE(ipt.Apply(setup).ok());
  TableUpdate del;
  del.delete_chains = {"KUBE-A"};
  EXPECT_FALSE(ipt.Apply(del).ok());
  del.delete_rules = {{"FORWARD", "-j KUBE-A"}};
  EXPECT_TRUE(ipt.Apply(del).ok());
  EXPECT_FALSE(ipt.table("filter").chains.contains("KUBE-A"));
  TableUpdate again;
  again.delete_rules = {{"FORWARD", "-j KUBE-A"}};
  EXPECT_FALSE(ipt.Apply(again).ok());
}

TEST(FakeIptables, FailsOnDemand) {
  FakeIptables ipt;
  ipt.FailNext(1);
  TableUpdate update;
  update.replace_chains = {{"KUBE-A", {}}};
  EXPECT_FALSE(ipt.Apply(update).ok());
  EXPECT_TRUE(ipt.Apply(update).ok());
}

TEST(FakeIpset, ReplacesAppliesDeltasAndGuardsReferencedSets) {
  FakeIptables ipt;
  FakeIpset ipset;
  ipset.CheckReferencesIn(&ipt);
  IpsetUpdate create;
  create.replace = {{"KUBE-S", IpsetType::kHashNet, IpFamily::kV4, {{"10.0.0.1/32"}}}};
  ASSERT_TRUE(ipset.Apply(create).ok());
  EXPECT_EQ(ipset.sets()["KUBE-S"].entries, (std::set<IpsetEntry>{{"10.0.0.1"}}));

  IpsetUpdate delta;
  delta.deltas = {{"KUBE-S", {{"10.0.0.0/24", true}}, {{"10.0.0.1"}}}};
  ASSERT_TRUE(ipset.Apply(delta).ok());
  EXPECT_EQ(ipset.sets()["KUBE-S"].entries, (std::set<IpsetEntry>{{"10.0.0.0/24", true}}));

  IpsetUpdate wrong_kind;
  wrong_kind.replace = {{"KUBE-S", IpsetType::kHashIp, IpFamily::kV4, {}}};
  EXPECT_FALSE(ipset.Apply(wrong_kind).ok());

  ipt.table("filter").chains["INPUT"].push_back("-m set --match-set KUBE-S src -j DROP");
  IpsetUpdate destroy;
  destroy.destroy = {"KUBE-S"};
  EXPECT_FALSE(ipset.Apply(destroy).ok());
  ipt.table("filter").chains["INPUT"].clear();
  EXPECT_TRUE(ipset.Apply(destroy).ok());
  EXPECT_TRUE(ipset.sets().empty());
}

TEST(FakeIpset, KeepsIpPortEntriesCanonicalAndRejectsMalformedOnes) {
  FakeIpset ipset;
  IpsetUpdate create;
  create.replace = {{"kube-router-svip-prt",
                     IpsetType::kHashIpPort,
                     IpFamily::kV4,
                     {{"10.96.0.10,tcp:53"}, {"10.96.0.11,132:80"}}}};
  ASSERT_TRUE(ipset.Apply(create).ok());
  EXPECT_EQ(ipset.sets()["kube-router-svip-prt"].entries,
            (std::set<IpsetEntry>{{"10.96.0.10,tcp:53"}, {"10.96.0.11,sctp:80"}}));
  IpsetUpdate del;
  del.deltas = {{"kube-router-svip-prt", {}, {{"10.96.0.11,132:80"}}}};
  ASSERT_TRUE(ipset.Apply(del).ok());
  EXPECT_EQ(ipset.sets()["kube-router-svip-prt"].entries,
            (std::set<IpsetEntry>{{"10.96.0.10,tcp:53"}}));
  // A bare address in an ip,port set fails the whole batch, as ipset restore does.
  IpsetUpdate bad;
  bad.deltas = {{"kube-router-svip-prt", {{"10.96.0.12,udp:53"}, {"10.96.0.13"}}, {}}};
  EXPECT_FALSE(ipset.Apply(bad).ok());
  EXPECT_EQ(ipset.sets()["kube-router-svip-prt"].entries.size(), 1u);
}

}  // namespace
}  // namespace kr::netfilter
