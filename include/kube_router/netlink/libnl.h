// The real adapters: rtnetlink (libnl-route) for routes, rules and links, generic netlink
// (libnl-genl) for IPVS, ctnetlink (libnl-nf) for conntrack. This header is the only public entry
// to them and holds no libnl types; only the executable and root-only tests link kr_netlink_libnl.
//
// Each adapter opens its own netlink socket when it is made. The socket belongs to the network
// namespace the calling thread is in at that moment and stays there, so a test can make an
// adapter inside a throwaway namespace and use it after switching back.
#pragma once

#include <memory>

#include "kube_router/base/status.h"
#include "kube_router/netlink/conntrack.h"
#include "kube_router/netlink/ipvs.h"
#include "kube_router/netlink/links.h"
#include "kube_router/netlink/route_table.h"
#include "kube_router/netlink/rule_table.h"

namespace kr::netlink {

// `batch_size`: route requests sent per sendmsg (kernel-limits.md measured 256 as fast).
Result<std::unique_ptr<RouteTable>> MakeNetlinkRouteTable(size_t batch_size = 256);
Result<std::unique_ptr<Links>> MakeNetlinkLinks();
// Resolves the "fou" generic netlink family only when first used (an agent with IPIP
// encapsulation never loads the module).
Result<std::unique_ptr<FouPorts>> MakeNetlinkFouPorts();
// Fails when the kernel has no IPVS (module ip_vs not loaded and not loadable).
Result<std::unique_ptr<Ipvs>> MakeNetlinkIpvs();
Result<std::unique_ptr<RuleTable>> MakeNetlinkRuleTable();
// Needs nf_conntrack in the kernel (loaded on the first use of conntrack by any rule or by
// IPVS with net.ipv4.vs.conntrack=1); an empty table lists as empty.
Result<std::unique_ptr<Conntrack>> MakeNetlinkConntrack();

}  // namespace kr::netlink
