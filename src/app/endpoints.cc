#include "endpoints.h"

#include "kube_router/base/log.h"
#include "kube_router/metrics/process.h"

namespace kr::app {

Result<Endpoints> StartHealthAndMetrics(const Options& options, health::HealthChecker* checker,
                                        metrics::Registry* registry) {
  // Shared by every request thread: logs when the verdict changes, not per probe.
  auto transitions = std::make_shared<health::TransitionLog>();
  net::HttpHandler healthz = [checker, transitions] {
    health::Verdict v = checker->Check();
    if (transitions->Changed(v)) {
      if (v.healthy) {
        KR_LOG_INFO("health check passes again");
      } else {
        KR_LOG_WARN("health check failed: {}", v.detail);
      }
    }
    if (v.healthy) return net::HttpServerResponse{200, "text/plain; charset=utf-8", "OK\n"};
    return net::HttpServerResponse{500, "text/plain; charset=utf-8",
                                   "Unhealthy: " + v.detail + "\n"};
  };
  net::HttpHandler metrics = [registry] {
    metrics::UpdateProcessMetrics(registry);
    return net::HttpServerResponse{200, "text/plain; version=0.0.4; charset=utf-8",
                                   registry->Render()};
  };
  Endpoints endpoints;
  bool shared = options.health_port != 0 && options.health_port == options.metrics_port &&
                options.health_addr == options.metrics_addr;
  if (options.health_port != 0) {
    net::HttpRoutes routes{{"/healthz", healthz}};
    if (shared) routes[options.metrics_path] = metrics;
    auto server = net::HttpServer::Start(options.health_addr, options.health_port, routes);
    if (!server) return server.status().Context("health endpoint (--health-port)");
    KR_LOG_INFO("serving /healthz on port {}", (*server)->port());
    endpoints.servers.push_back(std::move(*server));
  } else {
    KR_LOG_INFO("health endpoint disabled (--health-port=0)");
  }
  if (options.metrics_port != 0 && !shared) {
    auto server = net::HttpServer::Start(options.metrics_addr, options.metrics_port,
                                         {{options.metrics_path, metrics}});
    if (!server) return server.status().Context("metrics endpoint (--metrics-port)");
    KR_LOG_INFO("serving {} on port {}", options.metrics_path, (*server)->port());
    endpoints.servers.push_back(std::move(*server));
  }
  return endpoints;
}

Result<std::unique_ptr<net::HttpServer>> StartStatusView(const Options& options,
                                                         std::function<std::string()> status_json) {
  if (options.gobgp_admin_port == 0) return std::unique_ptr<net::HttpServer>();
  net::HttpHandler handler = [status_json = std::move(status_json)] {
    return net::HttpServerResponse{200, "application/json", status_json() + "\n"};
  };
  net::HttpServerLimits limits;
  limits.max_connections = 32;  // an operator's curl, not a fleet
  auto server = net::HttpServer::Start(options.gobgp_admin_address, options.gobgp_admin_port,
                                       {{"/status", handler}, {"/", handler}}, limits);
  if (!server) return server.status().Context("routing status view (--gobgp-admin-port)");
  KR_LOG_INFO("routing: status view on http://{}:{}/status", options.gobgp_admin_address,
              (*server)->port());
  return std::move(*server);
}

}  // namespace kr::app
