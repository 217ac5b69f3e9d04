#include "kube_router/routing/node_config.h"

#include <gtest/gtest.h>

namespace kr::routing {
namespace {

k8s::Node MakeNode(const std::string& name, const std::string& ip, const std::string& cidr,
                   k8s::Labels annotations = {}) {
  k8s::Node node;
  node.meta.name = name;
  node.meta.annotations = std::move(annotations);
  node.addresses = {{"Hostname", name}, {"InternalIP", ip}};
  node.pod_cidr = cidr;
  return node;
}

bool MentionsAll(const std::vector<std::string>& problems, const std::string& a,
                 const std::string& b) {
  for (const auto& p : problems) {
    if (p.find(a) != std::string::npos && p.find(b) != std::string::npos) return true;
  }
  return false;
}

TEST(ParseNodeTest, AddressAndPodCidrFromSpec) {
  auto parsed = ParseNode(MakeNode("n1", "192.0.2.11", "10.1.1.0/24"));
  EXPECT_TRUE(parsed.problems.empty());
  ASSERT_TRUE(parsed.info.ip);
  EXPECT_EQ(parsed.info.ip->ToString(), "192.0.2.11");
  ASSERT_EQ(parsed.info.pod_cidrs.size(), 1u);
  EXPECT_EQ(parsed.info.pod_cidrs[0].ToString(), "10.1.1.0/24");
}

TEST(ParseNodeTest, InternalIpPreferredOverExternalIp) {
  k8s::Node node;
  node.meta.name = "n";
  node.addresses = {{"ExternalIP", "203.0.113.5"}, {"InternalIP", "192.0.2.5"}};
  EXPECT_EQ(PrimaryNodeIp(node)->ToString(), "192.0.2.5");
  node.addresses = {{"ExternalIP", "203.0.113.5"}, {"Hostname", "n"}};
  EXPECT_EQ(PrimaryNodeIp(node)->ToString(), "203.0.113.5");
  node.addresses = {{"InternalIP", "not-an-ip"}};
  EXPECT_FALSE(PrimaryNodeIp(node));
}

TEST(ParseNodeTest, PodCidrAnnotationWinsOverSpec) {
  auto parsed =
      ParseNode(MakeNode("n1", "192.0.2.11", "10.1.1.0/24", {{kAnnotationPodCidr, "10.9.0.0/24"}}));
  ASSERT_EQ(parsed.info.pod_cidrs.size(), 1u);
  EXPECT_EQ(parsed.info.pod_cidrs[0].ToString(), "10.9.0.0/24");
}

TEST(ParseNodeTest, MissingPodCidrGivesNoCidrAndNoAddressIsAProblem) {
  k8s::Node node;
  node.meta.name = "lonely";
  auto parsed = ParseNode(node);
  EXPECT_TRUE(parsed.info.pod_cidrs.empty());
  EXPECT_FALSE(parsed.info.ip);
  EXPECT_TRUE(MentionsAll(parsed.problems, "lonely", "InternalIP"));
}

TEST(ParseNodeTest, BadAnnotationsAreReportedWithNodeNameAndDropped) {
  auto parsed = ParseNode(MakeNode("bad-node", "192.0.2.11", "10.1.1.0/24",
                                   {{kAnnotationNodeAsn, "sixty-five"},
                                    {kAnnotationRrServer, "1.2.3"},
                                    {kAnnotationPeerIps, "192.0.2.100,192.0.2.101"},
                                    {kAnnotationPeerAsns, "65000"},
                                    {kAnnotationCommunities, "65000:100,bogus,no-export"},
                                    {kAnnotationPrependAs, "65000"},
                                    {kAnnotationPodCidr, "10.1.1.1/24"}}));
  EXPECT_FALSE(parsed.info.asn);
  EXPECT_FALSE(parsed.info.rr_server_cluster_id);
  EXPECT_TRUE(parsed.info.external_peers.empty());
  EXPECT_FALSE(parsed.info.prepend);
  EXPECT_TRUE(parsed.info.pod_cidrs.empty());
  // The good communities survive next to the bad one.
  EXPECT_EQ(parsed.info.communities, (std::vector<uint32_t>{(65000u << 16) | 100, 0xFFFFFF01}));
  EXPECT_TRUE(MentionsAll(parsed.problems, "bad-node", kAnnotationNodeAsn));
  EXPECT_TRUE(MentionsAll(parsed.problems, "bad-node", kAnnotationRrServer));
  EXPECT_TRUE(MentionsAll(parsed.problems, "bad-node", "2 peer IPs but 1 ASNs"));
  EXPECT_TRUE(MentionsAll(parsed.problems, "bad-node", "bogus"));
  EXPECT_TRUE(MentionsAll(parsed.problems, "bad-node", kAnnotationPrependRepeat));
  EXPECT_TRUE(MentionsAll(parsed.problems, "bad-node", kAnnotationPodCidr));
  EXPECT_EQ(parsed.problems.size(), 6u);
}

TEST(ParseNodeTest, LegacyPeerAnnotations) {
  auto parsed = ParseNode(MakeNode("n1", "192.0.2.11", "10.1.1.0/24",
                                   {{kAnnotationPeerIps, "192.0.2.100, 192.0.2.101"},
                                    {kAnnotationPeerAsns, "65001,65002"},
                                    {kAnnotationPeerPasswords, "c2VjcmV0,"},
                                    {kAnnotationPeerPorts, "179,1790"}}));
  EXPECT_TRUE(parsed.problems.empty());
  ASSERT_EQ(parsed.info.external_peers.size(), 2u);
  const auto& first = parsed.info.external_peers[0];
  EXPECT_EQ(first.address.ToString(), "192.0.2.100");
  EXPECT_EQ(first.asn, 65001u);
  EXPECT_EQ(first.password, "secret");
  EXPECT_EQ(first.port, 179);
  EXPECT_TRUE(first.external);
  EXPECT_EQ(parsed.info.external_peers[1].password, "");
  EXPECT_EQ(parsed.info.external_peers[1].port, 1790);
}

TEST(ParseNodeTest, YamlPeersAnnotation) {
  const std::string yaml =
      "- remoteip: 192.0.2.100\n"
      "  remoteasn: 65001\n"
      "  password: c2VjcmV0\n"
      "- remoteip: 198.51.100.7\n"
      "  remoteasn: 4200000001\n"
      "  port: 1179\n"
      "  localip: 192.0.2.11\n";
  auto parsed = ParseNode(MakeNode("n1", "192.0.2.11", "10.1.1.0/24", {{kAnnotationPeers, yaml}}));
  EXPECT_TRUE(parsed.problems.empty()) << parsed.problems.front();
  ASSERT_EQ(parsed.info.external_peers.size(), 2u);
  EXPECT_EQ(parsed.info.external_peers[0].password, "secret");
  EXPECT_EQ(parsed.info.external_peers[1].asn, 4200000001u);
  EXPECT_EQ(parsed.info.external_peers[1].port, 1179);
  EXPECT_EQ(parsed.info.external_peers[1].local_address->ToString(), "192.0.2.11");
}

TEST(ParseNodeTest, BadYamlPeersAreAProblemNotACrash) {
  for (const std::string yaml :
       {"- remoteip: [1, 2\n", "remoteip: 192.0.2.1\n", "- remoteip: 192.0.2.1\n",
        "- remoteip: 192.0.2.1\n  remoteasn: 0\n", "- remoteip: {a: b}\n  remoteasn: 65000\n",
        "- remoteip: 192.0.2.1\n  remoteasn: 65000\n  password: '%%%'\n"}) {
    SCOPED_TRACE(yaml);
    auto parsed =
        ParseNode(MakeNode("yaml-node", "192.0.2.11", "10.1.1.0/24", {{kAnnotationPeers, yaml}}));
    EXPECT_TRUE(parsed.info.external_peers.empty());
    EXPECT_TRUE(MentionsAll(parsed.problems, "yaml-node", kAnnotationPeers));
  }
}

TEST(ParseNodeTest, RouteReflectorAndPrependAndImportReject) {
  auto parsed =
      ParseNode(MakeNode("n1", "192.0.2.11", "10.1.1.0/24",
                         {{kAnnotationRrServer, "10.0.0.1"},
                          {kAnnotationPrependAs, "65000"},
                          {kAnnotationPrependRepeat, "3"},
                          {kAnnotationCustomImportReject, "10.50.0.0/16, 172.16.0.0/12"}}));
  EXPECT_TRUE(parsed.problems.empty());
  EXPECT_EQ(*parsed.info.rr_server_cluster_id, 0x0A000001u);
  EXPECT_EQ(parsed.info.prepend, (PathPrepend{65000, 3}));
  ASSERT_EQ(parsed.info.custom_import_reject.size(), 2u);
  EXPECT_EQ(parsed.info.custom_import_reject[1].ToString(), "172.16.0.0/12");
}

TEST(ValueParsersTest, Asn) {
  EXPECT_EQ(*ParseAsn("65000"), 65000u);
  EXPECT_EQ(*ParseAsn(" 4200000000 "), 4200000000u);
  for (const char* bad : {"", "0", "23456", "65535", "4294967295", "4294967296", "-1", "12x"}) {
    EXPECT_FALSE(ParseAsn(bad)) << bad;
  }
  EXPECT_TRUE(IsPrivateAsn(64512));
  EXPECT_FALSE(IsPrivateAsn(64511));
  EXPECT_TRUE(IsPrivateAsn(4294967294u));
}

TEST(ValueParsersTest, Community) {
  EXPECT_EQ(*ParseCommunity("100"), 100u);
  EXPECT_EQ(*ParseCommunity("1:2"), 0x00010002u);
  EXPECT_EQ(*ParseCommunity("NO-ADVERTISE"), 0xFFFFFF02u);
  for (const char* bad : {"", "1:", ":1", "65536:1", "1:65536", "x", "4294967296"}) {
    EXPECT_FALSE(ParseCommunity(bad)) << bad;
  }
}

TEST(ValueParsersTest, PeerListLengthsMustMatch) {
  EXPECT_FALSE(BuildPeerList({"192.0.2.1"}, {"65000"}, {"a", "b"}, {}, {}));
  EXPECT_FALSE(BuildPeerList({"192.0.2.1"}, {"65000"}, {}, {"179", "180"}, {}));
  EXPECT_FALSE(BuildPeerList({"192.0.2.1"}, {"65000"}, {}, {"0"}, {}));
  EXPECT_FALSE(BuildPeerList({"192.0.2.300"}, {"65000"}, {}, {}, {}));
  auto ok = BuildPeerList({"192.0.2.1", "2001:db8::1"}, {"65000", "65001"}, {}, {}, {});
  ASSERT_TRUE(ok);
  EXPECT_EQ(ok->size(), 2u);
  EXPECT_TRUE((*ok)[1].address.is_v6());
}

TEST(ValueParsersTest, BadPasswordErrorDoesNotLeakIt) {
  auto result = BuildPeerList({"192.0.2.1"}, {"65000"}, {"hunter2!"}, {}, {});
  ASSERT_FALSE(result);
  EXPECT_EQ(result.error().find("hunter2"), std::string::npos);
}

TEST(ValueParsersTest, SplitList) {
  EXPECT_EQ(SplitList(" a, b ,c"), (std::vector<std::string>{"a", "b", "c"}));
  EXPECT_EQ(SplitList("a,,b"), (std::vector<std::string>{"a", "", "b"}));
  EXPECT_TRUE(SplitList("  ").empty());
}

}  // namespace
}  // namespace kr::routing
