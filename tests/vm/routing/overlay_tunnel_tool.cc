// overlay-tunnel-tool: one kernel sync of the overlay as the routes controller does it, without
// BGP: the learned paths come from the command line. The guest-kernel test uses it for the
// IPv6 tunnels (ip6tnl, plain and FoU/GUE) while the controller advertises IPv4 pod CIDRs only.
//
//   overlay-tunnel-tool --node-ip IP [--encap ipip|fou] [--port N] [--overlay-type subnet|full]
//                       [--path PREFIX=NEXT_HOP]... [--node IP]...
//
// Plans with PlanRoutes over the main table of the node address's family, applies the tunnels
// and FoU ports with SyncOverlayTunnels and the routes (proto 17) with the route diff, in the
// calling network namespace. Exit 0 on success, 1 with the error on stderr.
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "kube_router/netlink/libnl.h"
#include "kube_router/routing/overlay_tunnels.h"
#include "kube_router/routing/route_plan.h"

namespace kr::routing {
namespace {

int Fail(const std::string& message) {
  std::fprintf(stderr, "overlay-tunnel-tool: %s\n", message.c_str());
  return 1;
}

int Run(int argc, char** argv) {
  RoutingConfig config;
  std::optional<IpAddress> node_ip;
  std::vector<LearnedPath> paths;
  std::set<IpAddress> nodes;
  for (int i = 1; i + 1 < argc; i += 2) {
    std::string flag = argv[i], value = argv[i + 1];
    if (flag == "--node-ip") {
      node_ip = IpAddress::Parse(value);
      if (!node_ip) return Fail("bad --node-ip " + value);
    } else if (flag == "--encap") {
      config.overlay_encap = value == "fou" ? OverlayEncap::kFou : OverlayEncap::kIpip;
    } else if (flag == "--port") {
      config.overlay_encap_port = static_cast<uint16_t>(std::atoi(value.c_str()));
    } else if (flag == "--overlay-type") {
      config.overlay_type = value == "full" ? OverlayType::kFull : OverlayType::kSubnet;
    } else if (flag == "--path") {
      auto eq = value.find('=');
      auto prefix = IpPrefix::Parse(value.substr(0, eq));
      auto next_hop =
          eq == std::string::npos ? std::nullopt : IpAddress::Parse(value.substr(eq + 1));
      if (!prefix || !next_hop) return Fail("bad --path " + value);
      paths.push_back({*prefix, *next_hop});
    } else if (flag == "--node") {
      auto ip = IpAddress::Parse(value);
      if (!ip) return Fail("bad --node " + value);
      nodes.insert(*ip);
    } else {
      return Fail("unknown flag " + flag);
    }
  }
  if (!node_ip) return Fail("--node-ip is required");

  auto routes = netlink::MakeNetlinkRouteTable();
  auto links = netlink::MakeNetlinkLinks();
  auto fou = netlink::MakeNetlinkFouPorts();
  if (!routes || !links || !fou) return Fail("cannot open netlink sockets");
  auto main_routes =
      (*routes)->List({node_ip->family(), netlink::kMainTable, std::nullopt, std::nullopt});
  if (!main_routes) return Fail(main_routes.error());
  std::vector<UnderlayRoute> underlay;
  std::vector<netlink::Route> ours;
  for (const auto& route : *main_routes) {
    if (route.protocol == kRouteProtocol) {
      ours.push_back(route);
    } else if (route.type == netlink::RouteType::kUnicast) {
      underlay.push_back({route.destination, route.gateway});
    }
  }
  RoutePlan plan = PlanRoutes(config, *node_ip, {}, paths, underlay, nodes);
  for (const auto& skipped : plan.skipped) std::fprintf(stderr, "skipped %s\n", skipped.c_str());
  std::set<std::string> gone;
  if (Status status = SyncOverlayTunnels(config, plan.tunnels, **links, fou->get(), &gone);
      !status.ok()) {
    return Fail(status.message());
  }
  // Routes through deleted or recreated tunnels went with them.
  std::erase_if(ours, [&](const netlink::Route& route) { return gone.count(route.device) > 0; });
  std::vector<netlink::Route> want;
  for (const auto& route : plan.routes) want.push_back(ToKernelRoute(route));
  auto diff = DiffKernelRoutes(want, ours);
  if (!diff.changes.empty()) {
    auto result = (*routes)->Apply(diff.changes);
    if (!result) return Fail(result.error());
    if (!result->empty()) return Fail("route refused: " + result->front().message);
  }
  for (const auto& tunnel : plan.tunnels) {
    std::printf("tunnel %s %s -> %s\n", tunnel.name.c_str(), tunnel.local.ToString().c_str(),
                tunnel.remote.ToString().c_str());
  }
  return 0;
}

}  // namespace
}  // namespace kr::routing

int main(int argc, char** argv) { return kr::routing::Run(argc, argv); }
