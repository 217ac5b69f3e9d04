#include "kube_router/proxy/firewall_plan.h"

#include <algorithm>
#include <set>

namespace kr::proxy {
namespace {

using netfilter::IpFamily;
using netfilter::IpsetSet;
using netfilter::IpsetType;
using netfilter::TableSnapshot;
using netfilter::TableUpdate;

bool InFamily(const IpAddress& ip, IpFamily family) {
  return ip.is_v4() == (family == IpFamily::kV4);
}

// "/32" or "/128" for a host match as iptables-save prints it.
std::string Host(const IpAddress& ip) { return ip.ToString() + (ip.is_v4() ? "/32" : "/128"); }

// Splits a rule into words, quotes removed, so two spellings of one rule compare equal: the
// text we render and the text iptables-save prints ("-d 10.0.0.1" and "-d 10.0.0.1/32").
std::vector<std::string> NormalWords(const std::string& rule) {
  std::vector<std::string> words;
  std::string word;
  bool quoted = false;
  bool any = false;
  for (char c : rule) {
    if (c == '"') {
      quoted = !quoted;
      any = true;
    } else if (c == ' ' && !quoted) {
      if (any) words.push_back(word);
      word.clear();
      any = false;
    } else {
      word += c;
      any = true;
    }
  }
  if (any) words.push_back(word);
  for (auto& w : words) {
    for (std::string_view suffix : {"/32", "/128"}) {
      if (w.ends_with(suffix) && w.find_first_of(".:") != std::string::npos) {
        w.resize(w.size() - suffix.size());
      }
    }
  }
  return words;
}

bool SameRules(const std::vector<std::string>& a, const std::vector<std::string>& b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    if (NormalWords(a[i]) != NormalWords(b[i])) return false;
  }
  return true;
}

bool Contains(const std::vector<std::string>& rules, const std::string& rule) {
  auto want = NormalWords(rule);
  return std::any_of(rules.begin(), rules.end(),
                     [&](const std::string& r) { return NormalWords(r) == want; });
}

const std::vector<std::string>* ChainOf(const TableSnapshot& table, const std::string& name) {
  auto it = table.chains.find(name);
  return it == table.chains.end() ? nullptr : &it->second;
}

std::optional<IpAddress> NodeIp(const FirewallInput& input, IpFamily family) {
  for (const auto& ip : input.node_ips) {
    if (InFamily(ip, family)) return ip;
  }
  return std::nullopt;
}

std::string IcmpAccept(IpFamily family, const std::string& comment, int type) {
  if (family == IpFamily::kV4) {
    return "-p icmp -m comment --comment \"" + comment + "\" -m icmp --icmp-type " +
           std::to_string(type) + " -j ACCEPT";
  }
  return "-p ipv6-icmp -m comment --comment \"" + comment + "\" -m icmp6 --icmpv6-type " +
         std::to_string(type) + " -j ACCEPT";
}

}  // namespace

const char* ProtocolText(netlink::IpvsProtocol protocol) {
  switch (protocol) {
    case netlink::IpvsProtocol::kTcp:
      return "tcp";
    case netlink::IpvsProtocol::kUdp:
      return "udp";
    case netlink::IpvsProtocol::kSctp:
      return "sctp";
  }
  return "tcp";
}

std::vector<HairpinRule> ExpandHairpin(const HairpinServicePort& port, bool hairpin_mode) {
  std::vector<HairpinRule> rules;
  if (!hairpin_mode && !port.annotated) return rules;
  auto add = [&](const IpAddress& endpoint, const IpAddress& vip, uint16_t vport) {
    if (vport != 0 && endpoint.is_v4() == vip.is_v4()) rules.push_back({endpoint, vip, vport});
  };
  for (const auto& endpoint : port.local_endpoints) {
    for (const auto& vip : port.cluster_ips) add(endpoint, vip, port.port);
    if (port.external_ips_annotated) {
      for (const auto& vip : port.external_ips) add(endpoint, vip, port.port);
    }
    if (port.node_port != 0) {
      for (const auto& vip : port.node_ips) add(endpoint, vip, port.node_port);
    }
  }
  return rules;
}

bool IsLocalIpsLink(const std::string& link_name) {
  for (const char* skip : {"dummy", "kube", "docker"}) {
    if (link_name.find(skip) != std::string::npos) return false;
  }
  return true;
}

