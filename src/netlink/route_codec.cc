#include "route_codec.h"

#include <linux/rtnetlink.h>
#include <netlink/route/nexthop.h>
#include <netlink/route/route.h>

namespace kr::netlink::detail {
namespace {
struct RouteDeleter {
  void operator()(rtnl_route* route) const { rtnl_route_put(route); }
};
}  // namespace

Result<MsgPtr> BuildRouteRequest(const RouteChange& change, int ifindex) {
  const Route& r = change.route;
  const IpAddress& dst = r.destination.address();
  if (r.gateway && r.gateway->family() != dst.family()) {
    return Status::Error("gateway family differs from destination family");
  }
  if (r.source && r.source->family() != dst.family()) {
    return Status::Error("source family differs from destination family");
  }
  std::unique_ptr<rtnl_route, RouteDeleter> route(rtnl_route_alloc());
  if (!route) return Status::Error("out of memory");
  rtnl_route_set_family(route.get(), static_cast<uint8_t>(FamilyOf(dst)));
  AddrPtr dst_addr = ToNlAddr(dst, r.destination.length());
  if (!dst_addr) return Status::Error("out of memory");
  if (int err = rtnl_route_set_dst(route.get(), dst_addr.get()); err < 0) {
    return Status::Error("destination: " + NlError(err));
  }
  rtnl_route_set_table(route.get(), r.table);
  rtnl_route_set_protocol(route.get(), r.protocol);
  rtnl_route_set_priority(route.get(), r.metric);
  rtnl_route_set_type(route.get(), static_cast<uint8_t>(r.type));

  int nl_flags = 0;
  if (change.op == RouteChange::Op::kDelete) {
    // RT_SCOPE_NOWHERE in a delete means "any scope".
    rtnl_route_set_scope(route.get(), RT_SCOPE_NOWHERE);
  } else {
    rtnl_route_set_scope(route.get(), static_cast<uint8_t>(r.scope));
    if (r.source) {
      AddrPtr src = ToNlAddr(*r.source, r.source->bit_length());
      if (!src) return Status::Error("out of memory");
      if (int err = rtnl_route_set_pref_src(route.get(), src.get()); err < 0) {
        return Status::Error("source: " + NlError(err));
      }
    }
    if (r.gateway || ifindex != 0) {
      rtnl_nexthop* nh = rtnl_route_nh_alloc();
      if (nh == nullptr) return Status::Error("out of memory");
      if (r.gateway) {
        AddrPtr gw = ToNlAddr(*r.gateway, r.gateway->bit_length());
        if (!gw) {
          rtnl_route_nh_free(nh);
          return Status::Error("out of memory");
        }
        rtnl_route_nh_set_gateway(nh, gw.get());
      }
      if (ifindex != 0) rtnl_route_nh_set_ifindex(nh, ifindex);
      if (r.onlink) rtnl_route_nh_set_flags(nh, RTNH_F_ONLINK);
      rtnl_route_add_nexthop(route.get(), nh);  // the route owns nh now
    }
    // A single next hop's flags travel in rtm_flags.
    if (r.onlink) rtnl_route_set_flags(route.get(), RTNH_F_ONLINK);
    nl_flags = NLM_F_CREATE | (change.op == RouteChange::Op::kAdd ? NLM_F_EXCL : NLM_F_REPLACE);
  }

  nl_msg* raw = nullptr;
  int err = change.op == RouteChange::Op::kDelete
                ? rtnl_route_build_del_request(route.get(), nl_flags, &raw)
                : rtnl_route_build_add_request(route.get(), nl_flags, &raw);
  if (err < 0) return Status::Error("cannot build route message: " + NlError(err));
  MsgPtr msg(raw);
  // Without NLM_F_REQUEST the kernel acks the message without acting on it.
  nlmsg_hdr(msg.get())->nlmsg_flags |= NLM_F_REQUEST | NLM_F_ACK;
  return msg;
}

std::optional<Route> RouteFromKernel(rtnl_route* kernel,
                                     const std::function<std::string(int)>& name_of) {
  const int family = rtnl_route_get_family(kernel);
  if (family != AF_INET && family != AF_INET6) return std::nullopt;
  const nl_addr* dst_addr = rtnl_route_get_dst(kernel);
  auto dst = FromNlAddr(dst_addr);
  if (!dst) return std::nullopt;
  const int length = static_cast<int>(nl_addr_get_prefixlen(dst_addr));
  if (length < 0 || length > dst->bit_length()) return std::nullopt;

  Route route;
  route.destination = IpPrefix(*dst, length);
  route.table = rtnl_route_get_table(kernel);
  route.protocol = rtnl_route_get_protocol(kernel);
  route.scope = static_cast<Scope>(rtnl_route_get_scope(kernel));
  route.type = static_cast<RouteType>(rtnl_route_get_type(kernel));
  route.metric = rtnl_route_get_priority(kernel);
  route.source = FromNlAddr(rtnl_route_get_pref_src(kernel));
  uint32_t flags = rtnl_route_get_flags(kernel);
  if (rtnl_route_get_nnexthops(kernel) > 0) {
    rtnl_nexthop* nh = rtnl_route_nexthop_n(kernel, 0);
    route.gateway = FromNlAddr(rtnl_route_nh_get_gateway(nh));
    if (int ifindex = rtnl_route_nh_get_ifindex(nh); ifindex > 0) route.device = name_of(ifindex);
    flags |= rtnl_route_nh_get_flags(nh);
  }
  route.onlink = (flags & RTNH_F_ONLINK) != 0;
  return route;
}

}  // namespace kr::netlink::detail
