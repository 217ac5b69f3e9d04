// Wires the controller to the real kernel adapters (kept out of kr_netpol so that unit tests of
// the controller link only the interfaces and fakes).
#include "kube_router/netpol/agent.h"

#include "kube_router/base/log.h"
#include "kube_router/netfilter/adapters.h"
#include "kube_router/netpol/network_policy_controller.h"

namespace kr::netpol {

NetpolConfig NetpolConfigFromOptions(const Options& options, const std::string& node_name) {
  NetpolConfig config;
  config.node_name = node_name;
  config.sync_period = options.iptables_sync_period;
  config.iptables_mode = options.iptables_mode;
  config.enable_ipv4 = options.enable_ipv4;
  config.enable_ipv6 = options.enable_ipv6;
  config.service_cluster_ip_ranges = options.service_cluster_ip_range;
  config.service_external_ip_ranges = options.service_external_ip_range;
  config.loadbalancer_ip_ranges = options.loadbalancer_ip_range;
  config.node_port_first = options.node_port_range_first;
  config.node_port_last = options.node_port_range_last;
  config.default_deny = options.netpol_default_deny;
  config.beta_namespace_isolation = options.netpol_beta_namespace_isolation;
  return config;
}

Result<std::unique_ptr<Controller>> MakeAgentPolicyController(const Options& options,
                                                              const std::string& node_name,
                                                              const k8s::Cluster* cluster) {
  return MakeNetworkPolicyController(NetpolConfigFromOptions(options, node_name), cluster);
}

Result<std::unique_ptr<Controller>> MakeNetworkPolicyController(const NetpolConfig& config,
                                                                const k8s::Cluster* cluster) {
  netfilter::IptablesMode mode = netfilter::IptablesMode::kNft;
  if (config.iptables_mode == "auto" || config.iptables_mode.empty()) {
    mode = netfilter::DetectIptablesMode();
    KR_LOG_INFO("network policy: using the iptables {} backend (detected)",
                netfilter::IptablesModeName(mode));
  } else if (auto forced = netfilter::ParseIptablesMode(config.iptables_mode)) {
    mode = *forced;
    KR_LOG_INFO("network policy: using the iptables {} backend (forced)",
                netfilter::IptablesModeName(mode));
  } else {
    return Status::Error("--iptables-mode must be auto, nft or legacy, not \"" +
                         config.iptables_mode + "\"");
  }
  NetpolDataplane dataplane;
  if (config.enable_ipv4)
    dataplane.iptables_v4 = netfilter::MakeIptables(mode, netfilter::IpFamily::kV4);
  if (config.enable_ipv6)
    dataplane.iptables_v6 = netfilter::MakeIptables(mode, netfilter::IpFamily::kV6);
  // Cleanup (--cleanup-config) also clears the backend and families not in use: a host that
  // switched backends keeps our chains there otherwise. These adapters never create a table.
  for (auto other : {netfilter::IptablesMode::kNft, netfilter::IptablesMode::kLegacy}) {
    for (auto family : {netfilter::IpFamily::kV4, netfilter::IpFamily::kV6}) {
      bool enabled = family == netfilter::IpFamily::kV4 ? config.enable_ipv4 : config.enable_ipv6;
      if (other == mode && enabled) continue;
      dataplane.cleanup_only.push_back(
          {std::string(netfilter::IpFamilyName(family)) + " " + netfilter::IptablesModeName(other),
           netfilter::MakeIptablesForCleanup(other, family)});
    }
  }
  dataplane.ipset = netfilter::MakeIpset();
  dataplane.sysctl = netlink::MakeProcSysctl();
  return std::unique_ptr<Controller>(
      std::make_unique<NetworkPolicyController>(config, cluster, std::move(dataplane)));
}

}  // namespace kr::netpol
