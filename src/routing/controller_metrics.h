// Private to the routing controller's files: the names of its metrics and the peer type label.
#pragma once

#include <string>

#include "kube_router/routing/bgp_plan.h"

namespace kr::routing {

inline constexpr char kMetricPeerInfo[] = "kube_router_bgp_peer_info";
inline constexpr char kMetricAdsSent[] = "kube_router_controller_bgp_advertisements_sent";
inline constexpr char kMetricAdsReceived[] = "kube_router_controller_bgp_advertisements_received";
inline constexpr char kMetricImportRejected[] = "kube_router_bgp_import_rejected_total";
inline constexpr char kMetricRoutesSyncTime[] = "kube_router_controller_routes_sync_time";
inline constexpr char kMetricPeersSyncTime[] =
    "kube_router_controller_bgp_internal_peers_sync_time";
inline constexpr char kMetricRoutesSynced[] = "kube_router_host_routes_synced";
inline constexpr char kMetricRoutesAdded[] = "kube_router_host_routes_added";
inline constexpr char kMetricRoutesRemoved[] = "kube_router_host_routes_removed";

inline std::string PeerType(const PeerSpec& spec) {
  return spec.external ? "external" : "internal";
}

}  // namespace kr::routing
