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

Result<NetworkServicesController::KernelVips> NetworkServicesController::ReadKernelVips(
    bool for_cleanup) {
  KernelVips read;
  auto addresses = dataplane_.links->ListAddresses("");
  if (!addresses.ok()) return addresses.status().Context("service proxy: list addresses");
  std::set<IpAddress>& on_dummy = read.on_dummy;
  std::set<IpAddress>& local = read.local;
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
    // Per VIP: whether every host route of it is our local route with the node IP as source
    // (absent: no route at all).
    std::map<IpAddress, bool> route_good;
    for (const auto& r : *routes) {
      const IpAddress& vip = r.destination.address();
      if (r.destination.length() != HostBits(vip)) continue;
      auto source = node_.NodeIp(vip.is_v6());
      bool good = r.type == netlink::RouteType::kLocal && (!source || r.source == source);
      auto [it, inserted] = route_good.emplace(vip, good);
      if (!inserted) it->second = it->second && good;
    }
    read.dumped = addresses->size() + routes->size();
    for (const IpAddress& vip : on_dummy) {
      auto it = route_good.find(vip);
      bool good = it != route_good.end() && it->second;
      (good && !for_cleanup ? read.vips : read.vips_without_route).insert(vip);
    }
  }
  return read;
}

Result<NetworkServicesController::KernelServices> NetworkServicesController::ReadKernelServices(
    const KernelVips& vips, size_t& dumped) {
  KernelServices found;
  auto services = dataplane_.ipvs->ListServices();
  if (!services.ok()) return services.status().Context("service proxy: list IPVS services");
  dumped = services->size();
  for (const IpvsService& s : *services) {
    if (s.fwmark != 0) continue;  // DSR's (or someone else's) fwmark services
    bool excluded = std::any_of(config_.excluded_cidrs.begin(), config_.excluded_cidrs.end(),
                                [&](const IpPrefix& p) { return p.Contains(s.address); });
    if (excluded) continue;
    VirtualServiceId id = VirtualServiceId::Of(s);
    bool node_port = vips.local.contains(s.address) && s.port >= config_.node_port_first &&
                     s.port <= config_.node_port_last;
    bool ours = vips.on_dummy.contains(s.address) || node_port || desired_.services.contains(id) ||
                programmed_.services.contains(id);
    if (ours) found.emplace(id, s);
  }
  return found;
}

Result<ProxyImage> NetworkServicesController::ReadKernel(bool for_cleanup) {
  auto vips = ReadKernelVips(for_cleanup);
  if (!vips.ok()) return vips.status();
  size_t dumped = 0;
  auto services = ReadKernelServices(*vips, dumped);
  if (!services.ok()) return services.status();
  ProxyImage image;
  image.vips = std::move(vips->vips);
  image.vips_without_route = std::move(vips->vips_without_route);
  for (const auto& [id, s] : *services) {
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
