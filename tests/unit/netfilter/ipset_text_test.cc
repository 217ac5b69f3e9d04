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

}  // namespace
}  // namespace kr::netfilter
