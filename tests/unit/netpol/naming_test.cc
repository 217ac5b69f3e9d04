#include "kube_router/netpol/naming.h"

#include <gtest/gtest.h>

namespace kr::netpol {
namespace {

using netfilter::IpFamily;

// Expected values computed independently (Python hashlib + base64.b32encode).
TEST(HashName, IsBase32OfSha256) {
  EXPECT_EQ(HashName("abc"), "XJ4BNP4PAHH6UQKB");
  EXPECT_EQ(HashName("nsxa"), "JSG2JZPJZDIEAIVB");
}

TEST(Naming, FollowsKubeRouterShapesAndLimits) {
  EXPECT_EQ(PolicyChainName("default", "web-policy", IpFamily::kV4),
            "KUBE-NWPLCY-6QSOJFOXGYFQGTHW");
  EXPECT_EQ(PodChainName("nsx", "a"), "KUBE-POD-FW-JSG2JZPJZDIEAIVB");
  EXPECT_LE(PodChainName("nsx", "a").size(), 28u);
  std::string v6 = NamedPortSetName(false, "ns", "p", 3, 1, IpFamily::kV6);
  EXPECT_TRUE(v6.starts_with("inet6:KUBE-DST-"));
  EXPECT_LE(v6.size(), 31u);
  EXPECT_TRUE(TargetSetName(true, "ns", "p", IpFamily::kV4).starts_with("KUBE-DST-"));
  EXPECT_TRUE(TargetSetName(false, "ns", "p", IpFamily::kV4).starts_with("KUBE-SRC-"));
  EXPECT_NE(PeerSetName(true, "ns", "p", 0, false, IpFamily::kV4),
            PeerSetName(true, "ns", "p", 0, true, IpFamily::kV4));
}

TEST(Naming, OwnsOnlyOurPrefixes) {
  for (const char* chain : {"KUBE-ROUTER-INPUT", "KUBE-ROUTER-FORWARD", "KUBE-ROUTER-OUTPUT",
                            "KUBE-POD-FW-ABC", "KUBE-NWPLCY-DEFAULT"}) {
    EXPECT_TRUE(IsOwnedChain(chain)) << chain;
  }
  for (const char* chain : {"KUBE-SERVICES", "KUBE-FIREWALL", "DOCKER", "DOCKER-USER",
                            "KUBE-ROUTER-SERVICES", "INPUT"}) {
    EXPECT_FALSE(IsOwnedChain(chain)) << chain;
  }
  for (const char* set :
       {"KUBE-SRC-A", "KUBE-DST-B", "inet6:KUBE-DST-C", "KUBE-TMP-IP4", "kube-router-local-pods"}) {
    EXPECT_TRUE(IsOwnedSet(set)) << set;
  }
  for (const char* set : {"KUBE-CLUSTER-IP", "kube-router-pod-subnets", "docker-nets"}) {
    EXPECT_FALSE(IsOwnedSet(set)) << set;
  }
}

}  // namespace
}  // namespace kr::netpol
