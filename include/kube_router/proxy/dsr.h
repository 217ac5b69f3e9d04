// DSR (kube-router.io/service.dsr=tunnel): the external and LoadBalancer IPs of an annotated
// Service are served by fwmark IPVS services whose real servers are reached through IPIP (or
// ip6ip6) tunnels, and the pods answer the client directly from the VIP.
//
// What we program, all derived from the set of DSR services (deterministic, so a restart finds
// and removes exactly what an earlier run made):
//   * fwmark per VIP:protocol:port: DsrFwmark (FNV-1a of "<ip>-<proto>-<port>", 14 bits, as
//     kube-router; collisions resolved in sorted key order);
//   * an IPVS fwmark service per VIP:protocol:port with tunnel destinations;
//   * mangle chain KUBE-ROUTER-DSR (jumped to from PREROUTING and OUTPUT): MARK per
//     VIP:protocol:port; chain KUBE-ROUTER-DSR-MSS (from PREROUTING): TCPMSS clamp of the pods'
//     SYN-ACKs for the tunnel overhead;
//   * ip rules "fwmark <m> lookup 78 pref 32764 proto 17", and table 78 "local default dev lo"
//     (proto 17) per family in use, so marked packets are delivered to IPVS on this node;
//   * inside each local endpoint pod's network namespace (found by its IP, PodNetns): a tunnel
//     link (kube-tunnel-if / kube-tunnel-v6, local = the pod IP) holding the VIPs, rp_filter off.
// Ownership: our rules carry protocol 17 in table 78 at priority 32764; the fwmark services we
// own are those whose mark one of our rules names; our mangle chains are ours by name; in a pod
// only the tunnel link of that name. Removing the annotation (or --cleanup-config) removes all of
// it, also after a restart.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <tuple>
#include <vector>

#include "kube_router/base/ip.h"
#include "kube_router/base/status.h"
#include "kube_router/netfilter/iptables.h"
#include "kube_router/netlink/conntrack.h"
#include "kube_router/netlink/ipvs.h"
#include "kube_router/netlink/links.h"
#include "kube_router/netlink/pod_netns.h"
#include "kube_router/netlink/route_table.h"
#include "kube_router/netlink/rule_table.h"
#include "kube_router/netlink/sysctl.h"

