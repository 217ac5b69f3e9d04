// Links against the real host kernel in a throwaway namespace. IPIP and dummy links need
// modules the host lacks; they are covered by the vm tier (tests/vm/netlink).
#include <gtest/gtest.h>

#include <algorithm>

#include "in_netns.h"
#include "kube_router/netlink/libnl.h"
#include "kube_router/netlink/sysctl.h"
#include "lib/netns.h"

namespace kr::netlink {
namespace {

using kr::testing::InNetns;
using kr::testing::Netns;

IpAddress A(const char* text) { return *IpAddress::Parse(text); }

class LinksNetnsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(kr::testing::IsRoot()) << "the netns tier runs as root";
    auto links = InNetns(ns_.name(), [] { return MakeNetlinkLinks(); });
    ASSERT_TRUE(links.ok()) << links.error();
    links_ = std::move(*links);
  }
  std::string Ip(const std::string& args) {
    auto out = ns_.Sh("ip " + args);
    EXPECT_TRUE(out.ok()) << out.error();
    return out.ok() ? *out : "";
  }

  Netns ns_{"krnl"};
  std::unique_ptr<Links> links_;
};

TEST_F(LinksNetnsTest, ListsTheNamespacesOwnLinksOnly) {
  auto list = links_->List();
  ASSERT_TRUE(list.ok()) << list.error();
  ASSERT_EQ(list->size(), 1u) << "a fresh namespace holds only lo";
  EXPECT_EQ(list->front().name, "lo");
  EXPECT_TRUE(list->front().up);
}

TEST_F(LinksNetnsTest, BridgeLifecycleSeenByIproute2) {
  ASSERT_TRUE(links_->CreateBridge(kKubeBridgeName, 1450).ok());
  EXPECT_FALSE(links_->CreateBridge(kKubeBridgeName, 1450).ok()) << "exists already";
  auto bridge = links_->Get(kKubeBridgeName);
  ASSERT_TRUE(bridge.ok() && bridge->has_value());
  EXPECT_EQ((*bridge)->kind, "bridge");
  EXPECT_EQ((*bridge)->mtu, 1450u);
  EXPECT_FALSE((*bridge)->up);
  EXPECT_NE(Ip("-d link show kube-bridge").find("bridge"), std::string::npos);

  ASSERT_TRUE(links_->SetUp(kKubeBridgeName, true).ok());
  ASSERT_TRUE(links_->SetMtu(kKubeBridgeName, 1400).ok());
  bridge = links_->Get(kKubeBridgeName);
  EXPECT_TRUE((*bridge)->up);
  EXPECT_EQ((*bridge)->mtu, 1400u);
  EXPECT_NE(Ip("link show kube-bridge").find("mtu 1400"), std::string::npos);
  ASSERT_TRUE(links_->SetUp(kKubeBridgeName, false).ok());
  EXPECT_FALSE((*links_->Get(kKubeBridgeName))->up);

  ASSERT_TRUE(links_->Delete(kKubeBridgeName).ok());
  EXPECT_FALSE(links_->Get(kKubeBridgeName)->has_value());
  EXPECT_FALSE(links_->Delete(kKubeBridgeName).ok());
  EXPECT_FALSE(links_->SetMtu(kKubeBridgeName, 1400).ok());
}

TEST_F(LinksNetnsTest, AddressesOnTheBridge) {
  ASSERT_TRUE(links_->CreateBridge(kKubeBridgeName, 0).ok());
  Address v4{kKubeBridgeName, A("10.244.1.1"), 24};
  Address v6{kKubeBridgeName, A("fd00:244:1::1"), 64};
  Address vip{kKubeBridgeName, A("10.96.0.10"), 32, Scope::kLink};
  for (const Address& a : {v4, v6, vip}) ASSERT_TRUE(links_->AddAddress(a).ok()) << a.ToString();
  EXPECT_FALSE(links_->AddAddress(v4).ok()) << "duplicate";

  const std::string shown = Ip("addr show dev kube-bridge");
  EXPECT_NE(shown.find("inet 10.244.1.1/24"), std::string::npos) << shown;
  EXPECT_NE(shown.find("inet6 fd00:244:1::1/64"), std::string::npos) << shown;
  EXPECT_NE(shown.find("inet 10.96.0.10/32 scope link"), std::string::npos) << shown;

  auto listed = links_->ListAddresses(kKubeBridgeName);
  ASSERT_TRUE(listed.ok()) << listed.error();
  for (const Address& want : {v4, v6, vip}) {
    EXPECT_NE(std::find(listed->begin(), listed->end(), want), listed->end()) << want.ToString();
  }
  auto everywhere = links_->ListAddresses("");
  ASSERT_TRUE(everywhere.ok());
  EXPECT_GT(everywhere->size(), listed->size()) << "lo's 127.0.0.1 is listed too";

  ASSERT_TRUE(links_->DeleteAddress(vip).ok());
  EXPECT_FALSE(links_->DeleteAddress(vip).ok());
  EXPECT_EQ(Ip("addr show dev kube-bridge").find("10.96.0.10"), std::string::npos);
  EXPECT_FALSE(links_->AddAddress({"no-such-link", A("10.9.0.1"), 24}).ok());
}

