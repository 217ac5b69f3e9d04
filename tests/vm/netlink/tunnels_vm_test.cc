// IPIP / ip6ip6 tunnels and dummy links (modules the host kernel lacks) against the guest
// kernel, plus the overlay routes through them.
#include <gtest/gtest.h>

#include "kube_router/netlink/libnl.h"
#include "lib/netns.h"
#include "netns/netlink/in_netns.h"

namespace kr::netlink {
namespace {

using kr::testing::InNetns;
using kr::testing::Netns;

IpAddress A(const char* text) { return *IpAddress::Parse(text); }

class TunnelsVmTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(kr::testing::IsRoot());
    auto links = InNetns(ns_.name(), [] { return MakeNetlinkLinks(); });
    auto routes = InNetns(ns_.name(), [] { return MakeNetlinkRouteTable(); });
    ASSERT_TRUE(links.ok()) << links.error();
    ASSERT_TRUE(routes.ok()) << routes.error();
    links_ = std::move(*links);
    routes_ = std::move(*routes);
  }
  std::string Ip(const std::string& args) {
    auto out = ns_.Sh("ip " + args);
    EXPECT_TRUE(out.ok()) << out.error();
    return out.ok() ? *out : "";
  }
  static bool Has(const std::string& text, const std::string& what) {
    return text.find(what) != std::string::npos;
  }

  Netns ns_{"krtn"};
  std::unique_ptr<Links> links_;
  std::unique_ptr<RouteTable> routes_;
};

TEST_F(TunnelsVmTest, OverlayTunnelToARemoteNodeAndARouteThroughIt) {
  const IpAddress node = A("192.0.2.1"), remote = A("198.51.100.2");
  const std::string name = OverlayTunnelName(remote);
  ASSERT_TRUE(links_->CreateTunnel({name, node, remote, 1400}).ok());
  EXPECT_FALSE(links_->CreateTunnel({name, node, remote}).ok()) << "exists";
  ASSERT_TRUE(links_->SetUp(name, true).ok());

  const std::string shown = Ip("-d link show " + name);
  EXPECT_TRUE(Has(shown, "mtu 1400")) << shown;
  EXPECT_TRUE(Has(shown, "remote 198.51.100.2 local 192.0.2.1")) << shown;
  auto link = links_->Get(name);
  ASSERT_TRUE(link.ok() && link->has_value());
  EXPECT_EQ((*link)->kind, "ipip");
  EXPECT_EQ((*link)->tunnel_local, node);
  EXPECT_EQ((*link)->tunnel_remote, remote);
  EXPECT_TRUE((*link)->up);

  // kube-router's overlay route: pod CIDR of the remote node via the tunnel, node IP as source.
  Ip("link add kr-u0 type dummy && ip link set kr-u0 up && ip addr add 192.0.2.1/24 dev kr-u0");
  Route pods;
  pods.destination = *IpPrefix::Parse("10.244.7.0/24");
  pods.device = name;
  pods.source = node;
  Status added = routes_->Add(pods);
  ASSERT_TRUE(added.ok()) << added.message();
  EXPECT_TRUE(
      Has(Ip("route show proto 17"), "10.244.7.0/24 dev " + name + " scope link src 192.0.2.1") ||
      Has(Ip("route show proto 17"), "10.244.7.0/24 dev " + name + " src 192.0.2.1"))
      << Ip("route show proto 17");

  ASSERT_TRUE(links_->Delete(name).ok());
  EXPECT_FALSE(links_->Get(name)->has_value());
  EXPECT_FALSE(Has(Ip("route show proto 17"), "10.244.7.0/24")) << "the route goes with the tunnel";
}

TEST_F(TunnelsVmTest, Ip6Ip6Tunnel) {
  const std::string name = OverlayTunnelName(A("fd00:198::2"));
  ASSERT_TRUE(links_->CreateTunnel({name, A("fd00:192::1"), A("fd00:198::2")}).ok());
  auto link = links_->Get(name);
  ASSERT_TRUE(link.ok() && link->has_value());
  EXPECT_EQ((*link)->kind, "ip6tnl");
  EXPECT_EQ((*link)->tunnel_remote, A("fd00:198::2"));
  const std::string shown = Ip("-d link show " + name);
  EXPECT_TRUE(Has(shown, "ip6ip6 remote fd00:198::2 local fd00:192::1")) << shown;
}

TEST_F(TunnelsVmTest, DummyLinkHoldsServiceVipsWithLocalRoutes) {
  ASSERT_TRUE(links_->CreateDummy(kKubeDummyName).ok());
  ASSERT_TRUE(links_->SetUp(kKubeDummyName, true).ok());
  auto link = links_->Get(kKubeDummyName);
  ASSERT_TRUE(link.ok() && link->has_value());
  EXPECT_EQ((*link)->kind, "dummy");

  Address vip{kKubeDummyName, A("10.96.0.10"), 32, Scope::kLink};
  ASSERT_TRUE(links_->AddAddress(vip).ok());
  Route local;
  local.destination = *IpPrefix::Parse("10.96.0.10/32");
  local.device = kKubeDummyName;
  local.table = kLocalTable;
  local.type = RouteType::kLocal;
  local.scope = Scope::kHost;
  local.protocol = kProtocolKernel;
  Status replaced = routes_->Replace(local);
  ASSERT_TRUE(replaced.ok()) << replaced.message();
  EXPECT_TRUE(Has(Ip("route show table local"),
                  "local 10.96.0.10 dev kube-dummy-if proto kernel scope host"))
      << Ip("route show table local");
  ASSERT_TRUE(links_->Delete(kKubeDummyName).ok());
}

}  // namespace
}  // namespace kr::netlink
