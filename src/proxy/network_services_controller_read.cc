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

void NetworkServicesController::NoteAddress(const netlink::Address& a, KernelVips& read) {
  // The kernel gives every IPv6-enabled link its own fe80::/64 address; on kube-dummy-if it
  // is not a VIP of ours, and deleting it fails, which would fail every sync.
  if (a.device == netlink::kKubeDummyName && IsIpv6LinkLocal(a.address)) return;
  (a.device == netlink::kKubeDummyName ? read.on_dummy : read.local).insert(a.address);
}

void NetworkServicesController::NoteRoute(const netlink::Route& r, KernelVips& read) const {
  // Per VIP: whether every host route of it is our local route with the node IP as source.
  const IpAddress& vip = r.destination.address();
  if (r.destination.length() != HostBits(vip)) return;
  auto source = node_.NodeIp(vip.is_v6());
  bool good = r.type == netlink::RouteType::kLocal && (!source || r.source == source);
  auto [it, inserted] = read.route_good.emplace(vip, good);
  if (!inserted) it->second = it->second && good;
}

bool NetworkServicesController::KernelVips::Routed(const IpAddress& vip) const {
  auto it = route_good.find(vip);
  return it != route_good.end() && it->second;
}

bool NetworkServicesController::Listable(const IpvsService& s) const {
  if (s.fwmark != 0) return false;  // DSR's (or someone else's) fwmark services
  return std::none_of(config_.excluded_cidrs.begin(), config_.excluded_cidrs.end(),
                      [&](const IpPrefix& p) { return p.Contains(s.address); });
}

bool NetworkServicesController::Ours(const IpvsService& s, const KernelVips& vips) const {
  bool node_port = vips.local.contains(s.address) && s.port >= config_.node_port_first &&
                   s.port <= config_.node_port_last;
  if (vips.on_dummy.contains(s.address) || node_port) return true;
  VirtualServiceId id = VirtualServiceId::Of(s);
  return desired_.services.contains(id) || programmed_.services.contains(id);
}

Result<NetworkServicesController::KernelVips> NetworkServicesController::ReadKernelVips(
    bool for_cleanup) {
  KernelVips read;
  auto addresses = dataplane_.links->ListAddresses("");
  if (!addresses.ok()) return addresses.status().Context("service proxy: list addresses");
  for (const auto& a : *addresses) NoteAddress(a, read);
  read.dumped = addresses->size();
  if (!read.on_dummy.empty()) {
    auto routes = dataplane_.routes->List(LocalRoutesFilter());
    if (!routes.ok()) return routes.status().Context("service proxy: list local routes");
    for (const auto& r : *routes) NoteRoute(r, read);
    read.dumped += routes->size();
    for (const IpAddress& vip : read.on_dummy) {
      (read.Routed(vip) && !for_cleanup ? read.vips : read.vips_without_route).insert(vip);
    }
  }
  return read;
}

netlink::RouteFilter NetworkServicesController::LocalRoutesFilter() {
  netlink::RouteFilter filter;
  filter.table = netlink::kLocalTable;
  filter.device = netlink::kKubeDummyName;
  return filter;
}

Result<NetworkServicesController::KernelServices> NetworkServicesController::ReadKernelServices(
    const KernelVips& vips, size_t& dumped) {
  KernelServices found;
  auto services = dataplane_.ipvs->ListServices();
  if (!services.ok()) return services.status().Context("service proxy: list IPVS services");
  dumped = services->size();
  for (const IpvsService& s : *services) {
    if (Listable(s) && Ours(s, vips)) found.emplace(VirtualServiceId::Of(s), s);
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
