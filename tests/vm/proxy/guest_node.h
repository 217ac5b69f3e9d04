// The node preamble the proxy's in-process guest tests share (beside lib/podnet.h, which makes
// the node, its pods and the external client): a service VIP on kube-dummy-if, as the proxy puts
// it there, and an IPVS adapter bound to the node's namespace.
#pragma once

#include <memory>
#include <stdexcept>
#include <string>

#include "kube_router/netlink/libnl.h"
#include "lib/netns.h"
#include "netns/netlink/in_netns.h"

namespace kr::testing {

// kube-dummy-if (created, up) holding `vip`/32.
inline Result<std::string> AddServiceVip(const Netns& node, const std::string& vip) {
  return node.Sh(
      "ip link add kube-dummy-if type dummy && ip link set kube-dummy-if up && ip addr add " + vip +
      "/32 dev kube-dummy-if");
}

// Our IPVS adapter on the node's namespace (its netlink socket stays bound there). Throws when
// IPVS is missing (a host kernel).
inline std::unique_ptr<netlink::Ipvs> NodeIpvs(const Netns& node) {
  auto ipvs = InNetns(node.name(), [] { return netlink::MakeNetlinkIpvs(); });
  if (!ipvs.ok()) throw std::runtime_error("IPVS in " + node.name() + ": " + ipvs.error());
  return std::move(*ipvs);
}

}  // namespace kr::testing
