#include "kube_router/k8s/node_pod_cidrs.h"

#include "kube_router/base/strings.h"

namespace kr::k8s {

NodePodCidrs PodCidrsOfNode(const Node& node) {
  auto annotation = [&](const char* key) -> const std::string* {
    auto it = node.meta.annotations.find(key);
    return it == node.meta.annotations.end() || it->second.empty() ? nullptr : &it->second;
  };
  std::vector<std::string> texts;
  std::string source = "spec.podCIDR";
  if (const auto* single = annotation(kAnnotationPodCidr)) {
    texts = {*single};
    source = std::string("annotation ") + kAnnotationPodCidr;
  } else if (const auto* many = annotation(kAnnotationPodCidrs)) {
    texts = SplitList(*many);
    source = std::string("annotation ") + kAnnotationPodCidrs;
  } else if (!node.pod_cidrs.empty()) {
    texts = node.pod_cidrs;
  } else if (!node.pod_cidr.empty()) {
    texts = {node.pod_cidr};
  }
  NodePodCidrs out;
  for (const auto& text : texts) {
    auto prefix = IpPrefix::Parse(TrimBlanks(text), /*strict=*/true);
    // A default route is never a pod CIDR: advertising or guarding it would take the node over.
    if (!prefix || prefix->length() == 0) {
      out.problems.push_back(source + ": invalid pod CIDR \"" + text + "\" (ignored)");
      continue;
    }
    out.cidrs.push_back(*prefix);
  }
  return out;
}

}  // namespace kr::k8s
