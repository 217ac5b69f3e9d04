// The routing controller as the agent runs it: Options mapped onto RoutingConfig, and the
// real kernel adapters plus the embedded BGP speaker. Only the executable (the app's
// controller factory) links this; tests build NetworkRoutesController over fakes directly.
#pragma once

#include <memory>
#include <string>

#include "kube_router/base/status.h"
#include "kube_router/k8s/store.h"
#include "kube_router/metrics/registry.h"
#include "kube_router/options/options.h"
#include "kube_router/routing/routing_config.h"
#include "kube_router/runtime/controller.h"

namespace kr::routing {

// Validates and maps the --run-router flags (cluster ASN range, peer lists, router ID,
// overlay type and encapsulation, CNI file from KUBE_ROUTER_CNI_CONF_FILE). Errors name the
// flag.
Result<RoutingConfig> RoutingConfigFromOptions(const Options& options,
                                               const std::string& node_name);

// The controller with real adapters (rtnetlink routes and links, iptables-restore in the
// host's mode, ipset, /proc/sys) and bgp::NewSpeaker.
Result<std::unique_ptr<Controller>> MakeAgentRoutesController(const Options& options,
                                                              const std::string& node_name,
                                                              const k8s::Cluster* cluster,
                                                              metrics::Registry* metrics);

}  // namespace kr::routing
