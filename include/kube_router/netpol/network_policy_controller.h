// The NetworkPolicy controller (kube-router's NPC, `--run-firewall`): enforces every
// networking.k8s.io/v1 NetworkPolicy for the pods on this node with iptables chains and ipsets.
//
// Sync(kStartup / kPeriodic) is a full reconcile that repairs drift: the cluster is recompiled
// from scratch, every chain of ours is rewritten, stale chains and sets are removed, the jumps
// from the built-in chains are put back at position 1, and every set is rebuilt by swap.
// Sync(kRequested) is incremental: the IncrementalCompiler recompiles only the policies the
// changed objects can affect, and only changed chains (one iptables-restore --noflush per family)
// and ipset add/del deltas are written.
#pragma once

#include <functional>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "kube_router/k8s/store.h"
#include "kube_router/netfilter/ipset.h"
#include "kube_router/netfilter/iptables.h"
#include "kube_router/netlink/sysctl.h"
#include "kube_router/netpol/compiler.h"
#include "kube_router/runtime/controller.h"

namespace kr::netpol {

// A table that only Cleanup touches: the other iptables backend or a disabled family, where a
// host that switched backends (or families) would otherwise keep our chains.
struct CleanupOnlyTable {
  std::string label;  // for the list of removed items, e.g. "IPv6 legacy"
  std::unique_ptr<netfilter::Iptables> iptables;
};

// The kernel interfaces the controller writes; a family's iptables is null when disabled.
struct NetpolDataplane {
  std::unique_ptr<netfilter::Iptables> iptables_v4;
  std::unique_ptr<netfilter::Iptables> iptables_v6;
  std::unique_ptr<netfilter::Ipset> ipset;
  std::unique_ptr<netlink::Sysctl> sysctl;
  // Cleanup removes our chains from these too; one that cannot be read is skipped.
  std::vector<CleanupOnlyTable> cleanup_only;
};

class NetworkPolicyController : public Controller {
 public:
  NetworkPolicyController(NetpolConfig config, const k8s::Cluster* cluster,
                          NetpolDataplane dataplane);

  std::string Name() const override { return "NetworkPolicy"; }
  std::chrono::milliseconds SyncPeriod() const override { return config_.sync_period; }
  std::vector<k8s::ResourceKind> WatchedKinds() const override;

  // Makes bridged pod traffic visible to iptables (net.bridge.bridge-nf-call-iptables=1).
  Status Init() override;
  bool OnUpdate(const k8s::Event& event) override;
  Status Sync(SyncReason reason) override;
  // Removes our chains and the rules jumping to them from every table (the families in use, then
  // `cleanup_only`), then our ipsets; nothing else is touched.
  Result<std::vector<std::string>> Cleanup() override;

  // The state written by the last successful sync of a family (for tests and benchmarks).
  const DesiredState* applied(netfilter::IpFamily family) const;

 private:
  struct FamilyState {
    netfilter::IpFamily family;
    netfilter::Iptables* iptables;
    IncrementalCompiler compiler;
    bool applied = false;         // the kernel holds compiler.state() (the last sync succeeded)
    std::string unparsed_report;  // the last warning about unparsable foreign lines
  };

  // The caches, and this node's pod CIDRs when default deny needs them (problems reading them
  // go to view_problems_).
  ClusterView Snapshot();
  // Full: every set rebuilt by swap, every chain of ours rewritten, stale ones removed, jumps
  // put back at position 1. Changes: set deltas and only the chains whose content changed.
  Status WriteEverything();
  Status WriteChanges(const std::vector<IncrementalCompiler::Changes>& changes);
  // Fails when a chain of ours could not be parsed; warns (once while it lasts) about other
  // software's lines that were skipped.
  Status CheckSnapshot(FamilyState& family, const netfilter::TableSnapshot& snapshot);
  // Writes the jumps at the positions planned from `snapshot`: under the lock of that read.
  Status SyncFamilyChainsFull(FamilyState& family, const DesiredState& desired,
                              const netfilter::TableSnapshot& snapshot)
      KR_REQUIRES(netfilter::BuiltinChainsMutex());
  void LogNewProblems();

  NetpolConfig config_;
  const k8s::Cluster* cluster_;
  NetpolDataplane dataplane_;
  std::vector<FamilyState> families_;
  std::set<std::string> known_problems_;
  std::vector<std::string> view_problems_;
};

// The real controller for the agent: detects (or takes from config.iptables_mode) the iptables
// backend and uses the iptables-restore / ipset / procfs adapters.
Result<std::unique_ptr<Controller>> MakeNetworkPolicyController(const NetpolConfig& config,
                                                                const k8s::Cluster* cluster);

}  // namespace kr::netpol
