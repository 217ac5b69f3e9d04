// Applies the service proxy's netfilter state (firewall_plan.h) through the netfilter role
// interfaces: set changes as deltas, one iptables-restore --noflush delta per table, in the
// order that keeps kube-router-local-ips non-empty whenever its REJECT rule exists. Keeps an
// image of what it last applied, so an unchanged input costs no process at all; `verify` reads
// the kernel and repairs drift (the periodic sync). One writer: not thread-safe.
#pragma once

#include <map>
#include <optional>
#include <string>
#include <vector>

#include "kube_router/base/status.h"
#include "kube_router/netfilter/ipset.h"
#include "kube_router/netfilter/iptables.h"
#include "kube_router/proxy/firewall_plan.h"

namespace kr::proxy {

class ProxyFirewall {
 public:
  // `v6` may be null (IPv4 only). The adapters outlive this object.
  ProxyFirewall(netfilter::Iptables* v4, netfilter::Iptables* v6, netfilter::Ipset* ipset);

  // Brings the kernel to `input`. With `verify` (or on the first call, or after a failure) the
  // tables and sets are read back first; otherwise only the parts whose input changed are
  // written, planned against the image of the last successful sync.
  Status Sync(const FirewallInput& input, bool verify = false);

  // Removes all of ours in both families (both given adapters): jumps, chains, SNAT rules,
  // sets. Idempotent; foreign state stays.
  Status Cleanup();

 private:
  struct FamilyImage {
    std::vector<std::string> services_rules;
    std::vector<std::string> masquerade_rules;
    std::vector<std::string> hairpin_rules;
  };
  // The set contents one family's input asks for, as sorted plain values.
  struct SetEntries {
    std::vector<VipPort> ports;
    std::vector<IpAddress> vips;
    std::vector<IpAddress> local;
  };
  netfilter::Iptables* Tables(netfilter::IpFamily family) const;
  static SetEntries Normalize(const FirewallInput& input, netfilter::IpFamily family);
  static SetPlan PlanSetDeltas(const SetEntries& old, const SetEntries& now,
                               netfilter::IpFamily family);

  netfilter::Iptables* v4_;
  netfilter::Iptables* v6_;
  netfilter::Ipset* ipset_;
  // What the last successful sync left (valid while image_valid_).
  std::map<netfilter::IpFamily, SetEntries> entries_image_;
  std::vector<VipPort> last_services_;  // the input that entries_image_ came from
  std::vector<IpAddress> last_local_ips_;
  std::map<netfilter::IpFamily, FamilyImage> image_;
  bool image_valid_ = false;
};

}  // namespace kr::proxy