namespace kr::proxy {

inline constexpr uint32_t kDsrRulePriority = 32764;
inline constexpr uint32_t kDsrFwmarkMask = 0x3FFF;
inline constexpr char kDsrMarkChain[] = "KUBE-ROUTER-DSR";
inline constexpr char kDsrMssChain[] = "KUBE-ROUTER-DSR-MSS";
inline constexpr char kPodTunnelV4[] = "kube-tunnel-if";
inline constexpr char kPodTunnelV6[] = "kube-tunnel-v6";

// One DSR VIP:protocol:port of a Service.
struct DsrServiceInput {
  std::string owner;  // "namespace/name", for logs
  IpAddress vip;      // an external or LoadBalancer IP
  uint8_t protocol = netlink::ip_protocol::kTcp;
  uint16_t port = 0;                       // service port = target port (DSR cannot remap ports)
  std::vector<IpAddress> endpoints;        // every serving endpoint of the VIP's family
  std::vector<IpAddress> local_endpoints;  // those on this node (VIP put inside their netns)
  std::string scheduler = "rr";
  uint32_t flags = 0;  // netlink::ipvs_flags
  uint32_t timeout = 0;
};

// The 14-bit FNV-1a mark of "<ip>-<proto>-<port>" (kube-router's), never 0.
uint32_t DsrFwmarkHash(const std::string& key);

// A DSR VIP:protocol:port (the key a mark is assigned to).
struct DsrVipPort {
  IpAddress vip;
  uint8_t protocol = netlink::ip_protocol::kTcp;
  uint16_t port = 0;
  bool operator<(const DsrVipPort& o) const {
    return std::tie(vip, protocol, port) < std::tie(o.vip, o.protocol, o.port);
  }
  bool operator==(const DsrVipPort& o) const {
    return std::tie(vip, protocol, port) == std::tie(o.vip, o.protocol, o.port);
  }
};

struct DsrPlan {
  struct Virtual {
    std::string owner;
    netlink::IpvsService service;  // fwmark service
    std::vector<netlink::IpvsDestination> destinations;
  };
  std::vector<Virtual> services;
  std::vector<netlink::Rule> rules;
  std::vector<netlink::Route> routes;                     // table 78
  std::vector<std::string> mark_rules_v4, mark_rules_v6;  // rules of kDsrMarkChain
  std::vector<std::string> mss_rules_v4, mss_rules_v6;    // rules of kDsrMssChain
  std::map<IpAddress, std::set<IpAddress>> pod_vips;      // local endpoint -> its VIPs
  std::vector<std::string> problems;                      // invalid inputs skipped
  std::map<DsrVipPort, uint32_t> marks;                   // the mark of each planned VIP:port
};

// The marks of the DSR extension's last plan: the one source for whoever names a DSR service by
// its mark (the service metrics; a mark depends on every DSR key through collision probing).
// `generation` grows when they change. Used on the controller's thread only.
struct DsrMarks {
  std::map<DsrVipPort, uint32_t> marks;
  uint64_t generation = 0;
};

// Pure: the plan for `services` (duplicates merged; bad items skipped with a problem line).
// `mtu`: the node's pod-facing MTU (TCPMSS = mtu - 60 for IPv4, - 100 for IPv6).
DsrPlan BuildDsrPlan(const std::vector<DsrServiceInput>& services, uint32_t mtu);

// The kernel side of DSR. All pointers must outlive it.
struct DsrDataplane {
  netlink::Ipvs* ipvs = nullptr;
  netlink::RuleTable* rules = nullptr;
  netlink::RouteTable* routes = nullptr;
  netfilter::Iptables* iptables_v4 = nullptr;
  netfilter::Iptables* iptables_v6 = nullptr;  // may be null without IPv6
  netlink::PodNetns* pods = nullptr;
  // Made on the thread that runs inside a pod's namespace (so they act on the pod); the real
  // ones ignore the context (MakeNetlinkLinks, MakeProcSysctl), fakes pick the pod by it.
  std::function<Result<std::unique_ptr<netlink::Links>>(const netlink::PodNetnsContext&)>
      make_pod_links;
  std::function<std::unique_ptr<netlink::Sysctl>(const netlink::PodNetnsContext&)> make_pod_sysctl;
};

class DsrApplier {
 public:
  explicit DsrApplier(DsrDataplane dataplane) : dp_(std::move(dataplane)) {}

  // Brings the kernel to `plan`: removes our rules, routes, fwmark services and pod VIPs that the
  // plan no longer has (found in the kernel, so also those of an earlier run), adds what is
  // missing, updates services and destinations in place, rewrites the two mangle chains.
  // `local_pods` (optional): every local pod IP, whose namespace is checked for a stale tunnel
  // link (after a restart); pods this applier put VIPs into are always checked. Continues past
  // single failures and returns the first error.
  Status Apply(const DsrPlan& plan, const std::vector<IpAddress>& local_pods = {});
  // Removes everything of ours (what Apply with an empty plan removes, plus the chains and
  // jumps). Returns a line per removed kind for the cleanup report.
  Result<std::vector<std::string>> Cleanup(const std::vector<IpAddress>& local_pods = {});

 private:
  Status ApplyIpvs(const DsrPlan& plan, const std::set<uint32_t>& our_marks);
  Status ApplyRules(const DsrPlan& plan, std::set<uint32_t>& our_marks_before);
  Status ApplyRoutes(const DsrPlan& plan);
  Status ApplyMangle(const DsrPlan& plan, bool remove);
  Status ApplyPods(const DsrPlan& plan, const std::vector<IpAddress>& local_pods);
  Status SetPodVips(const IpAddress& pod, const std::set<IpAddress>& vips);

  DsrDataplane dp_;
  std::set<IpAddress> pods_with_vips_;
  // Kernel writes issued so far: Cleanup reports a removal only when it wrote something.
  size_t writes_ = 0;
};

}  // namespace kr::proxy
