#include "kube_router/netpol/naming.h"

#include <gtest/gtest.h>

namespace kr::netpol {
namespace {

using netfilter::IpFamily;

// Expected values computed independently (Python: base64.b32encode(hashlib.sha256(encoding)) of
// the length-prefixed fields "<len>:<field>", prefix first).
TEST(Naming, HashesLengthPrefixedFields) {
  EXPECT_EQ(PolicyChainName("default", "web-policy", IpFamily::kV4, true),
            "KUBE-NWPLCY-UZMMLXJ2P4KK5P7O");
  EXPECT_EQ(PodChainName("nsx", "a"), "KUBE-POD-FW-5PPSZ7ESS6SU3T5Y");
  EXPECT_EQ(TargetSetName(true, "team-a", "bx", IpFamily::kV4), "KUBE-DST-XYNA7OBP3OFJQ7FP");
}

// The attack of issue 16: kube-router hashes namespace + name, so these pairs share names.
TEST(Naming, NamespaceAndNameCannotBeShiftedIntoEachOther) {
  for (auto family : {IpFamily::kV4, IpFamily::kV6}) {
    for (bool ingress : {true, false}) {
      EXPECT_NE(PolicyChainName("team-a", "bx", family, ingress),
                PolicyChainName("team-ab", "x", family, ingress));
    }
    EXPECT_NE(PolicyChainName("ns", "p", family, true), PolicyChainName("ns", "p", family, false));
    EXPECT_NE(TargetSetName(true, "team-a", "bx", family),
              TargetSetName(true, "team-ab", "x", family));
    EXPECT_NE(TargetSetName(false, "team-a", "bx", family),
              TargetSetName(false, "team-ab", "x", family));
    EXPECT_NE(PeerSetName(true, "team-a", "bx", 0, false, family),
              PeerSetName(true, "team-ab", "x", 0, false, family));
    // Rule index 1 + port index 12 vs rule index 11 + port index 2.
    EXPECT_NE(NamedPortSetName(true, "ns", "p", 1, 12, family),
              NamedPortSetName(true, "ns", "p", 11, 2, family));
    EXPECT_NE(PeerSetName(true, "ns", "p1", 1, false, family),
              PeerSetName(true, "ns", "p", 11, false, family));
  }
  EXPECT_NE(PodChainName("team-a", "db"), PodChainName("team-ad", "b"));
  EXPECT_NE(PodChainName("team-a", "bx"), PodChainName("team-ab", "x"));
  // A policy's target set and another policy's peer or named-port set never share input.
  EXPECT_NE(TargetSetName(true, "ns", "p", IpFamily::kV4),
            NamedPortSetName(false, "ns", "p", 0, 0, IpFamily::kV4));
}

TEST(Naming, FollowsKubeRouterShapesAndLimits) {
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
