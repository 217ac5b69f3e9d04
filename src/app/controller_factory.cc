#include "controller_factory.h"

#include "kube_router/base/log.h"
#include "kube_router/netpol/agent.h"
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
    auto controller = netpol::MakeAgentPolicyController(options, deps.node_name, deps.cluster);
    if (!controller) return controller.status().Context("network policy controller");
    controllers.push_back(std::move(*controller));
  }

  return controllers;
}

}  // namespace kr::app
