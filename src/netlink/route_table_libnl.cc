// RouteTable over rtnetlink. Changes are packed many requests per sendmsg, each with
// NLM_F_ACK, and the acks are matched back to the changes by sequence number: one failed
// change does not abort the batch, and the cost stays near the kernel's own (kernel-limits.md).
#include <linux/rtnetlink.h>
#include <netlink/route/link.h>
#include <netlink/route/route.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <map>
#include <unordered_map>

#include "kube_router/netlink/libnl.h"
#include "nl_util.h"
#include "route_codec.h"

namespace kr::netlink {
namespace {

using detail::CachePtr;
using detail::MsgPtr;
using detail::NlError;
using detail::SocketPtr;

class NetlinkRouteTable : public RouteTable {
 public:
  NetlinkRouteTable(SocketPtr sock, size_t batch_size)
      : sock_(std::move(sock)), batch_size_(batch_size == 0 ? 1 : batch_size) {}

  Result<std::vector<Route>> List(const RouteFilter& filter) override {
    auto names = LinkCache();
    if (!names.ok()) return names.status();
    nl_cache* raw = nullptr;
    int family = AF_UNSPEC;
    if (filter.family) family = *filter.family == IpAddress::Family::kV4 ? AF_INET : AF_INET6;
    if (int err = rtnl_route_alloc_cache(sock_.get(), family, 0, &raw); err < 0) {
      return Status::Error("cannot dump routes: " + NlError(err));
    }
    CachePtr cache(raw);
    auto name_of = [&](int ifindex) {
      char buf[IFNAMSIZ] = {};
      return std::string(rtnl_link_i2name(names->get(), ifindex, buf, sizeof(buf)) ? buf : "");
    };
    std::vector<Route> out;
    for (nl_object* obj = nl_cache_get_first(cache.get()); obj != nullptr;
         obj = nl_cache_get_next(obj)) {
      auto* kernel = reinterpret_cast<rtnl_route*>(obj);
      // A non-strict dump also returns the kernel's cached next-hop exceptions (PMTU,
      // redirects): host routes of protocol 0 that nobody configured. They are not routes.
      if (rtnl_route_get_flags(kernel) & RTM_F_CLONED) continue;
      auto route = detail::RouteFromKernel(kernel, name_of);
      if (route && filter.Matches(*route)) out.push_back(std::move(*route));
    }
    return out;
  }

  Result<std::vector<RouteChangeError>> Apply(const std::vector<RouteChange>& changes) override {
    std::vector<RouteChangeError> errors;
    CachePtr links;
    std::unordered_map<std::string, int> ifindex_of;
    for (size_t begin = 0; begin < changes.size(); begin += batch_size_) {
      const size_t end = std::min(changes.size(), begin + batch_size_);
      std::vector<std::pair<size_t, MsgPtr>> requests;
      for (size_t i = begin; i < end; ++i) {
        const Route& route = changes[i].route;
        int ifindex = 0;
        if (!route.device.empty() && changes[i].op != RouteChange::Op::kDelete) {
          auto it = ifindex_of.find(route.device);
          if (it == ifindex_of.end()) {
            if (!links) {
              auto cache = LinkCache();
              if (!cache.ok()) return cache.status();
              links = std::move(*cache);
            }
            it = ifindex_of
                     .emplace(route.device, rtnl_link_name2i(links.get(), route.device.c_str()))
                     .first;
          }
          ifindex = it->second;
          if (ifindex == 0) {
            errors.push_back({i, "No such device: " + route.device});
            continue;
          }
        }
        auto msg = detail::BuildRouteRequest(changes[i], ifindex);
        if (!msg.ok()) {
          errors.push_back({i, msg.error()});
          continue;
        }
        requests.emplace_back(i, std::move(*msg));
      }
      std::vector<std::pair<size_t, std::string>> refused;
      if (Status s = detail::SendBatch(sock_.get(), requests, next_seq_, refused); !s.ok()) {
        return s.Context("route requests");
      }
      for (auto& [index, message] : refused) errors.push_back({index, std::move(message)});
    }
    // Errors arrive in kernel order; keep them in batch order for the caller.
    std::sort(
        errors.begin(), errors.end(),
        [](const RouteChangeError& a, const RouteChangeError& b) { return a.index < b.index; });
    return errors;
  }

 private:
  Result<CachePtr> LinkCache() {
    nl_cache* raw = nullptr;
    if (int err = rtnl_link_alloc_cache(sock_.get(), AF_UNSPEC, &raw); err < 0) {
      return Status::Error("cannot dump links: " + NlError(err));
    }
    return CachePtr(raw);
  }

  SocketPtr sock_;
  size_t batch_size_;
  uint32_t next_seq_ = 1;  // our own (detail::SendBatch)
};

}  // namespace

Result<std::unique_ptr<RouteTable>> MakeNetlinkRouteTable(size_t batch_size) {
  auto sock = detail::Connect(NETLINK_ROUTE);
  if (!sock.ok()) return sock.status();
  return std::unique_ptr<RouteTable>(new NetlinkRouteTable(std::move(*sock), batch_size));
}

}  // namespace kr::netlink
