#include "controller_factory.h"

#include "kube_router/base/log.h"
#include "kube_router/netpol/network_policy_controller.h"
#include "kube_router/proxy/agent.h"
#include "kube_router/routing/agent.h"

namespace kr::app {

Result<std::vector<std::unique_ptr<Controller>>> BuildControllers(const ControllerDeps& deps) {
  const Options& options = *deps.options;
  std::vector<std::unique_ptr<Controller>> controllers;

  if (options.run_router) {
    auto controller =
        routing::MakeAgentRoutesController(options, deps.node_name, deps.cluster, deps.metrics);
    if (!controller) return controller.status().Context("network routes controller");
    controllers.push_back(std::move(*controller));
  }

  if (options.run_service_proxy) {
    auto controller =
        proxy::MakeAgentServicesController(options, deps.node_name, deps.cluster, deps.metrics);
    if (!controller) return controller.status().Context("network services controller");
    controllers.push_back(std::move(*controller));
  }

  if (options.run_firewall) {
    netpol::NetpolConfig config;
    config.node_name = deps.node_name;
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
    auto controller = netpol::MakeNetworkPolicyController(config, deps.cluster);
    if (!controller) return controller.status().Context("network policy controller");
    controllers.push_back(std::move(*controller));
  }

  return controllers;
}

}  // namespace kr::app
