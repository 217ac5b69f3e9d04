#include <gtest/gtest.h>

#include "kube_router/netfilter/ipset.h"

namespace kr::netfilter {
namespace {

TEST(ParseIpsetSave, ReadsOurTypesWithNomatchAndFamily) {
  const char* text =
      "create KUBE-SRC-A hash:net family inet hashsize 1024 maxelem 65536 bucketsize 12\n"
      "add KUBE-SRC-A 10.0.0.0/8\n"
      "add KUBE-SRC-A 10.1.0.0/16 nomatch\n"
      "add KUBE-SRC-A 192.0.2.7\n"
      "create inet6:KUBE-DST-B hash:ip family inet6 hashsize 1024 maxelem 65536\n"
      "add inet6:KUBE-DST-B fd00::1\n"
      "create docker-ports bitmap:port range 0-65535\n"
      "add docker-ports 80\n";
  auto sets = ParseIpsetSave(text);
  ASSERT_TRUE(sets.ok()) << sets.error();
  ASSERT_EQ(sets->size(), 2u);
  const auto& a = sets->at("KUBE-SRC-A");
  EXPECT_EQ(a.type, IpsetType::kHashNet);
  EXPECT_EQ(a.family, IpFamily::kV4);
  EXPECT_EQ(a.entries, (std::set<IpsetEntry>{
                           {"10.0.0.0/8", false}, {"10.1.0.0/16", true}, {"192.0.2.7", false}}));
  EXPECT_EQ(sets->at("inet6:KUBE-DST-B").family, IpFamily::kV6);
}

TEST(CanonicalEntry, DropsHostPrefixLength) {
  EXPECT_EQ(CanonicalEntry({"10.0.0.1/32"}).address, "10.0.0.1");
  EXPECT_EQ(CanonicalEntry({"fd00::1/128"}).address, "fd00::1");
  EXPECT_EQ(CanonicalEntry({"10.0.0.0/24"}).address, "10.0.0.0/24");
}

TEST(RenderIpsetRestore, CreatesNewSetsAndSwapsExistingOnes) {
  IpsetUpdate update;
  update.replace = {
      {"KUBE-NEW", IpsetType::kHashIp, IpFamily::kV4, {{"10.0.0.1"}}},
      {"KUBE-OLD", IpsetType::kHashNet, IpFamily::kV4, {{"10.0.0.0/8"}, {"10.9.0.0/16", true}}}};
  update.deltas = {{"KUBE-LIVE", {{"10.0.0.5"}}, {{"10.0.0.6"}}}};
  update.destroy = {"KUBE-GONE", "KUBE-NEVER-EXISTED"};
  std::string text =
      RenderIpsetRestore(update, {"KUBE-OLD", "KUBE-LIVE", "KUBE-GONE", "KUBE-TMP-NET4"});
  EXPECT_EQ(text,
            "destroy KUBE-TMP-NET4\n"
            "create KUBE-NEW hash:ip family inet hashsize 1024 maxelem 65536\n"
            "add KUBE-NEW 10.0.0.1\n"
            "create KUBE-TMP-NET4 hash:net family inet hashsize 1024 maxelem 65536\n"
            "add KUBE-TMP-NET4 10.0.0.0/8\n"
            "add KUBE-TMP-NET4 10.9.0.0/16 nomatch\n"
            "swap KUBE-TMP-NET4 KUBE-OLD\n"
            "destroy KUBE-TMP-NET4\n"
            "del KUBE-LIVE 10.0.0.6\n"
            "add KUBE-LIVE 10.0.0.5\n"
            "destroy KUBE-GONE\n");
}

TEST(RenderIpsetRestore, AsksForMaxelemAboveTheDefault) {
  IpsetSet big{"KUBE-BIG", IpsetType::kHashIp, IpFamily::kV6, {}};
  for (int i = 0; i < 40000; ++i) big.entries.insert({"fd00::" + std::to_string(i)});
  std::string text = RenderIpsetRestore({{big}, {}, {}}, {});
  EXPECT_NE(text.find("create KUBE-BIG hash:ip family inet6 hashsize 1024 maxelem 80000\n"),
            std::string::npos);
}

TEST(ParseIpsetSave, ReadsIpPortTypesWithTimeouts) {
  // As ipset 7 prints kube-router's sets (created with "timeout 0"); SCTP written as 132.
  const char* text =
      "create kube-router-svip-prt hash:ip,port family inet hashsize 1024 maxelem 65536 "
      "timeout 0 bucketsize 12 initval 0x568829d5\n"
      "add kube-router-svip-prt 10.96.0.10,tcp:53 timeout 0\n"
      "add kube-router-svip-prt 10.96.0.11,sctp:80 timeout 0\n"
      "create inet6:KUBE-SRC-RANGES hash:ip,port,net family inet6 hashsize 1024 maxelem 65536\n"
      "add inet6:KUBE-SRC-RANGES fd00::1,udp:80,2001:db8::/64\n"
      "add inet6:KUBE-SRC-RANGES fd00::1,tcp:80,2001:db8::1\n";
  auto sets = ParseIpsetSave(text);
  ASSERT_TRUE(sets.ok()) << sets.error();
  const auto& prt = sets->at("kube-router-svip-prt");
  EXPECT_EQ(prt.type, IpsetType::kHashIpPort);
  EXPECT_EQ(prt.entries, (std::set<IpsetEntry>{{"10.96.0.10,tcp:53"}, {"10.96.0.11,sctp:80"}}));
  const auto& net = sets->at("inet6:KUBE-SRC-RANGES");
  EXPECT_EQ(net.type, IpsetType::kHashIpPortNet);
  EXPECT_EQ(net.family, IpFamily::kV6);
  EXPECT_EQ(net.entries, (std::set<IpsetEntry>{{"fd00::1,udp:80,2001:db8::/64"},
                                               {"fd00::1,tcp:80,2001:db8::1"}}));
}

TEST(IpsetType, NamesRoundTrip) {
  for (IpsetType type : {IpsetType::kHashIp, IpsetType::kHashNet, IpsetType::kHashIpPort,
                         IpsetType::kHashIpPortNet}) {
    EXPECT_EQ(ParseIpsetType(IpsetTypeName(type)), type);
  }
  EXPECT_EQ(IpsetTypeName(IpsetType::kHashIpPortNet), std::string("hash:ip,port,net"));
  EXPECT_FALSE(ParseIpsetType("hash:ip,port,ip").has_value());
}

TEST(CanonicalEntry, NamesTheProtocolAndDropsHostLengthOfTheNetPart) {
  EXPECT_EQ(CanonicalEntry({"10.96.0.11,132:80"}).address, "10.96.0.11,sctp:80");
  EXPECT_EQ(CanonicalEntry({"10.96.0.11,TCP:80"}).address, "10.96.0.11,tcp:80");
  EXPECT_EQ(CanonicalEntry({"10.96.0.11,udp:53,10.0.0.1/32"}).address,
            "10.96.0.11,udp:53,10.0.0.1");
  EXPECT_EQ(CanonicalEntry({"fd00::a,tcp:80,fd00::1/128"}).address, "fd00::a,tcp:80,fd00::1");
  EXPECT_EQ(CanonicalEntry({"fd00::a,tcp:80,fd00::/64"}).address, "fd00::a,tcp:80,fd00::/64");
  EXPECT_EQ(IpPortEntry("10.96.0.10", "SCTP", 5000), "10.96.0.10,sctp:5000");
}

TEST(CheckEntry, AcceptsWellFormedEntriesPerTypeAndFamily) {
  EXPECT_TRUE(CheckEntry(IpsetType::kHashIp, IpFamily::kV4, {"10.0.0.1"}).ok());
  EXPECT_TRUE(CheckEntry(IpsetType::kHashNet, IpFamily::kV6, {"fd00::/8", true}).ok());
  EXPECT_TRUE(CheckEntry(IpsetType::kHashIpPort, IpFamily::kV4, {"10.0.0.1,132:80"}).ok());
  EXPECT_TRUE(CheckEntry(IpsetType::kHashIpPort, IpFamily::kV6, {"fd00::1,udp:65535"}).ok());
  EXPECT_TRUE(
      CheckEntry(IpsetType::kHashIpPortNet, IpFamily::kV4, {"10.0.0.1,tcp:80,10.1.0.0/16"}).ok());

  EXPECT_FALSE(CheckEntry(IpsetType::kHashIp, IpFamily::kV4, {"fd00::1"}).ok());
  EXPECT_FALSE(CheckEntry(IpsetType::kHashIp, IpFamily::kV4, {"10.0.0.0/8"}).ok());
  EXPECT_FALSE(CheckEntry(IpsetType::kHashIpPort, IpFamily::kV4, {"10.0.0.1"}).ok());
  EXPECT_FALSE(CheckEntry(IpsetType::kHashIpPort, IpFamily::kV4, {"10.0.0.1,icmp:80"}).ok());
  EXPECT_FALSE(CheckEntry(IpsetType::kHashIpPort, IpFamily::kV4, {"10.0.0.1,tcp:65536"}).ok());
  EXPECT_FALSE(CheckEntry(IpsetType::kHashIpPort, IpFamily::kV4, {"10.0.0.1,tcp:"}).ok());
  EXPECT_FALSE(
      CheckEntry(IpsetType::kHashIpPortNet, IpFamily::kV4, {"10.0.0.1,tcp:80,fd00::/8"}).ok());
  auto status = CheckEntry(IpsetType::kHashIpPort, IpFamily::kV6, {"10.0.0.1,tcp:80"});
  EXPECT_NE(status.message().find("10.0.0.1,tcp:80"), std::string::npos) << status.message();
}

TEST(RenderIpsetRestore, RebuildsIpPortSetsThroughTheirOwnTemporarySet) {
  IpsetUpdate update;
  update.replace = {
      {"kube-router-svip-prt", IpsetType::kHashIpPort, IpFamily::kV4, {{"10.96.0.10,tcp:53"}}}};
  std::string text = RenderIpsetRestore(update, {"kube-router-svip-prt"});
  EXPECT_EQ(text,
            "create KUBE-TMP-IPPORT4 hash:ip,port family inet hashsize 1024 maxelem 65536\n"
            "add KUBE-TMP-IPPORT4 10.96.0.10,tcp:53\n"
            "swap KUBE-TMP-IPPORT4 kube-router-svip-prt\n"
            "destroy KUBE-TMP-IPPORT4\n");
}

}  // namespace
}  // namespace kr::netfilter
