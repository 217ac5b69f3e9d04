// What the routing controller needs to know about one Node, read from its status addresses,
// spec.podCIDR(s) and kube-router's node annotations (reference kube-router.md §3.2).
// Parsing is pure and never fails as a whole: each bad annotation becomes one problem line
// naming the node and the annotation, and only that setting is dropped.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "kube_router/base/ip.h"
#include "kube_router/base/status.h"
#include "kube_router/base/strings.h"
#include "kube_router/k8s/node_pod_cidrs.h"
#include "kube_router/k8s/types.h"

namespace kr::routing {

// Annotation keys, spelled exactly as kube-router reads them.
inline constexpr char kAnnotationNodeAsn[] = "kube-router.io/node.asn";
inline constexpr char kAnnotationRrServer[] = "kube-router.io/rr.server";
inline constexpr char kAnnotationRrClient[] = "kube-router.io/rr.client";
inline constexpr char kAnnotationPeers[] = "kube-router.io/peers";
inline constexpr char kAnnotationPeerIps[] = "kube-router.io/peer.ips";
inline constexpr char kAnnotationPeerAsns[] = "kube-router.io/peer.asns";
inline constexpr char kAnnotationPeerPasswords[] = "kube-router.io/peer.passwords";
inline constexpr char kAnnotationPeerLocalIps[] = "kube-router.io/peer.localips";
inline constexpr char kAnnotationPeerPorts[] = "kube-router.io/peer.ports";
inline constexpr char kAnnotationPrependAs[] = "kube-router.io/path-prepend.as";
inline constexpr char kAnnotationPrependRepeat[] = "kube-router.io/path-prepend.repeat-n";
inline constexpr char kAnnotationCommunities[] = "kube-router.io/node.bgp.communities";
inline constexpr char kAnnotationCustomImportReject[] =
    "kube-router.io/node.bgp.customimportreject";
using k8s::kAnnotationPodCidr;
using k8s::kAnnotationPodCidrs;

inline constexpr uint16_t kDefaultBgpPort = 179;

// One BGP neighbour we want a session with (iBGP to another node, or an external router).
struct PeerSpec {
  IpAddress address;
  uint32_t asn = 0;
  uint16_t port = kDefaultBgpPort;
  std::string password;  // TCP-MD5 key, already base64-decoded; never logged
  std::optional<IpAddress> local_address;
  bool external = false;
  std::string node_name;                // iBGP peers: the Node it belongs to
  bool route_reflector_client = false;  // we reflect routes to this peer
  uint32_t cluster_id = 0;              // with route_reflector_client
  uint8_t multihop_ttl = 0;             // eBGP multihop when >= 2

  bool operator==(const PeerSpec&) const = default;
};

struct PathPrepend {
  uint32_t asn = 0;
  uint8_t repeat = 0;
  bool operator==(const PathPrepend&) const = default;
};

struct NodeInfo {
  std::string name;
  // The address BGP sessions use: first InternalIP, else first ExternalIP. The controller
  // moves it to the other family's address when its own family is disabled (ApplyFamilies).
  std::optional<IpAddress> ip;
  // This node's address in each family (InternalIP first, then ExternalIP): the next hop of
  // what it advertises in that family and the source of its routes and tunnels there.
  std::optional<IpAddress> ipv4;
  std::optional<IpAddress> ipv6;
  std::vector<IpPrefix> pod_cidrs;
  std::optional<uint32_t> asn;                   // kube-router.io/node.asn
  std::optional<uint32_t> rr_server_cluster_id;  // kube-router.io/rr.server
  std::optional<uint32_t> rr_client_cluster_id;  // kube-router.io/rr.client
  std::vector<PeerSpec> external_peers;          // from the node's peer annotations
  std::vector<uint32_t> communities;
  std::optional<PathPrepend> prepend;
  std::vector<IpPrefix> custom_import_reject;
};

struct ParsedNode {
  NodeInfo info;
  // One line per rejected setting, each naming the node and the annotation.
  std::vector<std::string> problems;
};

ParsedNode ParseNode(const k8s::Node& node);

// The node's primary address: first InternalIP, else first ExternalIP (kube-router
// pkg/utils/node.go).
std::optional<IpAddress> PrimaryNodeIp(const k8s::Node& node);
// The node's first address of `family`, InternalIP before ExternalIP.
std::optional<IpAddress> NodeIpOfFamily(const k8s::Node& node, IpAddress::Family family);

// The address `node` has in `family`: NodeInfo::ipv4 / ipv6, else `ip` when it is of that
// family.
std::optional<IpAddress> AddressOf(const NodeInfo& node, IpAddress::Family family);

// --- value parsers shared with the flag mapping (each error says what was wrong) ---

// A 2- or 4-octet AS number, rejecting the reserved values 0, 23456 (AS_TRANS), 65535 and
// 4294967295.
Result<uint32_t> ParseAsn(std::string_view text);
// Private-use ASNs only (64512-65534, 4200000000-4294967294): the cluster's iBGP AS.
bool IsPrivateAsn(uint32_t asn);
// A route-reflector cluster ID: a 32-bit number or a dotted IPv4 address.
Result<uint32_t> ParseClusterId(std::string_view text);
// One community: a 32-bit number, "high:low", or a well-known name (no-export, ...).
Result<uint32_t> ParseCommunity(std::string_view text);

// External peers from parallel lists (flags or the legacy node annotations). ips and asns
// must have the same length; passwords (base64), ports and local_ips are optional but, when
// given, must have that length too (kube-router allows empty password entries).
Result<std::vector<PeerSpec>> BuildPeerList(const std::vector<std::string>& ips,
                                            const std::vector<std::string>& asns,
                                            const std::vector<std::string>& passwords,
                                            const std::vector<std::string>& ports,
                                            const std::vector<std::string>& local_ips);

// The YAML kube-router.io/peers form: a list of maps with remoteip, remoteasn, and optional
// localip, password (base64) and port.
Result<std::vector<PeerSpec>> ParsePeersYaml(std::string_view yaml);

}  // namespace kr::routing
