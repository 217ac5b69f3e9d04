#include "kube_router/proxy/agent.h"

#include <chrono>

#include "kube_router/base/log.h"
#include "kube_router/netfilter/adapters.h"
#include "kube_router/netlink/libnl.h"
#include "kube_router/netlink/pod_netns.h"
#include "kube_router/netlink/sysctl.h"
#include "kube_router/proxy/extensions.h"
#include "kube_router/proxy/network_services_controller.h"

namespace kr::proxy {
namespace {

// The IPVS adapter, made on first use and again after a failure: the kernel loads ip_vs on the
// first request for its genl family, and a kernel without IPVS can hold no IPVS service of
// ours, so reads answer "none" (cleanup and an empty cluster work) while every write fails
// with the reason (a sync that needs IPVS fails, is retried, and turns /healthz unhealthy).
class LazyIpvs : public netlink::Ipvs {
 public:
  Result<std::vector<netlink::IpvsService>> ListServices() override {
    if (!Ready()) return std::vector<netlink::IpvsService>{};
    return real_->ListServices();
  }
  Result<std::vector<netlink::IpvsServiceStats>> ListServiceStats() override {
    if (!Ready()) return std::vector<netlink::IpvsServiceStats>{};
    return real_->ListServiceStats();
  }
  Status AddService(const netlink::IpvsService& s) override {
    return Ready() ? real_->AddService(s) : Unavailable();
  }
  Status UpdateService(const netlink::IpvsService& s) override {
    return Ready() ? real_->UpdateService(s) : Unavailable();
  }
  Status DeleteService(const netlink::IpvsService& s) override {
    return Ready() ? real_->DeleteService(s) : Unavailable();
  }
  Result<std::vector<netlink::IpvsDestination>> ListDestinations(
      const netlink::IpvsService& s) override {
    if (!Ready()) return Unavailable();
    return real_->ListDestinations(s);
  }
  Status AddDestination(const netlink::IpvsService& s, const netlink::IpvsDestination& d) override {
    return Ready() ? real_->AddDestination(s, d) : Unavailable();
  }
  Status UpdateDestination(const netlink::IpvsService& s,
                           const netlink::IpvsDestination& d) override {
    return Ready() ? real_->UpdateDestination(s, d) : Unavailable();
  }
  Status DeleteDestination(const netlink::IpvsService& s,
                           const netlink::IpvsDestination& d) override {
    return Ready() ? real_->DeleteDestination(s, d) : Unavailable();
  }
  Status Flush() override { return Ready() ? real_->Flush() : Unavailable(); }
  Status SetTimeouts(const netlink::IpvsTimeouts& t) override {
    return Ready() ? real_->SetTimeouts(t) : Unavailable();
  }

 private:
  bool Ready() {
    if (real_) return true;
    auto made = netlink::MakeNetlinkIpvs();
    if (made.ok()) {
      real_ = std::move(*made);
      return true;
    }
    if (error_ != made.error()) KR_LOG_WARN("service proxy: IPVS unavailable: {}", made.error());
    error_ = made.error();
    return false;
  }
  Status Unavailable() const {
    return Status::Error("IPVS is not available (" + error_ + "); is the ip_vs module loaded?");
  }

