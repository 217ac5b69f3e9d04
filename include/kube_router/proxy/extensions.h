// The proxy pieces of proxy-net and proxy-vm (VIP firewall + masquerade + hairpin, kernel
// settings, healthCheckNodePort servers, kube_router_service_* metrics, UDP/SCTP conntrack
// cleanup) as ProxyExtensions of the controller. Each adapts the controller's snapshot to the
// piece's plain input; the translation functions are pure and unit-tested.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "kube_router/k8s/store.h"
#include "kube_router/metrics/registry.h"
#include "kube_router/netfilter/ipset.h"
#include "kube_router/netfilter/iptables.h"
#include "kube_router/netlink/conntrack.h"
#include "kube_router/netlink/ipvs.h"
#include "kube_router/netlink/links.h"
#include "kube_router/netlink/sysctl.h"
#include "kube_router/proxy/conntrack_cleanup.h"
#include "kube_router/proxy/dsr.h"
#include "kube_router/proxy/firewall_plan.h"
#include "kube_router/proxy/health_check_servers.h"
#include "kube_router/proxy/network_services_controller.h"
#include "kube_router/proxy/service_metrics.h"

namespace kr::proxy {

// --- pure translations (snapshot -> the pieces' inputs) ---
// The *Of(snapshot) functions translate a whole (full-sync) snapshot; the per-Service ones are
// what the event path uses for the changed Services only.

// Every virtual service of ours (programmed, plus DSR ones), local addresses (links filtered by
// IsLocalIpsLink), node IPs, pod CIDRs and the hairpin rules of every Service port.
FirewallInput FirewallInputOf(const ProxySnapshot& snapshot, const ProxyConfig& config,
                              const std::vector<netlink::Address>& addresses,
                              const std::vector<IpPrefix>& pod_cidrs);
// What one Service adds to the firewall input: its virtual services (the DSR ones, and the
// others when `programmed` holds them) and the hairpin rules of its ports.
struct FirewallContribution {
  std::vector<VipPort> services;
  std::vector<HairpinRule> hairpin;
};
FirewallContribution FirewallContributionOf(const DesiredService& service,
                                            const ProxyImage& programmed,
                                            const ProxyConfig& config);
// One entry per Service with a healthCheckNodePort: its local ready endpoint IPs, each once.
std::vector<HealthCheckService> HealthChecksOf(const ProxySnapshot& snapshot);
std::optional<HealthCheckService> HealthCheckOf(const DesiredService& service);
// Per Service the virtual services whose kube_router_service_* series it owns: the programmed
// ones and the DSR ones (ServiceMetrics labels a key two Services want with the first by name).
// `dsr_marks` (the DSR plan's): a DSR one is the fwmark service of its mark (none if unplanned);
// null (no DSR extension: programmed the plain way): its VIP:protocol:port.
std::map<ServiceName, std::vector<MetricTarget>> MetricTargetsOf(
    const ProxySnapshot& snapshot, const std::map<DsrVipPort, uint32_t>* dsr_marks = nullptr);
std::vector<MetricTarget> MetricTargetsOfService(
    const DesiredService& service, const ProxyImage& programmed,
    const std::map<DsrVipPort, uint32_t>* dsr_marks = nullptr);
// A removed destination of a UDP/SCTP virtual service as a cleanup item (NodePort when the
// address is one of the node's NodePort addresses); nullopt for TCP.
std::optional<ConntrackCleanupItem> ConntrackItemOf(const netlink::IpvsService& service,
                                                    const netlink::IpvsDestination& destination,
                                                    const NodeFacts& node);

// The DSR virtual services of the snapshot (kube-router.io/service.dsr=tunnel on external and
// LoadBalancer IPs) as DSR inputs: every endpoint of the VIP's family, the local ones marked.
std::vector<DsrServiceInput> DsrInputsOf(const ProxySnapshot& snapshot);
std::vector<DsrServiceInput> DsrInputsOfService(const DesiredService& service);

// --- the extensions ---

struct FirewallDeps {
  const k8s::Cluster* cluster = nullptr;  // this node's pod CIDRs
  netlink::Links* links = nullptr;        // local addresses
  netfilter::Iptables* iptables_v4 = nullptr;
  netfilter::Iptables* iptables_v6 = nullptr;  // null: IPv4 only
  netfilter::Ipset* ipset = nullptr;
  netlink::Sysctl* sysctl = nullptr;  // null: no kernel settings
};
// VIP firewall, masquerade, hairpin (ProxyFirewall) and, on full syncs, the kernel settings.
std::unique_ptr<ProxyExtension> MakeFirewallExtension(const ProxyConfig& config, FirewallDeps deps);
// healthCheckNodePort servers on every address (`address` "") or one.
std::unique_ptr<ProxyExtension> MakeHealthCheckExtension(const std::string& address = "");
// kube_router_service_* on scrape; `scrape_ipvs` is dumped from the scraping thread (give it its
// own adapter) and must outlive the extension. `dsr_marks`: the DSR extension's (added before
// this one, so a sync's marks are published before they are read), null without DSR.
std::unique_ptr<ProxyExtension> MakeMetricsExtension(
    metrics::Registry& registry, netlink::Ipvs& scrape_ipvs,
    std::shared_ptr<const DsrMarks> dsr_marks = nullptr);
// DSR: programs the virtual services the builder marks `dsr` (the controller then leaves them
// and their VIPs alone). Rebuilt on full syncs and when a Service that has or had DSR changed;
// `links` gives the pod-facing MTU (kube-bridge, else 1500); `cluster` this node's pod IPs, whose
// namespaces the first sync checks for stale tunnel links.
std::unique_ptr<ProxyExtension> MakeDsrExtension(DsrDataplane dataplane, netlink::Links* links,
                                                 const k8s::Cluster* cluster,
                                                 const std::string& node_name,
                                                 std::shared_ptr<DsrMarks> marks = nullptr);
// Deletes the conntrack flows that a removed UDP/SCTP backend answered, after each sync.
std::unique_ptr<ProxyExtension> MakeConntrackExtension(netlink::Conntrack* conntrack);

}  // namespace kr::proxy
