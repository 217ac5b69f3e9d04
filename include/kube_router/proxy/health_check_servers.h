// The healthCheckNodePort servers of Services with externalTrafficPolicy Local: one HTTP server
// per port, answering GET /healthz with kube-router's body, "200 <n> Service Endpoints found"
// while the Service has local ready endpoints and "503 No Service Endpoints Found" otherwise.
// The count is per Service (whatever number of ports), a 64-bit value read atomically by the
// server threads. Servers come and go with the Services; each is bounded in connections and time
// by net::HttpServer. One writer (Sync/StopAll); not thread-safe against itself.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "kube_router/base/status.h"
#include "kube_router/net/http_server.h"

namespace kr::proxy {

struct HealthCheckService {
  std::string ns;
  std::string name;
  uint16_t port = 0;  // spec.healthCheckNodePort
  // Local endpoints of the Service that are ready (not terminating), each IP counted once.
  uint64_t local_endpoints = 0;
};

// kube-router's answer for a count.
net::HttpServerResponse HealthCheckResponse(uint64_t local_endpoints);

class HealthCheckServers {
 public:
  // `address`: where to listen ("" = every address, as kube-router).
  explicit HealthCheckServers(std::string address = "");
  ~HealthCheckServers();
  HealthCheckServers(const HealthCheckServers&) = delete;
  HealthCheckServers& operator=(const HealthCheckServers&) = delete;

  // Starts servers for new ports, stops those of ports no Service has any more, and updates the
  // counts. Two Services on one port (the API server prevents it): the first by namespace/name
  // is served, the other logged. A port that cannot be bound is logged once per Sync that still
  // wants it and returned as an error; every other port keeps working.
  Status Sync(const std::vector<HealthCheckService>& services);
  // The event path: only these Services changed (`upserts` want their port and count now;
  // `removed` (namespace, name) want nothing any more). Touches only their ports (and retries
  // ports that could not be bound); same rules as Sync.
  Status Update(const std::vector<HealthCheckService>& upserts,
                const std::vector<std::pair<std::string, std::string>>& removed);
  void StopAll();
  // Ports being served, sorted.
  std::vector<uint16_t> ports() const;

 private:
  struct Entry;
  using Key = std::pair<std::string, std::string>;  // namespace, name
  // Brings the server of `port` to its first claimant (by namespace/name), or stops it.
  Status Reconcile(uint16_t port);

  std::string address_;
  std::map<Key, HealthCheckService> wanted_;
  std::map<uint16_t, std::set<Key>> claims_;  // port -> Services wanting it
  std::set<uint16_t> failed_;                 // ports that could not be bound yet
  std::map<uint16_t, std::unique_ptr<Entry>> servers_;
};

}  // namespace kr::proxy
