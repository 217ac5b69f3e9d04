#include "kube_router/proxy/extensions.h"

#include <algorithm>
#include <set>

#include "kube_router/base/log.h"
#include "kube_router/k8s/node_pod_cidrs.h"
#include "kube_router/proxy/kernel_settings.h"
#include "kube_router/proxy/proxy_firewall.h"

namespace kr::proxy {
namespace {

std::string ProtocolText(netlink::IpvsProtocol p) {
  switch (p) {
    case netlink::IpvsProtocol::kTcp:
      return "tcp";
    case netlink::IpvsProtocol::kUdp:
      return "udp";
    case netlink::IpvsProtocol::kSctp:
      return "sctp";
  }
  return "tcp";
}

class FirewallExtension : public ProxyExtension {
 public:
  FirewallExtension(const ProxyConfig& config, FirewallDeps deps)
      : config_(config),
        deps_(deps),
        firewall_(deps.iptables_v4, deps.iptables_v6, deps.ipset),
        settings_(deps.sysctl, nullptr) {}

  std::string Name() const override { return "firewall"; }

  Status Apply(const ProxySnapshot& snapshot) override {
    auto addresses = deps_.links->ListAddresses("");
    if (!addresses.ok()) return addresses.status().Context("list addresses");
    std::vector<IpPrefix> pod_cidrs;
    if (auto node = deps_.cluster->nodes.Get(config_.node_name)) {
      pod_cidrs = k8s::PodCidrsOfNode(*node).cidrs;
    }
    FirewallInput input = FirewallInputOf(snapshot, config_, *addresses, pod_cidrs);
    Status status = firewall_.Sync(input, snapshot.full);
    if (snapshot.full && deps_.sysctl) {
      KernelSettingsInput settings;
      for (const auto& [name, svc] : *snapshot.services) {
        for (const auto& vs : svc.virtual_services) {
          if (vs.dsr && vs.vs.service.scheduler == "mh") settings.sloppy_tcp = true;
        }
      }
      settings.rp_filter_interfaces = {netlink::kKubeBridgeName, netlink::kKubeDummyName};
      if (auto ip = snapshot.node->NodeIp(false)) {
        for (const auto& a : *addresses) {
          if (a.address == *ip) settings.rp_filter_interfaces.push_back(a.device);
        }
      }
      Status s = settings_.Apply(settings);
      if (status.ok()) status = s.Context("kernel settings");
    }
    return status;
  }

  Result<std::vector<std::string>> Cleanup() override {
    // ProxyFirewall::Cleanup does not list what it removed; it is idempotent.
    if (auto s = firewall_.Cleanup(); !s.ok()) return s;
    return std::vector<std::string>{};
  }

 private:
  const ProxyConfig config_;
  FirewallDeps deps_;
  ProxyFirewall firewall_;
  KernelSettings settings_;
};

class HealthCheckExtension : public ProxyExtension {
 public:
  explicit HealthCheckExtension(const std::string& address) : servers_(address) {}
  ~HealthCheckExtension() override { servers_.StopAll(); }
  std::string Name() const override { return "health check servers"; }
  Status Apply(const ProxySnapshot& snapshot) override {
    return servers_.Sync(HealthChecksOf(snapshot));
  }

 private:
  HealthCheckServers servers_;
};

class MetricsExtension : public ProxyExtension {
 public:
  MetricsExtension(metrics::Registry& registry, netlink::Ipvs& ipvs) : metrics_(registry, ipvs) {}
  std::string Name() const override { return "service metrics"; }
  Status Apply(const ProxySnapshot& snapshot) override {
    metrics_.SetServices(MetricLabelsOf(snapshot));
    metrics_.ObserveSync(snapshot.sync_seconds, snapshot.programmed->services.size());
    return Status::Ok();
  }

 private:
  ServiceMetrics metrics_;
};

class ConntrackExtension : public ProxyExtension {
 public:
  explicit ConntrackExtension(netlink::Conntrack* conntrack) : conntrack_(conntrack) {}
  std::string Name() const override { return "conntrack cleanup"; }
  void OnDestinationRemoved(const netlink::IpvsService& service,
                            const netlink::IpvsDestination& destination) override {
    removed_.push_back({service, destination});
  }
  Status Apply(const ProxySnapshot& snapshot) override {
    std::map<VirtualServiceId, ConntrackCleanupItem> items;
    for (const auto& [service, dest] : removed_) {
      auto item = ConntrackItemOf(service, dest, *snapshot.node);
      if (!item) continue;
      auto [it, inserted] = items.emplace(VirtualServiceId::Of(service), *item);
      if (!inserted) it->second.gone_backends.push_back(dest.address);
    }
    removed_.clear();
    // A UDP/SCTP port that had no backend and now has one: the flows the kernel answered
    // itself meanwhile would keep the client's packets away from the new backend.
    for (const auto& [id, vs] : snapshot.programmed->services) {
      if (id.protocol == netlink::IpvsProtocol::kTcp || id.fwmark != 0) continue;
      bool has = !vs.destinations.empty();
      auto [it, inserted] = had_backends_.emplace(id, has);
      bool had = inserted ? snapshot.full : it->second;  // a new service: empty until now
      it->second = has;
      if (has && !had) {
        auto item = ConntrackItemOf(vs.service, vs.destinations.begin()->second, *snapshot.node);
        if (!item) continue;
        item->gone_backends.clear();
        item->first_backend_arrived = true;
        items.emplace(id, *item);
      }
    }
    std::erase_if(had_backends_,
                  [&](const auto& e) { return !snapshot.programmed->services.contains(e.first); });
    if (items.empty() || !conntrack_) return Status::Ok();
    std::vector<ConntrackCleanupItem> list;
    for (auto& [id, item] : items) list.push_back(std::move(item));
    auto deleted = CleanupConntrack(*conntrack_, list);
    // Stale flows only live until they expire: log, never fail the sync for it.
    if (!deleted.ok()) {
      KR_LOG_WARN("service proxy: conntrack cleanup: {}", deleted.error());
    } else if (*deleted > 0) {
      KR_LOG_INFO("service proxy: deleted {} stale conntrack flow(s)", *deleted);
    }
    return Status::Ok();
  }

