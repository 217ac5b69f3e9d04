// The overlay's kernel objects: tun-* tunnels (ipip, ip6tnl) and, with --overlay-encap=fou,
// the GUE receive ports, for the routes controller's kernel sync and --cleanup-config.
#pragma once

#include <set>
#include <string>
#include <vector>

#include "kube_router/base/status.h"
#include "kube_router/netlink/links.h"
#include "kube_router/routing/route_plan.h"
#include "kube_router/routing/routing_config.h"

namespace kr::routing {

// Makes our tunnels exactly `desired`: FoU ports first (PlanFouPorts: added when missing, ours
// removed when no longer needed, a foreign port on our number reported and left alone), then
// tunnels created, recreated when their end points or encapsulation differ, brought up, and
// our tunnels not wanted deleted. Every failure is collected; the rest still happens.
// `fou` may be null when no port is wanted. `gone`, if given, receives the names of the tunnels
// deleted (also those deleted to be recreated): the kernel dropped the routes through them.
Status SyncOverlayTunnels(const RoutingConfig& config, const std::vector<DesiredTunnel>& desired,
                          netlink::Links& links, netlink::FouPorts* fou,
                          std::set<std::string>* gone = nullptr);

// --cleanup-config: deletes our tunnels (both kinds) and our FoU ports (both families); what
// was removed, one line each, and every failure in `errors`.
std::vector<std::string> CleanupOverlay(const RoutingConfig& config, netlink::Links& links,
                                        netlink::FouPorts* fou, std::vector<std::string>& errors);

}  // namespace kr::routing
