// The NetworkPolicy controller as the agent runs it, wired like the routing and proxy
// controllers (their agent.h): Options mapped onto NetpolConfig in one place, and the real
// kernel adapters. Only the executable (the app's controller factory) and the root-only tests
// link this; unit tests build NetworkPolicyController over fakes directly.
#pragma once

#include <memory>
#include <string>

#include "kube_router/base/status.h"
#include "kube_router/k8s/store.h"
#include "kube_router/netpol/compiler.h"
#include "kube_router/options/options.h"
#include "kube_router/runtime/controller.h"

namespace kr::netpol {

// Maps the --run-firewall flags (sync period, iptables mode, families, service ranges, node
// port range, --netpol-default-deny).
NetpolConfig NetpolConfigFromOptions(const Options& options, const std::string& node_name);

// NetpolConfigFromOptions, then MakeNetworkPolicyController (network_policy_controller.h).
Result<std::unique_ptr<Controller>> MakeAgentPolicyController(const Options& options,
                                                              const std::string& node_name,
                                                              const k8s::Cluster* cluster);

}  // namespace kr::netpol
