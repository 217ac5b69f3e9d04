// Builds the controllers the options enable. This is the one place where a controller module
// is wired into the agent: adding a controller means a few lines in controller_factory.cc.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "kube_router/base/status.h"
#include "kube_router/k8s/store.h"
#include "kube_router/metrics/registry.h"
#include "kube_router/options/options.h"
#include "kube_router/runtime/controller.h"

namespace kr::app {

// What a controller may need from the agent. All pointers outlive the controllers.
struct ControllerDeps {
  const Options* options = nullptr;
  k8s::Cluster* cluster = nullptr;  // the API caches (empty under --cleanup-config)
  std::string node_name;            // --hostname-override / $NODE_NAME / host name
  metrics::Registry* metrics = nullptr;
};

// One entry per enabled --run-* controller that this build contains, in start order (routing
// first, then service proxy, then network policy, as kube-router starts them). Enabled
// controllers that this build does not have are reported with a warning, not an error.
Result<std::vector<std::unique_ptr<Controller>>> BuildControllers(const ControllerDeps& deps);

}  // namespace kr::app
