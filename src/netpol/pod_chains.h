// Private to the netpol compiler: the chains that do not belong to one policy: the static
// chains, one chain per local pod (jumping to the policies that select it), the three
// top-level chains that send pod traffic there, the tail chain and the local-pods set.
#pragma once

#include <map>
#include <string>
#include <vector>

#include "cluster_index.h"
#include "kube_router/netpol/compiler.h"
#include "policy_compiler.h"

namespace kr::netpol::compiler_internal {

// KUBE-NWPLCY-COMMON and KUBE-NWPLCY-DEFAULT.
void AddStaticChains(netfilter::IpFamily family, std::map<std::string, netfilter::Chain>& chains);

// The local pods whose chains this state programs (default deny only).
netfilter::IpsetSet LocalPodsSet(const ClusterIndex& index, netfilter::IpFamily family);

// The per-pod chains of the local pods and the three top-level chains that jump to them.
// With them the tail chain, which depends on the node's pod CIDRs.
// A local pod whose chain name another pod holds (a hash collision) gets no chain: its traffic
// is rejected outright, and `collisions` says why.
std::map<std::string, netfilter::Chain> PodAndTopLevelChains(
    const ClusterIndex& index, const NetpolConfig& config, netfilter::IpFamily family,
    const std::map<std::string, CompiledPolicy>& policies,
    const std::vector<IpPrefix>& node_pod_cidrs, std::vector<std::string>& collisions);

}  // namespace kr::netpol::compiler_internal
