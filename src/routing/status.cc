// The controller's metrics (kube_router_bgp_peer_info) and its read-only status view.
#include <nlohmann/json.hpp>

#include "controller_metrics.h"
#include "kube_router/routing/network_routes_controller.h"

namespace kr::routing {

void NetworkRoutesController::UpdatePeerMetrics() {
  std::vector<bgp::PeerStatus> statuses = speaker_->Peers();
  nlohmann::json peers = nlohmann::json::array();
  for (const auto& status : statuses) {
    auto spec = peers_.find(status.config.address);
    const std::string type = spec != peers_.end() ? PeerType(spec->second) : std::string("unknown");
    metrics::LabelSet labels = {{"address", status.config.address.ToString()},
                                {"type", type},
                                {"asn", std::to_string(status.config.remote_asn)},
                                {"state", bgp::PeerStateName(status.state)}};
    auto& current = peer_info_series_[status.config.address];
    if (current != labels) {
      if (!current.empty()) metrics_->RemoveSeries(kMetricPeerInfo, current);
      current = labels;
    }
    metrics_->GetGauge(kMetricPeerInfo, "BGP peer information", labels).Set(1);
    peers.push_back({{"address", status.config.address.ToString()},
                     {"asn", status.config.remote_asn},
                     {"type", type},
                     {"state", bgp::PeerStateName(status.state)},
                     {"uptime_seconds", status.uptime.count()},
                     {"prefixes_received", status.prefixes_received},
                     {"prefixes_sent", status.prefixes_sent},
                     {"last_error", status.last_error}});
  }
  nlohmann::json advertised = nlohmann::json::array();
  for (const auto& [prefix, ad] : advertised_) {
    advertised.push_back({{"prefix", prefix.ToString()},
                          {"next_hop", ad.next_hop.ToString()},
                          {"kind", RouteKindName(ad.kind)}});
  }
  nlohmann::json routes = nlohmann::json::array();
  for (const auto& route : installed_routes_) routes.push_back(route.ToString());
  nlohmann::json tunnels = nlohmann::json::array();
  for (const auto& tunnel : installed_tunnels_) {
    tunnels.push_back(
        {{"name", tunnel.name},
         {"local", tunnel.local.ToString()},
         {"remote", tunnel.remote.ToString()},
         {"encap", tunnel.encap.type == netlink::TunnelEncapType::kNone
                       ? "none"
                       : "gue port " + std::to_string(tunnel.encap.destination_port)}});
  }
  nlohmann::json view = {
      {"node", config_.node_name},
      {"local_asn", speaker_config_ ? speaker_config_->local_asn : 0},
      {"router_id", speaker_config_ ? speaker_config_->router_id.ToString() : ""},
      {"peers", peers},
      {"advertised", advertised},
      {"routes", routes},
      {"tunnels", tunnels}};
  MutexLock lock(shared_mu_);
  status_json_ = view.dump(2);
}

std::string NetworkRoutesController::StatusJson() const {
  MutexLock lock(shared_mu_);
  return status_json_;
}

std::function<std::string()> StatusViewSource(Controller* controller) {
  auto* routes = dynamic_cast<NetworkRoutesController*>(controller);
  if (!routes) return nullptr;
  return [routes] { return routes->StatusJson(); };
}

}  // namespace kr::routing
