// --cleanup-config for the proxy: every extension's cleanup, then our IPVS services and
// kube-dummy-if with its routes. Idempotent; foreign state stays.
#include "controller_kernel.h"
#include "kube_router/base/log.h"
#include "kube_router/proxy/network_services_controller.h"

namespace kr::proxy {

using detail::IsMissing;
using Op = IpvsChange::Op;

Result<std::vector<std::string>> NetworkServicesController::Cleanup() {
  std::vector<std::string> removed;
  Status first_error;
  for (auto& e : extensions_) {
    auto r = e->Cleanup();
    if (!r.ok()) {
      if (first_error.ok()) first_error = r.status().Context(e->Name());
      continue;
    }
    removed.insert(removed.end(), r->begin(), r->end());
  }
  auto image = ReadKernel(true);
  if (!image.ok()) return image.status();
  for (const auto& [id, vs] : image->services) {
    Status s = dataplane_.ipvs->DeleteService(vs.service);
    if (!s.ok() && !IsMissing(s)) {
      if (first_error.ok()) first_error = s.Context("delete IPVS service " + id.ToString());
      continue;
    }
    removed.push_back("IPVS service " + id.ToString());
  }
  auto link = dataplane_.links->Get(netlink::kKubeDummyName);
  if (!link.ok()) return link.status();
  if (link->has_value()) {
    // The kernel drops these with the link; deleting them first keeps an older kernel (and the
    // fakes) from holding routes to a device that is gone.
    netlink::RouteFilter filter;
    filter.table = netlink::kLocalTable;
    filter.device = netlink::kKubeDummyName;
    if (auto routes = dataplane_.routes->List(filter); routes.ok()) {
      std::vector<netlink::RouteChange> deletes;
      for (const auto& r : *routes) deletes.push_back({netlink::RouteChange::Op::kDelete, r});
      if (!deletes.empty()) (void)dataplane_.routes->Apply(deletes);
    }
    if (auto s = dataplane_.links->Delete(netlink::kKubeDummyName); !s.ok()) {
      if (first_error.ok()) first_error = s.Context("delete kube-dummy-if");
    } else {
      removed.push_back(std::string("link ") + netlink::kKubeDummyName + " (with " +
                        std::to_string(image->vips.size() + image->vips_without_route.size()) +
                        " VIPs)");
    }
  }
  programmed_ = ProxyImage{};
  programmed_valid_ = false;
  drains_.clear();
  if (!first_error.ok()) return first_error;
  return removed;
}

}  // namespace kr::proxy
