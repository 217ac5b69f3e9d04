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

namespace {

// Sorted and unique; a linear pass when the caller already gives sorted input (a std::set).
template <typename T>
std::vector<T> SortedUnique(std::vector<T> items) {
  if (!std::is_sorted(items.begin(), items.end())) std::sort(items.begin(), items.end());
  items.erase(std::unique(items.begin(), items.end()), items.end());
  return items;
}

template <typename T>
std::vector<T> Minus(const std::vector<T>& a, const std::vector<T>& b) {
  std::vector<T> out;
  std::set_difference(a.begin(), a.end(), b.begin(), b.end(), std::back_inserter(out));
  return out;
}

}  // namespace

ProxyFirewall::SetEntries ProxyFirewall::Normalize(const FirewallInput& input, IpFamily family) {
  const bool v4 = family == IpFamily::kV4;
  SetEntries out;
  for (const auto& svc : input.services) {
    if (svc.address.is_v4() != v4) continue;
    out.ports.push_back(svc);
    out.vips.push_back(svc.address);
  }
  for (const auto& ip : input.local_ips) {
    if (ip.is_v4() == v4) out.local.push_back(ip);
  }
  out.ports = SortedUnique(std::move(out.ports));
  // Ports sort by address first, so their addresses come out sorted when the ports were.
  out.vips.clear();
  for (const auto& p : out.ports) {
    if (out.vips.empty() || out.vips.back() != p.address) out.vips.push_back(p.address);
  }
  out.local = SortedUnique(std::move(out.local));
  return out;
}

// Deltas between two normalized images, in the order PlanSets uses: additions to local-ips,
// svip-prt, svip; removals from svip, svip-prt, local-ips. Only changed entries are turned into
// text, so an event costs O(services) comparisons of plain values, not of strings.
SetPlan ProxyFirewall::PlanSetDeltas(const SetEntries& old, const SetEntries& now,
                                     IpFamily family) {
  auto ip_entries = [](const std::vector<IpAddress>& ips) {
    std::vector<netfilter::IpsetEntry> out;
    for (const auto& ip : ips) out.push_back({ip.ToString()});
    return out;
  };
  auto port_entries = [](const std::vector<VipPort>& ports) {
    std::vector<netfilter::IpsetEntry> out;
    for (const auto& p : ports) {
      out.push_back(netfilter::CanonicalEntry(
          {netfilter::IpPortEntry(p.address.ToString(), p.protocol, p.port)}));
    }
    return out;
  };
  const std::string local = FamilySetName(kLocalIpsSet, family);
  const std::string ports = FamilySetName(kServiceIpPortsSet, family);
  const std::string vips = FamilySetName(kServiceIpsSet, family);
  SetPlan plan;
  auto add = [](netfilter::IpsetUpdate& update, const std::string& set,
                std::vector<netfilter::IpsetEntry> entries, bool removal) {
    if (entries.empty()) return;
    netfilter::IpsetDelta delta{set, {}, {}};
    (removal ? delta.del : delta.add) = std::move(entries);
    update.deltas.push_back(std::move(delta));
  };
  add(plan.additions, local, ip_entries(Minus(now.local, old.local)), false);
  add(plan.additions, ports, port_entries(Minus(now.ports, old.ports)), false);
  add(plan.additions, vips, ip_entries(Minus(now.vips, old.vips)), false);
  add(plan.removals, vips, ip_entries(Minus(old.vips, now.vips)), true);
  add(plan.removals, ports, port_entries(Minus(old.ports, now.ports)), true);
  add(plan.removals, local, ip_entries(Minus(old.local, now.local)), true);
  return plan;
}

