// SPDX-License-Identifier: Apache-2.0
// What a firewall sync writes to the kernel, planned from the compiled states and what the
// kernel holds: pure functions, so the diffs (ipset deltas, chains, the built-in jumps) have
// table tests (tests/unit/netpol/kernel_writes_test.cc). NetworkPolicyController reads the
// kernel, calls these and applies the result in order.
#pragma once

#include <set>
#include <string>
#include <vector>

#include "kube_router/netfilter/ipset.h"
#include "kube_router/netfilter/iptables.h"
#include "kube_router/netpol/compiler.h"

namespace kr::netpol {

// A rule whose comment holds a newline (only other software writes those) cannot be written
// back as `-D chain <rule>` in an iptables-restore batch; such rules are never deleted by us.
bool Deletable(const std::string& rule);

// The addresses the kernel's KUBE-ROUTER-FORWARD already sends to a pod chain
// ("-d IP ... -j KUBE-POD-FW-..."): the pods whose chain is programmed right now.
std::set<std::string> PodsWithChains(const netfilter::TableSnapshot& filter);

// The entries to add and to delete to turn `old_entries` into `entries`. An entry whose nomatch
// flag flipped is listed in `add` only (with its new flag), never also in `del`: a `del` names
// the address alone.
netfilter::IpsetDelta DiffSetEntries(const std::string& name,
                                     const std::set<netfilter::IpsetEntry>& old_entries,
                                     const std::set<netfilter::IpsetEntry>& entries);

// One family's part of a full sync: every chain of ours rewritten, our chains the desired state
// no longer has deleted (others' chains untouched), and our jump made the only one and the first
// rule of INPUT, FORWARD and OUTPUT.
netfilter::TableUpdate PlanFullChains(const DesiredState& desired,
                                      const netfilter::TableSnapshot& snapshot);

// The ipset writes of a full sync, in order: `sets` (every set rebuilt by swap) before the
// chains; `local_pods_after_chains` after them. Until a pod's chain is in the kernel, the local
// pods set holds only the pods whose chains `snapshots[i]` already has (default deny never lets
// a pod without a chain through). `wanted` names every set of the desired states.
struct FullSetWrites {
  netfilter::IpsetUpdate sets;
  netfilter::IpsetUpdate local_pods_after_chains;
  std::set<std::string> wanted;
};
FullSetWrites PlanFullSets(const std::vector<const DesiredState*>& states,
                           const std::vector<netfilter::IpFamily>& families,
                           const std::vector<netfilter::TableSnapshot>& snapshots);

// Our sets in `existing` that no desired state has: destroyed after the chains stop using them.
netfilter::IpsetUpdate PlanStaleSets(const std::vector<std::string>& existing,
                                     const std::set<std::string>& wanted);

// The writes of an incremental sync, applied in this order: `before` (new sets, and deltas of
// changed ones), `chains[i]` (family i: new and changed chains replaced, removed ones deleted),
// `local_pods_after_chains` (pods joining the local pods set once their chains exist), `after`
// (removed sets). Unchanged sets and chains are not written at all.
struct ChangeWrites {
  netfilter::IpsetUpdate before;
  std::vector<netfilter::TableUpdate> chains;
  netfilter::IpsetUpdate local_pods_after_chains;
  netfilter::IpsetUpdate after;
};
struct FamilyChange {
  netfilter::IpFamily family;
  const DesiredState* now;
  const IncrementalCompiler::Changes* changes;  // the previous content of what may have changed
};
ChangeWrites PlanChangeWrites(const std::vector<FamilyChange>& families);

}  // namespace kr::netpol
