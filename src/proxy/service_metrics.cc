#include "kube_router/proxy/service_metrics.h"

#include <chrono>
#include <set>

#include "kube_router/base/log.h"

namespace kr::proxy {
namespace {

constexpr char kServicesGauge[] = "kube_router_controller_ipvs_services";
constexpr char kSyncTime[] = "kube_router_controller_ipvs_services_sync_time";
constexpr char kExportTime[] = "kube_router_controller_ipvs_metrics_export_time";

struct StatFamily {
  const char* name;
  const char* help;
  bool counter;
  uint64_t netlink::IpvsStats::*field;
};

// kube-router's names and help texts (pkg/metrics), in its order.
constexpr StatFamily kFamilies[] = {
    {"kube_router_service_total_connections", "Total incoming connections made", true,
     &netlink::IpvsStats::connections},
    {"kube_router_service_packets_in", "Total incoming packets", true,
     &netlink::IpvsStats::packets_in},
    {"kube_router_service_packets_out", "Total outgoing packets", true,
     &netlink::IpvsStats::packets_out},
    {"kube_router_service_bytes_in", "Total incoming bytes", true, &netlink::IpvsStats::bytes_in},
    {"kube_router_service_bytes_out", "Total outgoing bytes", true, &netlink::IpvsStats::bytes_out},
    {"kube_router_service_pps_in", "Incoming packets per second", false,
     &netlink::IpvsStats::packets_in_per_second},
    {"kube_router_service_pps_out", "Outgoing packets per second", false,
     &netlink::IpvsStats::packets_out_per_second},
    {"kube_router_service_cps", "Service connections per second", false,
     &netlink::IpvsStats::connections_per_second},
    {"kube_router_service_bps_in", "Incoming bytes per second", false,
     &netlink::IpvsStats::bytes_in_per_second},
    {"kube_router_service_bps_out", "Outgoing bytes per second", false,
     &netlink::IpvsStats::bytes_out_per_second},
};

}  // namespace

IpvsServiceKey KeyOf(const netlink::IpvsService& service) {
  if (service.fwmark != 0) {
    // List reports a fwmark service with the zero address of its family, TCP and port 0.
    IpAddress zero = service.address.is_v4() ? IpAddress::V4(0) : IpAddress::V6({});
    return {zero, netlink::IpvsProtocol::kTcp, 0, service.fwmark};
  }
  return {service.address, service.protocol, service.port, 0};
}

ServiceMetrics::ServiceMetrics(metrics::Registry& registry, netlink::Ipvs& ipvs)
    : registry_(registry),
      ipvs_(ipvs),
      services_gauge_(registry.GetGauge(kServicesGauge, "Number of ipvs services in the instance")),
      sync_time_(registry.GetHistogram(kSyncTime,
                                       "Time it took for controller to sync ipvs services",
                                       metrics::Registry::DefaultBuckets())),
      export_time_(registry.GetHistogram(kExportTime, "Time it took to export metrics",
                                         metrics::Registry::DefaultBuckets())) {
  collector_id_ = registry_.AddCollector([this] { return Collect(); });
}

ServiceMetrics::~ServiceMetrics() { registry_.RemoveCollector(collector_id_); }

void ServiceMetrics::SetServices(std::map<IpvsServiceKey, ServiceMetricLabels> services) {
  std::lock_guard lock(mu_);
  services_ = std::move(services);
}

void ServiceMetrics::UpdateServices(const std::map<IpvsServiceKey, ServiceMetricLabels>& upserts,
                                    const std::vector<IpvsServiceKey>& removed) {
  std::lock_guard lock(mu_);
  for (const auto& key : removed) services_.erase(key);
  for (const auto& [key, labels] : upserts) services_[key] = labels;
}

void ServiceMetrics::ObserveSync(double seconds, size_t ipvs_services) {
  sync_time_.Observe(seconds);
  services_gauge_.Set(static_cast<double>(ipvs_services));
}

std::vector<metrics::Registry::CollectedFamily> ServiceMetrics::Collect() {
  const auto start = std::chrono::steady_clock::now();
  std::vector<metrics::Registry::CollectedFamily> families;
  for (const auto& f : kFamilies) families.push_back({f.name, f.help, f.counter, {}});
  std::lock_guard lock(mu_);
  if (services_.empty()) return families;  // nothing of ours: no dump
  auto dump = ipvs_.ListServiceStats();
  if (!dump.ok()) {
    KR_LOG_ERROR("service metrics: listing IPVS stats: {}", dump.error());
    return families;
  }
  std::set<metrics::LabelSet> seen;
  for (const auto& entry : *dump) {
    auto it = services_.find(KeyOf(entry.service));
    if (it == services_.end()) continue;  // not ours
    const ServiceMetricLabels& l = it->second;
    metrics::LabelSet labels = {{"svc_namespace", l.ns},
                                {"service_name", l.name},
                                {"service_vip", l.vip},
                                {"protocol", l.protocol},
                                {"port", std::to_string(l.port)}};
    if (!seen.insert(labels).second) continue;
    for (size_t i = 0; i < std::size(kFamilies); ++i) {
      families[i].samples.push_back(
          {labels, static_cast<double>(entry.stats.*(kFamilies[i].field))});
    }
  }
  export_time_.Observe(
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
  return families;
}

}  // namespace kr::proxy
