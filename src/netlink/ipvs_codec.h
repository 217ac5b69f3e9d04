// IPVS generic-netlink messages (linux/ip_vs.h) built and parsed by hand: libnl has no IPVS
// helpers. Private to src/netlink; unit-tested without a kernel.
#pragma once

#include <cstdint>

#include "kube_router/netlink/ipvs.h"
#include "nl_util.h"

struct nlattr;

namespace kr::netlink::detail {

// A request `command` (IPVS_CMD_*) for the family id `family`, carrying the service and/or the
// destination when given. `full` adds every writable attribute (new/set commands need them);
// without it only the identity is sent (delete, get).
Result<MsgPtr> BuildIpvsRequest(int family, uint8_t command, int nl_flags,
                                const IpvsService* service, const IpvsDestination* dest, bool full);
// IPVS_CMD_SET_CONFIG with the non-zero timeouts.
Result<MsgPtr> BuildIpvsTimeouts(int family, const IpvsTimeouts& timeouts);

// The nested IPVS_CMD_ATTR_SERVICE / IPVS_CMD_ATTR_DEST of a kernel answer. Malformed or
// missing attributes give an error naming them (never a crash).
Result<IpvsService> ParseIpvsService(const nlattr* nested);
// The 64-bit counters (IPVS_SVC_ATTR_STATS64) inside a service's nested attribute; zeros when the
// kernel sent none.
Result<IpvsStats> ParseIpvsServiceStats(const nlattr* nested);
Result<IpvsDestination> ParseIpvsDestination(const nlattr* nested, IpAddress::Family family);

}  // namespace kr::netlink::detail
