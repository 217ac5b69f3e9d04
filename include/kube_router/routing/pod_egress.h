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
// Our own nat chain, jumped to from POSTROUTING, so the whole feature is one chain we own.
inline constexpr char kPodEgressChain[] = "KUBE-ROUTER-POD-EGRESS";

// The two IPv4 sets with every node's pod CIDRs and addresses.
std::vector<netfilter::IpsetSet> DesiredEgressSets(const std::vector<NodeInfo>& nodes);

// The ipset batch that makes `existing` hold `desired` (sets that already match are left
// alone); empty when nothing differs.
netfilter::IpsetUpdate PlanSetUpdate(const std::vector<netfilter::IpsetSet>& desired,
                                     const std::map<std::string, netfilter::IpsetSet>& existing);

// The MASQUERADE rule of kPodEgressChain.
std::string PodEgressRule();

// The nat table change that makes `nat` hold our chain and the POSTROUTING jump (enabled), or
// neither (disabled); empty when the table already is that way.
netfilter::TableUpdate PlanPodEgress(const netfilter::TableSnapshot& nat, bool enabled);

}  // namespace kr::routing
