// kube-router's per-service IPVS metrics, collected on scrape from one Ipvs::ListServiceStats
// dump: kube_router_service_{total_connections,packets_in,packets_out,bytes_in,bytes_out}
// (counters) and kube_router_service_{pps_in,pps_out,cps,bps_in,bps_out} (gauges) with labels
// svc_namespace, service_name, service_vip, protocol, port. Every virtual service the controller
// registers gets series: ClusterIPs, external/LB IPs, NodePorts on every address, IPv6 and DSR
// fwmark services (labelled with their VIP, protocol and port). Also the controller metrics
// kube_router_controller_ipvs_services (gauge) and ..._ipvs_services_sync_time and
// ..._ipvs_metrics_export_time (histograms, seconds).
#pragma once

#include <cstdint>
#include <map>
#include <mutex>
#include <string>
#include <vector>

#include "kube_router/metrics/registry.h"
#include "kube_router/netlink/ipvs.h"

namespace kr::proxy {

// Who a virtual service belongs to, as the labels show it.
struct ServiceMetricLabels {
  std::string ns;
  std::string name;
  std::string vip;       // the VIP (for fwmark services the DSR VIP, not the mark)
  std::string protocol;  // "tcp" / "udp" / "sctp"
  uint16_t port = 0;
  bool operator==(const ServiceMetricLabels&) const = default;
};

// The identity of an IPVS virtual service as ListServiceStats reports it.
struct IpvsServiceKey {
  IpAddress address;  // zero address of the family for fwmark services
  netlink::IpvsProtocol protocol = netlink::IpvsProtocol::kTcp;
  uint16_t port = 0;
  uint32_t fwmark = 0;
  auto operator<=>(const IpvsServiceKey&) const = default;
};
IpvsServiceKey KeyOf(const netlink::IpvsService& service);

class ServiceMetrics {
 public:
  // Registers the collector and the controller metrics in `registry`; `ipvs` is dumped on each
  // scrape (from the scraping thread: the adapter must allow a call from another thread, e.g.
  // its own netlink socket). Both outlive this object; the destructor unregisters.
  ServiceMetrics(metrics::Registry& registry, netlink::Ipvs& ipvs);
  ~ServiceMetrics();
  ServiceMetrics(const ServiceMetrics&) = delete;
  ServiceMetrics& operator=(const ServiceMetrics&) = delete;

  // The virtual services that are ours, replaced whole after each sync (thread-safe). Services
  // of the dump not in this map get no series (foreign IPVS services).
  void SetServices(std::map<IpvsServiceKey, ServiceMetricLabels> services);
  // The event path: these keys get (or change) their labels, those lose them.
  void UpdateServices(const std::map<IpvsServiceKey, ServiceMetricLabels>& upserts,
                      const std::vector<IpvsServiceKey>& removed);
  // After a sync: its duration and the number of IPVS services the proxy now owns.
  void ObserveSync(double seconds, size_t ipvs_services);

  // The families one scrape returns (what the registry's collector calls).
  std::vector<metrics::Registry::CollectedFamily> Collect();

 private:
  metrics::Registry& registry_;
  netlink::Ipvs& ipvs_;
  int collector_id_ = -1;
  std::mutex mu_;  // guards services_ and serialises dumps of ipvs_
  std::map<IpvsServiceKey, ServiceMetricLabels> services_;
  metrics::Gauge& services_gauge_;
  metrics::Histogram& sync_time_;
  metrics::Histogram& export_time_;
};

}  // namespace kr::proxy
