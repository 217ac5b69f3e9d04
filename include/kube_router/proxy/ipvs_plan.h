// The pure diff of the service proxy: a desired image against an actual one (what the proxy
// programmed, or what it read back from the kernel) gives the IPVS, address and route changes
// that make them equal. Only the objects in a DiffScope are compared, so an event costs
// O(what it touched), not O(cluster). Table-tested without a kernel.
#pragma once

#include <map>
#include <optional>
#include <set>
#include <utility>
#include <vector>

#include "kube_router/proxy/service_model.h"

namespace kr::proxy {

// Everything of ours in IPVS and on kube-dummy-if.
struct ProxyImage {
  std::map<VirtualServiceId, VirtualService> services;
  // VIPs on kube-dummy-if with their local-table route (source = the node IP).
  std::set<IpAddress> vips;
  // Read from the kernel only: VIP addresses whose local route is missing or has another
  // source; the diff puts the route back (or removes them when unwanted).
  std::set<IpAddress> vips_without_route;

  bool operator==(const ProxyImage&) const = default;
};

// One wanted virtual service, not a copy of it: the Service that owns it and its VirtualService
// inside that Service's DesiredService::virtual_services. Both point into the owner of those
// values (the controller's map of Services), which must not change or drop them while this
// points at them.
struct Wanted {
  const DesiredService* owner = nullptr;
  const VirtualService* vs = nullptr;
};

// The desired side of a diff as a view: what the Services want, without a second copy of each
// virtual service (72 B of IPVS service and a map node apiece; docs/memory.md).
struct WantedImage {
  std::map<VirtualServiceId, Wanted> services;
  // The wanted VIPs (as ProxyImage::vips), each with how many Services want it (the owner's
  // count: a VIP goes when it reaches 0), so that no second map of the same VIPs is needed.
  std::map<IpAddress, uint32_t> vips;
};

// What a diff compares; objects outside it are left alone.
struct DiffScope {
  std::set<VirtualServiceId> services;
  std::set<IpAddress> vips;
};

struct PlanOptions {
  // --ipvs-graceful-termination: an unwanted destination gets weight 0 (drain) instead of
  // being deleted; one already at weight 0 is left to the drain queue.
  bool graceful = false;
};

struct IpvsChange {
  enum class Op {
    kAddService,
    kUpdateService,  // scheduler, flags or persistence timeout changed: in place
    kDeleteService,
    kAddDestination,
    kUpdateDestination,  // weight or forwarding changed (also: a draining endpoint came back)
    kDeleteDestination,
    kDrainDestination,  // UpdateDestination to weight 0, then the drain queue deletes it
  };
  Op op;
  netlink::IpvsService service;
  netlink::IpvsDestination destination;  // destination ops only

  bool operator==(const IpvsChange&) const = default;
};

struct ProxyPlan {
  std::vector<IpAddress> add_vips;  // address (if missing) and its local route
  // In write order: new and changed services, destination changes, then deleted services.
  std::vector<IpvsChange> ipvs;
  std::vector<IpAddress> delete_vips;  // after the services that used them are gone
  // Unwanted destinations at weight 0 after this plan (drained now or earlier): the drain
  // queue must hold exactly these within the scope.
  std::set<std::pair<VirtualServiceId, DestinationId>> draining;

  bool empty() const { return add_vips.empty() && ipvs.empty() && delete_vips.empty(); }
};

// `scope` null: compare everything in either image (a full sync).
ProxyPlan Diff(const ProxyImage& desired, const ProxyImage& actual, const DiffScope* scope,
               const PlanOptions& options);
// The same diff with the desired side as a view (the controller's): the same plan as Diff of a
// ProxyImage holding copies of the virtual services it points at. (Not an overload of Diff: a
// `Diff({}, actual, ...)` must keep meaning an empty ProxyImage.)
ProxyPlan DiffWanted(const WantedImage& desired, const ProxyImage& actual, const DiffScope* scope,
                     const PlanOptions& options);

// Applies a plan to an image (what the kernel holds after every change succeeded); the
// controller keeps its programmed image with it and tests check Diff(d, Apply(a)) is empty.
void ApplyToImage(const ProxyPlan& plan, ProxyImage& image);
void ApplyChange(const IpvsChange& change, ProxyImage& image);

}  // namespace kr::proxy
