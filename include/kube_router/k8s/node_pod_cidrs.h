// A node's pod CIDRs as kube-router reads them: the kube-router.io/pod-cidr annotation, else
// kube-router.io/pod-cidrs, else spec.podCIDRs, else spec.podCIDR. The routes controller
// advertises them; the firewall's default deny (--netpol-default-deny) guards them.
#pragma once

#include <string>
#include <vector>

#include "kube_router/base/ip.h"
#include "kube_router/k8s/types.h"

namespace kr::k8s {

inline constexpr char kAnnotationPodCidr[] = "kube-router.io/pod-cidr";
inline constexpr char kAnnotationPodCidrs[] = "kube-router.io/pod-cidrs";

struct NodePodCidrs {
  std::vector<IpPrefix> cidrs;
  // One line per unusable value, naming its source, e.g.
  // `annotation kube-router.io/pod-cidrs: invalid pod CIDR "10.0.0.0/33" (ignored)`.
  std::vector<std::string> problems;
};

NodePodCidrs PodCidrsOfNode(const Node& node);

}  // namespace kr::k8s
