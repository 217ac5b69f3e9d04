#include "kube_router/netpol/naming.h"

#include <gtest/gtest.h>

namespace kr::netpol {
namespace {

using netfilter::IpFamily;

k8s::LabelSelector Selector(k8s::Labels labels,
                            std::vector<k8s::LabelSelectorRequirement> expressions = {}) {
  k8s::LabelSelector out;
  out.match_labels = std::move(labels);
  out.match_expressions = std::move(expressions);
  return out;
}

// Expected values computed independently (Python: base64.b32encode(hashlib.sha256(encoding)) of
// the length-prefixed fields "<len>:<field>", prefix first).
TEST(Naming, HashesLengthPrefixedFields) {
  EXPECT_EQ(PolicyChainName("default", "web-policy", IpFamily::kV4, true),
            "KUBE-NWPLCY-UZMMLXJ2P4KK5P7O");
  EXPECT_EQ(PodChainName("nsx", "a"), "KUBE-POD-FW-5PPSZ7ESS6SU3T5Y");
  // Every pod of namespace team-a: fields "pods", "IPv4", the encoded list of selection keys,
  // each key "namespace", "team-a", the encoded (empty) list of requirements.
  EXPECT_EQ(PodSetName(false, {PodSelectionKey("team-a", nullptr, nullptr)}, IpFamily::kV4),
            "KUBE-DST-RRORLCVCVXNBOEGH");
  const auto team = Selector({{"team", "t1"}});
  EXPECT_EQ(PodSetName(true, {PodSelectionKey("any", &team, nullptr)}, IpFamily::kV4),
            "KUBE-SRC-44WVIBWBBB4BL6NK");
}

// The attack of issue 16: kube-router hashes namespace + name, so these pairs share names.
TEST(Naming, NamespaceAndNameCannotBeShiftedIntoEachOther) {
  for (auto family : {IpFamily::kV4, IpFamily::kV6}) {
    for (bool ingress : {true, false}) {
      EXPECT_NE(PolicyChainName("team-a", "bx", family, ingress),
                PolicyChainName("team-ab", "x", family, ingress));
    }
    EXPECT_NE(PolicyChainName("ns", "p", family, true), PolicyChainName("ns", "p", family, false));
  }
  EXPECT_NE(PodChainName("team-a", "db"), PodChainName("team-ad", "b"));
  EXPECT_NE(PodChainName("team-a", "bx"), PodChainName("team-ab", "x"));
  // Selection keys: the namespace and the selector's keys and values are separate fields.
  const auto x = Selector({{"app", "x"}}), bx = Selector({{"app", "bx"}});
  EXPECT_NE(PodSelectionKey("team-a", nullptr, &bx), PodSelectionKey("team-ab", nullptr, &x));
  const auto kv1 = Selector({{"a", "b,c=d"}}), kv2 = Selector({{"a", "b"}, {"c", "d"}});
  EXPECT_NE(PodSelectionKey("ns", nullptr, &kv1), PodSelectionKey("ns", nullptr, &kv2));
}

// Content addressing: selectors that pick the same pods in every cluster give one key (and one
// set); anything that can pick other pods gives another.
TEST(Naming, SelectionKeysAreCanonical) {
  const k8s::LabelSelector empty;
  EXPECT_EQ(PodSelectionKey("ns", nullptr, nullptr), PodSelectionKey("ns", nullptr, &empty));
  const auto labels = Selector({{"app", "web"}, {"tier", "1"}});
  const auto exprs = Selector({}, {{"tier", "In", {"1", "1"}}, {"app", "In", {"web"}}});
  EXPECT_EQ(PodSelectionKey("ns", nullptr, &labels), PodSelectionKey("ns", nullptr, &exprs));
  const auto in_ab = Selector({}, {{"k", "In", {"a", "b"}}});
  const auto in_ba = Selector({}, {{"k", "In", {"b", "a"}}});
  EXPECT_EQ(PodSelectionKey("ns", &in_ab, nullptr), PodSelectionKey("other", &in_ba, &empty));

  const auto not_in = Selector({}, {{"k", "NotIn", {"a", "b"}}});
  const auto in_a = Selector({}, {{"k", "In", {"a"}}});
  for (const auto& [a, b] : std::vector<std::pair<std::string, std::string>>{
           {PodSelectionKey("ns", &in_ab, nullptr), PodSelectionKey("ns", &not_in, nullptr)},
           {PodSelectionKey("ns", &in_ab, nullptr), PodSelectionKey("ns", &in_a, nullptr)},
           {PodSelectionKey("ns", &in_ab, nullptr), PodSelectionKey("ns", nullptr, &in_ab)},
           {PodSelectionKey("ns", nullptr, nullptr), PodSelectionKey("ns", &empty, nullptr)},
           {PodSelectionKey("ns", nullptr, nullptr), PodSelectionKey("ns2", nullptr, nullptr)},
           {PodSelectionKey("ns", &empty, nullptr), AllPodsSelectionKey() + "x"}}) {
    EXPECT_NE(a, b);
  }
  EXPECT_EQ(AllPodsSelectionKey(), PodSelectionKey("anything", &empty, &empty));
}

TEST(Naming, SetNamesFollowTheirContentNotTheirUsers) {
  const auto a = PodSelectionKey("ns", nullptr, nullptr);
  const auto b = PodSelectionKey("other", nullptr, nullptr);
  for (auto family : {IpFamily::kV4, IpFamily::kV6}) {
    // A union of selections is one identity whatever the order.
    EXPECT_EQ(PodSetName(true, {a, b}, family), PodSetName(true, {b, a, b}, family));
    EXPECT_NE(PodSetName(true, {a, b}, family), PodSetName(true, {a}, family));
    EXPECT_NE(PodSetName(true, {a}, family), PodSetName(false, {a}, family));
    EXPECT_NE(NetSetName(true, {{"10.0.0.0/8", false}}, family),
              NetSetName(true, {{"10.0.0.0/8", true}}, family));
    EXPECT_NE(NetSetName(true, {{"10.0.0.0/8", false}, {"10.1.0.0/16", true}}, family),
              NetSetName(true, {{"10.0.0.0/8", false}}, family));
    EXPECT_NE(NamedPortSetName({a}, "tcp", "http", 80, family),
              NamedPortSetName({a}, "tcp", "http", 8080, family));
    EXPECT_NE(NamedPortSetName({a}, "tcp", "http", 80, family),
              NamedPortSetName({a}, "udp", "http", 80, family));
    EXPECT_NE(NamedPortSetName({a}, "tcp", "http", 80, family), PodSetName(false, {a}, family));
  }
  EXPECT_NE(PodSetName(true, {a}, IpFamily::kV4), PodSetName(true, {a}, IpFamily::kV6).substr(6));
}

TEST(Naming, FollowsKubeRouterShapesAndLimits) {
  EXPECT_LE(PodChainName("nsx", "a").size(), 28u);
  const auto a = PodSelectionKey("ns", nullptr, nullptr);
  std::string v6 = NamedPortSetName({a}, "tcp", "http", 80, IpFamily::kV6);
  EXPECT_TRUE(v6.starts_with("inet6:KUBE-DST-"));
  EXPECT_LE(v6.size(), 31u);
  EXPECT_LE(NetSetName(true, {{"::/1", false}}, IpFamily::kV6).size(), 31u);
  EXPECT_TRUE(PodSetName(false, {a}, IpFamily::kV4).starts_with("KUBE-DST-"));
  EXPECT_TRUE(PodSetName(true, {a}, IpFamily::kV4).starts_with("KUBE-SRC-"));
  EXPECT_TRUE(NetSetName(true, {{"10.0.0.0/8", false}}, IpFamily::kV4).starts_with("KUBE-SRC-"));
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
