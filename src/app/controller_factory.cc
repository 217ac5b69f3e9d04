#include "controller_factory.h"

#include "kube_router/base/log.h"

namespace kr::app {

Result<std::vector<std::unique_ptr<Controller>>> BuildControllers(const ControllerDeps& deps) {
  const Options& options = *deps.options;
  std::vector<std::unique_ptr<Controller>> controllers;

  if (options.run_router) {
    // NetworkRoutes controller (include/kube_router/routing/): construct it from `deps` and
    // push it into `controllers` here (return its error if construction fails).
    KR_LOG_WARN("--run-router is set, but this build has no routing controller yet");
  }

  if (options.run_service_proxy) {
    // There is no IPVS service proxy in this implementation yet (see docs/parity.md).
    KR_LOG_WARN(
        "--run-service-proxy is set, but this build has no service proxy (IPVS) yet; "
        "services are not proxied by this agent");
  }

  if (options.run_firewall) {
    // NetworkPolicy controller (include/kube_router/netpol/): construct it from `deps` and
    // push it into `controllers` here (return its error if construction fails).
    KR_LOG_WARN("--run-firewall is set, but this build has no network policy controller yet");
  }

  return controllers;
}

}  // namespace kr::app
