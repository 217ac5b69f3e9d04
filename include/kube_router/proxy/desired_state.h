// The pure desired-state builder: one Service, its EndpointSlices, this node's facts and the
// proxy's settings in; the IPVS virtual services, VIPs and per-port facts out. No I/O, no
// clock, deterministic output (sorted), so the controller can rebuild a single Service per event
// and table tests can pin every rule.
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "kube_router/base/ip.h"
#include "kube_router/k8s/types.h"
#include "kube_router/proxy/proxy_config.h"
#include "kube_router/proxy/service_model.h"

namespace kr::proxy {

// This node as the proxy sees it.
struct NodeFacts {
  // kube-router's node IP per family (the route source of VIPs, the default NodePort address):
  // the primary address (first InternalIP, else first ExternalIP) when it is of that family,
  // else the first InternalIP, else the first ExternalIP of that family.
  std::optional<IpAddress> ipv4;
  std::optional<IpAddress> ipv6;
  // With --nodeport-bindon-all-ip: every address of the node's links except those on links
  // whose name holds "dummy", "kube" or "docker" (kube-router's filter). Empty otherwise.
  std::vector<IpAddress> all_addresses;
  bool bind_all = false;

  std::optional<IpAddress> NodeIp(bool v6) const { return v6 ? ipv6 : ipv4; }
  // Where NodePorts of that family are programmed.
  std::vector<IpAddress> NodePortAddresses(bool v6) const;
  bool operator==(const NodeFacts&) const = default;
};

NodeFacts NodeFactsFromNode(const k8s::Node& node);
// kube-router's link filter for --nodeport-bindon-all-ip.
bool NodePortLinkEligible(const std::string& link_name);

// The scheduler of kube-router.io/service.scheduler; nullopt for an unknown name.
std::optional<std::string> ParseScheduler(const std::string& annotation);

using SlicePtr = std::shared_ptr<const k8s::EndpointSlice>;

DesiredService BuildService(const k8s::Service& service, const std::vector<SlicePtr>& slices,
                            const NodeFacts& node, const ProxyConfig& config);

}  // namespace kr::proxy
