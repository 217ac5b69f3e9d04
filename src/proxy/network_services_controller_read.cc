// The proxy controller's kernel read-back: what IPVS, kube-dummy-if and the local table hold of
// ours (the full sync's "actual" image; adopting it after a restart writes nothing).
#include <algorithm>

#include "controller_kernel.h"
#include "kube_router/base/log.h"
#include "kube_router/proxy/network_services_controller.h"

namespace kr::proxy {

using detail::HostBits;
using detail::IsIpv6LinkLocal;
using netlink::IpvsService;
using Op = IpvsChange::Op;

Result<ProxyImage> NetworkServicesController::ReadKernel(bool for_cleanup) {
  ProxyImage image;
  auto addresses = dataplane_.links->ListAddresses("");
  if (!addresses.ok()) return addresses.status().Context("service proxy: list addresses");
  std::set<IpAddress> on_dummy, local;
  for (const auto& a : *addresses) {
    // The kernel gives every IPv6-enabled link its own fe80::/64 address; on kube-dummy-if it
    // is not a VIP of ours, and deleting it fails, which would fail every sync.
    if (a.device == netlink::kKubeDummyName && IsIpv6LinkLocal(a.address)) continue;
    (a.device == netlink::kKubeDummyName ? on_dummy : local).insert(a.address);
  }
  if (!on_dummy.empty()) {
    netlink::RouteFilter filter;
    filter.table = netlink::kLocalTable;
    filter.device = netlink::kKubeDummyName;
    auto routes = dataplane_.routes->List(filter);
    if (!routes.ok()) return routes.status().Context("service proxy: list local routes");
    std::map<IpAddress, std::vector<netlink::Route>> by_vip;
    for (const auto& r : *routes) {
      if (r.destination.length() == HostBits(r.destination.address())) {
        by_vip[r.destination.address()].push_back(r);
      }
    }
    for (const IpAddress& vip : on_dummy) {
      auto source = node_.NodeIp(vip.is_v6());
      const auto& rs = by_vip[vip];
      bool good = !rs.empty() && std::all_of(rs.begin(), rs.end(), [&](const netlink::Route& r) {
        return r.type == netlink::RouteType::kLocal && (!source || r.source == source);
      });
      (good && !for_cleanup ? image.vips : image.vips_without_route).insert(vip);
    }
  }

  auto services = dataplane_.ipvs->ListServices();
  if (!services.ok()) return services.status().Context("service proxy: list IPVS services");
  for (const IpvsService& s : *services) {
    if (s.fwmark != 0) continue;  // DSR's (or someone else's) fwmark services
    bool excluded = std::any_of(config_.excluded_cidrs.begin(), config_.excluded_cidrs.end(),
                                [&](const IpPrefix& p) { return p.Contains(s.address); });
    if (excluded) continue;
    VirtualServiceId id = VirtualServiceId::Of(s);
    bool node_port = local.contains(s.address) && s.port >= config_.node_port_first &&
                     s.port <= config_.node_port_last;
    bool ours = on_dummy.contains(s.address) || node_port || desired_.services.contains(id) ||
                programmed_.services.contains(id);
    if (!ours) continue;
    VirtualService vs;
    vs.service = s;
    auto dests = dataplane_.ipvs->ListDestinations(s);
    if (!dests.ok()) return dests.status().Context("service proxy: list destinations");
    vs.destinations = Destinations::FromUnsorted(std::move(*dests));
    image.services[id] = std::move(vs);
  }
  return image;
}

}  // namespace kr::proxy
