// Where a node's pod CIDRs come from, in kube-router's order, and what is refused.
#include "kube_router/k8s/node_pod_cidrs.h"

#include <gtest/gtest.h>

namespace kr::k8s {
namespace {

Node MakeNode(std::string pod_cidr, std::vector<std::string> pod_cidrs, Labels annotations) {
  Node node;
  node.meta.name = "n1";
  node.pod_cidr = std::move(pod_cidr);
  node.pod_cidrs = std::move(pod_cidrs);
  node.meta.annotations = std::move(annotations);
  return node;
}

std::vector<std::string> Texts(const NodePodCidrs& parsed) {
  std::vector<std::string> out;
  for (const auto& cidr : parsed.cidrs) out.push_back(cidr.ToString());
  return out;
}

TEST(PodCidrsOfNode, AnnotationsThenSpecInKubeRoutersOrder) {
  using V = std::vector<std::string>;
  EXPECT_EQ(Texts(PodCidrsOfNode(MakeNode("10.0.1.0/24", {}, {}))), V{"10.0.1.0/24"});
  EXPECT_EQ(Texts(PodCidrsOfNode(MakeNode("10.0.1.0/24", {"10.0.1.0/24", "fd00:1::/64"}, {}))),
            (V{"10.0.1.0/24", "fd00:1::/64"}));
  EXPECT_EQ(Texts(PodCidrsOfNode(MakeNode("10.0.1.0/24", {},
                                          {{kAnnotationPodCidrs, " 10.9.0.0/24 , fd00:9::/64"}}))),
            (V{"10.9.0.0/24", "fd00:9::/64"}));
  EXPECT_EQ(Texts(PodCidrsOfNode(MakeNode(
                "10.0.1.0/24", {},
                {{kAnnotationPodCidr, "10.8.0.0/24"}, {kAnnotationPodCidrs, "10.9.0.0/24"}}))),
            V{"10.8.0.0/24"});
  // An empty annotation is absent.
  EXPECT_EQ(Texts(PodCidrsOfNode(MakeNode("10.0.1.0/24", {}, {{kAnnotationPodCidr, ""}}))),
            V{"10.0.1.0/24"});
  EXPECT_TRUE(PodCidrsOfNode(MakeNode("", {}, {})).cidrs.empty());
}

TEST(PodCidrsOfNode, BadValuesAreNamedAndSkipped) {
  auto parsed = PodCidrsOfNode(MakeNode(
      "", {}, {{kAnnotationPodCidrs, "10.0.0.0/33,10.0.1.0/24,0.0.0.0/0,10.0.2.1/24,::/0"}}));
  EXPECT_EQ(Texts(parsed), std::vector<std::string>{"10.0.1.0/24"});
  ASSERT_EQ(parsed.problems.size(), 4u);
  for (const auto& problem : parsed.problems) {
    EXPECT_NE(problem.find(std::string("annotation ") + kAnnotationPodCidrs), std::string::npos)
        << problem;
  }
  EXPECT_NE(parsed.problems[0].find("\"10.0.0.0/33\""), std::string::npos);
  auto spec = PodCidrsOfNode(MakeNode("nonsense", {}, {}));
  ASSERT_EQ(spec.problems.size(), 1u);
  EXPECT_NE(spec.problems[0].find("spec.podCIDR"), std::string::npos);
}

}  // namespace
}  // namespace kr::k8s
