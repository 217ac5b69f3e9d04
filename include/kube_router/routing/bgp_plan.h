// Pure planners for the BGP side of the routing controller: which peers this node wants,
// which prefixes it advertises, and the import/export policy (kube-router.md §6.3-§6.5).
// No I/O; every function is a deterministic function of its arguments.
#pragma once

#include <compare>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "kube_router/base/ip.h"
#include "kube_router/base/status.h"
#include "kube_router/k8s/types.h"
#include "kube_router/routing/node_config.h"
#include "kube_router/routing/routing_config.h"

namespace kr::routing {

// Service annotations read for advertisement (kube-router.md §3.1).
inline constexpr char kAnnotationServiceLocal[] = "kube-router.io/service.local";
inline constexpr char kAnnotationAdvertiseClusterIp[] =
    "kube-router.io/service.advertise.clusterip";
inline constexpr char kAnnotationAdvertiseExternalIp[] =
    "kube-router.io/service.advertise.externalip";
inline constexpr char kAnnotationAdvertiseLbIp[] =
    "kube-router.io/service.advertise.loadbalancerip";
inline constexpr char kAnnotationSkipLbIps[] = "kube-router.io/service.skiplbips";

enum class RouteKind { kPodCidr, kClusterIp, kExternalIp, kLoadBalancerIp };
const char* RouteKindName(RouteKind kind);

struct Advertisement {
  IpPrefix prefix;
  IpAddress next_hop;
  RouteKind kind = RouteKind::kPodCidr;
  auto operator<=>(const Advertisement&) const = default;
};

// Narrows `node` to the enabled address families (--enable-ipv4/--enable-ipv6): addresses and
// pod CIDRs of a disabled family are dropped, and the session address `ip` moves to the other
// family's address when its own family is disabled. A pod CIDR of an enabled family on a node
// without an address of that family cannot be routed (no next hop): it is dropped with a
// problem line naming the node and the CIDR. Returns those lines.
std::vector<std::string> ApplyFamilies(const RoutingConfig& config, NodeInfo& node);

// The AS this node speaks: --cluster-asn in full-mesh mode, else the node's
// kube-router.io/node.asn (required then; the error names the node).
Result<uint32_t> LocalAsn(const RoutingConfig& config, const NodeInfo& self);

// iBGP peers among `nodes` (self is skipped): nobody with --enable-ibgp=false; an RR client
// peers only with RR servers; without full mesh only nodes with our AS; an RR server marks
// RR clients as its reflector clients. Nodes without an address of our family are skipped.
std::vector<PeerSpec> PlanInternalPeers(const RoutingConfig& config, const NodeInfo& self,
                                        uint32_t local_asn, const std::vector<NodeInfo>& nodes);

// External peers: the global --peer-router-* list if any, else the node's own annotations.
// Each peer uses this node's address of the peer's family as local address (the session runs
// in that family). Skipped, with one line each in `problems` (when given) naming the peer: a
// peer of a disabled family, a peer of a family this node has no address in, a peer whose
// localip is of the other family.
std::vector<PeerSpec> PlanExternalPeers(const RoutingConfig& config, const NodeInfo& self,
                                        std::vector<std::string>* problems = nullptr);

// This node's pod CIDRs, each with the node's address of its family as next hop (a CIDR of a
// family the node has no address in is left out).
std::vector<Advertisement> PlanPodCidrAdvertisements(const NodeInfo& self);

// Service VIPs (/32, /128; next hop: the node's address of the VIP's family, VIPs of a
// disabled family or one the node has no address in are left out) to advertise from this node,
// honouring the --advertise-* flags, the per-service advertise annotations, skiplbips,
// internalTrafficPolicy=Local (cluster IP) and externalTrafficPolicy=Local / service.local
// (external and LB IPs): with Local a VIP is advertised only by nodes that have a local endpoint.
// Sorted and free of duplicates.
std::vector<Advertisement> PlanServiceAdvertisements(
    const RoutingConfig& config, const NodeInfo& self,
    const std::vector<std::shared_ptr<const k8s::Service>>& services,
    const std::vector<std::shared_ptr<const k8s::EndpointSlice>>& slices);

// Every service VIP of the cluster (cluster IPs, external IPs, LB ingress IPs), advertised or
// not: never imported from a peer.
std::set<IpAddress> AllServiceVips(
    const std::vector<std::shared_ptr<const k8s::Service>>& services);

// What to send to one peer for one advertisement (kube-router's export policy: pod CIDRs to
// iBGP peers; VIPs, and pod CIDRs with --advertise-pod-cidr, to external peers, where the
// node's communities, AS-path prepend and --override-nexthop apply).
struct ExportDecision {
  bool accept = false;
  std::vector<uint32_t> communities;
  std::optional<PathPrepend> prepend;
  bool next_hop_self = false;
  bool operator==(const ExportDecision&) const = default;
};
ExportDecision DecideExport(const RoutingConfig& config, const NodeInfo& self, const PeerSpec& peer,
                            RouteKind kind);

// Import policy (kube-router's: default routes, every service VIP, the node's
// customimportreject prefixes and anything inside them) plus what no peer may route here
// (issue 16 item 9): prefixes overlapping unspecified, loopback, link-local or multicast space
// or the service ranges, prefixes covering or equal to a node address or a node subnet, next
// hops that are not usable host addresses; and from iBGP node peers only what kube-router
// nodes send each other: a node's pod CIDR with that node as next hop.
struct ImportFilter {
  std::set<IpAddress> service_vips;
  std::vector<IpPrefix> reject;          // customimportreject
  std::vector<IpPrefix> service_ranges;  // --service-cluster-ip-range, --service-external-ip-range
  std::set<IpAddress> node_addresses;    // every address of every node
  std::vector<IpPrefix> node_subnets;    // this node's directly connected subnets
  // Pod CIDR -> the addresses of the node that owns it.
  std::map<IpPrefix, std::set<IpAddress>> pod_cidr_owners;
  bool operator==(const ImportFilter&) const = default;
};

// Why a route is refused; kAccept when it is not.
enum class ImportVerdict {
  kAccept,
  kDefaultRoute,
  kServiceVip,
  kCustomReject,
  kUnspecified,
  kLoopback,
  kLinkLocal,
  kMulticast,
  kServiceRange,
  kNodeAddress,
  kNodeSubnet,
  kUnusableNextHop,
  kNotANodesPodCidr,  // from an iBGP node peer: not a pod CIDR announced for its owner
};
const char* ImportVerdictName(ImportVerdict verdict);

ImportVerdict DecideImport(const ImportFilter& filter, bool from_node_peer, const IpPrefix& prefix,
                           const IpAddress& next_hop);
// kube-router's part only (default route, VIPs, customimportreject).
bool AcceptImport(const ImportFilter& filter, const IpPrefix& prefix);

}  // namespace kr::routing
