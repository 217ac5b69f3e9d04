#include "kube_router/proxy/service_metrics.h"

#include <algorithm>
#include <chrono>
#include <memory>
#include <span>
#include <string_view>
#include <unordered_set>

#include "kube_router/base/log.h"
#include "kube_router/proxy/firewall_plan.h"

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

IpvsServiceKey KeyOf(const netlink::IpvsService& service) { return KeyOf(MetricTargetOf(service)); }

IpvsServiceKey KeyOf(const MetricTarget& target) {
  if (target.fwmark != 0) {
    // List reports a fwmark service with the zero address of its family, TCP and port 0.
    IpAddress zero = target.vip.is_v4() ? IpAddress::V4(0) : IpAddress::V6({});
    return {zero, netlink::IpvsProtocol::kTcp, 0, target.fwmark};
  }
  return {target.vip, target.protocol, target.port, 0};
}

MetricTarget MetricTargetOf(const netlink::IpvsService& service) {
  return {service.address, service.protocol, service.port, service.fwmark};
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

namespace {

// Sorted by key, one per key (the first given).
std::vector<MetricTarget> ByKey(std::vector<MetricTarget> targets) {
  auto less = [](const MetricTarget& a, const MetricTarget& b) { return KeyOf(a) < KeyOf(b); };
  auto same = [](const MetricTarget& a, const MetricTarget& b) { return KeyOf(a) == KeyOf(b); };
  std::stable_sort(targets.begin(), targets.end(), less);
  targets.erase(std::unique(targets.begin(), targets.end(), same), targets.end());
  return targets;
}

}  // namespace

void ServiceMetrics::SetAll(std::map<ServiceName, std::vector<MetricTarget>> services) {
  Batch batch;
  batch.reserve(services.size());
  for (auto it = services.begin(); it != services.end(); it = services.erase(it)) {
    auto targets = ByKey(std::move(it->second));
    if (!targets.empty()) batch.emplace_back(it->first, std::move(targets));
  }
  OwnedLists<MetricTarget> all;
  all.Replace(std::move(batch));
  std::lock_guard lock(mu_);
  targets_ = std::move(all);
}

void ServiceMetrics::SetService(const ServiceName& service, std::vector<MetricTarget> targets) {
  Batch batch;
  batch.emplace_back(service, std::move(targets));
  SetServices(std::move(batch));
}

void ServiceMetrics::SetServices(Batch services) {
  for (auto& entry : services) entry.second = ByKey(std::move(entry.second));
  std::lock_guard lock(mu_);
  targets_.Replace(std::move(services));
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
  if (targets_.empty()) return families;  // nothing of ours: no dump
  // Per key the Service that labels it: the first by name that wants it (targets_ is in name
  // order and the sort is stable). Built per scrape: two pointers per target, sorted.
  struct Owned {
    const ServiceName* owner;
    const MetricTarget* target;
  };
  std::vector<Owned> owned;
  owned.reserve(targets_.rows());
  targets_.ForEach([&](const ServiceName& name, std::span<const MetricTarget> targets) {
    for (const auto& target : targets) owned.push_back({&name, &target});
  });
  std::stable_sort(owned.begin(), owned.end(), [](const Owned& a, const Owned& b) {
    return KeyOf(*a.target) < KeyOf(*b.target);
  });
  owned.erase(std::unique(owned.begin(), owned.end(),
                          [](const Owned& a, const Owned& b) {
                            return KeyOf(*a.target) == KeyOf(*b.target);
                          }),
              owned.end());
  auto dump = ipvs_.ListServiceStats();
  if (!dump.ok()) {
    KR_LOG_ERROR("service metrics: listing IPVS stats: {}", dump.error());
    return families;
  }
  // One label text per IPVS service of ours, shared by the ten families; each family holds an
  // index and a value per service (at 10k services a map of five labels per sample was ~60 MiB
  // of heap per scrape).
  auto texts = std::make_shared<metrics::Registry::LabelTexts>();
  std::unordered_set<std::string_view> seen;  // (views into *texts: reserved, never moved)
  texts->reserve(dump->size());
  seen.reserve(dump->size());
  for (auto& family : families) family.indexed.reserve(dump->size());
  for (const auto& entry : *dump) {
    const IpvsServiceKey key = KeyOf(entry.service);
    auto it = std::lower_bound(owned.begin(), owned.end(), key,
                               [](const Owned& o, const auto& k) { return KeyOf(*o.target) < k; });
    if (it == owned.end() || KeyOf(*it->target) != key) continue;  // not ours
    const ServiceName& name = *it->owner;
    const MetricTarget* target = it->target;
    std::string text = metrics::Registry::LabelText({{"svc_namespace", name.namespace_},
                                                     {"service_name", name.name},
                                                     {"service_vip", target->vip.ToString()},
                                                     {"protocol", ProtocolText(target->protocol)},
                                                     {"port", std::to_string(target->port)}});
    if (seen.contains(text)) continue;
    const auto index = static_cast<uint32_t>(texts->size());
    seen.insert(texts->emplace_back(std::move(text)));
    for (size_t i = 0; i < std::size(kFamilies); ++i) {
      families[i].indexed.push_back(
          {index, static_cast<double>(entry.stats.*(kFamilies[i].field))});
    }
  }
  for (auto& family : families) family.label_texts = texts;
  export_time_.Observe(
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
  return families;
}

}  // namespace kr::proxy