std::string FamilySetName(const char* base, IpFamily family) {
  return (family == IpFamily::kV6 ? "inet6:" : "") + std::string(base);
}

std::vector<IpsetSet> DesiredSets(const FirewallInput& input, IpFamily family) {
  IpsetSet local{FamilySetName(kLocalIpsSet, family), IpsetType::kHashIp, family, {}};
  IpsetSet vips{FamilySetName(kServiceIpsSet, family), IpsetType::kHashIp, family, {}};
  IpsetSet ports{FamilySetName(kServiceIpPortsSet, family), IpsetType::kHashIpPort, family, {}};
  for (const auto& ip : input.local_ips) {
    if (InFamily(ip, family)) local.entries.insert({ip.ToString()});
  }
  for (const auto& svc : input.services) {
    if (!InFamily(svc.address, family)) continue;
    vips.entries.insert({svc.address.ToString()});
    ports.entries.insert(netfilter::CanonicalEntry(
        {netfilter::IpPortEntry(svc.address.ToString(), ProtocolText(svc.protocol), svc.port)}));
  }
  return {local, vips, ports};
}

std::vector<std::string> ServicesChainRules(const FirewallInput& input, IpFamily family) {
  if (!input.permit_all) return {};
  std::vector<std::string> rules;
  const bool v4 = family == IpFamily::kV4;
  rules.push_back(IcmpAccept(family, "allow icmp echo requests to service IPs", v4 ? 8 : 128));
  rules.push_back(
      IcmpAccept(family, "allow icmp destination unreachable messages to service IPs", v4 ? 3 : 1));
  rules.push_back(
      IcmpAccept(family, "allow icmp ttl exceeded messages to service IPs", v4 ? 11 : 3));
  if (!v4) {
    rules.push_back(
        IcmpAccept(family, "allow icmp neighbor solicitation messages to service IPs", 135));
    rules.push_back(
        IcmpAccept(family, "allow icmp neighbor advertisement messages to service IPs", 136));
    rules.push_back(IcmpAccept(family, "allow icmp echo reply messages to service IPs", 129));
  }
  rules.push_back(
      "-m comment --comment \"allow input traffic to ipvs services\" -m set --match-set " +
      FamilySetName(kServiceIpPortsSet, family) + " dst,dst -j ACCEPT");
  const bool have_local = std::any_of(input.local_ips.begin(), input.local_ips.end(),
                                      [&](const IpAddress& ip) { return InFamily(ip, family); });
  if (have_local) {
    rules.push_back(
        "-m comment --comment \"reject all unexpected traffic to service IPs\" -m set ! "
        "--match-set " +
        FamilySetName(kLocalIpsSet, family) + " dst -j REJECT --reject-with " +
        (v4 ? "icmp-port-unreachable" : "icmp6-port-unreachable"));
  }
  return rules;
}

std::string ServicesJumpRule(IpFamily family) {
  return "-m comment --comment \"handle traffic to IPVS service IPs in custom chain\" -m set "
         "--match-set " +
         FamilySetName(kServiceIpsSet, family) + " dst -j " + kServicesChain;
}

std::vector<std::string> MasqueradeRules(const FirewallInput& input, IpFamily family) {
  auto node_ip = NodeIp(input, family);
  if (!node_ip) return {};
  const std::string ipvs = "-m ipvs --vdir ORIGINAL --vmethod MASQ -m comment --comment \"\"";
  const std::string snat = " -j SNAT --to-source " + node_ip->ToString() + " --random-fully";
  std::vector<std::string> rules;
  std::set<IpPrefix> cidrs;
  for (const auto& cidr : input.pod_cidrs) {
    if (InFamily(cidr.address(), family)) cidrs.insert(cidr);
  }
  for (const auto& cidr : cidrs) {
    const std::string net = cidr.ToString();
    rules.push_back("! -s " + net + " ! -d " + net + " " + ipvs + snat);
  }
  if (input.masquerade_all || cidrs.empty()) rules.push_back(ipvs + snat);
  return rules;
}

std::vector<std::string> HairpinChainRules(const FirewallInput& input, IpFamily family) {
  std::set<HairpinRule> unique;
  for (const auto& rule : input.hairpin) {
    if (InFamily(rule.endpoint, family) && InFamily(rule.vip, family)) unique.insert(rule);
  }
  std::vector<std::string> rules;
  for (const auto& r : unique) {
    rules.push_back("-s " + Host(r.endpoint) + " -d " + Host(r.endpoint) + " -m ipvs --vaddr " +
                    Host(r.vip) + " --vport " + std::to_string(r.port) + " -j SNAT --to-source " +
                    r.vip.ToString());
  }
  return rules;
}

