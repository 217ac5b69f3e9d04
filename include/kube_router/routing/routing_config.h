// The routing controller's own configuration. The app maps Options (--run-router flags) onto
// it, so the controller and its tests do not depend on the flag parser.
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "kube_router/base/ip.h"
#include "kube_router/routing/node_config.h"

namespace kr::routing {

enum class OverlayType { kSubnet, kFull };
// --overlay-encap: plain IP-in-IP, or inside UDP (kube-router's "fou" is FoU with GUE headers).
enum class OverlayEncap { kIpip, kFou };
inline constexpr uint16_t kDefaultOverlayEncapPort = 5555;  // kube-router's default

struct RoutingConfig {
  bool FamilyEnabled(IpAddress::Family family) const {
    return family == IpAddress::Family::kV4 ? enable_ipv4 : enable_ipv6;
  }

  std::string node_name;

  // Address families routed (--enable-ipv4 / --enable-ipv6): pod CIDRs, learned routes, VIPs,
  // peers and pod egress of a disabled family are left alone.
  bool enable_ipv4 = true;
  bool enable_ipv6 = false;

  // BGP (kube-router.md §2.4).
  uint32_t cluster_asn = 64512;         // --cluster-asn
  bool nodes_full_mesh = true;          // --nodes-full-mesh
  bool enable_ibgp = true;              // --enable-ibgp
  uint16_t bgp_port = kDefaultBgpPort;  // --bgp-port: local listen port and iBGP remote port
  std::optional<IpAddress> router_id;   // --router-id; default: the node IPv4 address
  bool generate_router_id = false;      // --router-id=generate: derived from the node address
  std::chrono::seconds hold_time{90};   // --bgp-holdtime
  bool graceful_restart = false;        // --bgp-graceful-restart
  // --peer-router-ips/-asns/-passwords/-ports, already validated (BuildPeerList).
  std::vector<PeerSpec> global_peers;
  uint8_t peer_multihop_ttl = 0;  // --peer-router-multihop-ttl
  bool override_nexthop = false;  // --override-nexthop
  // --bgp-ttl-security (ours): RFC 5082 GTSM towards peers on a directly connected subnet
  // without multihop. Off by default: kube-router (GoBGP) sends TTL 64 to nodes.
  bool ttl_security = false;
  // --service-cluster-ip-range and --service-external-ip-range: never imported from a peer.
  std::vector<IpPrefix> service_ranges;
  // Prefix limit per BGP peer (kube-router/GoBGP has none). 10,000 holds the pod CIDRs of a
  // 5,000-node dual-stack cluster from a route reflector or a ToR; more ends the session with
  // Cease/Maximum Number of Prefixes Reached. 0 = no limit.
  uint32_t max_prefixes_per_peer = 10000;

  // What to advertise.
  bool advertise_pod_cidr = true;          // --advertise-pod-cidr (to external peers)
  bool advertise_cluster_ip = false;       // --advertise-cluster-ip
  bool advertise_external_ip = false;      // --advertise-external-ip
  bool advertise_loadbalancer_ip = false;  // --advertise-loadbalancer-ip

  // Routes into the kernel.
  bool enable_overlay = true;  // --enable-overlay
  OverlayType overlay_type = OverlayType::kSubnet;
  OverlayEncap overlay_encap = OverlayEncap::kIpip;        // --overlay-encap
  uint16_t overlay_encap_port = kDefaultOverlayEncapPort;  // --overlay-encap-port (FoU)
  std::chrono::milliseconds routes_sync_period{std::chrono::minutes(5)};
  // --injected-routes-sync-period: between full syncs, a periodic routes-only sync re-installs
  // the learned routes and tunnels this often (kube-router's RouteSync). 0: off (every
  // periodic sync is full, every routes_sync_period).
  std::chrono::milliseconds injected_routes_sync_period{0};

  bool enable_pod_egress = true;  // --enable-pod-egress
  bool enable_cni = true;         // --enable-cni
  bool auto_mtu = true;           // --auto-mtu
  // KUBE_ROUTER_CNI_CONF_FILE, else this.
  std::string cni_conf_file = "/etc/cni/net.d/10-kuberouter.conflist";
};

}  // namespace kr::routing
