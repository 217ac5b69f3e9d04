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
      auto route = detail::RouteFromKernel(reinterpret_cast<rtnl_route*>(obj), name_of);
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
      std::string buffer;
      std::map<uint32_t, size_t> index_of_seq;
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
        nlmsghdr* hdr = nlmsg_hdr(msg->get());
        hdr->nlmsg_seq = next_seq_++;
        hdr->nlmsg_pid = 0;
        index_of_seq[hdr->nlmsg_seq] = i;
        buffer.append(reinterpret_cast<const char*>(hdr), NLMSG_ALIGN(hdr->nlmsg_len));
      }
      if (index_of_seq.empty()) continue;
      if (int err = nl_sendto(sock_.get(), buffer.data(), buffer.size()); err < 0) {
        return Status::Error("cannot send route requests: " + NlError(err));
      }
      if (Status s = CollectAcks(index_of_seq, errors); !s.ok()) return s;
    }
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

  // Reads until every request in `pending` (seq -> change index) is acknowledged.
  Status CollectAcks(std::map<uint32_t, size_t>& pending, std::vector<RouteChangeError>& errors) {
    while (!pending.empty()) {
      sockaddr_nl peer{};
      unsigned char* data = nullptr;
      int n = nl_recv(sock_.get(), &peer, &data, nullptr);
      if (n <= 0) {
        free(data);
        return Status::Error("cannot read route acks: " + NlError(n == 0 ? -NLE_FAILURE : n));
      }
      int remaining = n;
      for (auto* hdr = reinterpret_cast<nlmsghdr*>(data); nlmsg_ok(hdr, remaining);
           hdr = nlmsg_next(hdr, &remaining)) {
        if (hdr->nlmsg_type != NLMSG_ERROR) continue;
        auto it = pending.find(hdr->nlmsg_seq);
        if (it == pending.end()) continue;  // not ours (a stale answer)
        if (hdr->nlmsg_len >= NLMSG_LENGTH(sizeof(nlmsgerr))) {
          const auto* ack = static_cast<const nlmsgerr*>(nlmsg_data(hdr));
          if (ack->error != 0) errors.push_back({it->second, strerror(-ack->error)});
        } else {
          errors.push_back({it->second, "truncated netlink ack"});
        }
        pending.erase(it);
      }
      free(data);
    }
    // Errors arrive in kernel order; keep them in batch order for the caller.
    std::sort(
        errors.begin(), errors.end(),
        [](const RouteChangeError& a, const RouteChangeError& b) { return a.index < b.index; });
    return Status::Ok();
  }

  SocketPtr sock_;
  size_t batch_size_;
  // Our own sequence numbers: libnl checks the replies to its own requests against its counter,
  // which must not move under it. Acks are matched to changes only inside CollectAcks.
  uint32_t next_seq_ = 1;
};

}  // namespace

Result<std::unique_ptr<RouteTable>> MakeNetlinkRouteTable(size_t batch_size) {
  auto sock = detail::Connect(NETLINK_ROUTE);
  if (!sock.ok()) return sock.status();
  return std::unique_ptr<RouteTable>(new NetlinkRouteTable(std::move(*sock), batch_size));
}

}  // namespace kr::netlink
