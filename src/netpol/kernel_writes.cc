// SPDX-License-Identifier: Apache-2.0
#include "kube_router/netpol/kernel_writes.h"

#include <algorithm>
#include <iterator>
#include <sstream>

#include "kube_router/base/hashed_name.h"
#include "kube_router/base/ip.h"
#include "kube_router/netpol/naming.h"

namespace kr::netpol {

using netfilter::IpsetUpdate;
using netfilter::TableUpdate;

namespace {

struct BuiltinJump {
  const char* builtin;
  const char* chain;
};
constexpr BuiltinJump kBuiltinJumps[] = {
    {"INPUT", kInputChain}, {"FORWARD", kForwardChain}, {"OUTPUT", kOutputChain}};

// kube-router's comment (a digest of constants, no object data), so an upgrade keeps the jumps.
std::string JumpRule(const BuiltinJump& jump) {
  return "-m comment --comment \"kube-router netpol - " +
         NameDigest(std::string(jump.builtin) + jump.chain, 16) + "\" -j " + jump.chain;
}

}  // namespace

bool Deletable(const std::string& rule) { return rule.find('\n') == std::string::npos; }

std::set<std::string> PodsWithChains(const netfilter::TableSnapshot& filter) {
  std::set<std::string> out;
  auto it = filter.chains.find(kForwardChain);
  if (it == filter.chains.end()) return out;
  for (const auto& rule : it->second) {
    if (!netfilter::RuleTarget(rule).starts_with(kPodChainPrefix)) continue;
    std::istringstream words(rule);
    std::string word;
    while (words >> word) {
      if (word != "-d" || !(words >> word)) continue;
      auto prefix = IpPrefix::Parse(word);
      if (prefix && prefix->length() == (prefix->is_v4() ? 32 : 128)) {
        out.insert(prefix->address().ToString());
      }
    }
  }
  return out;
}

netfilter::IpsetDelta DiffSetEntries(const std::string& name,
                                     const std::set<netfilter::IpsetEntry>& old_entries,
                                     const std::set<netfilter::IpsetEntry>& entries) {
  netfilter::IpsetDelta delta{name, {}, {}};
  std::set_difference(entries.begin(), entries.end(), old_entries.begin(), old_entries.end(),
                      std::back_inserter(delta.add));
  std::set_difference(old_entries.begin(), old_entries.end(), entries.begin(), entries.end(),
                      std::back_inserter(delta.del));
  std::erase_if(delta.del, [&](const netfilter::IpsetEntry& e) {
    return std::any_of(delta.add.begin(), delta.add.end(),
                       [&](const auto& a) { return a.address == e.address; });
  });
  return delta;
}

TableUpdate PlanFullChains(const DesiredState& desired, const netfilter::TableSnapshot& snapshot) {
  TableUpdate update;
  for (const auto& [name, chain] : desired.chains) update.replace_chains.push_back(chain);
  for (const auto& [name, rules] : snapshot.chains) {
    if (IsOwnedChain(name) && !desired.chains.contains(name)) update.delete_chains.push_back(name);
  }
  // Our jump must be the first rule of each built-in chain, and there must be only one.
  for (const auto& jump : kBuiltinJumps) {
    auto found = snapshot.chains.find(jump.builtin);
    const std::vector<std::string> none;
    const auto& rules = found == snapshot.chains.end() ? none : found->second;
    std::vector<size_t> positions;
    for (size_t i = 0; i < rules.size(); ++i) {
      if (netfilter::RuleTarget(rules[i]) == jump.chain && Deletable(rules[i])) {
        positions.push_back(i);
      }
    }
    if (positions.size() == 1 && positions[0] == 0) continue;
    for (size_t pos : positions) update.delete_rules.push_back({jump.builtin, rules[pos]});
    update.insert_rules.push_back({jump.builtin, 1, JumpRule(jump)});
  }
  return update;
}

FullSetWrites PlanFullSets(const std::vector<const DesiredState*>& states,
                           const std::vector<netfilter::IpFamily>& families,
                           const std::vector<netfilter::TableSnapshot>& snapshots) {
  FullSetWrites out;
  for (size_t i = 0; i < states.size(); ++i) {
    const std::string local_pods = LocalPodsSetName(families[i]);
    for (const auto& [name, set] : states[i]->sets) {
      out.wanted.insert(name);
      if (name != local_pods) {
        out.sets.replace.push_back(set);
        continue;
      }
      auto programmed = PodsWithChains(snapshots[i]);
      netfilter::IpsetSet now = set;
      std::erase_if(now.entries, [&](const auto& e) { return !programmed.contains(e.address); });
      out.sets.replace.push_back(std::move(now));
      out.local_pods_after_chains.replace.push_back(set);
    }
  }
  return out;
}

IpsetUpdate PlanStaleSets(const std::vector<std::string>& existing,
                          const std::set<std::string>& wanted) {
  IpsetUpdate stale;
  for (const auto& name : existing) {
    if (IsOwnedSet(name) && !wanted.contains(name)) stale.destroy.push_back(name);
  }
  return stale;
}

ChangeWrites PlanChangeWrites(const std::vector<FamilyChange>& families) {
  // New and changed sets before the chains that may reference them; removed sets after.
  // kube-router-local-pods loses pods before their chains go and gains them after their chains
  // are written (so default deny never lets a pod without a chain through).
  ChangeWrites out;
  for (const auto& family : families) {
    const DesiredState& now = *family.now;
    const std::string local_pods = LocalPodsSetName(family.family);
    for (const auto& [name, old] : family.changes->sets) {
      auto it = now.sets.find(name);
      if (it == now.sets.end()) {
        if (old) out.after.destroy.push_back(name);
        continue;
      }
      if (!old) {
        if (name == local_pods) {
          out.before.replace.push_back({name, it->second.type, it->second.family, {}});
          out.local_pods_after_chains.replace.push_back(it->second);
        } else {
          out.before.replace.push_back(it->second);
        }
        continue;
      }
      if (old->entries == it->second.entries) continue;
      netfilter::IpsetDelta delta = DiffSetEntries(name, old->entries, it->second.entries);
      if (name == local_pods && !delta.add.empty()) {
        out.local_pods_after_chains.deltas.push_back({name, std::move(delta.add), {}});
        delta.add.clear();
      }
      // (An empty delta would still cost an `ipset restore` process.)
      if (!delta.add.empty() || !delta.del.empty()) out.before.deltas.push_back(std::move(delta));
    }
    TableUpdate update;
    for (const auto& [name, old] : family.changes->chains) {
      auto it = now.chains.find(name);
      if (it == now.chains.end()) {
        if (old) update.delete_chains.push_back(name);
      } else if (!old || *old != it->second) {
        update.replace_chains.push_back(it->second);
      }
    }
    out.chains.push_back(std::move(update));
  }
  return out;
}

}  // namespace kr::netpol
