// Builders for the Kubernetes objects the network policy tests feed the compiler.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "kube_router/k8s/store.h"
#include "kube_router/k8s/types.h"

namespace kr::netpol::testing {

inline k8s::Pod Pod(const std::string& ns, const std::string& name, const std::string& ip,
                    const std::string& node, k8s::Labels labels = {},
                    std::vector<k8s::ContainerPort> ports = {}) {
  k8s::Pod pod;
  pod.meta.namespace_ = ns;
  pod.meta.name = name;
  pod.meta.labels = std::move(labels);
  pod.node_name = node;
  if (!ip.empty()) pod.pod_ips = {ip};
  pod.phase = "Running";
  pod.container_ports = std::move(ports);
  return pod;
}

inline k8s::Namespace Namespace(const std::string& name, k8s::Labels labels = {}) {
  k8s::Namespace ns;
  ns.meta.name = name;
  ns.meta.labels = std::move(labels);
  return ns;
}

inline k8s::LabelSelector Labels(k8s::Labels labels) {
  k8s::LabelSelector s;
  s.match_labels = std::move(labels);
  return s;
}

inline k8s::LabelSelector Expr(const std::string& key, const std::string& op,
                               std::vector<std::string> values = {}) {
  k8s::LabelSelector s;
  s.match_expressions.push_back({key, op, std::move(values)});
  return s;
}

inline k8s::NetworkPolicyPeer PodPeer(k8s::LabelSelector pods) {
  k8s::NetworkPolicyPeer peer;
  peer.pod_selector = std::move(pods);
  return peer;
}

inline k8s::NetworkPolicyPeer NamespacePeer(k8s::LabelSelector namespaces) {
  k8s::NetworkPolicyPeer peer;
  peer.namespace_selector = std::move(namespaces);
  return peer;
}

inline k8s::NetworkPolicyPeer BlockPeer(const std::string& cidr,
                                        std::vector<std::string> except = {}) {
  k8s::NetworkPolicyPeer peer;
  peer.ip_block = k8s::IpBlock{cidr, std::move(except)};
  return peer;
}

inline k8s::NetworkPolicyPort Port(int32_t number, const std::string& protocol = "TCP") {
  k8s::NetworkPolicyPort port;
  port.protocol = protocol;
  port.port = k8s::IntOrString{false, number, ""};
  return port;
}

inline k8s::NetworkPolicyPort NamedPort(const std::string& name,
                                        const std::string& protocol = "TCP") {
  k8s::NetworkPolicyPort port;
  port.protocol = protocol;
  port.port = k8s::IntOrString{true, 0, name};
  return port;
}

inline k8s::NetworkPolicy Policy(const std::string& ns, const std::string& name,
                                 k8s::LabelSelector pods, bool ingress, bool egress,
                                 std::vector<k8s::NetworkPolicyRule> in_rules = {},
                                 std::vector<k8s::NetworkPolicyRule> out_rules = {}) {
  k8s::NetworkPolicy policy;
  policy.meta.namespace_ = ns;
  policy.meta.name = name;
  policy.pod_selector = std::move(pods);
  policy.policy_ingress = ingress;
  policy.policy_egress = egress;
  policy.ingress = std::move(in_rules);
  policy.egress = std::move(out_rules);
  return policy;
}

inline void Put(k8s::Cluster& cluster, const k8s::Pod& pod) {
  cluster.pods.Upsert(pod.meta.Key(), std::make_shared<const k8s::Pod>(pod));
}
inline void Put(k8s::Cluster& cluster, const k8s::Namespace& ns) {
  cluster.namespaces.Upsert(ns.meta.Key(), std::make_shared<const k8s::Namespace>(ns));
}
inline void Put(k8s::Cluster& cluster, const k8s::NetworkPolicy& policy) {
  cluster.network_policies.Upsert(policy.meta.Key(),
                                  std::make_shared<const k8s::NetworkPolicy>(policy));
}

}  // namespace kr::netpol::testing
