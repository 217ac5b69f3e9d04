// "address:port" ("[v6]:port") for the value types' ToString(): types.cc and
// conntrack_rule_types.cc share it (one unity translation unit may hold both files).
#pragma once

#include <cstdint>
#include <string>

#include "kube_router/base/ip.h"

namespace kr::netlink {

inline std::string HostPortText(const IpAddress& address, uint16_t port) {
  std::string host = address.is_v6() ? "[" + address.ToString() + "]" : address.ToString();
  return host + ":" + std::to_string(port);
}

}  // namespace kr::netlink
