// The rule compiler: from the API caches and the node's configuration to the complete set of
// chains and ipsets this node should hold for one IP family (kube-router's chain layout,
// reference §4.2-4.3). No I/O; table-tested.
//
// `Compile` is the pure whole-cluster function. `IncrementalCompiler` keeps the result between
// syncs and, on the next view, recompiles only the policies the changed objects can affect
// (kube-router recompiles everything on every event); both share one per-policy code path.
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "kube_router/base/ip.h"
#include "kube_router/k8s/types.h"
#include "kube_router/netfilter/ipset.h"
#include "kube_router/netfilter/iptables.h"

namespace kr::netpol {

// The controller's own configuration (the agent maps its Options onto it).
struct NetpolConfig {
  std::string node_name;
  std::chrono::milliseconds sync_period{300'000};
  std::string iptables_mode = "auto";  // auto | nft | legacy
  bool enable_ipv4 = true;
  bool enable_ipv6 = false;
  // Traffic to these is exempted in KUBE-ROUTER-INPUT (the service proxy firewalls it).
  std::vector<IpPrefix> service_cluster_ip_ranges;
  std::vector<IpPrefix> service_external_ip_ranges;
  std::vector<IpPrefix> loadbalancer_ip_ranges;
  uint16_t node_port_first = 30000;
  uint16_t node_port_last = 32767;
  // --netpol-default-deny: traffic of this node's pod CIDRs is rejected unless the pod's own
  // chain is programmed (kube-router-local-pods), closing the window between a pod starting and
  // its policies being written.
  bool default_deny = false;
  // --netpol-beta-namespace-isolation: NetworkPolicy beta semantics for namespaces. A namespace
  // annotated net.beta.kubernetes.io/network-policy={"ingress":{"isolation":"DefaultDeny"}}
  // isolates the ingress of all its pods, so that only policies let traffic in (on top of the v1
  // semantics: policies still isolate the pods they select). Off: the annotation means nothing.
  bool beta_namespace_isolation = false;
  // Policies needing the same set members share one content-addressed set (issue 14). false
  // gives every use its own set, as before; only the benchmark's baseline turns it off.
  bool share_sets = true;
};

// The namespace annotation of the NetworkPolicy beta API (Kubernetes 1.3-1.6).
inline constexpr char kBetaIsolationAnnotation[] = "net.beta.kubernetes.io/network-policy";

// Snapshots of the caches the compiler reads.
struct ClusterView {
  std::vector<std::shared_ptr<const k8s::Pod>> pods;
  std::vector<std::shared_ptr<const k8s::Namespace>> namespaces;
  std::vector<std::shared_ptr<const k8s::NetworkPolicy>> policies;
  // This node's pod CIDRs (both families); read only with NetpolConfig::default_deny.
  std::vector<IpPrefix> node_pod_cidrs;
  // The policies come from extensions/v1beta1 (an API server older than 1.7, which has no
  // networking.k8s.io/v1): the beta semantics alone, as kube-router did there. The namespace
  // annotation is the only ingress isolation; policies only let traffic in.
  bool beta_api = false;
};

struct DesiredState {
  // Every chain of ours in the filter table, keyed by name (top-level, static, policy, pod).
  std::map<std::string, netfilter::Chain> chains;
  std::map<std::string, netfilter::IpsetSet> sets;
  // One line per rejected piece of input: "NetworkPolicy ns/name: what was wrong".
  std::vector<std::string> problems;
  // One line per derived name that a second owner mapped to (a hash collision), naming both;
  // the second is not programmed (policies: their pods stay isolated; pods: rejected).
  std::vector<std::string> name_collisions;

  size_t RuleCount() const;
};

DesiredState Compile(const ClusterView& view, const NetpolConfig& config,
                     netfilter::IpFamily family);

// Keeps the compiled state of one family between syncs. Update() diffs the new view against the
// previous one (by object identity, then by the fields the compiler reads) and recompiles only
// the policies whose targets or peers can contain a changed pod or namespace; per-pod and
// top-level chains are rebuilt (cheap) and compared. The result always equals Compile(view).
class IncrementalCompiler {
 public:
  // The previous content of every chain and set an Update may have changed (nullopt: it did not
  // exist). Unchanged names may appear; names absent were not touched. Empty when `full`.
  struct Changes {
    bool full = false;  // compiled from scratch: every chain and set may have changed
    size_t policies_compiled = 0;
    std::map<std::string, std::optional<netfilter::Chain>> chains;
    std::map<std::string, std::optional<netfilter::IpsetSet>> sets;
  };

  IncrementalCompiler(NetpolConfig config, netfilter::IpFamily family);
  ~IncrementalCompiler();
  IncrementalCompiler(IncrementalCompiler&&) noexcept;
  IncrementalCompiler& operator=(IncrementalCompiler&&) noexcept;

  Changes Update(const ClusterView& view);
  // Forgets everything: the next Update compiles from scratch.
  void Reset();
  const DesiredState& state() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// True when `b` differs from `a` in something the compiler reads (labels, addresses, phase,
// node, hostNetwork, container ports); a status heartbeat or annotation change is not.
bool PodChangeMatters(const k8s::Pod& a, const k8s::Pod& b);

// The pod's address of `family` (status.podIPs, else status.podIP), or "" if it has none or
// must be ignored (hostNetwork, finished).
std::string PolicyPodIp(const k8s::Pod& pod, netfilter::IpFamily family);

}  // namespace kr::netpol
