// Private to the netpol compiler: the one index of the cluster it compiles from, built per
// sync from the ClusterView snapshot (pods with an address of the family, by namespace; this
// node's pods; namespace labels as selectors see them). See docs/netpol.md for why it is not
// built from the k8s Store's indexes.
#pragma once

#include <map>
#include <set>
#include <string>
#include <vector>

#include "kube_router/k8s/types.h"
#include "kube_router/netpol/compiler.h"

namespace kr::netpol::compiler_internal {

struct PodRef {
  const k8s::Pod* pod;
  std::string ip;
};

// Namespace labels with the kubernetes.io/metadata.name label the API server adds (`ns` may be
// null: a namespace with pods but no Namespace object).
k8s::Labels EffectiveNamespaceLabels(const std::string& name, const k8s::Namespace* ns);

// The pods (with an address of the family) and namespace labels of one view, indexed the way
// selectors are evaluated.
class ClusterIndex {
 public:
  ClusterIndex(const ClusterView& view, const NetpolConfig& config, netfilter::IpFamily family);

  // Labels of namespace `ns` as selectors see them (with kubernetes.io/metadata.name).
  const k8s::Labels& NamespaceLabels(const std::string& ns) const;

  const std::map<std::string, std::vector<PodRef>>& pods_by_namespace() const {
    return pods_by_namespace_;
  }
  const std::vector<PodRef>& local_pods() const { return local_pods_; }

  // The pods of `ns` that `selector` matches (all of them for a null selector).
  std::vector<PodRef> PodsIn(const std::string& ns, const k8s::LabelSelector* selector) const;

  // On a pre-1.7 API server (ClusterView::beta_api) policies never isolate, only allow.
  bool policies_isolate() const { return !beta_api_; }
  // With beta namespace isolation: the namespace's annotation isolates its pods' ingress.
  bool NamespaceIsolatesIngress(const std::string& ns) const {
    return ingress_isolated_namespaces_.contains(ns);
  }
  // One line per namespace whose beta annotation could not be read (in name order).
  const std::vector<std::string>& namespace_problems() const { return namespace_problems_; }

 private:
  // Mutable: a namespace with pods but no Namespace object gets its default labels on demand.
  mutable std::map<std::string, k8s::Labels> namespace_labels_;
  std::map<std::string, std::vector<PodRef>> pods_by_namespace_;
  std::vector<PodRef> local_pods_;
  bool beta_api_ = false;
  std::set<std::string> ingress_isolated_namespaces_;
  std::vector<std::string> namespace_problems_;
};

}  // namespace kr::netpol::compiler_internal
