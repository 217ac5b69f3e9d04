// The service proxy's netfilter state as pure functions of a plain input: the VIP firewall of
// --ipvs-permit-all (filter chain KUBE-ROUTER-SERVICES, its INPUT jump and the sets
// kube-router-local-ips / -svip / -svip-prt), the IPVS masquerade rules in nat POSTROUTING and
// the hairpin chain KUBE-ROUTER-HAIRPIN, with kube-router's names and rule text. Rules are
// written as iptables-save prints them, so a table read back compares equal and an unchanged
// input plans no write. Nothing here depends on the proxy controller's types.
#pragma once

#include <compare>
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "kube_router/base/ip.h"
#include "kube_router/netfilter/ipset.h"
#include "kube_router/netfilter/iptables.h"
#include "kube_router/netlink/ipvs.h"

namespace kr::proxy {

inline constexpr char kServicesChain[] = "KUBE-ROUTER-SERVICES";
inline constexpr char kHairpinChain[] = "KUBE-ROUTER-HAIRPIN";
inline constexpr char kLocalIpsSet[] = "kube-router-local-ips";
inline constexpr char kServiceIpsSet[] = "kube-router-svip";
inline constexpr char kServiceIpPortsSet[] = "kube-router-svip-prt";
// The NetworkPolicy controller's INPUT chain (netpol/naming.h; not linked from here).
inline constexpr char kNetpolInputChain[] = "KUBE-ROUTER-INPUT";

// One virtual service the proxy programmed: a VIP (ClusterIP, externalIP, LB IP, a node IP with
// a NodePort, or the VIP of a DSR fwmark service) with its protocol and port. The protocol is
// the enum, not its name: the proxy keeps several of these per Service (docs/memory.md).
struct VipPort {
  IpAddress address;
  netlink::IpvsProtocol protocol = netlink::IpvsProtocol::kTcp;
  uint16_t port = 0;
  auto operator<=>(const VipPort&) const = default;
};

// "tcp", "udp", "sctp": as ipset entries and kube-router's metric labels spell a protocol.
const char* ProtocolText(netlink::IpvsProtocol protocol);

// One hairpin SNAT: a local endpoint reaching itself through `vip`:`port`.
struct HairpinRule {
  IpAddress endpoint;
  IpAddress vip;
  uint16_t port = 0;
  auto operator<=>(const HairpinRule&) const = default;
};

// What one service port needs for hairpin rules (kube-router's syncHairpinIptablesRules).
struct HairpinServicePort {
  bool annotated = false;               // kube-router.io/service.hairpin present
  bool external_ips_annotated = false;  // kube-router.io/service.hairpin.externalips present
  std::vector<IpAddress> cluster_ips;
  std::vector<IpAddress> external_ips;  // spec.externalIPs that passed validation
  std::vector<IpAddress> node_ips;      // the addresses the NodePort is programmed on
  uint16_t port = 0;
  uint16_t node_port = 0;  // 0: no NodePort
  std::vector<IpAddress> local_endpoints;
};

// The hairpin rules of one service port: none unless `hairpin_mode` (--hairpin-mode) or the
// annotation; per local endpoint one rule for each cluster IP, each external IP (only with the
// externalips annotation) and each node IP with the NodePort; families never mixed.
std::vector<HairpinRule> ExpandHairpin(const HairpinServicePort& port, bool hairpin_mode);

struct FirewallInput {
  bool permit_all = true;       // --ipvs-permit-all: install the VIP firewall
  bool masquerade_all = false;  // --masquerade-all
  // The node's own addresses for kube-router-local-ips: every address of every link except
  // those whose name holds "dummy", "kube" or "docker" (see IsLocalIpsLink), so the VIPs on
  // kube-dummy-if are not local.
  std::vector<IpAddress> local_ips;
  // Every virtual service the proxy owns (both families); its VIPs fill kube-router-svip.
  std::vector<VipPort> services;
  // The node IP per family (SNAT --to-source); the first address of a family is used.
  std::vector<IpAddress> node_ips;
  // This node's pod CIDRs (excluded from masquerading). No CIDR for a family: see
  // MasqueradeRules.
  std::vector<IpPrefix> pod_cidrs;
  std::vector<HairpinRule> hairpin;
};

// kube-router's rule for which links' addresses are "local" (and which NodePorts bind with
// --nodeport-bindon-all-ip): not a name containing "dummy", "kube" or "docker".
bool IsLocalIpsLink(const std::string& link_name);

// "kube-router-svip" / "inet6:kube-router-svip".
std::string FamilySetName(const char* base, netfilter::IpFamily family);

// The three sets of one family with their entries.
std::vector<netfilter::IpsetSet> DesiredSets(const FirewallInput& input,
                                             netfilter::IpFamily family);

// The rules of KUBE-ROUTER-SERVICES: ICMP accepts, the svip-prt accept and the REJECT of
// non-local destinations. Empty without permit_all. Without local addresses of the family the
// REJECT rule is left out: an empty kube-router-local-ips would reject traffic to the node
// itself (#1924).
std::vector<std::string> ServicesChainRules(const FirewallInput& input, netfilter::IpFamily family);
// INPUT -> KUBE-ROUTER-SERVICES for destinations in kube-router-svip.
std::string ServicesJumpRule(netfilter::IpFamily family);

// nat POSTROUTING SNAT for IPVS masquerade-forwarded traffic, one rule per pod CIDR of the
// family (`! -s CIDR ! -d CIDR`), plus one without CIDR matches with masquerade_all. With no pod
// CIDR of the family known (proxy-only mode on a node without podCIDR) the rule without CIDR
// matches is used, so external clients of remote endpoints still get replies (docs/parity.md).
// Empty without a node IP of the family.
std::vector<std::string> MasqueradeRules(const FirewallInput& input, netfilter::IpFamily family);
// The KUBE-ROUTER-HAIRPIN rules of one family, sorted.
std::vector<std::string> HairpinChainRules(const FirewallInput& input, netfilter::IpFamily family);
std::string HairpinJumpRule();

// Whether a nat POSTROUTING rule is one of ours: an IPVS masquerade SNAT (any pod CIDR, any
// node IP, with or without --random-fully), kube-router's older MASQUERADE form, or the jump to
// KUBE-ROUTER-HAIRPIN.
bool IsOwnedPostroutingRule(const std::string& rule);

// The filter-table change that makes `filter` hold the desired chain and jump (one delta; an
// empty update when nothing differs). A missing jump is inserted at position 1, or right below
// the NetworkPolicy controller's jump to KUBE-ROUTER-INPUT when that exists (pod egress policy
// must see pod-to-service traffic first); an existing jump is left where it is.
netfilter::TableUpdate PlanFilter(const netfilter::TableSnapshot& filter,
                                  const FirewallInput& input, netfilter::IpFamily family);
// The nat-table change for the masquerade rules and the hairpin chain and jump (appended, as
// kube-router does); only our rules are deleted, foreign ones stay.
netfilter::TableUpdate PlanNat(const netfilter::TableSnapshot& nat, const FirewallInput& input,
                               netfilter::IpFamily family);

// Set changes as deltas, in two batches so that no packet sees a half state: `additions`
// (missing sets created with their entries; entries added to local-ips, then svip-prt, then
// svip) go before the filter change, `removals` (svip, then svip-prt, then local-ips) after it.
struct SetPlan {
  netfilter::IpsetUpdate additions;
  netfilter::IpsetUpdate removals;
};
SetPlan PlanSets(const std::vector<netfilter::IpsetSet>& desired,
                 const std::map<std::string, netfilter::IpsetSet>& existing);

// --cleanup-config: delete every INPUT jump to our chain and the chain; every owned
// POSTROUTING rule and the hairpin chain. Foreign rules stay. Empty updates when nothing is
// left (idempotent).
netfilter::TableUpdate PlanFilterCleanup(const netfilter::TableSnapshot& filter);
netfilter::TableUpdate PlanNatCleanup(const netfilter::TableSnapshot& nat);
// The names of our sets of both families (destroyed after the rules that use them).
std::vector<std::string> OwnedSetNames();

}  // namespace kr::proxy
