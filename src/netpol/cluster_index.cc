// The compiler's index of the cluster (see cluster_index.h).
#include "cluster_index.h"

#include <algorithm>

#include "kube_router/netpol/selector.h"
#include "namespace_isolation.h"

namespace kr::netpol {

using netfilter::IpFamily;

std::string PolicyPodIp(const k8s::Pod& pod, IpFamily family) {
  if (pod.host_network || pod.phase == "Succeeded" || pod.phase == "Failed") return "";
  auto matches = [&](const std::string& ip) {
    auto parsed = IpAddress::Parse(ip);
    return parsed && parsed->is_v4() == (family == IpFamily::kV4);
  };
  for (std::string_view ip : pod.pod_ips) {  // podIP where no podIPs were sent (decode.cc)
    if (matches(std::string(ip))) return IpAddress::Parse(std::string(ip))->ToString();
  }
  return "";
}

namespace compiler_internal {

k8s::Labels EffectiveNamespaceLabels(const std::string& name, const k8s::Namespace* ns) {
  k8s::Labels labels = ns != nullptr ? ns->meta.labels.get() : k8s::Labels{};
  // The API server sets this label on every namespace; fakes and old servers may not.
  labels["kubernetes.io/metadata.name"] = name;
  return labels;
}

ClusterIndex::ClusterIndex(const ClusterView& view, const NetpolConfig& config, IpFamily family)
    : beta_api_(view.beta_api) {
  for (const auto& ns : view.namespaces) {
    namespace_labels_[ns->meta.name] = EffectiveNamespaceLabels(ns->meta.name, ns.get());
    if (!config.beta_namespace_isolation && !view.beta_api) continue;
    BetaIsolation isolation = ReadBetaIsolation(*ns);
    if (isolation.ingress_isolated) ingress_isolated_namespaces_.insert(ns->meta.name);
    if (!isolation.problem.empty()) namespace_problems_.push_back(std::move(isolation.problem));
  }
  std::sort(namespace_problems_.begin(), namespace_problems_.end());
  for (const auto& pod : view.pods) {
    std::string ip = PolicyPodIp(*pod, family);
    if (ip.empty()) continue;
    PodRef ref{pod.get(), ip};
    pods_by_namespace_[pod->meta.namespace_].push_back(ref);
    if (pod->node_name == config.node_name) local_pods_.push_back(ref);
  }
  std::sort(local_pods_.begin(), local_pods_.end(),
            [](const PodRef& a, const PodRef& b) { return a.pod->meta.Key() < b.pod->meta.Key(); });
}

const k8s::Labels& ClusterIndex::NamespaceLabels(const std::string& ns) const {
  auto it = namespace_labels_.find(ns);
  if (it != namespace_labels_.end()) return it->second;
  return namespace_labels_.emplace(ns, EffectiveNamespaceLabels(ns, nullptr)).first->second;
}

std::vector<PodRef> ClusterIndex::PodsIn(const std::string& ns,
                                         const k8s::LabelSelector* selector) const {
  std::vector<PodRef> pods;
  auto it = pods_by_namespace_.find(ns);
  if (it == pods_by_namespace_.end()) return pods;
  for (const auto& ref : it->second) {
    if (selector == nullptr || SelectorMatches(*selector, ref.pod->meta.labels)) {
      pods.push_back(ref);
    }
  }
  return pods;
}

}  // namespace compiler_internal
}  // namespace kr::netpol
