#include "kube_router/k8s/store.h"

namespace kr::k8s {

const char* ResourceKindName(ResourceKind kind) {
  switch (kind) {
    case ResourceKind::kService:
      return "Service";
    case ResourceKind::kEndpointSlice:
      return "EndpointSlice";
    case ResourceKind::kPod:
      return "Pod";
    case ResourceKind::kNode:
      return "Node";
    case ResourceKind::kNamespace:
      return "Namespace";
    case ResourceKind::kNetworkPolicy:
      return "NetworkPolicy";
  }
  return "Unknown";
}

std::unique_ptr<Cluster> MakeCluster() {
  auto cluster = std::make_unique<Cluster>();
  cluster->pods.AddIndex(kIndexNodeName, [](const Pod& p) {
    return p.node_name.empty() ? std::vector<std::string>{} : std::vector<std::string>{p.node_name};
  });
  cluster->pods.AddIndex(kIndexPodIp, [](const Pod& p) {
    return p.pod_ips.ToVector();  // podIP where the server sent no podIPs (decode.cc)
  });
  cluster->endpoint_slices.AddIndex(kIndexServiceName, [](const EndpointSlice& s) {
    if (s.service_name.empty()) return std::vector<std::string>{};
    return std::vector<std::string>{s.meta.namespace_ + "/" + s.service_name};
  });
  return cluster;
}

}  // namespace kr::k8s
