#include "kube_router/routing/pod_egress.h"

#include <algorithm>

namespace kr::routing {
namespace {

bool HasJump(const netfilter::TableSnapshot& nat) {
  auto post = nat.chains.find("POSTROUTING");
  if (post == nat.chains.end()) return false;
  return std::any_of(post->second.begin(), post->second.end(), [](const std::string& rule) {
    return netfilter::RuleTarget(rule) == kPodEgressChain;
  });
}

}  // namespace

std::string PodSubnetsSetName(netfilter::IpFamily family) {
  return (family == netfilter::IpFamily::kV6 ? kIpv6SetPrefix : "") + std::string(kPodSubnetsSet);
}

std::string NodeIpsSetName(netfilter::IpFamily family) {
  return (family == netfilter::IpFamily::kV6 ? kIpv6SetPrefix : "") + std::string(kNodeIpsSet);
}

std::vector<netfilter::IpsetSet> DesiredEgressSets(const std::vector<NodeInfo>& nodes,
                                                   netfilter::IpFamily family) {
  const bool v4 = family == netfilter::IpFamily::kV4;
  netfilter::IpsetSet pods{PodSubnetsSetName(family), netfilter::IpsetType::kHashNet, family, {}};
  netfilter::IpsetSet ips{NodeIpsSetName(family), netfilter::IpsetType::kHashIp, family, {}};
  for (const auto& node : nodes) {
    for (const auto& cidr : node.pod_cidrs) {
      if (cidr.is_v4() == v4) {
        pods.entries.insert(netfilter::CanonicalEntry({cidr.ToString(), false}));
      }
    }
    auto ip = AddressOf(node, v4 ? IpAddress::Family::kV4 : IpAddress::Family::kV6);
    if (ip) ips.entries.insert({ip->ToString(), false});
  }
  return {pods, ips};
}

netfilter::IpsetUpdate PlanSetUpdate(const std::vector<netfilter::IpsetSet>& desired,
                                     const std::map<std::string, netfilter::IpsetSet>& existing) {
  netfilter::IpsetUpdate update;
  for (const auto& set : desired) {
    auto it = existing.find(set.name);
    if (it == existing.end() || it->second.type != set.type) {
      update.replace.push_back(set);
      continue;
    }
    // Deltas, so a live set is never rebuilt for a single node coming or going.
    netfilter::IpsetDelta delta{set.name, {}, {}};
    for (const auto& entry : set.entries) {
      if (!it->second.entries.count(entry)) delta.add.push_back(entry);
    }
    for (const auto& entry : it->second.entries) {
      if (!set.entries.count(entry)) delta.del.push_back(entry);
    }
    if (!delta.add.empty() || !delta.del.empty()) update.deltas.push_back(std::move(delta));
  }
  return update;
}

std::string PodEgressRule(netfilter::IpFamily family) {
  const std::string pods = PodSubnetsSetName(family);
  return "-m set --match-set " + pods + " src -m set ! --match-set " + pods +
         " dst -m set ! --match-set " + NodeIpsSetName(family) + " dst -j MASQUERADE";
}

netfilter::TableUpdate PlanPodEgress(const netfilter::TableSnapshot& nat, bool enabled,
                                     netfilter::IpFamily family) {
  netfilter::TableUpdate update;
  update.table = "nat";
  auto chain = nat.chains.find(kPodEgressChain);
  const bool jump = HasJump(nat);
  const std::string jump_rule = std::string("-j ") + kPodEgressChain;
  if (!enabled) {
    // Delete the jump as the table holds it, whatever its exact text.
    if (auto post = nat.chains.find("POSTROUTING"); post != nat.chains.end()) {
      for (const auto& rule : post->second) {
        if (netfilter::RuleTarget(rule) == kPodEgressChain) {
          update.delete_rules.push_back({"POSTROUTING", rule});
        }
      }
    }
    if (chain != nat.chains.end()) update.delete_chains.push_back(kPodEgressChain);
    return update;
  }
  const std::vector<std::string> rules = {PodEgressRule(family)};
  if (chain == nat.chains.end() || chain->second != rules) {
    update.replace_chains.push_back({kPodEgressChain, rules});
  }
  if (!jump) update.insert_rules.push_back({"POSTROUTING", 1, jump_rule});
  return update;
}

}  // namespace kr::routing
