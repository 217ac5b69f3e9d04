// Private to the proxy controller's source files: the helpers its parts share.
#pragma once

#include <string>

#include "kube_router/base/ip.h"
#include "kube_router/base/status.h"
#include "kube_router/netlink/links.h"
#include "kube_router/netlink/route_table.h"
#include "kube_router/proxy/service_model.h"

namespace kr::proxy::detail {

// The kernel gives every IPv6-enabled link its own fe80::/64 address.
inline bool IsIpv6LinkLocal(const IpAddress& address) {
  static const IpPrefix kLinkLocal = *IpPrefix::Parse("fe80::/10");
  return address.is_v6() && kLinkLocal.Contains(address);
}

// The adapters' error texts (libnl's and strerror's) for "already there" and "not there".
inline bool IsExists(const Status& s) { return s.message().find("exists") != std::string::npos; }
inline bool IsMissing(const Status& s) {
  const std::string& m = s.message();
  return m.find("No such") != std::string::npos || m.find("not found") != std::string::npos ||
         m.find("Cannot assign") != std::string::npos || m.find("no such") != std::string::npos;
}

// A Service's cache key ("namespace/name") as its name.
inline ServiceName NameFromKey(const std::string& key) {
  auto slash = key.find('/');
  if (slash == std::string::npos) return {"", key};
  return {key.substr(0, slash), key.substr(slash + 1)};
}

inline int HostBits(const IpAddress& ip) { return ip.is_v6() ? 128 : 32; }

// `local VIP dev kube-dummy-if table local proto kernel scope host src <node IP>`.
inline netlink::Route VipRoute(const IpAddress& vip, const IpAddress& source) {
  netlink::Route r;
  r.destination = IpPrefix(vip, HostBits(vip));
  r.device = netlink::kKubeDummyName;
  r.source = source;
  r.table = netlink::kLocalTable;
  r.protocol = netlink::kProtocolKernel;  // as kube-router (and the kernel's own local routes)
  r.scope = netlink::Scope::kHost;
  r.type = netlink::RouteType::kLocal;
  return r;
}

}  // namespace kr::proxy::detail
