// The agent's HTTP listeners, all started here (not by controllers): /healthz and /metrics
// (one server when both use the same address and port) and the routing status view.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "kube_router/base/status.h"
#include "kube_router/health/health.h"
#include "kube_router/metrics/registry.h"
#include "kube_router/net/http_server.h"
#include "kube_router/options/options.h"

namespace kr::app {

struct Endpoints {
  std::vector<std::unique_ptr<net::HttpServer>> servers;
  void Stop() {
    for (auto& server : servers) server->Stop();
  }
};

// /healthz on --health-addr:--health-port, the metrics path on --metrics-addr:--metrics-port
// (rendered from `registry`, with the process_* metrics refreshed per scrape).
Result<Endpoints> StartHealthAndMetrics(const Options& options, health::HealthChecker* checker,
                                        metrics::Registry* registry);

// The routing status view (JSON from `status_json` at /status and /) on
// --gobgp-admin-address:--gobgp-admin-port, or nullptr when the port is 0. The address was
// validated by ValidateForRun (loopback unless --gobgp-admin-allow-remote).
Result<std::unique_ptr<net::HttpServer>> StartStatusView(const Options& options,
                                                         std::function<std::string()> status_json);

}  // namespace kr::app
