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

net::HttpServerResponse HealthCheckResponse(uint64_t local_endpoints) {
  if (local_endpoints == 0) return {503, "text/plain; charset=utf-8", "No Service Endpoints Found"};
  return {200, "text/plain; charset=utf-8",
          std::to_string(local_endpoints) + " Service Endpoints found"};
}

HealthCheckServers::HealthCheckServers(std::string address) : address_(std::move(address)) {}

HealthCheckServers::~HealthCheckServers() { StopAll(); }

Status HealthCheckServers::Sync(const std::vector<HealthCheckService>& services) {
  std::vector<HealthCheckService> upserts;
  std::set<Key> now;
  for (const auto& svc : services) {
    if (svc.port == 0) continue;
    upserts.push_back(svc);
    now.insert({svc.ns, svc.name});
  }
  std::vector<Key> removed;
  for (const auto& [key, svc] : wanted_) {
    if (!now.contains(key)) removed.push_back(key);
  }
  return Update(upserts, removed);
}

Status HealthCheckServers::Update(const std::vector<HealthCheckService>& upserts,
                                  const std::vector<Key>& removed) {
  std::set<uint16_t> ports(failed_.begin(), failed_.end());
  auto drop = [&](const Key& key) {
    auto it = wanted_.find(key);
    if (it == wanted_.end()) return;
    const uint16_t port = it->second.port;
    ports.insert(port);
    auto& claims = claims_[port];
    claims.erase(key);
    if (claims.empty()) claims_.erase(port);
    wanted_.erase(it);
  };
  for (const auto& key : removed) drop(key);
  for (const auto& svc : upserts) {
    Key key{svc.ns, svc.name};
    drop(key);
    if (svc.port == 0) continue;
    wanted_[key] = svc;
    claims_[svc.port].insert(key);
    ports.insert(svc.port);
  }
  Status result = Status::Ok();
  for (uint16_t port : ports) {
    if (Status s = Reconcile(port); !s.ok() && result.ok()) result = s;
  }
  return result;
}

Status HealthCheckServers::Reconcile(uint16_t port) {
  failed_.erase(port);
  auto claims = claims_.find(port);
  if (claims == claims_.end()) {
    if (auto it = servers_.find(port); it != servers_.end()) {
      KR_LOG_INFO("stopping the health check server of {} on port {}", it->second->owner, port);
      servers_.erase(it);  // stops the server
    }
    return Status::Ok();
  }
  // The wanted owner of the port: the first Service by namespace/name.
  const HealthCheckService& svc = wanted_.at(*claims->second.begin());
  for (auto other = std::next(claims->second.begin()); other != claims->second.end(); ++other) {
    KR_LOG_ERROR("healthCheckNodePort {} of Service {}/{} is also used by {}/{}; serving that one",
                 port, other->first, other->second, svc.ns, svc.name);
  }
  const std::string owner = svc.ns + "/" + svc.name;
  if (auto found = servers_.find(port); found != servers_.end()) {
    found->second->owner = owner;
    found->second->local_endpoints.store(svc.local_endpoints, std::memory_order_relaxed);
    return Status::Ok();
  }
  auto entry = std::make_unique<Entry>();
  entry->owner = owner;
  entry->local_endpoints.store(svc.local_endpoints, std::memory_order_relaxed);
  const std::atomic<uint64_t>* count = &entry->local_endpoints;
  net::HttpRoutes routes;
  routes["/healthz"] = [count] {
    return HealthCheckResponse(count->load(std::memory_order_relaxed));
  };
  net::HttpServerLimits limits;
  limits.workers = 1;  // one server per Service port: keep each small
  auto server = net::HttpServer::Start(address_, port, std::move(routes), limits);
  if (!server.ok()) {
    // Retried by the next Sync/Update while the port is still wanted.
    failed_.insert(port);
    Status s = Status::Error("health check server of Service " + owner + " on port " +
                             std::to_string(port) + ": " + server.error());
    KR_LOG_ERROR("{}", s.message());
    return s;
  }
  entry->server = std::move(*server);
  KR_LOG_INFO("serving the health check of {} on port {}", owner, port);
  servers_[port] = std::move(entry);
  return Status::Ok();
}

void HealthCheckServers::StopAll() {
  servers_.clear();
  wanted_.clear();
  claims_.clear();
  failed_.clear();
}

std::vector<uint16_t> HealthCheckServers::ports() const {
  std::vector<uint16_t> ports;
  for (const auto& [port, entry] : servers_) ports.push_back(port);
  return ports;
}

}  // namespace kr::proxy
