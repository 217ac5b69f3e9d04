// The public compiler (compiler.h): IncrementalCompiler keeps one family's compiled state
// between syncs and recompiles only the policies a change can affect; Compile is a fresh
// IncrementalCompiler's first Update. The pieces it assembles: cluster_index.h (what selectors
// are evaluated against), policy_compiler.h (one policy), pod_chains.h (everything else).
#include <algorithm>
#include <set>
#include <tuple>
#include <unordered_map>

#include "cluster_index.h"
#include "kube_router/netpol/compiler.h"
#include "kube_router/netpol/naming.h"
#include "kube_router/netpol/selector.h"
#include "pod_chains.h"
#include "policy_compiler.h"

namespace kr::netpol {

using compiler_internal::AddStaticChains;
using compiler_internal::ClusterIndex;
using compiler_internal::CompiledPolicy;
using compiler_internal::EffectiveNamespaceLabels;
using compiler_internal::LocalPodsSet;
using compiler_internal::PodAndTopLevelChains;
using compiler_internal::PolicyCompiler;
using compiler_internal::SharedSets;
using netfilter::IpFamily;
using netfilter::IpsetSet;

size_t DesiredState::RuleCount() const {
  size_t n = 0;
  for (const auto& [name, chain] : chains) n += chain.rules.size();
  return n;
}

namespace {

// A pod that changed between two views, before and after (either may be null).
struct PodChange {
  const k8s::Pod* before;
  const k8s::Pod* after;
  bool labels_only;  // same addresses, phase, node, ports: peer membership by namespace holds
};

// A namespace whose effective labels changed (or which appeared or went away).
struct NamespaceChange {
  k8s::Labels before;
  k8s::Labels after;
};

bool ReadsPod(const CompiledPolicy& compiled, const k8s::Pod& pod, bool labels_only,
              const ClusterIndex& index) {
  if (compiled.reads_all_pods) return true;
  const std::string& policy_ns = compiled.policy->meta.namespace_;
  const std::string& ns = pod.meta.namespace_;
  if (compiled.target_selector != nullptr && ns == policy_ns &&
      SelectorMatches(*compiled.target_selector, pod.meta.labels)) {
    return true;
  }
  for (const auto& read : compiled.peer_reads) {
    bool in_namespace = read.namespace_selector == nullptr
                            ? ns == policy_ns
                            : SelectorMatches(*read.namespace_selector, index.NamespaceLabels(ns));
    if (!in_namespace) continue;
    if (read.pod_selector == nullptr) {
      if (!labels_only) return true;
    } else if (SelectorMatches(*read.pod_selector, pod.meta.labels)) {
      return true;
    }
  }
  return false;
}

bool NeedsRecompile(const CompiledPolicy& compiled, const std::vector<PodChange>& pods,
                    const std::vector<NamespaceChange>& namespaces, const ClusterIndex& index) {
  for (const auto& change : pods) {
    for (const k8s::Pod* pod : {change.before, change.after}) {
      if (pod != nullptr && ReadsPod(compiled, *pod, change.labels_only, index)) return true;
    }
  }
  for (const auto& change : namespaces) {
    for (const auto& read : compiled.peer_reads) {
      if (read.namespace_selector == nullptr) continue;
      if (SelectorMatches(*read.namespace_selector, change.before) ||
          SelectorMatches(*read.namespace_selector, change.after)) {
        return true;
      }
    }
  }
  return false;
}

// Equal in everything the compiler reads except the labels.
bool SameExceptLabels(const k8s::Pod& a, const k8s::Pod& b) {
  auto ports = [](const k8s::Pod& p) {
    std::vector<std::tuple<std::string, int32_t, std::string>> out;
    for (const auto& cp : p.container_ports) {
      out.emplace_back(cp.name, cp.container_port, cp.protocol);
    }
    return out;
  };
  return a.meta.namespace_ == b.meta.namespace_ && a.pod_ips == b.pod_ips && a.phase == b.phase &&
         a.node_name == b.node_name && a.host_network == b.host_network && ports(a) == ports(b);
}

template <typename T>
using ByKey = std::unordered_map<std::string, std::shared_ptr<const T>>;

template <typename T>
ByKey<T> IndexByKey(const std::vector<std::shared_ptr<const T>>& objects) {
  ByKey<T> out;
  out.reserve(objects.size());
  for (const auto& object : objects) out.emplace(object->meta.Key(), object);
  return out;
}

// Calls `changed(before, after)` for every key whose object is not the same one in both maps.
template <typename T, typename F>
void ForEachChanged(const ByKey<T>& before, const ByKey<T>& after, F changed) {
  for (const auto& [key, object] : after) {
    auto it = before.find(key);
    const T* old = it == before.end() ? nullptr : it->second.get();
    if (old != object.get()) changed(old, object.get());
  }
  for (const auto& [key, object] : before) {
    if (!after.contains(key)) changed(object.get(), nullptr);
  }
}

}  // namespace

bool PodChangeMatters(const k8s::Pod& a, const k8s::Pod& b) {
  return a.meta.labels != b.meta.labels || !SameExceptLabels(a, b);
}

struct IncrementalCompiler::Impl {
  NetpolConfig config;
  IpFamily family;
  bool compiled = false;
  DesiredState state;
  std::map<std::string, CompiledPolicy> policies;  // by policy key
  std::set<std::string> pod_and_top_chains;        // names in state.chains
  NameOwners owners;                               // of the policies' chains
  SharedSets sets{state.sets};                     // the policies' sets and their uses
  std::set<std::string> collided;                  // keys of policies refused a name
  std::vector<std::string> pod_collisions;
  std::vector<std::string> policy_problems;
  ByKey<k8s::Pod> pods;
  ByKey<k8s::Namespace> namespaces;
  ByKey<k8s::NetworkPolicy> policy_objects;

