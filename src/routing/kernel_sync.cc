// The controller's kernel sync: learned routes, overlay tunnels and their FoU ports (the part a
// learned or withdrawn path needs) and the pod egress ipsets and masquerade chain.
#include <algorithm>

#include "controller_metrics.h"
#include "kube_router/base/log.h"
#include "kube_router/routing/network_routes_controller.h"
#include "kube_router/routing/overlay_tunnels.h"
#include "kube_router/routing/pod_egress.h"

namespace kr::routing {

Status NetworkRoutesController::SyncKernelRoutes(
    const NodeInfo& self, const Result<std::vector<netlink::Route>>& main_routes,
    const std::set<IpAddress>& node_addresses) {
  std::vector<LearnedPath> paths;
  {
    MutexLock lock(shared_mu_);
    for (const auto& [prefix, path] : learned_) paths.push_back(path);
  }
  if (!main_routes) return main_routes.status().Context("listing kernel routes");
  std::vector<UnderlayRoute> underlay;
  std::vector<netlink::Route> ours;
  for (const auto& route : *main_routes) {
    if (route.protocol == kRouteProtocol) {
      ours.push_back(route);
    } else if (route.type == netlink::RouteType::kUnicast) {
      underlay.push_back({route.destination, route.gateway});
    }
  }
  std::vector<IpAddress> node_ips;
  for (const auto& address : {self.ipv4, self.ipv6}) {
    if (address) node_ips.push_back(*address);
  }
  if (node_ips.empty()) node_ips.push_back(*self.ip);
  RoutePlan plan = PlanRoutes(config_, node_ips, self.pod_cidrs, paths, underlay, node_addresses);
  // Each unroutable path (e.g. an IPv6 next hop on a node without an IPv6 address, a prefix and
  // next hop of different families) is logged once, when it first appears, not every sync.
  std::set<std::string> skipped(plan.skipped.begin(), plan.skipped.end());
  for (const auto& line : skipped) {
    if (!logged_skips_.count(line)) KR_LOG_WARN("routing: not routing {}", line);
  }
  logged_skips_ = std::move(skipped);
  for (const auto& collision : plan.name_collisions) {
    KR_LOG_ERROR("routing: not routing {}", collision);
  }

  // Tunnels (and their FoU ports) first: a route through a tunnel needs the link to exist and
  // be up.
  std::set<std::string> gone;
  Status tunnel_status =
      SyncOverlayTunnels(config_, plan.tunnels, *dataplane_.links, dataplane_.fou, &gone);
  installed_tunnels_ = plan.tunnels;
  // Routes through a deleted (or recreated) tunnel went with it: the diff must not keep or
  // delete them as if they were still there.
  std::erase_if(ours, [&](const netlink::Route& route) { return gone.count(route.device) > 0; });

  std::vector<netlink::Route> want;
  for (const auto& route : plan.routes) want.push_back(ToKernelRoute(route));
  KernelRouteDiff diff = DiffKernelRoutes(want, ours);
  const auto& changes = diff.changes;
  std::string refused;
  if (!changes.empty()) {
    auto result = dataplane_.routes->Apply(changes);
    if (!result) return result.status().Context("programming routes");
    for (const auto& error : *result) {
      refused += (refused.empty() ? "" : "; ") + changes[error.index].route.ToString() + ": " +
                 error.message;
    }
    for (const auto& change : changes) {
      KR_VLOG(1, "routing: {} {}",
              change.op == netlink::RouteChange::Op::kDelete ? "deleted" : "installed",
              change.route.ToString());
    }
  }
  metrics_->GetCounter(kMetricRoutesAdded, "Total number of routes added to the host")
      .Inc(diff.replaced);
  metrics_->GetCounter(kMetricRoutesRemoved, "Total number of routes removed from the host")
      .Inc(diff.deleted);
  metrics_->GetGauge(kMetricRoutesSynced, "Number of learned routes installed on the host")
      .Set(static_cast<double>(want.size()));
  installed_routes_ = want;
  if (!tunnel_status.ok()) return tunnel_status;
  if (!refused.empty()) return Status::Error("kernel refused routes: " + refused);
  return Status::Ok();
}

Status NetworkRoutesController::SyncPodEgress(const std::vector<NodeInfo>& nodes) {
  if (!dataplane_.ipset) return Status::Ok();
  Status v4 = Status::Ok();
  if (dataplane_.iptables) {
    v4 = SyncPodEgressFamily(nodes, *dataplane_.iptables,
                             config_.enable_pod_egress && config_.enable_ipv4);
  }
  if (dataplane_.iptables6 && config_.enable_ipv6) {
    Status v6 = SyncPodEgressFamily(nodes, *dataplane_.iptables6, config_.enable_pod_egress);
    if (!v6.ok()) return v4.ok() ? v6 : Status::Error(v4.message() + "; " + v6.message());
  }
  return v4;
}

Status NetworkRoutesController::SyncPodEgressFamily(const std::vector<NodeInfo>& nodes,
                                                    netfilter::Iptables& iptables, bool enabled) {
  const netfilter::IpFamily family = iptables.family();
  const std::string name = netfilter::IpFamilyName(family);
  auto sets = dataplane_.ipset->List();
  if (!sets) return sets.status().Context("listing ipsets");
  netfilter::IpsetUpdate set_update = PlanSetUpdate(DesiredEgressSets(nodes, family), *sets);
  if (!set_update.empty()) {
    if (auto status = dataplane_.ipset->Apply(set_update); !status.ok()) {
      return status.Context("updating the " + name + " pod/node ipsets");
    }
  }
  // From the read to the write: the service proxy appends its POSTROUTING rules at positions it
  // plans from its own read, on its own thread.
  kr::MutexLock placing(netfilter::BuiltinChainsMutex());
  auto nat = iptables.Save("nat");
  if (!nat) return nat.status().Context("reading the " + name + " nat table");
  netfilter::TableUpdate update = PlanPodEgress(*nat, enabled, family);
  if (!update.empty()) {
    if (auto status = iptables.Apply(update); !status.ok()) {
      return status.Context("updating the " + name + " pod egress masquerade");
    }
    KR_LOG_INFO("routing: {} pod egress masquerade {}", name, enabled ? "installed" : "removed");
  }
  return Status::Ok();
}

Result<uint32_t> NetworkRoutesController::NodeMtu(const NodeInfo& self) {
  auto addresses = dataplane_.links->ListAddresses("");
  if (!addresses) return addresses.status();
  for (const auto& address : *addresses) {
    if (address.address != *self.ip) continue;
    auto link = dataplane_.links->Get(address.device);
    if (!link) return link.status();
    if (*link && (*link)->mtu > 0) return (*link)->mtu;
  }
  return Status::Error("no interface holds the node address " + self.ip->ToString());
}

}  // namespace kr::routing
