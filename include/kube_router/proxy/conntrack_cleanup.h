// Conntrack cleanup for UDP and SCTP services: when a backend leaves a service port, the
// kernel's flows that this backend answered would keep steering a client's packets (same
// source port, as DNS resolvers do) to a backend that is gone, for the whole UDP timeout. We
// delete exactly those flows: original destination = one of the port's service IPs (or any
// address on the NodePort), reply source = the gone backend. Flows to surviving backends, TCP
// flows and other services are never touched (upstream kube-router flushes every flow of the
// VIP:port by running `conntrack -D`; kube-proxy deletes by reply source as we do).
//
// Plain inputs (no controller types), so the controller calls it after applying an IPVS diff:
// one item per changed UDP/SCTP service port, naming the backends whose destination it deleted.
#pragma once

#include <cstdint>
#include <vector>

#include "kube_router/base/ip.h"
#include "kube_router/base/status.h"
#include "kube_router/netlink/conntrack.h"

namespace kr::proxy {

struct ConntrackCleanupItem {
  uint8_t protocol = netlink::ip_protocol::kUdp;  // UDP or SCTP; TCP items are ignored
  // Every VIP of the port, both families: cluster IPs, external IPs, LoadBalancer IPs.
  std::vector<IpAddress> service_ips;
  uint16_t port = 0;       // the service port
  uint16_t node_port = 0;  // 0: no NodePort (matched on every node address)
  // Endpoints whose IPVS destination was deleted from this port.
  std::vector<IpAddress> gone_backends;
  // The port had no endpoint and now has one: flows the kernel answered itself while it was
  // empty (untranslated) are deleted so the client's next packet reaches the new backend.
  bool first_backend_arrived = false;
};

// The filters selecting exactly the flows to delete (pure; one per service IP or NodePort and
// backend of the same family). Empty when nothing needs deleting.
std::vector<netlink::ConntrackFilter> ConntrackCleanupFilters(
    const std::vector<ConntrackCleanupItem>& items);

// Deletes them in one pass (one dump per family). Returns how many flows were deleted. A
// failure is returned for the caller to log: stale flows then only live until they expire, so
// the caller keeps going.
Result<size_t> CleanupConntrack(netlink::Conntrack& conntrack,
                                const std::vector<ConntrackCleanupItem>& items);

}  // namespace kr::proxy
