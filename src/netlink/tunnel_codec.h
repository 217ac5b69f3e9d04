// rtnetlink messages for overlay tunnels (private to src/netlink). libnl's ipip/ip6tnl objects
// know nothing of UDP encapsulation (IFLA_IPTUN_ENCAP_*), so tunnels are built and read here.
#pragma once

#include <linux/netlink.h>

#include "kube_router/base/status.h"
#include "kube_router/netlink/links.h"
#include "nl_util.h"

namespace kr::netlink::detail {

// RTM_NEWLINK creating (exclusively) the tunnel `spec` describes: kind "ipip" for IPv4 end
// points, "ip6tnl" mode ip6ip6 for IPv6 ones; with UDP encapsulation the encap type, ports and,
// for IPv6, a UDP checksum (RFC 8200 forbids zero checksums; iproute2's default too).
Result<MsgPtr> BuildTunnelRequest(const TunnelSpec& spec);

// Fills `link`'s tunnel end points and encapsulation from an RTM_NEWLINK message (a dump
// answer) when it is an ipip or ip6tnl link; leaves it alone otherwise.
void ParseTunnelInfo(nlmsghdr* message, Link& link);

}  // namespace kr::netlink::detail