  std::unique_ptr<netlink::Ipvs> real_;
  std::string error_;
};

// Owns the real adapters for the controller's lifetime.
struct AgentDataplane {
  std::unique_ptr<netlink::Ipvs> ipvs;
  std::unique_ptr<netlink::Ipvs> scrape_ipvs;  // its own socket: /metrics scrapes on its thread
  std::unique_ptr<netlink::Links> links;
  std::unique_ptr<netlink::Links> firewall_links;
  std::unique_ptr<netlink::RouteTable> routes;
  std::unique_ptr<netfilter::Iptables> iptables_v4;
  std::unique_ptr<netfilter::Iptables> iptables_v6;
  std::unique_ptr<netfilter::Ipset> ipset;
  std::unique_ptr<netlink::Sysctl> sysctl;
  std::unique_ptr<netlink::Conntrack> conntrack;
  std::unique_ptr<netlink::RuleTable> rules;
  std::unique_ptr<netlink::RouteTable> dsr_routes;
  std::unique_ptr<netlink::PodNetns> pods;
};

Result<netfilter::IptablesMode> IptablesModeOf(const Options& options) {
  if (options.iptables_mode == "auto" || options.iptables_mode.empty()) {
    return netfilter::DetectIptablesMode();
  }
  if (auto forced = netfilter::ParseIptablesMode(options.iptables_mode)) return *forced;
  return Status::Error("--iptables-mode must be auto, nft or legacy, not \"" +
                       options.iptables_mode + "\"");
}

Result<uint32_t> Seconds(std::chrono::milliseconds d, const char* flag) {
  if (d.count() < 0) return Status::Error(std::string(flag) + " must not be negative");
  auto s = std::chrono::duration_cast<std::chrono::seconds>(d).count();
  if (s > 0xffffffffLL) return Status::Error(std::string(flag) + " is too large");
  return static_cast<uint32_t>(s);
}

}  // namespace

Result<ProxyConfig> ProxyConfigFromOptions(const Options& options, const std::string& node_name) {
  ProxyConfig c;
  c.node_name = node_name;
  c.enable_ipv4 = options.enable_ipv4;
  c.enable_ipv6 = options.enable_ipv6;
  if (options.ipvs_sync_period.count() <= 0) {
    return Status::Error("--ipvs-sync-period must be greater than 0");
  }
  c.sync_period = options.ipvs_sync_period;
  c.nodeport_bindon_all_ip = options.nodeport_bindon_all_ip;
  c.graceful_termination = options.ipvs_graceful_termination;
  if (options.ipvs_graceful_period.count() < 0) {
    return Status::Error("--ipvs-graceful-period must not be negative");
  }
  c.graceful_period = options.ipvs_graceful_period;
  c.hairpin_mode = options.hairpin_mode;
  c.masquerade_all = options.masquerade_all;
  c.permit_all = options.ipvs_permit_all;
  c.excluded_cidrs = options.excluded_cidrs;
  c.cluster_ip_ranges = options.service_cluster_ip_range;
  c.external_ip_ranges = options.service_external_ip_range;
  c.loadbalancer_ip_ranges = options.loadbalancer_ip_range;
  c.strict_external_ip_validation = options.strict_external_ip_validation;
  c.node_port_first = options.node_port_range_first;
  c.node_port_last = options.node_port_range_last;
  auto tcp = Seconds(options.service_tcp_timeout, "--service-tcp-timeout");
  auto fin = Seconds(options.service_tcpfin_timeout, "--service-tcpfin-timeout");
  auto udp = Seconds(options.service_udp_timeout, "--service-udp-timeout");
  for (const auto* r : {&tcp, &fin, &udp}) {
    if (!r->ok()) return r->status();
  }
  c.timeouts = {*tcp, *fin, *udp};
  return c;
}

Result<std::unique_ptr<Controller>> MakeAgentServicesController(const Options& options,
                                                                const std::string& node_name,
                                                                const k8s::Cluster* cluster,
                                                                metrics::Registry* metrics) {
  auto config = ProxyConfigFromOptions(options, node_name);
  if (!config.ok()) return config.status();
  auto owner = std::make_shared<AgentDataplane>();
  owner->ipvs = std::make_unique<LazyIpvs>();
  auto links = netlink::MakeNetlinkLinks();
  if (!links.ok()) return links.status();
  owner->links = std::move(*links);
  auto routes = netlink::MakeNetlinkRouteTable();
  if (!routes.ok()) return routes.status();
  owner->routes = std::move(*routes);
  ProxyDataplane dataplane{owner->ipvs.get(), owner->links.get(), owner->routes.get()};

  // proxy-net's and proxy-vm's pieces.
  auto mode = IptablesModeOf(options);
  if (!mode.ok()) return mode.status();
  if (config->enable_ipv4) {
    owner->iptables_v4 = netfilter::MakeIptables(*mode, netfilter::IpFamily::kV4);
  }
  if (config->enable_ipv6) {
    owner->iptables_v6 = netfilter::MakeIptables(*mode, netfilter::IpFamily::kV6);
  }
  owner->ipset = netfilter::MakeIpset();
  owner->sysctl = netlink::MakeProcSysctl();
  auto firewall_links = netlink::MakeNetlinkLinks();
  if (!firewall_links.ok()) return firewall_links.status();
  owner->firewall_links = std::move(*firewall_links);
  owner->scrape_ipvs = std::make_unique<LazyIpvs>();
  if (auto conntrack = netlink::MakeNetlinkConntrack(); conntrack.ok()) {
    owner->conntrack = std::move(*conntrack);
  } else {
    KR_LOG_WARN("service proxy: no conntrack cleanup ({}); stale UDP flows expire by themselves",
                conntrack.error());
  }
  FirewallDeps firewall{cluster,
                        owner->firewall_links.get(),
                        owner->iptables_v4.get(),
                        owner->iptables_v6.get(),
                        owner->ipset.get(),
                        owner->sysctl.get()};
  auto controller =
      std::make_unique<NetworkServicesController>(*config, cluster, dataplane, metrics, owner);
  controller->AddExtension(MakeFirewallExtension(*config, firewall));
  controller->AddExtension(MakeHealthCheckExtension());
  if (owner->conntrack) controller->AddExtension(MakeConntrackExtension(owner->conntrack.get()));
  // DSR (kube-router.io/service.dsr=tunnel). Without this extension the builder's dsr-marked
  // services would be programmed as ordinary masquerading ones (found by the agent guest test).
  auto rules = netlink::MakeNetlinkRuleTable();
  if (!rules.ok()) return rules.status();
  owner->rules = std::move(*rules);
  auto dsr_routes = netlink::MakeNetlinkRouteTable();
  if (!dsr_routes.ok()) return dsr_routes.status();
  owner->dsr_routes = std::move(*dsr_routes);
  owner->pods = netlink::MakeProcPodNetns();
  DsrDataplane dsr{owner->ipvs.get(),
                   owner->rules.get(),
                   owner->dsr_routes.get(),
                   owner->iptables_v4.get(),
                   owner->iptables_v6.get(),
                   owner->pods.get(),
                   [](const netlink::PodNetnsContext&) { return netlink::MakeNetlinkLinks(); },
                   [](const netlink::PodNetnsContext&) { return netlink::MakeProcSysctl(); }};
  auto dsr_marks = std::make_shared<DsrMarks>();
  controller->AddExtension(
      MakeDsrExtension(std::move(dsr), owner->links.get(), cluster, config->node_name, dsr_marks));
  // After DSR: a DSR Service's series are keyed by the mark that sync's DSR plan gave it.
  if (metrics) {
    controller->AddExtension(MakeMetricsExtension(*metrics, *owner->scrape_ipvs, dsr_marks));
  }
  return std::unique_ptr<Controller>(std::move(controller));
}

}  // namespace kr::proxy
