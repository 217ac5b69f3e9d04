// The firewall's kernel diffs as pure functions, by table: ipset entry deltas, the incremental
// writes (which set goes before or after the chains, which chain is rewritten), the full sync's
// chains and built-in jumps, the local pods set held back until pod chains exist, stale sets.
#include "kube_router/netpol/kernel_writes.h"

#include <gtest/gtest.h>

#include <optional>

#include "kube_router/netpol/naming.h"

namespace kr::netpol::kernel_writes_test {
namespace {

using netfilter::Chain;
using netfilter::IpFamily;
using netfilter::IpsetEntry;
using netfilter::IpsetSet;
using netfilter::IpsetType;
using netfilter::TableSnapshot;

IpsetEntry E(const std::string& address, bool nomatch = false) { return {address, nomatch}; }

IpsetSet Set(const std::string& name, std::set<IpsetEntry> entries) {
  return {name, IpsetType::kHashNet, IpFamily::kV4, std::move(entries)};
}

// The rule our jump carries: what PlanFullChains inserts for `builtin`.
std::string OurJump(const std::string& builtin) {
  for (const auto& rule : PlanFullChains({}, {}).insert_rules) {
    if (rule.chain == builtin) return rule.rule;
  }
  return "";
}

TEST(DiffSetEntriesTest, Table) {
  struct Case {
    const char* what;
    std::set<IpsetEntry> old_entries, entries;
    std::vector<IpsetEntry> add, del;
  };
  const Case cases[] = {
      {"unchanged", {E("10.0.0.1")}, {E("10.0.0.1")}, {}, {}},
      {"added", {E("10.0.0.1")}, {E("10.0.0.1"), E("10.0.0.2")}, {E("10.0.0.2")}, {}},
      {"removed", {E("10.0.0.1"), E("10.0.0.2")}, {E("10.0.0.2")}, {}, {E("10.0.0.1")}},
      {"replaced", {E("10.0.0.1")}, {E("10.0.0.2")}, {E("10.0.0.2")}, {E("10.0.0.1")}},
      {"nomatch set: added only",
       {E("10.1.0.0/16")},
       {E("10.1.0.0/16", true)},
       {E("10.1.0.0/16", true)},
       {}},
      {"nomatch cleared: added only",
       {E("10.1.0.0/16", true)},
       {E("10.1.0.0/16")},
       {E("10.1.0.0/16")},
       {}},
      {"emptied", {E("10.0.0.1"), E("10.0.0.2")}, {}, {}, {E("10.0.0.1"), E("10.0.0.2")}},
      {"from empty", {}, {E("fd00::1")}, {E("fd00::1")}, {}},
  };
  for (const auto& c : cases) {
    auto delta = DiffSetEntries("S", c.old_entries, c.entries);
    EXPECT_EQ(delta.set, "S") << c.what;
    EXPECT_EQ(delta.add, c.add) << c.what;
    EXPECT_EQ(delta.del, c.del) << c.what;
  }
}

TEST(PlanChangeWritesTest, Table) {
  const std::string local = LocalPodsSetName(IpFamily::kV4);
  const Chain pod_a{std::string(kPodChainPrefix) + "A", {"-j ACCEPT"}};
  const Chain pod_a2{pod_a.name, {"-j DROP"}};
  const Chain pod_b{std::string(kPodChainPrefix) + "B", {"-j ACCEPT"}};
  struct Case {
    const char* what;
    DesiredState now;
    IncrementalCompiler::Changes changes;
    // Expected, as set names / chain names.
    std::vector<std::string> before_replace, before_delta_sets, after_destroy;
    std::vector<std::string> local_replace, local_delta_sets;
    std::vector<std::string> replace_chains, delete_chains;
  };
  std::vector<Case> cases;
  {
    Case c{"a new set is created before the chains"};
    c.now.sets["KUBE-SRC-X"] = Set("KUBE-SRC-X", {E("10.0.0.1")});
    c.changes.sets["KUBE-SRC-X"] = std::nullopt;
    c.before_replace = {"KUBE-SRC-X"};
    cases.push_back(c);
  }
  {
    Case c{"a removed set is destroyed after the chains"};
    c.changes.sets["KUBE-SRC-X"] = Set("KUBE-SRC-X", {E("10.0.0.1")});
    c.after_destroy = {"KUBE-SRC-X"};
    cases.push_back(c);
  }
  {
    Case c{"a set absent before and after is not touched"};
    c.changes.sets["KUBE-SRC-X"] = std::nullopt;
    cases.push_back(c);
  }
  {
    Case c{"a changed set gets a delta before the chains"};
    c.now.sets["KUBE-SRC-X"] = Set("KUBE-SRC-X", {E("10.0.0.2")});
    c.changes.sets["KUBE-SRC-X"] = Set("KUBE-SRC-X", {E("10.0.0.1")});
    c.before_delta_sets = {"KUBE-SRC-X"};
    cases.push_back(c);
  }
  {
    Case c{"an unchanged set costs nothing"};
    c.now.sets["KUBE-SRC-X"] = Set("KUBE-SRC-X", {E("10.0.0.1")});
    c.changes.sets["KUBE-SRC-X"] = Set("KUBE-SRC-X", {E("10.0.0.1")});
    cases.push_back(c);
  }
  {
    Case c{"a new local pods set is created empty, filled after the chains"};
    c.now.sets[local] = Set(local, {E("10.0.0.1")});
    c.changes.sets[local] = std::nullopt;
    c.before_replace = {local};
    c.local_replace = {local};
    cases.push_back(c);
  }
  {
    Case c{"local pods: additions after the chains, removals before"};
    c.now.sets[local] = Set(local, {E("10.0.0.2")});
    c.changes.sets[local] = Set(local, {E("10.0.0.1")});
    c.before_delta_sets = {local};  // the removal of 10.0.0.1
    c.local_delta_sets = {local};   // the addition of 10.0.0.2
    cases.push_back(c);
  }
  {
    Case c{"local pods: only an addition, nothing before"};
    c.now.sets[local] = Set(local, {E("10.0.0.1"), E("10.0.0.2")});
    c.changes.sets[local] = Set(local, {E("10.0.0.1")});
    c.local_delta_sets = {local};
    cases.push_back(c);
  }
  {
    Case c{"chains: new and changed replaced, removed deleted, unchanged and absent left"};
    c.now.chains[pod_a.name] = pod_a2;
    c.now.chains[pod_b.name] = pod_b;
    c.now.chains[kForwardChain] = Chain{kForwardChain, {"-j RETURN"}};
    c.changes.chains[pod_a.name] = pod_a;                                   // changed
    c.changes.chains[pod_b.name] = std::nullopt;                            // new
    c.changes.chains[kForwardChain] = Chain{kForwardChain, {"-j RETURN"}};  // unchanged
    c.changes.chains["KUBE-NWPLCY-GONE"] = Chain{"KUBE-NWPLCY-GONE", {}};   // removed
    c.changes.chains["KUBE-NWPLCY-NEVER"] = std::nullopt;                   // never existed
    c.replace_chains = {pod_a.name, pod_b.name};
    c.delete_chains = {"KUBE-NWPLCY-GONE"};
    cases.push_back(c);
  }
  auto set_names = [](const std::vector<IpsetSet>& sets) {
    std::vector<std::string> out;
    for (const auto& s : sets) out.push_back(s.name);
    return out;
  };
  auto delta_sets = [](const std::vector<netfilter::IpsetDelta>& deltas) {
    std::vector<std::string> out;
    for (const auto& d : deltas) out.push_back(d.set);
    return out;
  };
  for (const auto& c : cases) {
    auto w = PlanChangeWrites({{IpFamily::kV4, &c.now, &c.changes}});
    EXPECT_EQ(set_names(w.before.replace), c.before_replace) << c.what;
    EXPECT_EQ(delta_sets(w.before.deltas), c.before_delta_sets) << c.what;
    EXPECT_EQ(w.after.destroy, c.after_destroy) << c.what;
    EXPECT_TRUE(w.after.replace.empty() && w.after.deltas.empty()) << c.what;
    EXPECT_EQ(set_names(w.local_pods_after_chains.replace), c.local_replace) << c.what;
    EXPECT_EQ(delta_sets(w.local_pods_after_chains.deltas), c.local_delta_sets) << c.what;
    ASSERT_EQ(w.chains.size(), 1u) << c.what;
    std::vector<std::string> replaced;
    for (const auto& chain : w.chains[0].replace_chains) replaced.push_back(chain.name);
    EXPECT_EQ(replaced, c.replace_chains) << c.what;
    EXPECT_EQ(w.chains[0].delete_chains, c.delete_chains) << c.what;
  }
}

TEST(PlanChangeWritesTest, LocalPodsEntriesAndTheNewSetsContent) {
  const std::string local = LocalPodsSetName(IpFamily::kV4);
  DesiredState now;
  now.sets[local] = Set(local, {E("10.0.0.2"), E("10.0.0.3")});
  now.sets["KUBE-SRC-N"] = Set("KUBE-SRC-N", {E("10.9.0.0/16")});
  IncrementalCompiler::Changes changes;
  changes.sets[local] = Set(local, {E("10.0.0.1"), E("10.0.0.2")});
  changes.sets["KUBE-SRC-N"] = std::nullopt;
  auto w = PlanChangeWrites({{IpFamily::kV4, &now, &changes}});
  ASSERT_EQ(w.before.deltas.size(), 1u);
  EXPECT_EQ(w.before.deltas[0].del, (std::vector<IpsetEntry>{E("10.0.0.1")}));
  EXPECT_TRUE(w.before.deltas[0].add.empty());
  ASSERT_EQ(w.local_pods_after_chains.deltas.size(), 1u);
  EXPECT_EQ(w.local_pods_after_chains.deltas[0].add, (std::vector<IpsetEntry>{E("10.0.0.3")}));
  EXPECT_TRUE(w.local_pods_after_chains.deltas[0].del.empty());
  ASSERT_EQ(w.before.replace.size(), 1u);
  EXPECT_EQ(w.before.replace[0], now.sets["KUBE-SRC-N"]);
}

TEST(PlanChangeWritesTest, OneTableUpdatePerFamilyInOrder) {
  const std::string local6 = LocalPodsSetName(IpFamily::kV6);
  DesiredState v4, v6;
  v6.chains["KUBE-POD-FW-6"] = Chain{"KUBE-POD-FW-6", {"-j ACCEPT"}};
  v6.sets[local6] = Set(local6, {E("fd00::1")});
  IncrementalCompiler::Changes c4, c6;
  c6.chains["KUBE-POD-FW-6"] = std::nullopt;
  c6.sets[local6] = std::nullopt;
  auto w = PlanChangeWrites({{IpFamily::kV4, &v4, &c4}, {IpFamily::kV6, &v6, &c6}});
  ASSERT_EQ(w.chains.size(), 2u);
  EXPECT_TRUE(w.chains[0].empty());
  ASSERT_EQ(w.chains[1].replace_chains.size(), 1u);
  EXPECT_EQ(w.chains[1].replace_chains[0].name, "KUBE-POD-FW-6");
  // The v6 local pods set is recognised by its family's name: held back until after the chains.
  ASSERT_EQ(w.local_pods_after_chains.replace.size(), 1u);
  EXPECT_EQ(w.local_pods_after_chains.replace[0].name, local6);
  ASSERT_EQ(w.before.replace.size(), 1u);
  EXPECT_TRUE(w.before.replace[0].entries.empty());
}

TEST(PlanFullChainsTest, Table) {
  const std::string fwd = OurJump("FORWARD");
  const std::string in = OurJump("INPUT");
  const std::string out = OurJump("OUTPUT");
  ASSERT_NE(fwd.find(std::string("-j ") + kForwardChain), std::string::npos);
  const std::string other = "-j OTHER-CHAIN";
  const std::string multiline = "-m comment --comment \"a\nb\" -j " + std::string(kForwardChain);
  struct Case {
    const char* what;
    std::map<std::string, std::vector<std::string>> kernel;
    std::vector<std::pair<std::string, std::string>> deletes;  // built-in, rule
    std::vector<std::string> inserts;                          // built-ins given our jump at 1
    std::vector<std::string> deleted_chains;
  };
  const Case cases[] = {
      {"empty kernel: every jump inserted", {}, {}, {"INPUT", "FORWARD", "OUTPUT"}, {}},
      {"jumps first and alone: nothing to do",
       {{"INPUT", {in, other}}, {"FORWARD", {fwd}}, {"OUTPUT", {out}}},
       {},
       {},
       {}},
      {"jump behind another rule: moved to the top",
       {{"INPUT", {in}}, {"FORWARD", {other, fwd}}, {"OUTPUT", {out}}},
       {{"FORWARD", fwd}},
       {"FORWARD"},
       {}},
      {"jump twice: both deleted, one inserted",
       {{"INPUT", {in, in}}, {"FORWARD", {fwd}}, {"OUTPUT", {out}}},
       {{"INPUT", in}, {"INPUT", in}},
       {"INPUT"},
       {}},
      {"a multi-line rule to our chain is never deleted",
       {{"INPUT", {in}}, {"FORWARD", {multiline}}, {"OUTPUT", {out}}},
       {},
       {"FORWARD"},
       {}},
      {"stale chains of ours deleted, others' kept",
       {{"INPUT", {in}},
        {"FORWARD", {fwd}},
        {"OUTPUT", {out}},
        {"KUBE-POD-FW-STALE", {}},
        {"KUBE-NWPLCY-STALE", {}},
        {"OTHER-CHAIN", {}}},
       {},
       {},
       {"KUBE-NWPLCY-STALE", "KUBE-POD-FW-STALE"}},
  };
  DesiredState desired;
  desired.chains[kForwardChain] = Chain{kForwardChain, {"-j RETURN"}};
  desired.chains["KUBE-POD-FW-KEPT"] = Chain{"KUBE-POD-FW-KEPT", {"-j ACCEPT"}};
  for (const auto& c : cases) {
    TableSnapshot snapshot;
    snapshot.chains = c.kernel;
    snapshot.chains["KUBE-POD-FW-KEPT"] = {};
    auto update = PlanFullChains(desired, snapshot);
    std::vector<std::string> replaced;
    for (const auto& chain : update.replace_chains) replaced.push_back(chain.name);
    EXPECT_EQ(replaced, (std::vector<std::string>{"KUBE-POD-FW-KEPT", kForwardChain})) << c.what;
    std::vector<std::pair<std::string, std::string>> deletes;
    for (const auto& d : update.delete_rules) deletes.emplace_back(d.chain, d.rule);
    EXPECT_EQ(deletes, c.deletes) << c.what;
    std::vector<std::string> inserts;
    for (const auto& i : update.insert_rules) {
      EXPECT_EQ(i.position, 1) << c.what;
      EXPECT_EQ(i.rule, OurJump(i.chain)) << c.what;
      inserts.push_back(i.chain);
    }
    EXPECT_EQ(inserts, c.inserts) << c.what;
    EXPECT_EQ(update.delete_chains, c.deleted_chains) << c.what;
  }
}

TEST(PlanFullSetsTest, LocalPodsHeldToProgrammedChainsAndStaleSets) {
  const std::string local4 = LocalPodsSetName(IpFamily::kV4);
  DesiredState v4;
  v4.sets[local4] = Set(local4, {E("10.0.0.1"), E("10.0.0.2")});
  v4.sets["KUBE-SRC-X"] = Set("KUBE-SRC-X", {E("10.0.0.9")});
  TableSnapshot kernel;  // only 10.0.0.1's chain is programmed
  kernel.chains[kForwardChain] = {"-d 10.0.0.1/32 -j KUBE-POD-FW-AAA", "-d 10.0.0.7/32 -j OTHER",
                                  "-s 10.0.0.2/32 -j KUBE-POD-FW-BBB"};
  auto w = PlanFullSets({&v4}, {IpFamily::kV4}, {kernel});
  EXPECT_EQ(w.wanted, (std::set<std::string>{local4, "KUBE-SRC-X"}));
  ASSERT_EQ(w.sets.replace.size(), 2u);
  for (const auto& set : w.sets.replace) {
    if (set.name == local4) {
      EXPECT_EQ(set.entries, (std::set<IpsetEntry>{E("10.0.0.1")}));
    } else {
      EXPECT_EQ(set, v4.sets["KUBE-SRC-X"]);
    }
  }
  ASSERT_EQ(w.local_pods_after_chains.replace.size(), 1u);
  EXPECT_EQ(w.local_pods_after_chains.replace[0], v4.sets[local4]);

  struct StaleCase {
    std::vector<std::string> existing;
    std::vector<std::string> destroyed;
  };
  const StaleCase stale[] = {
      {{}, {}},
      {{local4, "KUBE-SRC-X"}, {}},
      {{"KUBE-SRC-OLD", "KUBE-SRC-X", "someone-elses"}, {"KUBE-SRC-OLD"}},
      {{"inet6:KUBE-DST-OLD"}, {"inet6:KUBE-DST-OLD"}},
  };
  for (const auto& c : stale) {
    EXPECT_EQ(PlanStaleSets(c.existing, w.wanted).destroy, c.destroyed);
  }
}

TEST(PodsWithChainsTest, Table) {
  struct Case {
    std::vector<std::string> forward;
    std::set<std::string> pods;
  };
  const Case cases[] = {
      {{}, {}},
      {{"-d 10.0.0.1/32 -j KUBE-POD-FW-A"}, {"10.0.0.1"}},
      {{"-m comment --comment x -d fd00::5/128 -j KUBE-POD-FW-B"}, {"fd00::5"}},
      {{"-d 10.0.0.0/24 -j KUBE-POD-FW-A"}, {}},  // not a single address
      {{"-d 10.0.0.1/32 -j ACCEPT"}, {}},         // not a pod chain
      {{"-s 10.0.0.1/32 -j KUBE-POD-FW-A"}, {}},  // a source, not a destination
  };
  for (const auto& c : cases) {
    TableSnapshot kernel;
    kernel.chains[kForwardChain] = c.forward;
    EXPECT_EQ(PodsWithChains(kernel), c.pods);
  }
  EXPECT_TRUE(PodsWithChains({}).empty());
}

}  // namespace
}  // namespace kr::netpol::kernel_writes_test
