#include "kube_router/netpol/network_policy_controller.h"

#include <algorithm>

#include "kube_router/base/log.h"
#include "kube_router/k8s/node_pod_cidrs.h"
#include "kube_router/netpol/kernel_writes.h"
#include "kube_router/netpol/naming.h"

namespace kr::netpol {

using netfilter::IpFamily;
using netfilter::IpsetUpdate;
using netfilter::TableUpdate;

namespace {

template <typename T>
std::shared_ptr<const T> As(const k8s::AnyObject& object) {
  auto* p = std::get_if<std::shared_ptr<const T>>(&object);
  return p ? *p : nullptr;
}

}  // namespace

NetworkPolicyController::NetworkPolicyController(NetpolConfig config, const k8s::Cluster* cluster,
                                                 NetpolDataplane dataplane)
    : config_(std::move(config)), cluster_(cluster), dataplane_(std::move(dataplane)) {
  if (dataplane_.iptables_v4) {
    families_.push_back({IpFamily::kV4, dataplane_.iptables_v4.get(),
                         IncrementalCompiler(config_, IpFamily::kV4), false});
  }
  if (dataplane_.iptables_v6) {
    families_.push_back({IpFamily::kV6, dataplane_.iptables_v6.get(),
                         IncrementalCompiler(config_, IpFamily::kV6), false});
  }
}

std::vector<k8s::ResourceKind> NetworkPolicyController::WatchedKinds() const {
  std::vector<k8s::ResourceKind> kinds = {k8s::ResourceKind::kPod, k8s::ResourceKind::kNamespace,
                                          k8s::ResourceKind::kNetworkPolicy};
  // Default deny guards this node's pod CIDRs, which the Node object carries.
  if (config_.default_deny) kinds.push_back(k8s::ResourceKind::kNode);
  return kinds;
}

Status NetworkPolicyController::Init() {
  // Pods on one node talk over kube-bridge; without this sysctl those frames never reach
  // iptables and every policy is silently ignored for same-node traffic.
  std::vector<std::string> keys;
  for (const auto& f : families_) {
    keys.push_back(f.family == IpFamily::kV4 ? "net.bridge.bridge-nf-call-iptables"
                                             : "net.bridge.bridge-nf-call-ip6tables");
  }
  for (const auto& key : keys) {
    auto value = dataplane_.sysctl->Get(key);
    if (value.ok() && *value == "1") continue;
    if (auto s = dataplane_.sysctl->Set(key, "1"); !s.ok()) {
      KR_LOG_ERROR(
          "cannot set {}=1 ({}): traffic between pods on this node bypasses network policies "
          "(is br_netfilter loaded?)",
          key, s.message());
      continue;
    }
    KR_LOG_INFO("set {}=1 so that bridged pod traffic is filtered by network policies", key);
  }
  return Status::Ok();
}

bool NetworkPolicyController::OnUpdate(const k8s::Event& event) {
  switch (event.kind) {
    case k8s::ResourceKind::kNetworkPolicy:
      return true;
    case k8s::ResourceKind::kNamespace: {
      if (event.type != k8s::EventType::kUpdated) return true;
      auto a = As<k8s::Namespace>(event.old_object);
      auto b = As<k8s::Namespace>(event.new_object);
      if (!a || !b || a->meta.labels != b->meta.labels) return true;
      if (!config_.beta_namespace_isolation && !cluster_->network_policies_beta_api.load()) {
        return false;
      }
      auto annotation = [](const k8s::Namespace& ns) -> std::optional<std::string> {
        auto found = ns.meta.annotations.find(kBetaIsolationAnnotation);
        if (found == ns.meta.annotations.end()) return std::nullopt;
        return found->second;
      };
      return annotation(*a) != annotation(*b);
    }
    case k8s::ResourceKind::kPod: {
      if (event.type != k8s::EventType::kUpdated) return true;
      auto a = As<k8s::Pod>(event.old_object);
      auto b = As<k8s::Pod>(event.new_object);
      return !a || !b || PodChangeMatters(*a, *b);
    }
    case k8s::ResourceKind::kNode: {
      if (!config_.default_deny) return false;
      auto a = As<k8s::Node>(event.old_object);
      auto b = As<k8s::Node>(event.new_object);
      const k8s::Node* any = b ? b.get() : a.get();
      if (any == nullptr || any->meta.name != config_.node_name) return false;
      if (!a || !b) return true;
      auto before = k8s::PodCidrsOfNode(*a), after = k8s::PodCidrsOfNode(*b);
      return before.cidrs != after.cidrs || before.problems != after.problems;
    }
    default:
      return false;
  }
}

ClusterView NetworkPolicyController::Snapshot() {
  ClusterView view;
  view.pods = cluster_->pods.List();
  view.namespaces = cluster_->namespaces.List();
  view.policies = cluster_->network_policies.List();
  view.beta_api = cluster_->network_policies_beta_api.load();
  if (config_.default_deny) {
    if (auto node = cluster_->nodes.Get(config_.node_name)) {
      auto cidrs = k8s::PodCidrsOfNode(*node);
      view.node_pod_cidrs = std::move(cidrs.cidrs);
      for (auto& problem : cidrs.problems) {
        view_problems_.push_back("node " + config_.node_name + ": " + problem);
      }
    }
    for (const auto& f : families_) {
      bool v4 = f.family == IpFamily::kV4;
      if (std::none_of(view.node_pod_cidrs.begin(), view.node_pod_cidrs.end(),
                       [&](const IpPrefix& p) { return p.is_v4() == v4; })) {
        view_problems_.push_back(std::string("--netpol-default-deny: node ") + config_.node_name +
                                 " has no " + netfilter::IpFamilyName(f.family) +
                                 " pod CIDR (yet); its pods are not default-denied until it has");
      }
    }
  }
  return view;
}

const DesiredState* NetworkPolicyController::applied(IpFamily family) const {
  for (const auto& f : families_) {
    if (f.family == family && f.applied) return &f.compiler.state();
  }
  return nullptr;
}

void NetworkPolicyController::LogNewProblems() {
  std::set<std::string> current(view_problems_.begin(), view_problems_.end());
  view_problems_.clear();
  std::set<std::string> collisions;
  for (const auto& f : families_) {
    const auto& problems = f.compiler.state().problems;
    current.insert(problems.begin(), problems.end());
    const auto& lines = f.compiler.state().name_collisions;
    collisions.insert(lines.begin(), lines.end());
  }
  for (const auto& problem : current) {
    if (!known_problems_.contains(problem)) KR_LOG_WARN("{}", problem);
  }
  for (const auto& collision : collisions) {
    if (!known_problems_.contains(collision)) KR_LOG_ERROR("{}", collision);
  }
  current.merge(collisions);
  // A problem that goes away and comes back is logged again.
  known_problems_ = std::move(current);
}

Status NetworkPolicyController::Sync(SyncReason reason) {
  // Every Sync reads the whole cluster from the caches (Snapshot) and OnUpdate keeps nothing:
  // the pending events posted before that read need no sync of their own.
  MarkFullRead();
  ClusterView view = Snapshot();
  bool incremental = reason == SyncReason::kRequested &&
                     std::all_of(families_.begin(), families_.end(),
                                 [](const FamilyState& f) { return f.applied; });
  std::vector<IncrementalCompiler::Changes> changes;
  for (auto& f : families_) {
    // A full sync trusts nothing remembered: it recompiles the whole cluster as well.
    if (!incremental) f.compiler.Reset();
    changes.push_back(f.compiler.Update(view));
  }
  LogNewProblems();
  Status status = incremental ? WriteChanges(changes) : WriteEverything();
  // After a failure the kernel may hold part of the change: only a full sync knows what is there.
  for (auto& f : families_) f.applied = status.ok();
  return status;
}

Status NetworkPolicyController::WriteEverything() {
  // From the reads to the chain writes: our jumps go first in INPUT/FORWARD/OUTPUT, planned
  // from these reads, and the service proxy places its own INPUT jump on its thread. (Held to
  // the end: what follows is two short ipset writes.)
  kr::MutexLock placing(netfilter::BuiltinChainsMutex());
  std::vector<netfilter::TableSnapshot> snapshots;
  for (auto& f : families_) {
    auto snapshot = f.iptables->Save("filter");
    if (!snapshot.ok()) return snapshot.status().Context("iptables-save");
    if (auto s = CheckSnapshot(f, *snapshot); !s.ok()) return s;
    snapshots.push_back(std::move(*snapshot));
  }
  // A local pod joins kube-router-local-pods only once its chain is programmed: until this
  // sync's chains are written, the set holds just the pods whose chains the kernel has already.
  std::vector<const DesiredState*> states;
  std::vector<IpFamily> family_ids;
  for (const auto& f : families_) {
    states.push_back(&f.compiler.state());
    family_ids.push_back(f.family);
  }
  auto [sets, local_pods_after_chains, wanted_sets] = PlanFullSets(states, family_ids, snapshots);
  if (auto s = dataplane_.ipset->Apply(sets); !s.ok()) return s.Context("network policy ipsets");

  for (size_t i = 0; i < families_.size(); ++i) {
    auto& f = families_[i];
    if (auto s = SyncFamilyChainsFull(f, f.compiler.state(), snapshots[i]); !s.ok()) return s;
  }
  if (auto s = dataplane_.ipset->Apply(local_pods_after_chains); !s.ok()) {
    return s.Context("network policy ipset " + std::string(kLocalPodsSet));
  }

  auto names = dataplane_.ipset->ListNames();
  if (!names.ok()) return names.status().Context("listing ipsets");
  if (auto s = dataplane_.ipset->Apply(PlanStaleSets(*names, wanted_sets)); !s.ok()) {
    return s.Context("removing stale network policy ipsets");
  }
  return Status::Ok();
}

Status NetworkPolicyController::CheckSnapshot(FamilyState& family,
                                              const netfilter::TableSnapshot& snapshot) {
  const std::string save =
      std::string("iptables-save (") + netfilter::IpFamilyName(family.family) + ")";
  // Our own chains are parsed strictly: we wrote every line of them.
  for (const auto& chain : snapshot.unparsed_chains) {
    if (IsOwnedChain(chain)) {
      return Status::Error(save + ": a line of our chain " + chain + " could not be parsed");
    }
  }
  for (const auto& [name, rules] : snapshot.chains) {
    if (!IsOwnedChain(name)) continue;
    for (const auto& rule : rules) {
      if (!Deletable(rule)) {
        return Status::Error(save + ": a rule of our chain " + name + " spans several lines");
      }
    }
  }
  // Other software's lines we cannot parse are skipped, and said once while they last.
  std::string report;
  if (snapshot.unparsed_lines > 0) {
    report = save + ": skipped " + std::to_string(snapshot.unparsed_lines) +
             " line(s) of other software's rules that could not be parsed (first: " +
             snapshot.first_unparsed + ")";
  }
  if (report != family.unparsed_report && !report.empty()) KR_LOG_WARN("{}", report);
  family.unparsed_report = std::move(report);
  return Status::Ok();
}

Status NetworkPolicyController::SyncFamilyChainsFull(FamilyState& family,
                                                     const DesiredState& desired,
                                                     const netfilter::TableSnapshot& snapshot) {
  TableUpdate update = PlanFullChains(desired, snapshot);
  if (auto s = family.iptables->Apply(update); !s.ok()) {
    return s.Context(std::string("iptables-restore (") + netfilter::IpFamilyName(family.family) +
                     ")");
  }
  return Status::Ok();
}

Status NetworkPolicyController::WriteChanges(
    const std::vector<IncrementalCompiler::Changes>& changes) {
  std::vector<FamilyChange> planned;
  for (size_t i = 0; i < families_.size(); ++i) {
    planned.push_back({families_[i].family, &families_[i].compiler.state(), &changes[i]});
  }
  auto [before, chains, local_pods_after_chains, after] = PlanChangeWrites(planned);
  if (auto s = dataplane_.ipset->Apply(before); !s.ok()) return s.Context("network policy ipsets");

  for (size_t i = 0; i < families_.size(); ++i) {
    if (auto s = families_[i].iptables->Apply(chains[i]); !s.ok()) {
      return s.Context(std::string("iptables-restore (") +
                       netfilter::IpFamilyName(families_[i].family) + ")");
    }
  }
  if (auto s = dataplane_.ipset->Apply(local_pods_after_chains); !s.ok()) {
    return s.Context("network policy ipset " + std::string(kLocalPodsSet));
  }
  if (auto s = dataplane_.ipset->Apply(after); !s.ok()) {
    return s.Context("removing stale network policy ipsets");
  }
  return Status::Ok();
}

namespace {

// Removes our chains and every rule that jumps to one from the filter table of `iptables`, whose
// content is `filter`; one line per removed item goes to `removed`.
Status RemoveOwnedChains(netfilter::Iptables& iptables, const netfilter::TableSnapshot& filter,
                         const std::string& label, std::vector<std::string>& removed) {
  TableUpdate update;
  for (const auto& [name, rules] : filter.chains) {
    if (IsOwnedChain(name)) {
      update.delete_chains.push_back(name);
      removed.push_back("chain " + label + " " + name);
      continue;
    }
    for (const auto& rule : rules) {
      if (IsOwnedChain(netfilter::RuleTarget(rule)) && Deletable(rule)) {
        update.delete_rules.push_back({name, rule});
        removed.push_back("rule " + label + " " + name + " " + rule);
      }
    }
  }
  if (auto s = iptables.Apply(update); !s.ok()) {
    return s.Context("removing our chains (" + label + ")");
  }
  return Status::Ok();
}

}  // namespace

Result<std::vector<std::string>> NetworkPolicyController::Cleanup() {
  std::vector<std::string> removed;
  for (auto& f : families_) {
    auto snapshot = f.iptables->Save("filter");
    if (!snapshot.ok()) return snapshot.status().Context("iptables-save");
    std::string label = netfilter::IpFamilyName(f.family);
    if (auto s = RemoveOwnedChains(*f.iptables, *snapshot, label, removed); !s.ok()) return s;
    f.applied = false;
  }
  // Before the ipsets: a rule left in another backend would keep our sets in use.
  for (auto& table : dataplane_.cleanup_only) {
    auto snapshot = table.iptables->Save("filter");
    if (!snapshot.ok()) {
      KR_LOG_INFO("cleanup: skipping {}: {}", table.label, snapshot.status().message());
      continue;
    }
    if (auto s = RemoveOwnedChains(*table.iptables, *snapshot, table.label, removed); !s.ok()) {
      return s;
    }
  }
  auto names = dataplane_.ipset->ListNames();
  if (!names.ok()) return names.status().Context("listing ipsets");
  IpsetUpdate sets;
  for (const auto& name : *names) {
    if (!IsOwnedSet(name)) continue;
    sets.destroy.push_back(name);
    removed.push_back("ipset " + name);
  }
  if (auto s = dataplane_.ipset->Apply(sets); !s.ok()) return s.Context("removing our ipsets");
  return removed;
}

}  // namespace kr::netpol
