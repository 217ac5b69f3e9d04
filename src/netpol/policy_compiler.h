// Private to the netpol compiler: one NetworkPolicy at a time into its chains and ipsets, with
// a record of what it produced and read (so the incremental compiler knows when to recompile).
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "cluster_index.h"
#include "kube_router/base/hashed_name.h"
#include "kube_router/k8s/types.h"
#include "kube_router/netpol/compiler.h"
#include "kube_router/netpol/naming.h"
#include "shared_sets.h"

namespace kr::netpol::compiler_internal {

// A selector peer the policy's sets were built from: pods of the policy's namespace (no
// namespace selector) or of the matching namespaces, filtered by the pod selector if any.
struct PeerRead {
  const k8s::LabelSelector* namespace_selector;
  const k8s::LabelSelector* pod_selector;
};

// One policy's share of the DesiredState, and what it read (to know when to recompile it).
// Selector pointers point into `policy`, which this record keeps alive.
struct CompiledPolicy {
  std::shared_ptr<const k8s::NetworkPolicy> policy;
  // Its ingress and egress chains (empty: none for that direction, or not programmed).
  std::string ingress_chain;
  std::string egress_chain;
  // Every use it holds of a shared set (a name appears once per use), released when the policy
  // is recompiled or removed.
  std::vector<std::string> sets;
  std::vector<std::string> problems;
  std::vector<std::string> local_targets;  // keys of the pods on this node it selects
  const k8s::LabelSelector* target_selector = nullptr;
  std::vector<PeerRead> peer_reads;
  bool reads_all_pods = false;  // an egress named port towards everyone
  // Names another owner already held (a hash collision): the policy is then not programmed
  // (no chains, `sets` empty) and its targets stay isolated in its directions.
  std::vector<std::string> collisions;
};

// Compiles policies one at a time into a DesiredState, recording in each CompiledPolicy what it
// produced and read. Peer results are shared across the policies of one pass: clusters repeat a
// few selectors across many policies, and a namespace selector has to look at every pod.
class PolicyCompiler {
 public:
  // `owners` holds the policy chain names across the policies of `out`; `sets` the shared sets
  // in `out.sets` and their uses.
  PolicyCompiler(const ClusterIndex& index, const NetpolConfig& config, netfilter::IpFamily family,
                 NameOwners& owners, SharedSets& sets, DesiredState& out);
  ~PolicyCompiler();
  PolicyCompiler(const PolicyCompiler&) = delete;
  PolicyCompiler& operator=(const PolicyCompiler&) = delete;

  // Adds the policy's chains and sets to the state (none when one of its names collided).
  CompiledPolicy Compile(std::shared_ptr<const k8s::NetworkPolicy> policy);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace kr::netpol::compiler_internal
