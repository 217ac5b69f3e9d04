#include "kube_router/proxy/proxy_firewall.h"

#include "kube_router/base/log.h"

namespace kr::proxy {

using netfilter::IpFamily;

ProxyFirewall::ProxyFirewall(netfilter::Iptables* v4, netfilter::Iptables* v6,
                             netfilter::Ipset* ipset)
    : v4_(v4), v6_(v6), ipset_(ipset) {}

netfilter::Iptables* ProxyFirewall::Tables(IpFamily family) const {
  return family == IpFamily::kV4 ? v4_ : v6_;
}

Status ProxyFirewall::Sync(const FirewallInput& input, bool verify) {
  const bool read_kernel = verify || !image_valid_ || !sets_image_.has_value();
  image_valid_ = false;  // until this sync succeeds
  std::vector<IpFamily> families;
  for (IpFamily family : {IpFamily::kV4, IpFamily::kV6}) {
    if (Tables(family) != nullptr) families.push_back(family);
  }

  std::map<std::string, netfilter::IpsetSet> existing;
  if (read_kernel) {
    auto listed = ipset_->List();
    if (!listed.ok()) return listed.status().Context("listing ipsets");
    for (const auto& name : OwnedSetNames()) {
      if (auto it = listed->find(name); it != listed->end()) existing.insert(*it);
    }
  } else {
    existing = *sets_image_;
  }
  std::vector<netfilter::IpsetSet> desired_sets;
  for (IpFamily family : families) {
    for (auto& set : DesiredSets(input, family)) desired_sets.push_back(std::move(set));
  }
  SetPlan sets = PlanSets(desired_sets, existing);

  // 1. New sets and entries first: the rules about to be written may name them, and a REJECT
  //    must never see an empty kube-router-local-ips.
  if (!sets.additions.empty()) {
    if (auto s = ipset_->Apply(sets.additions); !s.ok()) return s.Context("adding ipset entries");
  }
  std::map<std::string, netfilter::IpsetSet> after_additions = existing;
  for (const auto& set : sets.additions.replace) after_additions[set.name] = set;
  for (const auto& delta : sets.additions.deltas) {
    for (const auto& e : delta.add) after_additions[delta.set].entries.insert(e);
  }
  sets_image_ = after_additions;

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
  std::map<std::string, netfilter::IpsetSet> final_sets;
  for (const auto& set : desired_sets) final_sets[set.name] = set;
  sets_image_ = std::move(final_sets);
  image_ = std::move(next);
  image_valid_ = true;
  return Status::Ok();
}

Status ProxyFirewall::Cleanup() {
  image_valid_ = false;
  sets_image_.reset();
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
