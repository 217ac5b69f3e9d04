#include "kube_router/netfilter/fakes.h"

#include <algorithm>

namespace kr::netfilter {
namespace {

bool IsStandardTarget(const std::string& target) {
  static const std::set<std::string> kTargets = {
      "ACCEPT", "DROP", "RETURN",   "REJECT", "MARK", "NFLOG",   "LOG",   "MASQUERADE",
      "SNAT",   "DNAT", "CONNMARK", "QUEUE",  "CT",   "NOTRACK", "TCPMSS"};
  return kTargets.contains(target);
}

Status CheckTarget(const TableSnapshot& table, const std::string& chain, const std::string& rule) {
  std::string target = RuleTarget(rule);
  if (target.empty() || IsStandardTarget(target) || table.chains.contains(target)) {
    return Status::Ok();
  }
  return Status::Error("fake iptables: rule in " + chain + " jumps to missing chain " + target);
}

TableSnapshot WithBuiltins(const std::string& table) {
  TableSnapshot snapshot;
  if (table == "filter") {
    for (const char* c : {"INPUT", "FORWARD", "OUTPUT"}) snapshot.chains[c];
  } else if (table == "nat" || table == "mangle") {
    for (const char* c : {"PREROUTING", "INPUT", "OUTPUT", "POSTROUTING"}) snapshot.chains[c];
  }
  return snapshot;
}

}  // namespace

FakeIptables::FakeIptables(IpFamily family) : family_(family) {
  tables_["filter"] = WithBuiltins("filter");
}

Result<TableSnapshot> FakeIptables::Save(const std::string& table) {
  ++save_calls_;
  if (fail_next_ > 0) {
    --fail_next_;
    return Status::Error("fake iptables: injected save failure");
  }
  auto it = tables_.find(table);
  return it == tables_.end() ? WithBuiltins(table) : it->second;
}

Status FakeIptables::Apply(const TableUpdate& update) {
  ++apply_calls_;
  last_update_ = update;
  if (fail_next_ > 0) {
    --fail_next_;
    return Status::Error("fake iptables: injected restore failure");
  }
  auto found = tables_.find(update.table);
  TableSnapshot table = found == tables_.end() ? WithBuiltins(update.table) : found->second;
  for (const auto& chain : update.replace_chains) {
    if (IsBuiltinChain(chain.name)) {
      return Status::Error("fake iptables: cannot replace built-in chain " + chain.name);
    }
    table.chains[chain.name].clear();
  }
  for (const auto& name : update.delete_chains) {
    if (IsBuiltinChain(name)) return Status::Error("fake iptables: cannot delete " + name);
    table.chains[name].clear();
  }
  for (const auto& del : update.delete_rules) {
    auto chain = table.chains.find(del.chain);
    if (chain == table.chains.end()) {
      return Status::Error("fake iptables: -D in missing chain " + del.chain);
    }
    auto rule = std::find(chain->second.begin(), chain->second.end(), del.rule);
    if (rule == chain->second.end()) {
      return Status::Error("fake iptables: no rule to delete in " + del.chain + ": " + del.rule);
    }
    chain->second.erase(rule);
  }
  for (const auto& chain : update.replace_chains) {
    for (const auto& rule : chain.rules) {
      if (auto s = CheckTarget(table, chain.name, rule); !s.ok()) return s;
      table.chains[chain.name].push_back(rule);
    }
  }
  for (const auto& ins : update.insert_rules) {
    auto chain = table.chains.find(ins.chain);
    if (chain == table.chains.end()) {
      return Status::Error("fake iptables: -I in missing chain " + ins.chain);
    }
    if (ins.position < 1 || static_cast<size_t>(ins.position) > chain->second.size() + 1) {
      return Status::Error("fake iptables: bad position in " + ins.chain);
    }
    if (auto s = CheckTarget(table, ins.chain, ins.rule); !s.ok()) return s;
    chain->second.insert(chain->second.begin() + (ins.position - 1), ins.rule);
  }
  for (const auto& name : update.delete_chains) {
    for (const auto& [chain, rules] : table.chains) {
      for (const auto& rule : rules) {
        if (RuleTarget(rule) == name) {
          return Status::Error("fake iptables: chain " + name + " is still referenced from " +
                               chain);
        }
      }
    }
    table.chains.erase(name);
  }
  tables_[update.table] = std::move(table);
  if (after_apply_) after_apply_();
  return Status::Ok();
}

Result<std::vector<std::string>> FakeIpset::ListNames() {
  if (fail_next_ > 0) {
    --fail_next_;
    return Status::Error("fake ipset: injected list failure");
  }
  std::vector<std::string> names;
  for (const auto& [name, set] : sets_) names.push_back(name);
  return names;
}

Result<std::map<std::string, IpsetSet>> FakeIpset::List() {
  if (fail_next_ > 0) {
    --fail_next_;
    return Status::Error("fake ipset: injected list failure");
  }
  return sets_;
}

Status FakeIpset::Apply(const IpsetUpdate& update) {
  ++apply_calls_;
  last_update_ = update;
  if (fail_next_ > 0) {
    --fail_next_;
    return Status::Error("fake ipset: injected restore failure");
  }
  auto sets = sets_;
  for (const auto& set : update.replace) {
    auto it = sets.find(set.name);
    if (it != sets.end() && (it->second.type != set.type || it->second.family != set.family)) {
      return Status::Error("fake ipset: cannot swap " + set.name + " with a set of another kind");
    }
    IpsetSet copy = set;
    copy.entries.clear();
    for (const auto& e : set.entries) {
      // ipset restore rejects a malformed entry and the whole batch with it.
      if (auto s = CheckEntry(set.type, set.family, e); !s.ok()) return s;
      copy.entries.insert(CanonicalEntry(e));
    }
    sets[set.name] = std::move(copy);
    ++replaced_sets_;
  }
  for (const auto& delta : update.deltas) {
    auto it = sets.find(delta.set);
    if (it == sets.end()) return Status::Error("fake ipset: delta for missing set " + delta.set);
    for (const auto& e : delta.del) {
      auto canonical = CanonicalEntry(e);
      std::erase_if(it->second.entries,
                    [&](const IpsetEntry& x) { return x.address == canonical.address; });
    }
    for (const auto& e : delta.add) {
      if (auto s = CheckEntry(it->second.type, it->second.family, e); !s.ok()) return s;
      it->second.entries.insert(CanonicalEntry(e));
    }
  }
  for (const auto& name : update.destroy) {
    if (iptables_ != nullptr) {
      for (const auto& [chain, rules] : iptables_->table("filter").chains) {
        for (const auto& rule : rules) {
          if (rule.find("--match-set " + name + " ") != std::string::npos) {
            return Status::Error("fake ipset: set " + name + " is in use by a rule in " + chain);
          }
        }
      }
    }
    sets.erase(name);
  }
  sets_ = std::move(sets);
  if (after_apply_) after_apply_();
  return Status::Ok();
}

}  // namespace kr::netfilter