 private:
  netlink::Conntrack* conntrack_;
  std::vector<std::pair<netlink::IpvsService, netlink::IpvsDestination>> removed_;
  std::map<VirtualServiceId, bool> had_backends_;
};

class DsrExtension : public ProxyExtension {
 public:
  DsrExtension(DsrDataplane dataplane, netlink::Links* links, const k8s::Cluster* cluster,
               std::string node_name)
      : applier_(std::move(dataplane)),
        links_(links),
        cluster_(cluster),
        node_name_(std::move(node_name)) {}
  std::string Name() const override { return "DSR"; }
  bool HandlesDsr() const override { return true; }

  Status Apply(const ProxySnapshot& snapshot) override {
    std::set<ServiceName> now;
    for (const auto& [name, svc] : *snapshot.services) {
      for (const auto& d : svc.virtual_services) {
        if (d.dsr) now.insert(name);
      }
    }
    bool relevant = snapshot.full || !applied_once_;
    for (const auto& name : snapshot.changed) {
      relevant = relevant || now.contains(name) || with_dsr_.contains(name);
    }
    if (!relevant) return Status::Ok();
    DsrPlan plan = BuildDsrPlan(DsrInputsOf(snapshot), Mtu());
    std::set<std::string> problems(plan.problems.begin(), plan.problems.end());
    for (const auto& p : problems) {
      if (!logged_.contains(p)) KR_LOG_WARN("service proxy: DSR: {}", p);
    }
    logged_ = std::move(problems);
    Status status = applier_.Apply(plan, applied_once_ ? std::vector<IpAddress>{} : LocalPods());
    if (status.ok()) {
      applied_once_ = true;
      with_dsr_ = std::move(now);
    }
    return status;
  }

  Result<std::vector<std::string>> Cleanup() override { return applier_.Cleanup(LocalPods()); }

 private:
  uint32_t Mtu() {
    auto bridge = links_->Get(netlink::kKubeBridgeName);
    if (bridge.ok() && bridge->has_value() && (*bridge)->mtu != 0) return (*bridge)->mtu;
    return 1500;
  }
  std::vector<IpAddress> LocalPods() {
    std::vector<IpAddress> out;
    for (const auto& pod : cluster_->pods.ByIndex(k8s::kIndexNodeName, node_name_)) {
      if (pod->host_network) continue;
      for (const auto& text : pod->pod_ips) {
        if (auto ip = IpAddress::Parse(text)) out.push_back(*ip);
      }
    }
    return out;
  }