Status ProxyFirewall::Sync(const FirewallInput& input, bool verify) {
  const bool read_kernel = verify || !image_valid_;
  image_valid_ = false;  // until this sync succeeds
  std::vector<IpFamily> families;
  for (IpFamily family : {IpFamily::kV4, IpFamily::kV6}) {
    if (Tables(family) != nullptr) families.push_back(family);
  }
  // The common case of an event that changed no VIP, port or local address: one linear
  // comparison of the input with the last one, no set work at all.
  const bool same_entries =
      !read_kernel && input.services == last_services_ && input.local_ips == last_local_ips_;
  std::map<IpFamily, SetEntries> entries;
  if (!same_entries) {
    for (IpFamily family : families) entries[family] = Normalize(input, family);
  }

  SetPlan sets;
  if (same_entries) {
    // nothing to do for the sets
  } else if (read_kernel) {
    // Against what the kernel holds: missing sets are created, drift repaired.
    auto listed = ipset_->List();
    if (!listed.ok()) return listed.status().Context("listing ipsets");
    std::map<std::string, netfilter::IpsetSet> existing;
    for (const auto& name : OwnedSetNames()) {
      if (auto it = listed->find(name); it != listed->end()) existing.insert(*it);
    }
    std::vector<netfilter::IpsetSet> desired_sets;
    for (IpFamily family : families) {
      for (auto& set : DesiredSets(input, family)) desired_sets.push_back(std::move(set));
    }
    sets = PlanSets(desired_sets, existing);
  } else {
    for (IpFamily family : families) {
      SetPlan part = PlanSetDeltas(entries_image_[family], entries[family], family);
      for (auto& d : part.additions.deltas) sets.additions.deltas.push_back(std::move(d));
      for (auto& d : part.removals.deltas) sets.removals.deltas.push_back(std::move(d));
    }
  }

  // 1. New sets and entries first: the rules about to be written may name them, and a REJECT
  //    must never see an empty kube-router-local-ips.
  if (!sets.additions.empty()) {
    if (auto s = ipset_->Apply(sets.additions); !s.ok()) return s.Context("adding ipset entries");
  }

  // 2. Each table with one --noflush delta, planned against what the kernel holds; a table is
  //    read only when its rules differ from the image of the last sync (or on verify).
  std::map<IpFamily, FamilyImage> next = image_;
  for (IpFamily family : families) {
    netfilter::Iptables* tables = Tables(family);
    FamilyImage want{ServicesChainRules(input, family), MasqueradeRules(input, family),
                     HairpinChainRules(input, family)};
    auto old = image_.find(family);
    const bool filter_same =
        !read_kernel && old != image_.end() && old->second.services_rules == want.services_rules;
    const bool nat_same = !read_kernel && old != image_.end() &&
                          old->second.masquerade_rules == want.masquerade_rules &&
                          old->second.hairpin_rules == want.hairpin_rules;
    if (!filter_same) {
      auto filter = tables->Save("filter");
      if (!filter.ok()) return filter.status().Context("reading the filter table");
      auto update = PlanFilter(*filter, input, family);
      if (!update.empty()) {
        if (auto s = tables->Apply(update); !s.ok()) {
          return s.Context(std::string("writing the VIP firewall (") +
                           netfilter::IpFamilyName(family) + ")");
        }
      }
    }
    if (!nat_same) {
      auto nat = tables->Save("nat");
      if (!nat.ok()) return nat.status().Context("reading the nat table");
      auto update = PlanNat(*nat, input, family);
      if (!update.empty()) {
        if (auto s = tables->Apply(update); !s.ok()) {
          return s.Context(std::string("writing masquerade/hairpin rules (") +
                           netfilter::IpFamilyName(family) + ")");
        }
      }
    }
    next[family] = std::move(want);
  }

  // 3. Entries that went away, after the rules that needed them.
  if (!sets.removals.empty()) {
    if (auto s = ipset_->Apply(sets.removals); !s.ok()) {
      return s.Context("removing ipset entries");
    }
  }
  if (!same_entries) {
    entries_image_ = std::move(entries);
    last_services_ = input.services;
    last_local_ips_ = input.local_ips;
  }
  image_ = std::move(next);
  image_valid_ = true;
  return Status::Ok();
}

Status ProxyFirewall::Cleanup() {
  image_valid_ = false;
  entries_image_.clear();
  last_services_.clear();
  last_local_ips_.clear();
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