  // Removes a policy's share from the state, remembering the old content in `changes`.
  void RemovePolicy(const std::string& key, Changes& changes) {
    auto it = policies.find(key);
    if (it == policies.end()) return;
    for (const auto& name : {it->second.ingress_chain, it->second.egress_chain}) {
      if (name.empty()) continue;
      auto chain = state.chains.extract(name);
      changes.chains.try_emplace(name, std::move(chain.mapped()));
      owners.Release(name);
    }
    // A shared set leaves the state (and its old content goes to `changes`) with its last use.
    for (const auto& name : it->second.sets) sets.Release(name);
    collided.erase(key);
    policies.erase(it);
  }

  void AddPolicy(PolicyCompiler& compiler, const std::shared_ptr<const k8s::NetworkPolicy>& policy,
                 Changes* changes) {
    CompiledPolicy compiled = compiler.Compile(policy);
    if (changes != nullptr) {
      // Chain names another policy never produces (they hash this policy's namespace and name),
      // so a name not recorded by RemovePolicy did not exist. (Shared sets record their own.)
      for (const auto& name : {compiled.ingress_chain, compiled.egress_chain}) {
        if (!name.empty()) changes->chains.try_emplace(name, std::nullopt);
      }
    }
    if (!compiled.collisions.empty()) collided.insert(policy->meta.Key());
    policies[policy->meta.Key()] = std::move(compiled);
  }

  void SetPodAndTopLevelChains(const ClusterIndex& index, const ClusterView& view,
                               Changes* changes) {
    pod_collisions.clear();
    auto chains =
        PodAndTopLevelChains(index, config, family, policies, view.node_pod_cidrs, pod_collisions);
    for (const auto& name : pod_and_top_chains) {
      if (chains.contains(name)) continue;
      auto old = state.chains.extract(name);
      if (changes != nullptr) changes->chains.try_emplace(name, std::move(old.mapped()));
    }
    pod_and_top_chains.clear();
    for (auto& [name, chain] : chains) {
      pod_and_top_chains.insert(name);
      Store(state.chains, name, std::move(chain), changes ? &changes->chains : nullptr);
    }
  }

  void SetLocalPodsSet(const ClusterIndex& index, Changes* changes) {
    if (!config.default_deny) return;
    IpsetSet set = LocalPodsSet(index, family);
    std::string name = set.name;
    Store(state.sets, name, std::move(set), changes ? &changes->sets : nullptr);
  }

  // Puts `value` under `name`; if that changes anything, the previous content (nullopt: none)
  // goes to `changed`.
  template <typename T>
  static void Store(std::map<std::string, T>& current, const std::string& name, T value,
                    std::map<std::string, std::optional<T>>* changed) {
    auto it = current.find(name);
    if (it == current.end()) {
      if (changed != nullptr) changed->try_emplace(name, std::nullopt);
      current.emplace(name, std::move(value));
    } else if (it->second != value) {
      if (changed != nullptr) changed->try_emplace(name, std::move(it->second));
      it->second = std::move(value);
    }
  }

  // Policies first (key order), then pods: the same list a fresh compile would give.
  void CollectCollisions() {
    state.name_collisions.clear();
    for (const auto& key : collided) {
      const auto& lines = policies.at(key).collisions;
      state.name_collisions.insert(state.name_collisions.end(), lines.begin(), lines.end());
    }
    state.name_collisions.insert(state.name_collisions.end(), pod_collisions.begin(),
                                 pod_collisions.end());
  }

  // The policies' problems (gathered again only when a policy was recompiled), then the
  // namespaces' (read from every view).
  void CollectProblems(const ClusterIndex& index, bool policies_changed) {
    if (policies_changed) {
      policy_problems.clear();
      for (const auto& [key, compiled] : policies) {
        policy_problems.insert(policy_problems.end(), compiled.problems.begin(),
                               compiled.problems.end());
      }
    }
    state.problems = policy_problems;
    const auto& namespaces = index.namespace_problems();
    state.problems.insert(state.problems.end(), namespaces.begin(), namespaces.end());
  }