  DsrApplier applier_;
  netlink::Links* links_;
  const k8s::Cluster* cluster_;
  std::string node_name_;
  bool applied_once_ = false;
  std::set<ServiceName> with_dsr_;
  std::set<std::string> logged_;
};

}  // namespace

std::vector<DsrServiceInput> DsrInputsOf(const ProxySnapshot& snapshot) {
  std::vector<DsrServiceInput> out;
  for (const auto& [name, svc] : *snapshot.services) {
    for (const auto& d : svc.virtual_services) {
      if (!d.dsr) continue;
      DsrServiceInput in;
      in.owner = name.ToString();
      in.vip = d.vs.service.address;
      in.protocol = static_cast<uint8_t>(d.vs.service.protocol);
      in.port = d.vs.service.port;
      in.scheduler = d.vs.service.scheduler;
      in.flags = d.vs.service.flags;
      in.timeout = d.vs.service.timeout;
      std::set<IpAddress> local;
      for (const auto& port : svc.ports) {
        if (port.key != d.owner) continue;
        for (const auto& ep : port.local_endpoints) local.insert(ep.address);
      }
      for (const auto& [id, dest] : d.vs.destinations) {
        in.endpoints.push_back(dest.address);
        if (local.contains(dest.address)) in.local_endpoints.push_back(dest.address);
      }
      out.push_back(std::move(in));
    }
  }
  return out;
}

FirewallInput FirewallInputOf(const ProxySnapshot& snapshot, const ProxyConfig& config,
                              const std::vector<netlink::Address>& addresses,
                              const std::vector<IpPrefix>& pod_cidrs) {
  FirewallInput input;
  input.permit_all = config.permit_all;
  input.masquerade_all = config.masquerade_all;
  std::set<IpAddress> local;
  for (const auto& a : addresses) {
    if (IsLocalIpsLink(a.device)) local.insert(a.address);
  }
  input.local_ips.assign(local.begin(), local.end());
  std::set<VipPort> services;
  for (const auto& [id, vs] : snapshot.programmed->services) {
    if (id.fwmark != 0) continue;
    services.insert({id.address, ProtocolText(id.protocol), id.port});
  }
  std::set<HairpinRule> hairpin;
  for (const auto& [name, svc] : *snapshot.services) {
    for (const auto& d : svc.virtual_services) {
      if (d.dsr) {
        services.insert(
            {d.vs.service.address, ProtocolText(d.vs.service.protocol), d.vs.service.port});
      }
    }
    for (const auto& port : svc.ports) {
      HairpinServicePort h;
      h.annotated = port.hairpin;  // the flag or the annotation (ExpandHairpin ORs the flag)
      h.external_ips_annotated = port.hairpin_external_ips;
      h.cluster_ips = port.cluster_ips;
      h.external_ips = port.external_ips;
      h.node_ips = port.node_port_addresses;
      h.port = port.port;
      h.node_port = port.node_port;
      for (const auto& ep : port.local_endpoints) h.local_endpoints.push_back(ep.address);
      for (const auto& rule : ExpandHairpin(h, config.hairpin_mode)) hairpin.insert(rule);
    }
  }
  input.services.assign(services.begin(), services.end());
  input.hairpin.assign(hairpin.begin(), hairpin.end());
  for (bool v6 : {false, true}) {
    if (auto ip = snapshot.node->NodeIp(v6)) input.node_ips.push_back(*ip);
  }
  input.pod_cidrs = pod_cidrs;
  return input;
}

std::vector<HealthCheckService> HealthChecksOf(const ProxySnapshot& snapshot) {
  std::vector<HealthCheckService> out;
  for (const auto& [name, svc] : *snapshot.services) {
    uint16_t port = 0;
    std::set<IpAddress> local;
    for (const auto& p : svc.ports) {
      if (p.health_check_node_port != 0) port = p.health_check_node_port;
      for (const auto& ep : p.local_endpoints) local.insert(ep.address);
    }
    if (port == 0) continue;
    out.push_back({name.namespace_, name.name, port, local.size()});
  }
  return out;
}

std::map<IpvsServiceKey, ServiceMetricLabels> MetricLabelsOf(const ProxySnapshot& snapshot) {
  std::map<IpvsServiceKey, ServiceMetricLabels> out;
  for (const auto& [name, svc] : *snapshot.services) {
    for (const auto& d : svc.virtual_services) {
      const auto& s = d.vs.service;
      if (!d.dsr && !snapshot.programmed->services.contains(d.vs.id())) continue;
      out.emplace(KeyOf(s), ServiceMetricLabels{name.namespace_, name.name, s.address.ToString(),
                                                ProtocolText(s.protocol), s.port});
    }
  }
  return out;
}

std::optional<ConntrackCleanupItem> ConntrackItemOf(const netlink::IpvsService& service,
                                                    const netlink::IpvsDestination& destination,
                                                    const NodeFacts& node) {
  if (service.fwmark != 0 || service.protocol == netlink::IpvsProtocol::kTcp) return std::nullopt;
  ConntrackCleanupItem item;
  item.protocol = service.protocol == netlink::IpvsProtocol::kUdp ? netlink::ip_protocol::kUdp
                                                                  : netlink::ip_protocol::kSctp;
  auto node_ports = node.NodePortAddresses(service.address.is_v6());
  if (std::find(node_ports.begin(), node_ports.end(), service.address) != node_ports.end()) {
    item.node_port = service.port;
  } else {
    item.service_ips = {service.address};
    item.port = service.port;
  }
  item.gone_backends = {destination.address};
  return item;
}

std::unique_ptr<ProxyExtension> MakeFirewallExtension(const ProxyConfig& config,
                                                      FirewallDeps deps) {
  return std::make_unique<FirewallExtension>(config, deps);
}

std::unique_ptr<ProxyExtension> MakeHealthCheckExtension(const std::string& address) {
  return std::make_unique<HealthCheckExtension>(address);
}

std::unique_ptr<ProxyExtension> MakeMetricsExtension(metrics::Registry& registry,
                                                     netlink::Ipvs& scrape_ipvs) {
  return std::make_unique<MetricsExtension>(registry, scrape_ipvs);
}

std::unique_ptr<ProxyExtension> MakeDsrExtension(DsrDataplane dataplane, netlink::Links* links,
                                                 const k8s::Cluster* cluster,
                                                 const std::string& node_name) {
  return std::make_unique<DsrExtension>(std::move(dataplane), links, cluster, node_name);
}

std::unique_ptr<ProxyExtension> MakeConntrackExtension(netlink::Conntrack* conntrack) {
  return std::make_unique<ConntrackExtension>(conntrack);
}

}  // namespace kr::proxy
