#include "kube_router/routing/route_plan.h"

#include <algorithm>
#include <map>
#include <set>

#include "kube_router/netlink/links.h"

namespace kr::routing {
namespace {

constexpr size_t kTunnelHashDigits = 11;  // "tun-" + 11 = 15, the kernel's IFNAMSIZ - 1

// Longest-prefix match among the underlay routes.
const UnderlayRoute* Lookup(const std::vector<UnderlayRoute>& underlay, const IpAddress& ip) {
  const UnderlayRoute* best = nullptr;
  for (const auto& route : underlay) {
    if (route.destination.address().family() != ip.family()) continue;
    if (!route.destination.Contains(ip)) continue;
    if (!best || route.destination.length() > best->destination.length()) best = &route;
  }
  return best;
}

}  // namespace

std::string TunnelName(const IpAddress& remote) { return netlink::OverlayTunnelName(remote); }

bool IsOurTunnelName(const std::string& name) {
  const std::string prefix = kTunnelPrefix;
  if (name.size() != prefix.size() + kTunnelHashDigits) return false;
  if (name.compare(0, prefix.size(), prefix) != 0) return false;
  auto digits = [&](auto in_alphabet) {
    return std::all_of(name.begin() + prefix.size(), name.end(), in_alphabet);
  };
  return digits([](char c) { return (c >= 'A' && c <= 'Z') || (c >= '2' && c <= '7'); }) ||
         digits([](char c) { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'); });
}

netlink::TunnelEncap OverlayTunnelEncap(const RoutingConfig& config) {
  if (config.overlay_encap != OverlayEncap::kFou) return {};
  return {netlink::TunnelEncapType::kGue, 0, config.overlay_encap_port};
}

std::vector<netlink::FouPort> PlanFouPorts(const RoutingConfig& config,
                                           const std::vector<DesiredTunnel>& tunnels) {
  std::set<IpAddress::Family> families;
  for (const auto& tunnel : tunnels) {
    if (tunnel.encap.type != netlink::TunnelEncapType::kNone)
      families.insert(tunnel.local.family());
  }
  std::vector<netlink::FouPort> out;
  for (auto family : families) {
    out.push_back({family, config.overlay_encap_port, netlink::FouKind::kGue, 0});
  }
  return out;
}

bool IsOurFouPort(const RoutingConfig& config, const netlink::FouPort& port) {
  return port.kind == netlink::FouKind::kGue && port.port == config.overlay_encap_port;
}

uint32_t OverlayOverhead(const RoutingConfig& config, IpAddress::Family family) {
  if (!config.enable_overlay) return 0;
  uint32_t outer = family == IpAddress::Family::kV4 ? 20 : 48;
  return outer + (config.overlay_encap == OverlayEncap::kFou ? 8 + 4 : 0);
}

RoutePlan PlanRoutes(const RoutingConfig& config, const IpAddress& node_ip,
                     const std::vector<IpPrefix>& own_pod_cidrs,
                     const std::vector<LearnedPath>& paths,
                     const std::vector<UnderlayRoute>& underlay,
                     const std::set<IpAddress>& node_addresses) {
  return PlanRoutes(config, std::vector<IpAddress>{node_ip}, own_pod_cidrs, paths, underlay,
                    node_addresses);
}

RoutePlan PlanRoutes(const RoutingConfig& config, const std::vector<IpAddress>& node_ips,
                     const std::vector<IpPrefix>& own_pod_cidrs,
                     const std::vector<LearnedPath>& paths,
                     const std::vector<UnderlayRoute>& underlay,
                     const std::set<IpAddress>& node_addresses) {
  RoutePlan plan;
  std::set<DesiredTunnel> tunnels;
  std::set<DesiredRoute> routes;
  std::set<IpPrefix> seen;
  std::map<std::string, IpAddress> tunnel_remotes;  // name -> the remote that holds it
  for (const auto& path : paths) {
    // Text for the skip reasons only (rare): built on demand.
    auto what = [&] { return path.prefix.ToString() + " via " + path.next_hop.ToString(); };
    if (std::find(node_ips.begin(), node_ips.end(), path.next_hop) != node_ips.end() ||
        std::find(own_pod_cidrs.begin(), own_pod_cidrs.end(), path.prefix) != own_pod_cidrs.end()) {
      continue;  // our own advertisement reflected back
    }
    if (path.next_hop.family() != path.prefix.address().family()) {
      plan.skipped.push_back(what() + ": the next hop is not of the prefix's family");
      continue;
    }
    auto own = std::find_if(node_ips.begin(), node_ips.end(), [&](const IpAddress& ip) {
      return ip.family() == path.next_hop.family();
    });
    if (own == node_ips.end()) {
      plan.skipped.push_back(what() + ": this node has no address of the next hop's family");
      continue;
    }
    const IpAddress& node_ip = *own;
    if (!seen.insert(path.prefix).second) {
      plan.skipped.push_back(what() + ": a second path for the same prefix");
      continue;
    }
    const UnderlayRoute* underlay_route = Lookup(underlay, path.next_hop);
    const bool directly_connected = underlay_route && !underlay_route->gateway;
    if (directly_connected && config.overlay_type != OverlayType::kFull) {
      routes.insert({path.prefix, path.next_hop, "", std::nullopt});
    } else if (config.enable_overlay && node_addresses.count(path.next_hop)) {
      DesiredTunnel tunnel{TunnelName(path.next_hop), node_ip, path.next_hop,
                           OverlayTunnelEncap(config)};
      auto [holder, fresh] = tunnel_remotes.try_emplace(tunnel.name, path.next_hop);
      if (!fresh && holder->second != path.next_hop) {
        plan.name_collisions.push_back(what() + ": tunnel name " + tunnel.name +
                                       " is already used by next hop " + holder->second.ToString() +
                                       " (hash collision)");
        continue;
      }
      routes.insert({path.prefix, std::nullopt, tunnel.name, node_ip});
      tunnels.insert(std::move(tunnel));
    } else if (underlay_route && underlay_route->gateway) {
      routes.insert({path.prefix, underlay_route->gateway, "", std::nullopt});
    } else if (directly_connected) {
      routes.insert({path.prefix, path.next_hop, "", std::nullopt});
    } else {
      plan.skipped.push_back(what() + ": no underlay route reaches the next hop");
    }
  }
  plan.routes.assign(routes.begin(), routes.end());
  plan.tunnels.assign(tunnels.begin(), tunnels.end());
  return plan;
}

netlink::Route ToKernelRoute(const DesiredRoute& route) {
  netlink::Route out;
  out.destination = route.destination;
  out.gateway = route.gateway;
  out.device = route.device;
  out.source = route.source;
  out.table = netlink::kMainTable;
  out.protocol = kRouteProtocol;
  // The kernel stores an IPv6 route added with metric 0 under metric 1024 (IP6_RT_PRIO_USER);
  // asking for that directly keeps the diff's (destination, metric) keys equal to what a dump
  // returns, so a route is not replaced and then deleted as stale on every sync.
  if (!route.destination.is_v4()) out.metric = kIpv6DefaultMetric;
  return out;
}

KernelRouteDiff DiffKernelRoutes(const std::vector<netlink::Route>& want,
                                 const std::vector<netlink::Route>& have) {
  using Key = std::pair<IpPrefix, uint32_t>;
  auto matches = [](const netlink::Route& wanted, const netlink::Route& present) {
    return wanted.destination == present.destination && wanted.gateway == present.gateway &&
           (wanted.device.empty() || wanted.device == present.device) &&
           (!wanted.source || wanted.source == present.source) && wanted.metric == present.metric;
  };
  std::map<Key, const netlink::Route*> have_by_key;
  for (const auto& route : have) have_by_key[{route.destination, route.metric}] = &route;
  KernelRouteDiff diff;
  std::set<Key> wanted_keys;
  for (const auto& route : want) {
    wanted_keys.insert({route.destination, route.metric});
    auto present = have_by_key.find({route.destination, route.metric});
    if (present == have_by_key.end() || !matches(route, *present->second)) {
      diff.changes.push_back({netlink::RouteChange::Op::kReplace, route});
      ++diff.replaced;
    }
  }
  for (const auto& route : have) {
    if (!wanted_keys.count({route.destination, route.metric})) {
      diff.changes.push_back({netlink::RouteChange::Op::kDelete, route});
      ++diff.deleted;
    }
  }
  return diff;
}

}  // namespace kr::routing