  Changes CompileAll(const ClusterView& view) {
    Changes changes;
    changes.full = true;
    state = DesiredState{};
    policies.clear();
    owners.Clear();
    sets.Clear();
    sets.BeginPass(nullptr);
    collided.clear();
    ClusterIndex index(view, config, family);
    PolicyCompiler compiler(index, config, family, owners, sets, state);
    // Key order decides which of two colliding policies keeps a name, as in CompileChanged.
    std::vector<std::shared_ptr<const k8s::NetworkPolicy>> ordered = view.policies;
    std::sort(ordered.begin(), ordered.end(),
              [](const auto& a, const auto& b) { return a->meta.Key() < b->meta.Key(); });
    for (const auto& policy : ordered) AddPolicy(compiler, policy, nullptr);
    changes.policies_compiled = policies.size();
    AddStaticChains(family, state.chains);
    pod_and_top_chains.clear();
    SetPodAndTopLevelChains(index, view, nullptr);
    SetLocalPodsSet(index, nullptr);
    CollectProblems(index, true);
    CollectCollisions();
    compiled = true;
    return changes;
  }

  Changes CompileChanged(const ClusterView& view, ByKey<k8s::Pod>& new_pods,
                         ByKey<k8s::Namespace>& new_namespaces,
                         ByKey<k8s::NetworkPolicy>& new_policies) {
    Changes changes;
    std::set<std::string> dirty;
    ForEachChanged<k8s::NetworkPolicy>(
        policy_objects, new_policies,
        [&](const k8s::NetworkPolicy* before, const k8s::NetworkPolicy* after) {
          dirty.insert((after != nullptr ? after : before)->meta.Key());
        });
    std::vector<NamespaceChange> namespace_changes;
    ForEachChanged<k8s::Namespace>(
        namespaces, new_namespaces, [&](const k8s::Namespace* before, const k8s::Namespace* after) {
          const std::string& name = (after != nullptr ? after : before)->meta.name;
          NamespaceChange change{EffectiveNamespaceLabels(name, before),
                                 EffectiveNamespaceLabels(name, after)};
          if (change.before != change.after) namespace_changes.push_back(std::move(change));
        });
    std::vector<PodChange> pod_changes;
    ForEachChanged<k8s::Pod>(pods, new_pods, [&](const k8s::Pod* before, const k8s::Pod* after) {
      if (before != nullptr && after != nullptr && !PodChangeMatters(*before, *after)) return;
      bool labels_only = before != nullptr && after != nullptr && SameExceptLabels(*before, *after);
      pod_changes.push_back({before, after, labels_only});
    });

    ClusterIndex index(view, config, family);
    if (!pod_changes.empty() || !namespace_changes.empty()) {
      for (const auto& [key, compiled] : policies) {
        if (dirty.contains(key)) continue;
        if (NeedsRecompile(compiled, pod_changes, namespace_changes, index)) dirty.insert(key);
      }
    }
    // A policy refused a name retries whenever others change: the holder may be gone.
    if (!dirty.empty()) dirty.insert(collided.begin(), collided.end());
    sets.BeginPass(&changes.sets);
    PolicyCompiler compiler(index, config, family, owners, sets, state);
    // All removals first, so the names they free are there for the additions (in key order).
    for (const auto& key : dirty) RemovePolicy(key, changes);
    for (const auto& key : dirty) {
      auto it = new_policies.find(key);
      if (it != new_policies.end()) AddPolicy(compiler, it->second, &changes);
    }
    sets.BeginPass(nullptr);  // `changes` is returned by value
    changes.policies_compiled = dirty.size();
    SetPodAndTopLevelChains(index, view, &changes);
    SetLocalPodsSet(index, &changes);
    CollectProblems(index, !dirty.empty());
    CollectCollisions();
    return changes;
  }
};

IncrementalCompiler::IncrementalCompiler(NetpolConfig config, IpFamily family)
    : impl_(std::make_unique<Impl>()) {
  impl_->config = std::move(config);
  impl_->family = family;
}
IncrementalCompiler::~IncrementalCompiler() = default;
IncrementalCompiler::IncrementalCompiler(IncrementalCompiler&&) noexcept = default;
IncrementalCompiler& IncrementalCompiler::operator=(IncrementalCompiler&&) noexcept = default;

void IncrementalCompiler::Reset() {
  NetpolConfig config = std::move(impl_->config);
  IpFamily family = impl_->family;
  impl_ = std::make_unique<Impl>();
  impl_->config = std::move(config);
  impl_->family = family;
}

const DesiredState& IncrementalCompiler::state() const { return impl_->state; }

IncrementalCompiler::Changes IncrementalCompiler::Update(const ClusterView& view) {
  auto pods = IndexByKey(view.pods);
  auto namespaces = IndexByKey(view.namespaces);
  auto policies = IndexByKey(view.policies);
  Changes changes = impl_->compiled ? impl_->CompileChanged(view, pods, namespaces, policies)
                                    : impl_->CompileAll(view);
  // The objects stay alive through these maps, so the next Update can compare with them.
  impl_->pods = std::move(pods);
  impl_->namespaces = std::move(namespaces);
  impl_->policy_objects = std::move(policies);
  return changes;
}

DesiredState Compile(const ClusterView& view, const NetpolConfig& config, IpFamily family) {
  IncrementalCompiler compiler(config, family);
  compiler.Update(view);
  return compiler.state();
}

}  // namespace kr::netpol