std::string HairpinJumpRule() { return std::string("-m ipvs --vdir ORIGINAL -j ") + kHairpinChain; }

bool IsOwnedPostroutingRule(const std::string& rule) {
  if (netfilter::RuleTarget(rule) == kHairpinChain) return true;
  auto words = NormalWords(rule);
  auto has = [&](const char* w) { return std::find(words.begin(), words.end(), w) != words.end(); };
  std::string target = netfilter::RuleTarget(rule);
  return has("ipvs") && has("--vmethod") && has("MASQ") &&
         (target == "SNAT" || target == "MASQUERADE");
}

TableUpdate PlanFilter(const TableSnapshot& filter, const FirewallInput& input, IpFamily family) {
  TableUpdate update;
  update.table = "filter";
  auto want = ServicesChainRules(input, family);
  const auto* chain = ChainOf(filter, kServicesChain);
  // The chain exists even without --ipvs-permit-all, as kube-router keeps it.
  if (chain == nullptr || !SameRules(*chain, want)) {
    update.replace_chains.push_back({kServicesChain, want});
  }
  const std::vector<std::string> none;
  const auto* found = ChainOf(filter, "INPUT");
  const std::vector<std::string>& input_chain = found == nullptr ? none : *found;
  // Below the policy controller's jump when it is there: its pod egress rules must see
  // pod-to-service traffic before our ACCEPT of service ports (kube-router's start-up order).
  // A jump of ours above it (the policy controller inserted its jump at the top after we read
  // INPUT, or an older agent) is moved, so the order never depends on who wrote first.
  int netpol_at = -1;  // the last jump of the policy controller
  for (size_t i = 0; i < input_chain.size(); ++i) {
    if (netfilter::RuleTarget(input_chain[i]) == kNetpolInputChain) netpol_at = static_cast<int>(i);
  }
  const std::string jump = ServicesJumpRule(family);
  bool keep_one = input.permit_all;
  for (size_t i = 0; i < input_chain.size(); ++i) {
    const std::string& rule = input_chain[i];
    if (netfilter::RuleTarget(rule) != kServicesChain) continue;
    if (keep_one && static_cast<int>(i) > netpol_at && NormalWords(rule) == NormalWords(jump)) {
      keep_one = false;  // the first exact jump stays where it is; duplicates and old forms go
      continue;
    }
    update.delete_rules.push_back({"INPUT", rule});
  }
  if (keep_one) {
    int position = 1;
    int kept = 0;  // rules left above, after the deletions of this update
    for (const auto& rule : input_chain) {
      if (netfilter::RuleTarget(rule) == kServicesChain) continue;  // all deleted above
      ++kept;
      if (netfilter::RuleTarget(rule) == kNetpolInputChain) position = kept + 1;
    }
    update.insert_rules.push_back({"INPUT", position, jump});
  }
  return update;
}

TableUpdate PlanNat(const TableSnapshot& nat, const FirewallInput& input, IpFamily family) {
  TableUpdate update;
  update.table = "nat";
  std::vector<std::string> post;
  if (const auto* p = ChainOf(nat, "POSTROUTING")) post = *p;

  // The hairpin jump first: with --masquerade-all the catch-all SNAT above it would give
  // hairpin traffic the node's address instead of the VIP.
  std::vector<std::string> want;
  const auto hairpin = HairpinChainRules(input, family);
  if (!hairpin.empty()) want.push_back(HairpinJumpRule());
  for (auto& rule : MasqueradeRules(input, family)) want.push_back(std::move(rule));

  // Our rules must stand in the order of `want` whatever the history (a hairpin jump added
  // after the SNATs would otherwise stay below them, where a fresh start has it above). Kept: the
  // owned rules that already follow `want`'s order from its start; deleted: unwanted ones, repeats,
  // and every owned rule after the first one out of order; the rest of `want` is appended at the
  // end of what is left.
  size_t next = 0;  // want[next] is the next rule that may be kept
  bool in_order = true;
  size_t remaining = post.size();
  for (const auto& rule : post) {
    if (!IsOwnedPostroutingRule(rule)) continue;
    if (in_order && next < want.size() && NormalWords(rule) == NormalWords(want[next])) {
      ++next;
      continue;
    }
    // An unwanted rule or a repeat of a kept one leaves the order intact; a wanted rule that
    // comes early does not.
    const bool kept_before =
        std::any_of(want.begin(), want.begin() + static_cast<std::ptrdiff_t>(next),
                    [&](const std::string& w) { return NormalWords(w) == NormalWords(rule); });
    if (Contains(want, rule) && !kept_before) in_order = false;
    update.delete_rules.push_back({"POSTROUTING", rule});
    --remaining;
  }
  const auto* chain = ChainOf(nat, kHairpinChain);
  if (!hairpin.empty() && (chain == nullptr || !SameRules(*chain, hairpin))) {
    update.replace_chains.push_back({kHairpinChain, hairpin});
  }
  for (size_t i = next; i < want.size(); ++i) {
    update.insert_rules.push_back({"POSTROUTING", static_cast<int>(++remaining), want[i]});
  }
  if (hairpin.empty() && chain != nullptr) update.delete_chains.push_back(kHairpinChain);
  return update;
}

