// The real iptables/ipset adapters against the host kernel, inside a throwaway namespace, under
// both iptables backends.
#include <gtest/gtest.h>

#include "kube_router/netfilter/adapters.h"
#include "lib/netns.h"
#include "lib/podnet.h"

namespace kr::netfilter {
namespace {

using kr::testing::Netns;
using kr::testing::ScopedNetns;

class IptablesAdapterTest : public ::testing::TestWithParam<IptablesMode> {
 protected:
  void SetUp() override { ASSERT_TRUE(kr::testing::IsRoot()) << "netns tests need root"; }
};

TEST_P(IptablesAdapterTest, AppliesSavesAndRemovesChains) {
  Netns ns("krnf");
  ScopedNetns inside(ns.name());
  auto ipt = MakeIptables(GetParam(), IpFamily::kV4);
  TableUpdate create;
  create.replace_chains = {
      {"KUBE-ROUTER-TEST", {"-s 192.0.2.1/32 -j ACCEPT", "-j MARK --set-mark 0x20000/0x20000"}}};
  create.insert_rules = {
      {"INPUT", 1, "-m comment --comment \"kube-router test\" -j KUBE-ROUTER-TEST"}};
  ASSERT_TRUE(ipt->Apply(create).ok());

  auto saved = ipt->Save("filter");
  ASSERT_TRUE(saved.ok()) << saved.error();
  ASSERT_EQ(saved->chains["INPUT"].size(), 1u);
  EXPECT_EQ(RuleTarget(saved->chains["INPUT"][0]), "KUBE-ROUTER-TEST");
  EXPECT_EQ(saved->chains["KUBE-ROUTER-TEST"].size(), 2u);

  // Replacing a chain rewrites only that chain; the saved jump text deletes the jump.
  TableUpdate remove;
  remove.delete_rules = {{"INPUT", saved->chains["INPUT"][0]}};
  remove.delete_chains = {"KUBE-ROUTER-TEST"};
  ASSERT_TRUE(ipt->Apply(remove).ok());
  saved = ipt->Save("filter");
  ASSERT_TRUE(saved.ok());
  EXPECT_TRUE(saved->chains["INPUT"].empty());
  EXPECT_FALSE(saved->chains.contains("KUBE-ROUTER-TEST"));
}

TEST_P(IptablesAdapterTest, AFailingUpdateChangesNothing) {
  Netns ns("krnf");
  ScopedNetns inside(ns.name());
  auto ipt = MakeIptables(GetParam(), IpFamily::kV4);
  TableUpdate bad;
  bad.replace_chains = {{"KUBE-ROUTER-A", {"-j ACCEPT"}}, {"KUBE-ROUTER-B", {"-j NO-SUCH-CHAIN"}}};
  EXPECT_FALSE(ipt->Apply(bad).ok());
  auto saved = ipt->Save("filter");
  ASSERT_TRUE(saved.ok());
  EXPECT_FALSE(saved->chains.contains("KUBE-ROUTER-A"));
}

TEST_P(IptablesAdapterTest, DetectsTheBackendThatHoldsRules) {
  Netns ns("krnf");
  ScopedNetns inside(ns.name());
  EXPECT_EQ(DetectIptablesMode(), IptablesMode::kNft);  // neither holds rules: prefer nft
  auto ipt = MakeIptables(GetParam(), IpFamily::kV4);
  TableUpdate update;
  update.insert_rules = {{"FORWARD", 1, "-s 192.0.2.9/32 -j ACCEPT"}};
  ASSERT_TRUE(ipt->Apply(update).ok());
  EXPECT_EQ(DetectIptablesMode(), GetParam());
}

INSTANTIATE_TEST_SUITE_P(Backends, IptablesAdapterTest,
                         ::testing::Values(IptablesMode::kNft, IptablesMode::kLegacy),
                         [](const auto& info) {
                           return std::string(IptablesModeName(info.param));
                         });

TEST(IpsetAdapter, CreatesSwapsLiveSetsAppliesDeltasAndDestroys) {
  ASSERT_TRUE(kr::testing::IsRoot());
  Netns ns("krnf");
  ScopedNetns inside(ns.name());
  auto ipset = MakeIpset();
  IpsetUpdate create;
  create.replace = {{"KUBE-SRC-TEST",
                     IpsetType::kHashNet,
                     IpFamily::kV4,
                     {{"10.0.0.0/8"}, {"10.1.0.0/16", true}}}};
  ASSERT_TRUE(ipset->Apply(create).ok());
  auto sets = ipset->List();
  ASSERT_TRUE(sets.ok()) << sets.error();
  EXPECT_EQ(sets->at("KUBE-SRC-TEST"), create.replace[0]);
  EXPECT_TRUE(ns.Sh("ipset test KUBE-SRC-TEST 10.2.0.1").ok());
  EXPECT_FALSE(ns.Sh("ipset test KUBE-SRC-TEST 10.1.0.1 2>/dev/null").ok());  // nomatch

  // A rule references the set: a swap still works, a destroy does not.
  auto ipt = MakeIptables(IptablesMode::kNft, IpFamily::kV4);
  TableUpdate rule;
  rule.insert_rules = {{"INPUT", 1, "-m set --match-set KUBE-SRC-TEST src -j ACCEPT"}};
  ASSERT_TRUE(ipt->Apply(rule).ok());
  IpsetUpdate swap;
  swap.replace = {{"KUBE-SRC-TEST", IpsetType::kHashNet, IpFamily::kV4, {{"192.0.2.0/24"}}}};
  ASSERT_TRUE(ipset->Apply(swap).ok());
  sets = ipset->List();
  ASSERT_TRUE(sets.ok());
  EXPECT_EQ(sets->at("KUBE-SRC-TEST").entries, (std::set<IpsetEntry>{{"192.0.2.0/24"}}));
  for (const auto& [name, set] : *sets) EXPECT_FALSE(name.starts_with("KUBE-TMP-")) << name;

  IpsetUpdate delta;
  delta.deltas = {{"KUBE-SRC-TEST", {{"198.51.100.7"}}, {{"192.0.2.0/24"}}}};
  ASSERT_TRUE(ipset->Apply(delta).ok());
  sets = ipset->List();
  ASSERT_TRUE(sets.ok());
  EXPECT_EQ(sets->at("KUBE-SRC-TEST").entries, (std::set<IpsetEntry>{{"198.51.100.7"}}));

  IpsetUpdate destroy;
  destroy.destroy = {"KUBE-SRC-TEST"};
  EXPECT_FALSE(ipset->Apply(destroy).ok());
  TableUpdate unref;
  unref.delete_rules = {{"INPUT", "-m set --match-set KUBE-SRC-TEST src -j ACCEPT"}};
  ASSERT_TRUE(ipt->Apply(unref).ok());
  ASSERT_TRUE(ipset->Apply(destroy).ok());
  auto names = ipset->ListNames();
  ASSERT_TRUE(names.ok());
  EXPECT_TRUE(names->empty());
}

TEST(IpsetAdapter, IpPortSetsHoldServicePortsAsTheKernelMatchesThem) {
  ASSERT_TRUE(kr::testing::IsRoot());
  Netns ns("krnf");
  ScopedNetns inside(ns.name());
  auto ipset = MakeIpset();
  IpsetUpdate create;
  create.replace = {
      {"kube-router-svip-prt",
       IpsetType::kHashIpPort,
       IpFamily::kV4,
       {{"10.96.0.10,tcp:53"}, {"10.96.0.10,udp:53"}, {"10.96.0.11,132:80"}}},
      {"inet6:kube-router-svip-prt", IpsetType::kHashIpPort, IpFamily::kV6, {{"fd00::a,tcp:443"}}},
      {"KUBE-SRC-RANGES",
       IpsetType::kHashIpPortNet,
       IpFamily::kV4,
       {{"10.96.0.10,tcp:80,192.0.2.0/24"}, {"10.96.0.10,tcp:80,198.51.100.7/32"}}}};
  ASSERT_TRUE(ipset->Apply(create).ok());
  auto sets = ipset->List();
  ASSERT_TRUE(sets.ok()) << sets.error();
  // What `ipset save` prints compares equal to the canonical desired entries.
  for (const auto& set : create.replace) {
    IpsetSet canonical = set;
    canonical.entries.clear();
    for (const auto& e : set.entries) canonical.entries.insert(CanonicalEntry(e));
    EXPECT_EQ(sets->at(set.name), canonical) << set.name;
  }
  EXPECT_TRUE(ns.Sh("ipset test kube-router-svip-prt 10.96.0.10,udp:53").ok());
  EXPECT_TRUE(ns.Sh("ipset test kube-router-svip-prt 10.96.0.11,sctp:80").ok());
  EXPECT_FALSE(ns.Sh("ipset test kube-router-svip-prt 10.96.0.11,tcp:80 2>/dev/null").ok());
  EXPECT_TRUE(ns.Sh("ipset test inet6:kube-router-svip-prt fd00::a,tcp:443").ok());
  EXPECT_TRUE(ns.Sh("ipset test KUBE-SRC-RANGES 10.96.0.10,tcp:80,192.0.2.77").ok());
  EXPECT_FALSE(ns.Sh("ipset test KUBE-SRC-RANGES 10.96.0.10,tcp:80,198.51.100.8 2>/dev/null").ok());

  // A rule matches the set by destination address and port; a rebuild swaps under it.
  auto ipt = MakeIptables(IptablesMode::kNft, IpFamily::kV4);
  TableUpdate rule;
  rule.insert_rules = {{"INPUT", 1, "-m set --match-set kube-router-svip-prt dst,dst -j ACCEPT"}};
  ASSERT_TRUE(ipt->Apply(rule).ok());
  IpsetUpdate swap;
  swap.replace = {
      {"kube-router-svip-prt", IpsetType::kHashIpPort, IpFamily::kV4, {{"10.96.0.12,sctp:9"}}}};
  ASSERT_TRUE(ipset->Apply(swap).ok());
  IpsetUpdate delta;
  delta.deltas = {{"kube-router-svip-prt", {{"10.96.0.13,tcp:8080"}}, {{"10.96.0.12,132:9"}}},
                  {"KUBE-SRC-RANGES", {}, {{"10.96.0.10,tcp:80,198.51.100.7"}}}};
  ASSERT_TRUE(ipset->Apply(delta).ok());
  sets = ipset->List();
  ASSERT_TRUE(sets.ok());
  EXPECT_EQ(sets->at("kube-router-svip-prt").entries,
            (std::set<IpsetEntry>{{"10.96.0.13,tcp:8080"}}));
  EXPECT_EQ(sets->at("KUBE-SRC-RANGES").entries,
            (std::set<IpsetEntry>{{"10.96.0.10,tcp:80,192.0.2.0/24"}}));
  for (const auto& [name, set] : *sets) EXPECT_FALSE(name.starts_with("KUBE-TMP-")) << name;
}

}  // namespace
}  // namespace kr::netfilter
