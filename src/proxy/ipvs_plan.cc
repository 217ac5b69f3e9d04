#include "kube_router/proxy/ipvs_plan.h"

namespace kr::proxy {
namespace {

using Op = IpvsChange::Op;

bool SameServiceConfig(const netlink::IpvsService& a, const netlink::IpvsService& b) {
  return a.scheduler == b.scheduler && a.flags == b.flags && a.timeout == b.timeout;
}

void DiffDestinations(const VirtualService& want, const VirtualService& have,
                      const PlanOptions& options, ProxyPlan& plan) {
  const VirtualServiceId id = want.id();
  for (const auto& dest : want.destinations) {
    auto it = have.destinations.find(IdOf(dest));
    if (it == have.destinations.end()) {
      plan.ipvs.push_back({Op::kAddDestination, want.service, dest});
    } else if (!dest.SameConfig(*it)) {
      plan.ipvs.push_back({Op::kUpdateDestination, want.service, dest});
    }
  }
  for (const auto& dest : have.destinations) {
    const DestinationId dest_id = IdOf(dest);
    if (want.destinations.contains(dest_id)) continue;
    if (!options.graceful) {
      plan.ipvs.push_back({Op::kDeleteDestination, want.service, dest});
      continue;
    }
    if (dest.weight != 0) {
      netlink::IpvsDestination drained = dest;
      drained.weight = 0;
      plan.ipvs.push_back({Op::kDrainDestination, want.service, drained});
    }
    plan.draining.insert({id, dest_id});
  }
}

// The wanted virtual service of a desired image's entry: its own copy, or the one it points at.
const VirtualService& WantedOf(const VirtualService& vs) { return vs; }
const VirtualService& WantedOf(const Wanted& wanted) { return *wanted.vs; }

// A VIP set's VIPs, or a VIP count map's keys.
void InsertVips(const std::set<IpAddress>& from, std::set<IpAddress>& to) {
  to.insert(from.begin(), from.end());
}
void InsertVips(const std::map<IpAddress, uint32_t>& from, std::set<IpAddress>& to) {
  for (const auto& [vip, claims] : from) to.insert(vip);
}

// Both Diff forms: `Desired` is a ProxyImage or a WantedImage (services by id, vips).
template <typename Desired>
ProxyPlan DiffImages(const Desired& desired, const ProxyImage& actual, const DiffScope* scope,
                     const PlanOptions& options) {
  ProxyPlan plan;
  std::set<VirtualServiceId> ids;
  std::set<IpAddress> vips;
  if (scope) {
    ids = scope->services;
    vips = scope->vips;
  } else {
    for (const auto& [id, vs] : desired.services) ids.insert(id);
    for (const auto& [id, vs] : actual.services) ids.insert(id);
    InsertVips(desired.vips, vips);
    vips.insert(actual.vips.begin(), actual.vips.end());
    vips.insert(actual.vips_without_route.begin(), actual.vips_without_route.end());
  }

  for (const IpAddress& vip : vips) {
    bool want = desired.vips.contains(vip);
    bool have = actual.vips.contains(vip);
    bool partial = actual.vips_without_route.contains(vip);
    if (want && !have) plan.add_vips.push_back(vip);
    if (!want && (have || partial)) plan.delete_vips.push_back(vip);
  }

  std::vector<IpvsChange> deletes;
  for (const VirtualServiceId& id : ids) {
    auto want = desired.services.find(id);
    auto have = actual.services.find(id);
    if (want == desired.services.end()) {
      if (have != actual.services.end()) {
        deletes.push_back({Op::kDeleteService, have->second.service, {}});
      }
      continue;
    }
    const VirtualService& wanted = WantedOf(want->second);
    if (have == actual.services.end()) {
      plan.ipvs.push_back({Op::kAddService, wanted.service, {}});
      for (const auto& dest : wanted.destinations) {
        plan.ipvs.push_back({Op::kAddDestination, wanted.service, dest});
      }
      continue;
    }
    if (!SameServiceConfig(wanted.service, have->second.service)) {
      plan.ipvs.push_back({Op::kUpdateService, wanted.service, {}});
    }
    DiffDestinations(wanted, have->second, options, plan);
  }
  plan.ipvs.insert(plan.ipvs.end(), deletes.begin(), deletes.end());
  return plan;
}

}  // namespace

ProxyPlan Diff(const ProxyImage& desired, const ProxyImage& actual, const DiffScope* scope,
               const PlanOptions& options) {
  return DiffImages(desired, actual, scope, options);
}

ProxyPlan DiffWanted(const WantedImage& desired, const ProxyImage& actual, const DiffScope* scope,
                     const PlanOptions& options) {
  return DiffImages(desired, actual, scope, options);
}

void ApplyChange(const IpvsChange& change, ProxyImage& image) {
  const VirtualServiceId id = VirtualServiceId::Of(change.service);
  const DestinationId dest{change.destination.address, change.destination.port};
  switch (change.op) {
    case Op::kAddService:
    case Op::kUpdateService: {
      auto& vs = image.services[id];
      vs.service = change.service;
      break;
    }
    case Op::kDeleteService:
      image.services.erase(id);
      break;
    case Op::kAddDestination:
    case Op::kUpdateDestination:
    case Op::kDrainDestination: {
      auto it = image.services.find(id);
      if (it == image.services.end()) break;
      netlink::IpvsDestination d = change.destination;
      d.active_connections = d.inactive_connections = 0;
      it->second.destinations.Put(d);
      break;
    }
    case Op::kDeleteDestination: {
      auto it = image.services.find(id);
      if (it != image.services.end()) it->second.destinations.Erase(dest);
      break;
    }
  }
}

void ApplyToImage(const ProxyPlan& plan, ProxyImage& image) {
  for (const IpAddress& vip : plan.add_vips) {
    image.vips.insert(vip);
    image.vips_without_route.erase(vip);
  }
  for (const IpvsChange& change : plan.ipvs) ApplyChange(change, image);
  for (const IpAddress& vip : plan.delete_vips) {
    image.vips.erase(vip);
    image.vips_without_route.erase(vip);
  }
}

}  // namespace kr::proxy
