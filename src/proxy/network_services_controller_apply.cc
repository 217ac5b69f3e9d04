// The proxy controller's single writer: VIPs with their routes, the IPVS changes of a plan as
// one batch, and the graceful-termination drain queue.
#include <algorithm>

#include "controller_kernel.h"
#include "kube_router/base/log.h"
#include "kube_router/proxy/network_services_controller.h"

namespace kr::proxy {

using detail::HostBits;
using detail::IsExists;
using detail::IsMissing;
using detail::VipRoute;
using netlink::IpvsDestination;
using netlink::IpvsService;
using Op = IpvsChange::Op;

namespace {

netlink::IpvsWrite WriteOf(const IpvsChange& change) {
  using W = netlink::IpvsWrite::Op;
  W op = W::kAddService;
  switch (change.op) {
    case Op::kAddService:
      op = W::kAddService;
      break;
    case Op::kUpdateService:
      op = W::kUpdateService;
      break;
    case Op::kDeleteService:
      op = W::kDeleteService;
      break;
    case Op::kAddDestination:
      op = W::kAddDestination;
      break;
    case Op::kUpdateDestination:
    case Op::kDrainDestination:
      op = W::kUpdateDestination;
      break;
    case Op::kDeleteDestination:
      op = W::kDeleteDestination;
      break;
  }
  return {op, change.service, change.destination};
}

}  // namespace

Status NetworkServicesController::EnsureDummyLink() {
  auto link = dataplane_.links->Get(netlink::kKubeDummyName);
  if (!link.ok()) return link.status().Context("service proxy: look up kube-dummy-if");
  if (!link->has_value()) {
    if (auto s = dataplane_.links->CreateDummy(netlink::kKubeDummyName); !s.ok() && !IsExists(s)) {
      return s.Context("service proxy: create kube-dummy-if");
    }
    KR_LOG_INFO("service proxy: created {}", netlink::kKubeDummyName);
  } else if ((*link)->up) {
    return Status::Ok();
  }
  return dataplane_.links->SetUp(netlink::kKubeDummyName, true)
      .Context("service proxy: bring kube-dummy-if up");
}

Status NetworkServicesController::AddVips(const std::vector<IpAddress>& vips) {
  if (vips.empty()) return Status::Ok();
  if (auto s = EnsureDummyLink(); !s.ok()) return s;
  // All addresses in one batch (a cold start of 10k Services is not 10k request/ack pairs).
  std::vector<netlink::Address> addresses;
  addresses.reserve(vips.size());
  for (const IpAddress& vip : vips) {
    addresses.push_back({netlink::kKubeDummyName, vip, HostBits(vip), netlink::Scope::kLink});
  }
  auto refused_addresses = dataplane_.links->AddAddresses(addresses);
  if (!refused_addresses.ok()) return refused_addresses.status().Context("service proxy: VIPs");
  auto refused_address = refused_addresses->begin();
  std::vector<netlink::RouteChange> changes;
  std::vector<IpAddress> routed;
  Status first_error;
  for (size_t i = 0; i < vips.size(); ++i) {
    const IpAddress& vip = vips[i];
    if (refused_address != refused_addresses->end() && refused_address->index == i) {
      Status s = Status::Error(refused_address++->message);
      if (!IsExists(s)) {  // an existing address is what we wanted
        if (first_error.ok()) first_error = s.Context("add VIP " + vip.ToString());
        continue;
      }
    }
    auto source = node_.NodeIp(vip.is_v6());
    if (!source) {
      // No node IP of that family: the kernel's own local route stays (source = the VIP).
      routed.push_back(vip);
      continue;
    }
    changes.push_back({netlink::RouteChange::Op::kReplace, VipRoute(vip, *source)});
    routed.push_back(vip);
  }
  if (!changes.empty()) {
    auto refused = dataplane_.routes->Apply(changes);
    if (!refused.ok()) return refused.status().Context("service proxy: VIP routes");
    for (const auto& e : *refused) {
      if (first_error.ok()) {
        first_error =
            Status::Error("VIP route " + changes[e.index].route.ToString() + ": " + e.message);
      }
      std::erase(routed, changes[e.index].route.destination.address());
    }
  }
  // IPv6: the kernel's own local route to the VIP (no source) would win over ours (#1698).
  std::vector<netlink::RouteChange> stale;
  bool any_v6 =
      std::any_of(routed.begin(), routed.end(), [](const IpAddress& ip) { return ip.is_v6(); });
  if (any_v6 && node_.ipv6) {
    netlink::RouteFilter filter;
    filter.table = netlink::kLocalTable;
    filter.family = IpAddress::Family::kV6;
    auto routes = dataplane_.routes->List(filter);
    if (!routes.ok()) return routes.status().Context("service proxy: list IPv6 local routes");
    std::set<IpAddress> v6(routed.begin(), routed.end());
    for (const auto& r : *routes) {
      if (r.destination.length() == 128 && v6.contains(r.destination.address()) &&
          r.source != node_.ipv6) {
        stale.push_back({netlink::RouteChange::Op::kDelete, r});
      }
    }
    if (!stale.empty()) (void)dataplane_.routes->Apply(stale);
  }
  for (const IpAddress& vip : routed) {
    programmed_.vips.insert(vip);
    programmed_.vips_without_route.erase(vip);
  }
  return first_error.Context("service proxy");
}

Status NetworkServicesController::DeleteVips(const std::vector<IpAddress>& vips) {
  Status first_error;
  for (const IpAddress& vip : vips) {
    if (auto source = node_.NodeIp(vip.is_v6())) {
      // The kernel drops the route with the address; the fake (and an old kernel) may not.
      (void)dataplane_.routes->Delete(VipRoute(vip, *source));
    }
    netlink::Address address{netlink::kKubeDummyName, vip, HostBits(vip), netlink::Scope::kLink};
    if (auto s = dataplane_.links->DeleteAddress(address); !s.ok() && !IsMissing(s)) {
      if (first_error.ok()) first_error = s.Context("service proxy: remove VIP " + vip.ToString());
      continue;
    }
    programmed_.vips.erase(vip);
    programmed_.vips_without_route.erase(vip);
  }
  return first_error;
}

Status NetworkServicesController::ApplyPlan(const ProxyPlan& plan) {
  Status first_error = AddVips(plan.add_vips);
  auto& ipvs = *dataplane_.ipvs;
  // All IPVS changes in one batch (few round trips: a cold start of 10k services is not 110k
  // request/ack pairs); a refused write is retried or accepted one by one below.
  std::vector<netlink::IpvsWrite> writes;
  writes.reserve(plan.ipvs.size());
  for (const IpvsChange& change : plan.ipvs) writes.push_back(WriteOf(change));
  auto refused = ipvs.Apply(writes);
  if (!refused.ok()) return refused.status().Context("service proxy");
  auto error = refused->begin();
  for (size_t i = 0; i < plan.ipvs.size(); ++i) {
    const IpvsChange& change = plan.ipvs[i];
    Status s;
    if (error != refused->end() && error->index == i) {
      s = Status::Error(error++->message);
      switch (change.op) {
        case Op::kAddService:
          if (IsExists(s)) s = ipvs.UpdateService(change.service);  // drift: made by someone
          break;
        case Op::kAddDestination:
          if (IsExists(s)) s = ipvs.UpdateDestination(change.service, change.destination);
          break;
        case Op::kDeleteService:
        case Op::kDeleteDestination:
          if (IsMissing(s)) s = Status::Ok();
          break;
        default:
          break;
      }
    }
    if (!s.ok()) {
      if (first_error.ok()) {
        first_error =
            s.Context("service proxy: " + VirtualServiceId::Of(change.service).ToString());
      }
      continue;
    }
    if (change.op == Op::kDeleteService) {
      auto it = programmed_.services.find(VirtualServiceId::Of(change.service));
      if (it != programmed_.services.end()) {
        for (const auto& dest : it->second.destinations) {
          for (auto& e : extensions_) e->OnDestinationRemoved(change.service, dest);
        }
      }
    } else if (change.op == Op::kDeleteDestination) {
      for (auto& e : extensions_) e->OnDestinationRemoved(change.service, change.destination);
    }
    ApplyChange(change, programmed_);
  }
  // The image grew its destination vectors one by one: no spare capacity kept between syncs.
  for (const IpvsChange& change : plan.ipvs) {
    if (change.op != Op::kAddDestination) continue;
    auto it = programmed_.services.find(VirtualServiceId::Of(change.service));
    if (it != programmed_.services.end()) it->second.destinations.Compact();
  }
  Status deleted = DeleteVips(plan.delete_vips);
  if (first_error.ok()) first_error = deleted;
  return first_error;
}

std::chrono::milliseconds NetworkServicesController::GracePeriodOf(const IpAddress& ip) const {
  for (const auto& pod : cluster_->pods.ByIndex(k8s::kIndexPodIp, ip.ToString())) {
    if (pod->termination_grace_period_seconds && *pod->termination_grace_period_seconds >= 0) {
      return std::chrono::seconds(*pod->termination_grace_period_seconds);
    }
  }
  return config_.graceful_period;
}

void NetworkServicesController::TrackDrains(const ProxyPlan& plan, const DiffScope* scope) {
  // Entries of the compared services that the plan no longer drains: the endpoint came back,
  // or its service went away.
  std::erase_if(drains_, [&](const auto& entry) {
    bool in_scope = !scope || scope->services.contains(entry.first.first);
    return in_scope && !plan.draining.contains(entry.first);
  });
  const auto now = clock_();
  for (const auto& key : plan.draining) {
    if (drains_.contains(key)) continue;
    auto vs = programmed_.services.find(key.first);
    if (vs == programmed_.services.end()) continue;
    auto dest = vs->second.destinations.find(key.second);
    if (dest == vs->second.destinations.end()) continue;
    drains_[key] = {vs->second.service, *dest, now + GracePeriodOf(key.second.address)};
  }
}

Status NetworkServicesController::RunDrains(std::set<VirtualServiceId>& touched) {
  if (drains_.empty()) return Status::Ok();
  const auto now = clock_();
  std::map<VirtualServiceId, std::vector<DrainKey>> by_service;
  for (const auto& [key, drain] : drains_) by_service[key.first].push_back(key);
  Status first_error;
  for (const auto& [id, keys] : by_service) {
    const IpvsService service = drains_.at(keys.front()).service;
    auto dests = dataplane_.ipvs->ListDestinations(service);
    if (!dests.ok()) {
      if (IsMissing(dests.status())) {
        for (const auto& key : keys) drains_.erase(key);
        continue;
      }
      if (first_error.ok()) first_error = dests.status().Context("service proxy: drain");
      continue;
    }
    for (const auto& key : keys) {
      auto it = std::find_if(dests->begin(), dests->end(), [&](const IpvsDestination& d) {
        return d.address == key.second.address && d.port == key.second.port;
      });
      if (it == dests->end()) {
        drains_.erase(key);
        continue;
      }
      bool drained = it->active_connections + it->inactive_connections == 0;
      if (!drained && now < drains_.at(key).deadline) continue;
      Status s = dataplane_.ipvs->DeleteDestination(service, *it);
      if (!s.ok() && !IsMissing(s)) {
        if (first_error.ok()) first_error = s.Context("service proxy: drain " + id.ToString());
        continue;
      }
      KR_LOG_INFO("service proxy: {} removed from {} ({})", key.second.ToString(), id.ToString(),
                  drained ? "no connections left" : "grace period over");
      ApplyChange({Op::kDeleteDestination, service, *it}, programmed_);
      touched.insert(id);
      for (auto& e : extensions_) e->OnDestinationRemoved(service, *it);
      drains_.erase(key);
    }
  }
  return first_error;
}

}  // namespace kr::proxy
