#include "kube_router/proxy/proxy_firewall.h"

#include <algorithm>
#include <iterator>

#include "kube_router/base/log.h"

namespace kr::proxy {

using netfilter::IpFamily;

ProxyFirewall::ProxyFirewall(netfilter::Iptables* v4, netfilter::Iptables* v6,
                             netfilter::Ipset* ipset)
    : v4_(v4), v6_(v6), ipset_(ipset) {}

netfilter::Iptables* ProxyFirewall::Tables(IpFamily family) const {
  return family == IpFamily::kV4 ? v4_ : v6_;
}

std::vector<IpFamily> ProxyFirewall::Families() const {
  std::vector<IpFamily> families;
  for (IpFamily family : {IpFamily::kV4, IpFamily::kV6}) {
    if (Tables(family) != nullptr) families.push_back(family);
  }
  return families;
}

namespace {

// Sorted and unique; a linear pass when the caller already gives sorted input (a std::set).
template <typename T>
std::vector<T> SortedUnique(std::vector<T> items) {
  if (!std::is_sorted(items.begin(), items.end())) std::sort(items.begin(), items.end());
  items.erase(std::unique(items.begin(), items.end()), items.end());
  return items;
}

// Takes `gone` (held) out of the sorted `items` and puts `fresh` (not held) in, both sorted: in
// place for a few (an event; growing by an eighth, not doubling), in one merge for many.
template <typename T>
void ChangeSorted(std::vector<T>& items, const std::vector<T>& gone, const std::vector<T>& fresh) {
  if (gone.size() + fresh.size() <= 16) {
    for (const T& item : gone) {
      auto it = std::lower_bound(items.begin(), items.end(), item);
      if (it != items.end() && *it == item) items.erase(it);
    }
    for (const T& item : fresh) {
      if (items.size() == items.capacity()) items.reserve(items.size() + items.size() / 8 + 16);
      items.insert(std::lower_bound(items.begin(), items.end(), item), item);
    }
    return;
  }
  std::vector<T> kept;
  kept.reserve(items.size());
  std::set_difference(items.begin(), items.end(), gone.begin(), gone.end(),
                      std::back_inserter(kept));
  std::vector<T> merged;
  merged.reserve(kept.size() + fresh.size());
  std::merge(kept.begin(), kept.end(), fresh.begin(), fresh.end(), std::back_inserter(merged));
  items = std::move(merged);
}

template <typename T>
std::vector<T> Minus(const std::vector<T>& a, const std::vector<T>& b) {
  std::vector<T> out;
  std::set_difference(a.begin(), a.end(), b.begin(), b.end(), std::back_inserter(out));
  return out;
}

template <typename T>
std::vector<T> Minus(const std::vector<T>& a, const std::set<T>& b) {
  std::vector<T> out;
  std::set_difference(a.begin(), a.end(), b.begin(), b.end(), std::back_inserter(out));
  return out;
}

template <typename T>
std::vector<T> Minus(const std::set<T>& a, const std::vector<T>& b) {
  std::vector<T> out;
  std::set_difference(a.begin(), a.end(), b.begin(), b.end(), std::back_inserter(out));
  return out;
}

IpFamily FamilyOf(const IpAddress& ip) { return ip.is_v4() ? IpFamily::kV4 : IpFamily::kV6; }

// The set entries one change adds and removes, per family, in plain values.
struct EntryDelta {
  std::vector<IpAddress> add_local, del_local, add_vips, del_vips;
  std::vector<VipPort> add_ports, del_ports;
};

}  // namespace

SetPlan ProxyFirewall::ApplyToState(const FirewallChange& change) {
  std::map<IpFamily, EntryDelta> delta;
  // The services that go (removed, not added again, held) and come (added, not held).
  const std::vector<VipPort> adding = SortedUnique(change.add_services);
  std::vector<VipPort> gone;
  {
    const std::vector<VipPort> removing = Minus(SortedUnique(change.remove_services), adding);
    std::set_intersection(removing.begin(), removing.end(), state_.services.begin(),
                          state_.services.end(), std::back_inserter(gone));
  }
  const std::vector<VipPort> fresh = Minus(adding, state_.services);
  // A VIP is in kube-router-svip while it has a port: the held services are sorted by address
  // first, so that is a search, not a count per VIP kept beside them (docs/memory.md).
  auto holds_vip = [this](const IpAddress& address) {
    auto it = std::lower_bound(state_.services.begin(), state_.services.end(), address,
                               [](const VipPort& p, const IpAddress& a) { return p.address < a; });
    return it != state_.services.end() && it->address == address;
  };
  for (size_t i = 0; i < fresh.size(); ++i) {  // (sorted: a VIP's ports are adjacent)
    const VipPort& p = fresh[i];
    EntryDelta& d = delta[FamilyOf(p.address)];
    d.add_ports.push_back(p);
    const bool first_of_vip = i == 0 || fresh[i - 1].address != p.address;
    if (first_of_vip && !holds_vip(p.address)) d.add_vips.push_back(p.address);
  }
  ChangeSorted(state_.services, gone, fresh);
  for (size_t i = 0; i < gone.size(); ++i) {
    const VipPort& p = gone[i];
    EntryDelta& d = delta[FamilyOf(p.address)];
    d.del_ports.push_back(p);
    const bool first_of_vip = i == 0 || gone[i - 1].address != p.address;
    if (first_of_vip && !holds_vip(p.address)) d.del_vips.push_back(p.address);
  }
  const std::set<HairpinRule> hairpin_adding(change.add_hairpin.begin(), change.add_hairpin.end());
  for (const HairpinRule& r : change.remove_hairpin) {
    if (!hairpin_adding.contains(r)) state_.hairpin.erase(r);
  }
  state_.hairpin.insert(hairpin_adding.begin(), hairpin_adding.end());

  std::vector<IpAddress> local = SortedUnique(change.local_ips);
  for (const IpAddress& ip : Minus(local, state_.local_ips)) {
    delta[FamilyOf(ip)].add_local.push_back(ip);
  }
  for (const IpAddress& ip : Minus(state_.local_ips, local)) {
    delta[FamilyOf(ip)].del_local.push_back(ip);
  }
  state_.local_ips = std::move(local);
  state_.node_ips = change.node_ips;
  state_.pod_cidrs = change.pod_cidrs;

  // Additions: local-ips, then svip-prt, then svip (a VIP never jumps to the chain before its
  // ports are accepted); removals the other way round. Only changed entries become text.
  auto ip_entries = [](std::vector<IpAddress> ips) {
    std::sort(ips.begin(), ips.end());
    std::vector<netfilter::IpsetEntry> out;
    for (const auto& ip : ips) out.push_back({ip.ToString()});
    return out;
  };
  auto port_entries = [](std::vector<VipPort> ports) {
    std::sort(ports.begin(), ports.end());
    std::vector<netfilter::IpsetEntry> out;
    for (const auto& p : ports) {
      out.push_back(netfilter::CanonicalEntry(
          {netfilter::IpPortEntry(p.address.ToString(), ProtocolText(p.protocol), p.port)}));
    }
    return out;
  };
  auto add = [](netfilter::IpsetUpdate& update, const std::string& set,
                std::vector<netfilter::IpsetEntry> entries, bool removal) {
    if (entries.empty()) return;
    netfilter::IpsetDelta d{set, {}, {}};
    (removal ? d.del : d.add) = std::move(entries);
    update.deltas.push_back(std::move(d));
  };
  SetPlan plan;
  for (IpFamily family : Families()) {
    auto it = delta.find(family);
    if (it == delta.end()) continue;
    EntryDelta& d = it->second;
    // A VIP that lost one port and gained another in this change stays in svip.
    std::sort(d.add_vips.begin(), d.add_vips.end());
    std::sort(d.del_vips.begin(), d.del_vips.end());
    std::vector<IpAddress> both;
    std::set_intersection(d.add_vips.begin(), d.add_vips.end(), d.del_vips.begin(),
                          d.del_vips.end(), std::back_inserter(both));
    d.add_vips = Minus(d.add_vips, both);
    d.del_vips = Minus(d.del_vips, both);
    const std::string local_set = FamilySetName(kLocalIpsSet, family);
    const std::string ports_set = FamilySetName(kServiceIpPortsSet, family);
    const std::string vips_set = FamilySetName(kServiceIpsSet, family);
    add(plan.additions, local_set, ip_entries(d.add_local), false);
    add(plan.additions, ports_set, port_entries(d.add_ports), false);
    add(plan.additions, vips_set, ip_entries(d.add_vips), false);
    add(plan.removals, vips_set, ip_entries(d.del_vips), true);
    add(plan.removals, ports_set, port_entries(d.del_ports), true);
    add(plan.removals, local_set, ip_entries(d.del_local), true);
  }
  return plan;
}

FirewallInput ProxyFirewall::RulesInput() const {
  FirewallInput in;
  in.permit_all = state_.permit_all;
  in.masquerade_all = state_.masquerade_all;
  in.local_ips = state_.local_ips;
  in.node_ips = state_.node_ips;
  in.pod_cidrs = state_.pod_cidrs;
  in.hairpin.assign(state_.hairpin.begin(), state_.hairpin.end());
  return in;
}

FirewallInput ProxyFirewall::CurrentInput() const {
  FirewallInput in = RulesInput();
  in.services.assign(state_.services.begin(), state_.services.end());
  return in;
}

Status ProxyFirewall::Sync(const FirewallInput& input, bool verify) {
  // The difference to the last input, as the event path takes it.
  const std::vector<VipPort> services = SortedUnique(input.services);
  const std::vector<HairpinRule> hairpin = SortedUnique(input.hairpin);
  FirewallChange change;
  change.add_services = Minus(services, state_.services);
  change.remove_services = Minus(state_.services, services);
  change.add_hairpin = Minus(hairpin, state_.hairpin);
  change.remove_hairpin = Minus(state_.hairpin, hairpin);
  change.local_ips = input.local_ips;
  change.node_ips = input.node_ips;
  change.pod_cidrs = input.pod_cidrs;
  state_.permit_all = input.permit_all;
  state_.masquerade_all = input.masquerade_all;
  SetPlan sets = ApplyToState(change);
  return Write(std::move(sets), verify || !image_valid_);
}

Status ProxyFirewall::Update(const FirewallChange& change) {
  SetPlan sets = ApplyToState(change);
  return Write(std::move(sets), !image_valid_);
}

Status ProxyFirewall::Write(SetPlan sets, bool read_kernel) {
  image_valid_ = false;  // until this write succeeds
  const std::vector<IpFamily> families = Families();
  const FirewallInput rules_input = RulesInput();
  if (read_kernel) {
    // Against what the kernel holds: missing sets are created, drift repaired.
    auto listed = ipset_->List();
    if (!listed.ok()) return listed.status().Context("listing ipsets");
    std::map<std::string, netfilter::IpsetSet> existing;
    for (const auto& name : OwnedSetNames()) {
      if (auto it = listed->find(name); it != listed->end()) existing.insert(*it);
    }
    const FirewallInput full = CurrentInput();
    std::vector<netfilter::IpsetSet> desired_sets;
    for (IpFamily family : families) {
      for (auto& set : DesiredSets(full, family)) desired_sets.push_back(std::move(set));
    }
    sets = PlanSets(desired_sets, existing);
  }

  // 1. New sets and entries first: the rules about to be written may name them, and a REJECT
  //    must never see an empty kube-router-local-ips.
  if (!sets.additions.empty()) {
    if (auto s = ipset_->Apply(sets.additions); !s.ok()) return s.Context("adding ipset entries");
  }

  // 2. Each table with one --noflush delta, planned against what the kernel holds; a table is
  //    read only when its rules differ from the image of the last write (or on verify).
  std::map<IpFamily, FamilyImage> next = image_;
  struct TablesToWrite {
    IpFamily family;
    bool filter, nat;
  };
  std::vector<TablesToWrite> writes;
  for (IpFamily family : families) {
    FamilyImage want{ServicesChainRules(rules_input, family), MasqueradeRules(rules_input, family),
                     HairpinChainRules(rules_input, family)};
    auto old = image_.find(family);
    const bool filter_same =
        !read_kernel && old != image_.end() && old->second.services_rules == want.services_rules;
    const bool nat_same = !read_kernel && old != image_.end() &&
                          old->second.masquerade_rules == want.masquerade_rules &&
                          old->second.hairpin_rules == want.hairpin_rules;
    if (!filter_same || !nat_same) writes.push_back({family, !filter_same, !nat_same});
    next[family] = std::move(want);
  }
  if (!writes.empty()) {
    // Taken before the first read, held to the last table write: the policy controller places
    // its own jumps on its thread. The event path's set-only writes never wait for it.
    kr::MutexLock placing(netfilter::BuiltinChainsMutex());
    for (const TablesToWrite& w : writes) {
      if (auto s = WriteTables(w.family, w.filter, w.nat, rules_input); !s.ok()) return s;
    }
  }

  // 3. Entries that went away, after the rules that needed them.
  if (!sets.removals.empty()) {
    if (auto s = ipset_->Apply(sets.removals); !s.ok()) {
      return s.Context("removing ipset entries");
    }
  }
  image_ = std::move(next);
  image_valid_ = true;
  return Status::Ok();
}

Status ProxyFirewall::WriteTables(IpFamily family, bool filter, bool nat,
                                  const FirewallInput& rules_input) {
  netfilter::Iptables* tables = Tables(family);
  // Reads `table` and writes what `plan` makes of it; `what` names those rules in an error.
  auto write = [&](const char* table, auto plan, const char* what) {
    auto snapshot = tables->Save(table);
    if (!snapshot.ok()) {
      return snapshot.status().Context(std::string("reading the ") + table + " table");
    }
    auto update = plan(*snapshot, rules_input, family);
    if (update.empty()) return Status::Ok();
    return tables->Apply(update).Context(std::string("writing ") + what + " (" +
                                         netfilter::IpFamilyName(family) + ")");
  };
  if (filter) {
    if (auto s = write("filter", PlanFilter, "the VIP firewall"); !s.ok()) return s;
  }
  return nat ? write("nat", PlanNat, "masquerade/hairpin rules") : Status::Ok();
}

Status ProxyFirewall::Cleanup() {
  image_valid_ = false;
  state_ = State{};
  image_.clear();
  Status result = Status::Ok();
  auto keep_first = [&](Status s) {
    if (!s.ok()) {
      KR_LOG_ERROR("service proxy cleanup: {}", s.message());
      if (result.ok()) result = s;
    }
  };
  bool rules_gone = true;
  for (netfilter::Iptables* tables : {v4_, v6_}) {
    if (tables == nullptr) continue;
    for (const char* table : {"filter", "nat"}) {
      auto snapshot = tables->Save(table);
      if (!snapshot.ok()) {
        keep_first(snapshot.status().Context(std::string("reading ") + table));
        rules_gone = false;
        continue;
      }
      auto update =
          std::string(table) == "filter" ? PlanFilterCleanup(*snapshot) : PlanNatCleanup(*snapshot);
      if (update.empty()) continue;
      auto s = tables->Apply(update);
      if (!s.ok()) rules_gone = false;
      keep_first(s.Context(std::string("removing our rules from ") + table));
    }
  }
  // The sets only after the rules that match on them are gone (a referenced set cannot be
  // destroyed).
  if (rules_gone) {
    netfilter::IpsetUpdate destroy;
    destroy.destroy = OwnedSetNames();
    keep_first(ipset_->Apply(destroy).Context("destroying the proxy's ipsets"));
  }
  return result;
}

}  // namespace kr::proxy
