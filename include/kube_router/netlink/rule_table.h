// RuleTable: policy-routing rules (`ip rule`) of both families as plain values. The real adapter
// talks rtnetlink through libnl-route; the fake keeps a list. DSR uses it for
// "fwmark <m> lookup 78" rules.
//
// Ownership: rules we add carry protocol kKubeRouterRouteProtocol (FRA_PROTOCOL, as `ip rule
// ... proto 17`), so listing by protocol finds exactly ours, also after a restart.
//
// Threading: an instance is used by one thread at a time.
#pragma once

#include <compare>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "kube_router/base/ip.h"
#include "kube_router/base/status.h"
#include "kube_router/netlink/route_table.h"

namespace kr::netlink {

// A "lookup <table>" rule (FR_ACT_TO_TBL). A rule's identity in the kernel is every field
// below: two rules that differ in any of them coexist.
struct Rule {
  IpAddress::Family family = IpAddress::Family::kV4;
  uint32_t priority = 0;  // "pref"; 0 lets the kernel choose (below the lowest existing)
  uint32_t table = kMainTable;
  std::optional<uint32_t> fwmark;  // "fwmark <m>/<mask>"
  uint32_t fwmask = 0xffffffff;    // only with fwmark
  std::optional<IpPrefix> from;    // source prefix; must be of `family`
  uint8_t protocol = kKubeRouterRouteProtocol;

  auto operator<=>(const Rule&) const = default;
  // "v4 pref 32764 fwmark 0x2a lookup 78 proto 17", for logs and test failures.
  std::string ToString() const;
};

class RuleTable {
 public:
  virtual ~RuleTable() = default;

  // Every rule of `family`; with `protocol`, only rules of that protocol.
  virtual Result<std::vector<Rule>> List(IpAddress::Family family,
                                         std::optional<uint8_t> protocol) = 0;
  // Fails when an identical rule exists.
  virtual Status Add(const Rule& rule) = 0;
  // Deletes the rule with this identity (protocol included); fails when there is none.
  virtual Status Delete(const Rule& rule) = 0;
};

}  // namespace kr::netlink
