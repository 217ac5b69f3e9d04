// Pure planner: best paths learned over BGP -> the kernel routes and IPIP tunnels this node
// should have (kube-router.md §6.6). Routes carry kube-router's protocol number (17) so the
// controller can tell its own routes from everybody else's and never touches the others.
#pragma once

#include <compare>
#include <cstdint>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "kube_router/base/ip.h"
#include "kube_router/netlink/links.h"
#include "kube_router/netlink/route_table.h"
#include "kube_router/routing/routing_config.h"

namespace kr::routing {

// rtnetlink protocol of every route we install ("zebra" in /etc/iproute2/rt_protos).
inline constexpr uint8_t kRouteProtocol = 17;
inline constexpr char kTunnelPrefix[] = "tun-";
// The metric the kernel gives an IPv6 route added without one (IP6_RT_PRIO_USER).
inline constexpr uint32_t kIpv6DefaultMetric = 1024;

struct LearnedPath {
  IpPrefix prefix;
  IpAddress next_hop;
  auto operator<=>(const LearnedPath&) const = default;
};

// A route the underlay already has (main table, not ours): how a next hop is reached.
struct UnderlayRoute {
  IpPrefix destination;
  std::optional<IpAddress> gateway;  // nullopt: directly connected
  auto operator<=>(const UnderlayRoute&) const = default;
};

struct DesiredTunnel {
  std::string name;
  IpAddress local;
  IpAddress remote;
  netlink::TunnelEncap encap;  // OverlayTunnelEncap(config)
  auto operator<=>(const DesiredTunnel&) const = default;
};

struct DesiredRoute {
  IpPrefix destination;
  std::optional<IpAddress> gateway;  // via
  std::string device;                // dev (tunnels); empty: the kernel picks by gateway
  std::optional<IpAddress> source;   // src (tunnel routes use the node address)
  auto operator<=>(const DesiredRoute&) const = default;
};

struct RoutePlan {
  std::vector<DesiredRoute> routes;    // sorted by destination
  std::vector<DesiredTunnel> tunnels;  // sorted by name
  std::vector<std::string> skipped;    // one line per path we could not route, with why
  // Paths refused because their tunnel name is held by another next hop (a hash collision).
  std::vector<std::string> name_collisions;
};

// The tunnel name for a remote node (netlink::OverlayTunnelName): "tun-" + 11 base32 digits.
// PlanRoutes refuses a second remote whose name collides with one already planned.
std::string TunnelName(const IpAddress& remote);
// True for names TunnelName can produce, and for kube-router's (and our earlier) "tun-" + 11
// lowercase hex digits, so that tunnels left under the old names are removed as stale.
bool IsOurTunnelName(const std::string& name);

// Our tunnels' encapsulation: none for --overlay-encap=ipip; for fou, GUE to
// --overlay-encap-port with the source port chosen per flow (kube-router: `encap gue
// encap-sport auto encap-dport P`), so the underlay can spread flows over its paths.
netlink::TunnelEncap OverlayTunnelEncap(const RoutingConfig& config);

// The FoU receive ports this node needs: with --overlay-encap=fou, a GUE port on
// --overlay-encap-port for each family in which it has a tunnel; none otherwise.
std::vector<netlink::FouPort> PlanFouPorts(const RoutingConfig& config,
                                           const std::vector<DesiredTunnel>& tunnels);
// True for FoU ports we may remove: GUE on --overlay-encap-port (kube-router's own), in either
// family. A FoU port on another port, or a plain FoU one, belongs to somebody else.
bool IsOurFouPort(const RoutingConfig& config, const netlink::FouPort& port);

// Bytes the overlay adds in front of a pod packet of `family` (kernel defaults): IPIP 20,
// ip6tnl 40 + 8 (its encapsulation-limit option); FoU adds UDP 8 + GUE 4. 0 without overlay.
uint32_t OverlayOverhead(const RoutingConfig& config, IpAddress::Family family);

// For each path (one per prefix; the speaker's best path):
//  * the next hop is on a directly connected underlay subnet, and not --overlay-type=full:
//    route via the next hop;
//  * otherwise with --enable-overlay, when the next hop is a node of the cluster (one of
//    `node_addresses`): a tunnel to it (ipip, or ip6tnl for an IPv6 next hop; encapsulated as
//    OverlayTunnelEncap says) and a route through it with the node address as source (so there
//    are never more tunnels than nodes, whatever peers announce);
//  * otherwise: route via the underlay gateway that reaches the next hop.
// Paths for our own pod CIDRs, or whose next hop is this node, are skipped.
// Both families: `node_ips` holds this node's address per family (at most one each); a path is
// planned with the one of its next hop's family (source of its tunnel and tunnel route). Paths
// whose prefix and next hop differ in family, or whose next hop's family this node has no
// address in, are skipped with the reason.
RoutePlan PlanRoutes(const RoutingConfig& config, const std::vector<IpAddress>& node_ips,
                     const std::vector<IpPrefix>& own_pod_cidrs,
                     const std::vector<LearnedPath>& paths,
                     const std::vector<UnderlayRoute>& underlay,
                     const std::set<IpAddress>& node_addresses);
// A single-stack node.
RoutePlan PlanRoutes(const RoutingConfig& config, const IpAddress& node_ip,
                     const std::vector<IpPrefix>& own_pod_cidrs,
                     const std::vector<LearnedPath>& paths,
                     const std::vector<UnderlayRoute>& underlay,
                     const std::set<IpAddress>& node_addresses);

// The kernel route for a planned one: main table, protocol 17.
netlink::Route ToKernelRoute(const DesiredRoute& route);

// What turns our routes in the kernel (`have`: protocol 17, main table) into `want`.
struct KernelRouteDiff {
  std::vector<netlink::RouteChange> changes;  // every replace (in `want` order), then deletes
  size_t replaced = 0;
  size_t deleted = 0;
};

// Routes are keyed like the kernel keys them (destination, metric) and compared only on what we
// set (destination, gateway, metric; device and source when we set them), because the kernel
// fills in the rest: a route that differs is replaced, one we no longer want is deleted.
KernelRouteDiff DiffKernelRoutes(const std::vector<netlink::Route>& want,
                                 const std::vector<netlink::Route>& have);

}  // namespace kr::routing
