// Route <-> rtnetlink message conversion (private to src/netlink; unit-tested on its own).
#pragma once

#include <functional>
#include <optional>
#include <string>

#include "kube_router/netlink/route_table.h"
#include "nl_util.h"

struct rtnl_route;

namespace kr::netlink::detail {

// One RTM_NEWROUTE (add: CREATE|EXCL, replace: CREATE|REPLACE) or RTM_DELROUTE request with
// NLM_F_ACK set. `ifindex` is the resolved `route.device` (0 when it has none). Deletes carry
// destination, table, metric, protocol and type only (see RouteTable).
Result<MsgPtr> BuildRouteRequest(const RouteChange& change, int ifindex);

// A kernel route as a Route, or nullopt when it is not an IPv4/IPv6 route we can represent.
// Multipath routes are represented by their first next hop. `name_of` maps an ifindex to a
// link name.
std::optional<Route> RouteFromKernel(rtnl_route* route,
                                     const std::function<std::string(int)>& name_of);

}  // namespace kr::netlink::detail
