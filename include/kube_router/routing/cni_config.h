// The CNI configuration kube-router manages (--enable-cni): the bridge plugin on kube-bridge
// with host-local IPAM over this node's pod CIDRs (kube-router.md §6.1, pkg/utils/cni.go).
// Pure text-in/text-out so it is table-tested; the controller does the file I/O.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "kube_router/base/ip.h"
#include "kube_router/base/status.h"

namespace kr::routing {

inline constexpr char kBridgeName[] = "kube-bridge";
inline constexpr char kDefaultCniConfFile[] = "/etc/cni/net.d/10-kuberouter.conflist";
inline constexpr char kCniConfFileEnv[] = "KUBE_ROUTER_CNI_CONF_FILE";

// A `.conflist` holds {"plugins": [...]}; a `.conf` is the bridge plugin object itself.
bool IsConflistPath(const std::string& path);

// Rewrites `existing` (empty: start from kube-router's default config) so that its bridge
// plugin lists every pod CIDR as a host-local range and carries `mtu` (when given). Other
// plugins and unknown fields are kept. Fails on unparsable JSON or when no bridge plugin is
// found, naming the problem.
Result<std::string> RenderCniConfig(const std::string& existing, bool conflist,
                                    const std::vector<IpPrefix>& pod_cidrs, std::optional<int> mtu);

// The bridge's address: the first host address of the pod CIDR (the CNI bridge plugin's
// default gateway), with the CIDR's length, e.g. 10.1.2.1/24.
struct GatewayAddress {
  IpAddress address;
  int prefix_length = 0;
};
GatewayAddress BridgeGateway(const IpPrefix& pod_cidr);

}  // namespace kr::routing
