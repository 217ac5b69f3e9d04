// Pod egress masquerade (--enable-pod-egress, kube-router pod_egress.go): traffic from a pod to
// anything that is neither a pod nor a node leaves with the node's address. The match uses two
// ipsets the routing controller keeps: every node's pod CIDRs and every node's address.
// Pure planners over the netfilter value types; the controller applies them.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "kube_router/base/ip.h"
#include "kube_router/netfilter/ipset.h"
#include "kube_router/netfilter/iptables.h"
#include "kube_router/routing/node_config.h"

namespace kr::routing {

inline constexpr char kPodSubnetsSet[] = "kube-router-pod-subnets";
inline constexpr char kNodeIpsSet[] = "kube-router-node-ips";
// IPv6 sets carry kube-router's "inet6:" prefix: inet6:kube-router-pod-subnets, ...
inline constexpr char kIpv6SetPrefix[] = "inet6:";
// Our own nat chain (in iptables, and in ip6tables for IPv6), jumped to from POSTROUTING, so the
// whole feature is one chain we own per family.
inline constexpr char kPodEgressChain[] = "KUBE-ROUTER-POD-EGRESS";

// The set names of `family`.
std::string PodSubnetsSetName(netfilter::IpFamily family);
std::string NodeIpsSetName(netfilter::IpFamily family);

// The two sets of `family` with every node's pod CIDRs and addresses of that family.
std::vector<netfilter::IpsetSet> DesiredEgressSets(
    const std::vector<NodeInfo>& nodes, netfilter::IpFamily family = netfilter::IpFamily::kV4);

// The ipset batch that makes `existing` hold `desired` (sets that already match are left
// alone); empty when nothing differs.
netfilter::IpsetUpdate PlanSetUpdate(const std::vector<netfilter::IpsetSet>& desired,
                                     const std::map<std::string, netfilter::IpsetSet>& existing);

// The MASQUERADE rule of kPodEgressChain, over the sets of `family`.
std::string PodEgressRule(netfilter::IpFamily family = netfilter::IpFamily::kV4);

// The nat table change that makes `nat` hold our chain and the POSTROUTING jump (enabled), or
// neither (disabled); empty when the table already is that way.
netfilter::TableUpdate PlanPodEgress(const netfilter::TableSnapshot& nat, bool enabled,
                                     netfilter::IpFamily family = netfilter::IpFamily::kV4);

}  // namespace kr::routing