// AddAddresses packs the requests into batched sendmsg calls (256 each): across batch
// boundaries every address is in, and only the refused ones (an existing address, a missing
// link, a bad prefix) are reported, by index, the rest unaffected.
TEST_F(LinksNetnsTest, AddAddressesInBatchesReportsOnlyTheRefusedOnes) {
  ASSERT_TRUE(links_->CreateBridge(kKubeBridgeName, 0).ok());
  ASSERT_TRUE(links_->AddAddress({kKubeBridgeName, A("10.96.1.7"), 32, Scope::kLink}).ok());
  std::vector<Address> addresses;
  for (uint32_t i = 0; i < 600; ++i) {  // 10.96.0.0 .. 10.96.2.87: three batches
    const std::string ip = "10.96." + std::to_string(i / 256) + "." + std::to_string(i % 256);
    addresses.push_back({kKubeBridgeName, A(ip.c_str()), 32, Scope::kLink});
  }
  addresses[300].device = "no-such-link";
  addresses[500].prefix_length = 33;
  auto refused = links_->AddAddresses(addresses);
  ASSERT_TRUE(refused.ok()) << refused.error();
  std::vector<size_t> indexes;
  for (const auto& e : *refused) indexes.push_back(e.index);
  EXPECT_EQ(indexes, (std::vector<size_t>{263, 300, 500}));  // 10.96.1.7 existed
  ASSERT_EQ(refused->size(), 3u);
  EXPECT_NE((*refused)[0].message.find("exists"), std::string::npos) << (*refused)[0].message;
  auto listed = links_->ListAddresses(kKubeBridgeName);
  ASSERT_TRUE(listed.ok()) << listed.error();
  EXPECT_EQ(listed->size(), 598u) << "597 new, 10.96.1.7 from before";
  for (size_t i : {size_t{0}, size_t{255}, size_t{256}, size_t{511}, size_t{512}, size_t{599}}) {
    EXPECT_NE(std::find(listed->begin(), listed->end(), addresses[i]), listed->end())
        << addresses[i].ToString();
  }
  auto empty = links_->AddAddresses({});
  ASSERT_TRUE(empty.ok());
  EXPECT_TRUE(empty->empty());
}

TEST_F(LinksNetnsTest, SeesLinksMadeByOthers) {
  Ip("link add kr-v0 mtu 1300 type veth peer name kr-v1");
  auto veth = links_->Get("kr-v0");
  ASSERT_TRUE(veth.ok() && veth->has_value());
  EXPECT_EQ((*veth)->kind, "veth");
  EXPECT_EQ((*veth)->mtu, 1300u);
  EXPECT_GT((*veth)->index, 1);
}

TEST_F(LinksNetnsTest, SysctlReadsTheNamespaceItWasOpenedIn) {
  // /proc/sys/net follows the namespace of the thread that opens the file.
  auto sysctl = MakeProcSysctl();
  Status set = InNetns(ns_.name(), [&] { return sysctl->Set("net.ipv4.ip_forward", "1"); });
  ASSERT_TRUE(set.ok()) << set.message();
  auto inside = InNetns(ns_.name(), [&] { return sysctl->Get("net.ipv4.ip_forward"); });
  ASSERT_TRUE(inside.ok());
  EXPECT_EQ(*inside, "1");
  auto by_tool = ns_.Sh("cat /proc/sys/net/ipv4/ip_forward");
  ASSERT_TRUE(by_tool.ok());
  EXPECT_EQ(*by_tool, "1\n");
}

}  // namespace
}  // namespace kr::netlink
