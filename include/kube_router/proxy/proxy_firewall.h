// Applies the service proxy's netfilter state (firewall_plan.h) through the netfilter role
// interfaces: set changes as deltas, one iptables-restore --noflush delta per table, in the
// order that keeps kube-router-local-ips non-empty whenever its REJECT rule exists. Keeps the
// input it was last given (in sorted containers) and an image of the rules it wrote, so an
// unchanged input costs no process at all and an event that changes a few services costs
// O(those services) through Update; `verify` reads the kernel and repairs drift (the periodic
// sync). One writer: not thread-safe.
#pragma once

#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "kube_router/base/status.h"
#include "kube_router/netfilter/ipset.h"
#include "kube_router/netfilter/iptables.h"
#include "kube_router/proxy/firewall_plan.h"

namespace kr::proxy {

// What changed since the last Sync/Update: the virtual services and hairpin rules that became
// wanted or stopped being wanted (net: an entry in both lists is ignored), and the node's
// addresses and facts as a whole (small). Flags (permit_all, masquerade_all) stay those of the
// last Sync.
struct FirewallChange {
  std::vector<VipPort> add_services;
  std::vector<VipPort> remove_services;
  std::vector<HairpinRule> add_hairpin;
  std::vector<HairpinRule> remove_hairpin;
  std::vector<IpAddress> local_ips;
  std::vector<IpAddress> node_ips;
  std::vector<IpPrefix> pod_cidrs;
};

class ProxyFirewall {
 public:
  // `v6` may be null (IPv4 only). The adapters outlive this object.
  ProxyFirewall(netfilter::Iptables* v4, netfilter::Iptables* v6, netfilter::Ipset* ipset);

  // Brings the kernel to `input`. With `verify` (or on the first call, or after a failure) the
  // tables and sets are read back first; otherwise only the parts whose input changed are
  // written, planned against the image of the last successful sync.
  Status Sync(const FirewallInput& input, bool verify = false);

  // The event path: applies `change` to the last input and writes only its consequences (set
  // entries of the changed services; a table only when its rules changed), in O(change) plus
  // the hairpin rules. Before the first successful Sync, or after a failure, it re-reads and
  // repairs everything as Sync(verify) does.
  Status Update(const FirewallChange& change);

  // The input as the firewall holds it now (sorted); for tests.
  FirewallInput CurrentInput() const;

  // Removes all of ours in both families (both given adapters): jumps, chains, SNAT rules,
  // sets. Idempotent; foreign state stays.
  Status Cleanup();

 private:
  struct FamilyImage {
    std::vector<std::string> services_rules;
    std::vector<std::string> masquerade_rules;
    std::vector<std::string> hairpin_rules;
  };
  // The last input, kept so that an event is applied as a delta.
  struct State {
    bool permit_all = true;
    bool masquerade_all = false;
    // Sorted, unique: ~20 B a virtual service, not a ~64 B set node (docs/memory.md).
    std::vector<VipPort> services;
    std::set<HairpinRule> hairpin;
    std::vector<IpAddress> local_ips;  // sorted, unique
    std::vector<IpAddress> node_ips;
    std::vector<IpPrefix> pod_cidrs;
  };
  netfilter::Iptables* Tables(netfilter::IpFamily family) const;
  std::vector<netfilter::IpFamily> Families() const;
  // Applies `change` to state_ and returns the set deltas it implies.
  SetPlan ApplyToState(const FirewallChange& change);
  // The input without the services (what the rules depend on).
  FirewallInput RulesInput() const;
  // Writes `sets` and the rules; with `read_kernel` the sets are planned against the kernel
  // instead (`sets` ignored) and every table is read.
  Status Write(SetPlan sets, bool read_kernel);
  // Reads the family's filter and/or nat table and writes what PlanFilter/PlanNat plan from it:
  // positions in built-in chains, so under the lock of that read.
  Status WriteTables(netfilter::IpFamily family, bool filter, bool nat,
                     const FirewallInput& rules_input) KR_REQUIRES(netfilter::BuiltinChainsMutex());

  netfilter::Iptables* v4_;
  netfilter::Iptables* v6_;
  netfilter::Ipset* ipset_;
  State state_;
  std::map<netfilter::IpFamily, FamilyImage> image_;
  bool image_valid_ = false;  // the kernel holds state_ (the last write succeeded)
};

}  // namespace kr::proxy
