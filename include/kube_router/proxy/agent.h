// The service proxy wired for the agent: flags mapped to ProxyConfig in one place, and the
// controller built over the real libnl adapters (linked only into the executable).
#pragma once

#include <memory>
#include <string>

#include "kube_router/base/status.h"
#include "kube_router/k8s/store.h"
#include "kube_router/metrics/registry.h"
#include "kube_router/options/options.h"
#include "kube_router/proxy/proxy_config.h"
#include "kube_router/runtime/controller.h"

namespace kr::proxy {

Result<ProxyConfig> ProxyConfigFromOptions(const Options& options, const std::string& node_name);

Result<std::unique_ptr<Controller>> MakeAgentServicesController(const Options& options,
                                                                const std::string& node_name,
                                                                const k8s::Cluster* cluster,
                                                                metrics::Registry* metrics);

}  // namespace kr::proxy