SetPlan PlanSets(const std::vector<IpsetSet>& desired,
                 const std::map<std::string, IpsetSet>& existing) {
  SetPlan plan;
  // Deltas ordered so the firewall never sees a VIP without its ports or a REJECT without the
  // node's addresses: local-ips, svip-prt, svip for additions; the reverse for removals.
  auto rank = [](const std::string& name) {
    if (name.ends_with(kLocalIpsSet)) return 0;
    if (name.ends_with(kServiceIpPortsSet)) return 1;
    return 2;
  };
  std::vector<const IpsetSet*> ordered;
  for (const auto& set : desired) ordered.push_back(&set);
  std::stable_sort(ordered.begin(), ordered.end(), [&](const IpsetSet* a, const IpsetSet* b) {
    return rank(a->name) < rank(b->name);
  });
  std::vector<netfilter::IpsetDelta> removals;
  for (const IpsetSet* set : ordered) {
    auto it = existing.find(set->name);
    if (it == existing.end()) {
      plan.additions.replace.push_back(*set);
      continue;
    }
    if (it->second.type != set->type || it->second.family != set->family) {
      // A set of another kind under our name cannot be swapped or filled: the restore fails
      // naming it, loudly, instead of matching the wrong thing.
      plan.additions.replace.push_back(*set);
      continue;
    }
    netfilter::IpsetDelta add{set->name, {}, {}};
    netfilter::IpsetDelta del{set->name, {}, {}};
    for (const auto& e : set->entries) {
      if (!it->second.entries.contains(e)) add.add.push_back(e);
    }
    for (const auto& e : it->second.entries) {
      if (!set->entries.contains(e)) del.del.push_back(e);
    }
    if (!add.add.empty()) plan.additions.deltas.push_back(std::move(add));
    if (!del.del.empty()) removals.push_back(std::move(del));
  }
  plan.removals.deltas.assign(removals.rbegin(), removals.rend());
  return plan;
}

TableUpdate PlanFilterCleanup(const TableSnapshot& filter) {
  TableUpdate update;
  update.table = "filter";
  for (const auto& [chain, rules] : filter.chains) {
    if (chain == kServicesChain) continue;
    for (const auto& rule : rules) {
      if (netfilter::RuleTarget(rule) == kServicesChain)
        update.delete_rules.push_back({chain, rule});
    }
  }
  if (filter.chains.contains(kServicesChain)) update.delete_chains.push_back(kServicesChain);
  return update;
}

TableUpdate PlanNatCleanup(const TableSnapshot& nat) {
  TableUpdate update;
  update.table = "nat";
  if (const auto* post = ChainOf(nat, "POSTROUTING")) {
    for (const auto& rule : *post) {
      if (IsOwnedPostroutingRule(rule)) update.delete_rules.push_back({"POSTROUTING", rule});
    }
  }
  if (nat.chains.contains(kHairpinChain)) update.delete_chains.push_back(kHairpinChain);
  return update;
}

std::vector<std::string> OwnedSetNames() {
  std::vector<std::string> names;
  for (IpFamily family : {IpFamily::kV4, IpFamily::kV6}) {
    for (const char* base : {kServiceIpsSet, kServiceIpPortsSet, kLocalIpsSet}) {
      names.push_back(FamilySetName(base, family));
    }
  }
  return names;
}

}  // namespace kr::proxy
