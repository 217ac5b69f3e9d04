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
#include <set>
#include <string>
#include <vector>

#include "kube_router/metrics/registry.h"
#include "kube_router/netlink/ipvs.h"
#include "kube_router/proxy/owned_lists.h"
#include "kube_router/proxy/service_model.h"

namespace kr::proxy {

// The identity of an IPVS virtual service as ListServiceStats reports it.
struct IpvsServiceKey {
  IpAddress address;  // zero address of the family for fwmark services
  netlink::IpvsProtocol protocol = netlink::IpvsProtocol::kTcp;
  uint16_t port = 0;
  uint32_t fwmark = 0;
  auto operator<=>(const IpvsServiceKey&) const = default;
};
IpvsServiceKey KeyOf(const netlink::IpvsService& service);

// One virtual service whose series a Service owns: its VIP, protocol and port are the labels
// service_vip, protocol and port (for a fwmark service, the DSR VIP's, not the mark); with the
// mark, the identity for the stats dump (KeyOf). The namespace and name labels are the owner's.
struct MetricTarget {
  IpAddress vip;
  netlink::IpvsProtocol protocol = netlink::IpvsProtocol::kTcp;
  uint16_t port = 0;
  uint32_t fwmark = 0;  // != 0: a fwmark (DSR) service
  auto operator<=>(const MetricTarget&) const = default;
};
IpvsServiceKey KeyOf(const MetricTarget& target);
MetricTarget MetricTargetOf(const netlink::IpvsService& service);

class ServiceMetrics {
 public:
  // Registers the collector and the controller metrics in `registry`; `ipvs` is dumped on each
  // scrape (from the scraping thread: the adapter must allow a call from another thread, e.g.
  // its own netlink socket). Both outlive this object; the destructor unregisters.
  ServiceMetrics(metrics::Registry& registry, netlink::Ipvs& ipvs);
  ~ServiceMetrics();
  ServiceMetrics(const ServiceMetrics&) = delete;
  ServiceMetrics& operator=(const ServiceMetrics&) = delete;

  // The virtual services that are ours, per Service, replaced whole after a full sync
  // (thread-safe: a scrape sees the old or the new set). Services of the dump that no Service
  // owns get no series (foreign IPVS services). A key several Services want is labelled with the
  // first by name; one Service's targets with one key count once (the first).
  void SetAll(std::map<ServiceName, std::vector<MetricTarget>> services);
  // The event path: one Service's targets now (empty: it has none any more). O(its targets).
  void SetService(const ServiceName& service, std::vector<MetricTarget> targets);
  // Several Services' targets now, under one lock (a Service named twice: its last targets):
  // O(their targets) for a few, one pass over all targets for many.
  using Batch = OwnedLists<MetricTarget>::Batch;
  void SetServices(Batch services);
  // After a sync: its duration and the number of IPVS services the proxy now owns.
  void ObserveSync(double seconds, size_t ipvs_services);

  // The families one scrape returns (what the registry's collector calls).
  std::vector<metrics::Registry::CollectedFamily> Collect();

 private:
  metrics::Registry& registry_;
  netlink::Ipvs& ipvs_;
  int collector_id_ = -1;
  // Labels are not stored: they are the owner's name and the target's VIP, protocol and port,
  // rendered on scrape (docs/memory.md: a copy of four label strings per key was 6.6 MiB at
  // 10k Services).
  // Per Service its targets, sorted by key, one per key (one flat list: docs/memory.md, a map of
  // Service -> vector was ~1.7 MiB at 10k two-port Services). Who labels a key (the first by
  // name of the Services that want it) is worked out on scrape, not kept (docs/memory.md: a map
  // of key -> owner was ~1.6 MiB at 10k two-port Services).
  OwnedLists<MetricTarget> targets_;
  std::mutex mu_;  // guards targets_ and serialises dumps of ipvs_
  metrics::Gauge& services_gauge_;
  metrics::Histogram& sync_time_;
  metrics::Histogram& export_time_;
};

}  // namespace kr::proxy
