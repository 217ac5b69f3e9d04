// --cleanup-config: removes exactly what the routes controller owns, nothing else.
#include <algorithm>
#include <set>

#include "kube_router/routing/cni_config.h"
#include "kube_router/routing/network_routes_controller.h"
#include "kube_router/routing/overlay_tunnels.h"
#include "kube_router/routing/pod_egress.h"

namespace kr::routing {

Result<std::vector<std::string>> NetworkRoutesController::Cleanup() {
  std::vector<std::string> removed;
  std::vector<std::string> errors;
  // Routes with our protocol, in every family; nobody else's.
  for (auto family : {IpAddress::Family::kV4, IpAddress::Family::kV6}) {
    auto routes = dataplane_.routes->List({family, std::nullopt, kRouteProtocol, {}});
    if (!routes) {
      errors.push_back(routes.error());
      continue;
    }
    std::vector<netlink::RouteChange> changes;
    for (const auto& route : *routes) changes.push_back({netlink::RouteChange::Op::kDelete, route});
    if (changes.empty()) continue;
    auto result = dataplane_.routes->Apply(changes);
    if (!result) {
      errors.push_back(result.error());
      continue;
    }
    for (size_t i = 0; i < changes.size(); ++i) {
      bool refused = std::any_of(result->begin(), result->end(),
                                 [&](const netlink::RouteChangeError& e) { return e.index == i; });
      if (!refused) removed.push_back("route " + changes[i].route.ToString());
    }
  }
  // Our tunnels and FoU ports.
  auto overlay = CleanupOverlay(config_, *dataplane_.links, dataplane_.fou, errors);
  removed.insert(removed.end(), overlay.begin(), overlay.end());
  for (auto* iptables : {dataplane_.iptables, dataplane_.iptables6}) {
    if (!iptables) continue;
    const std::string family = netfilter::IpFamilyName(iptables->family());
    if (auto nat = iptables->Save("nat"); nat) {
      auto update = PlanPodEgress(*nat, /*enabled=*/false, iptables->family());
      if (!update.empty()) {
        if (auto status = iptables->Apply(update); status.ok()) {
          removed.push_back(family + " nat chain " + kPodEgressChain + " and its jump");
        } else {
          errors.push_back(status.message());
        }
      }
    } else {
      errors.push_back(nat.error());
    }
  }
  if (dataplane_.ipset) {
    // Only our sets (two per family), never every set on the host (kube-router's Cleanup
    // destroys all).
    std::set<std::string> ours;
    for (auto family : {netfilter::IpFamily::kV4, netfilter::IpFamily::kV6}) {
      ours.insert({PodSubnetsSetName(family), NodeIpsSetName(family)});
    }
    if (auto names = dataplane_.ipset->ListNames(); names) {
      netfilter::IpsetUpdate update;
      for (const auto& name : *names) {
        if (ours.count(name)) update.destroy.push_back(name);
      }
      if (!update.empty()) {
        if (auto status = dataplane_.ipset->Apply(update); status.ok()) {
          for (const auto& name : update.destroy) removed.push_back("ipset " + name);
        } else {
          errors.push_back(status.message());
        }
      }
    } else {
      errors.push_back(names.error());
    }
  }
  if (auto addresses = dataplane_.links->ListAddresses(kBridgeName); addresses) {
    for (const auto& address : *addresses) {
      // The kernel's own link-local address stays; ours are the gateway addresses.
      if (address.scope != netlink::Scope::kUniverse) continue;
      if (auto status = dataplane_.links->DeleteAddress(address); status.ok()) {
        removed.push_back("address " + address.ToString());
      } else {
        errors.push_back(status.message());
      }
    }
  }
  if (!errors.empty()) {
    std::string joined;
    for (const auto& e : errors) joined += (joined.empty() ? "" : "; ") + e;
    return Status::Error("routing cleanup: " + joined);
  }
  return removed;
}

}  // namespace kr::routing
