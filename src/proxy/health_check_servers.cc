#include "kube_router/proxy/health_check_servers.h"

#include <algorithm>
#include <atomic>
#include <tuple>

#include "kube_router/base/log.h"

namespace kr::proxy {

struct HealthCheckServers::Entry {
  std::string owner;  // "ns/name", for logs
  std::atomic<uint64_t> local_endpoints{0};
  // Declared last: destroyed (stopped) first, while the count it reads still exists.
  std::unique_ptr<net::HttpServer> server;
};

net::HttpResponse HealthCheckResponse(uint64_t local_endpoints) {
  if (local_endpoints == 0) return {503, "text/plain; charset=utf-8", "No Service Endpoints Found"};
  return {200, "text/plain; charset=utf-8",
          std::to_string(local_endpoints) + " Service Endpoints found"};
}

HealthCheckServers::HealthCheckServers(std::string address) : address_(std::move(address)) {}

HealthCheckServers::~HealthCheckServers() { StopAll(); }

Status HealthCheckServers::Sync(const std::vector<HealthCheckService>& services) {
  // The wanted owner of each port: the first Service by namespace/name.
  std::vector<const HealthCheckService*> ordered;
  for (const auto& svc : services) {
    if (svc.port != 0) ordered.push_back(&svc);
  }
  std::sort(ordered.begin(), ordered.end(), [](const auto* a, const auto* b) {
    return std::tie(a->ns, a->name) < std::tie(b->ns, b->name);
  });
  std::map<uint16_t, const HealthCheckService*> wanted;
  for (const auto* svc : ordered) {
    auto [it, inserted] = wanted.try_emplace(svc->port, svc);
    if (!inserted) {
      KR_LOG_ERROR(
          "healthCheckNodePort {} of Service {}/{} is also used by {}/{}; serving that one",
          svc->port, svc->ns, svc->name, it->second->ns, it->second->name);
    }
  }
  for (auto it = servers_.begin(); it != servers_.end();) {
    if (!wanted.contains(it->first)) {
      KR_LOG_INFO("stopping the health check server of {} on port {}", it->second->owner,
                  it->first);
      it = servers_.erase(it);  // stops the server
    } else {
      ++it;
    }
  }
  Status result = Status::Ok();
  for (const auto& [port, svc] : wanted) {
    auto found = servers_.find(port);
    if (found != servers_.end()) {
      found->second->owner = svc->ns + "/" + svc->name;
      found->second->local_endpoints.store(svc->local_endpoints, std::memory_order_relaxed);
      continue;
    }
    auto entry = std::make_unique<Entry>();
    entry->owner = svc->ns + "/" + svc->name;
    entry->local_endpoints.store(svc->local_endpoints, std::memory_order_relaxed);
    const std::atomic<uint64_t>* count = &entry->local_endpoints;
    net::HttpRoutes routes;
    routes["/healthz"] = [count] {
      return HealthCheckResponse(count->load(std::memory_order_relaxed));
    };
    net::HttpServerLimits limits;
    limits.workers = 1;  // one server per Service port: keep each small
    auto server = net::HttpServer::Start(address_, port, std::move(routes), limits);
    if (!server.ok()) {
      // Retried by the next Sync that still wants the port.
      Status s = Status::Error("health check server of Service " + entry->owner + " on port " +
                               std::to_string(port) + ": " + server.error());
      KR_LOG_ERROR("{}", s.message());
      if (result.ok()) result = s;
      continue;
    }
    entry->server = std::move(*server);
    KR_LOG_INFO("serving the health check of {} on port {}", entry->owner, port);
    servers_[port] = std::move(entry);
  }
  return result;
}

void HealthCheckServers::StopAll() { servers_.clear(); }

std::vector<uint16_t> HealthCheckServers::ports() const {
  std::vector<uint16_t> ports;
  for (const auto& [port, entry] : servers_) ports.push_back(port);
  return ports;
}

}  // namespace kr::proxy
