// RouteTable against the real host kernel in a throwaway namespace, checked with iproute2.
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>

#include "in_netns.h"
#include "kube_router/netlink/libnl.h"
#include "lib/netns.h"

namespace kr::netlink::routes_netns_test {
namespace {

using kr::testing::InNetns;
using kr::testing::Netns;

IpAddress A(const char* text) { return *IpAddress::Parse(text); }
IpPrefix P(const std::string& text) { return *IpPrefix::Parse(text); }

class RoutesNetnsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(kr::testing::IsRoot()) << "the netns tier runs as root";
    // An "underlay": a veth whose far end stays in the same namespace.
    ASSERT_TRUE(ns_.Sh("ip link add kr-v0 type veth peer name kr-v1 && "
                       "ip link set kr-v0 up && ip link set kr-v1 up && "
                       "ip addr add 192.0.2.1/24 dev kr-v0 && "
                       "ip addr add fd00:192::1/64 dev kr-v0 nodad")
                    .ok());
    auto table = InNetns(ns_.name(), [] { return MakeNetlinkRouteTable(); });
    ASSERT_TRUE(table.ok()) << table.error();
    table_ = std::move(*table);
  }
  std::string Ip(const std::string& args) {
    auto out = ns_.Sh("ip " + args);
    EXPECT_TRUE(out.ok()) << out.error();
    return out.ok() ? *out : "";
  }
  std::vector<Route> Ours() {
    RouteFilter filter;
    filter.protocol = kKubeRouterRouteProtocol;
    auto routes = table_->List(filter);
    EXPECT_TRUE(routes.ok()) << routes.error();
    return routes.ok() ? *routes : std::vector<Route>{};
  }

  Netns ns_{"krrt"};
  std::unique_ptr<RouteTable> table_;
};

Route Via(const std::string& cidr, const char* gateway) {
  Route r;
  r.destination = P(cidr);
  r.gateway = A(gateway);
  r.device = "kr-v0";
  return r;
}

TEST_F(RoutesNetnsTest, InstallsWhatKubeRouterInstallsAndListsItBack) {
  Route same_subnet = Via("10.244.1.0/24", "192.0.2.2");
  Route onlink = Via("10.244.2.0/24", "198.51.100.7");
  onlink.onlink = true;
  Route overlay_pbr;  // table 77: next hop reached through a device, with a preferred source
  overlay_pbr.destination = P("203.0.113.9/32");
  overlay_pbr.device = "kr-v0";
  overlay_pbr.table = kKubeRouterOverlayTable;
  overlay_pbr.source = A("192.0.2.1");
  Route v6 = Via("fd00:244:1::/64", "fd00:192::2");
  v6.metric = 1024;  // what the kernel makes of 0 for IPv6
  Route vip;         // a service VIP in the local table, as the proxy needs
  vip.destination = P("10.96.0.10/32");
  vip.device = "kr-v0";
  vip.table = kLocalTable;
  vip.type = RouteType::kLocal;
  vip.scope = Scope::kHost;
  vip.source = A("192.0.2.1");

  std::vector<RouteChange> batch;
  for (const Route& r : {same_subnet, onlink, overlay_pbr, v6, vip}) {
    batch.push_back({RouteChange::Op::kAdd, r});
  }
  auto errors = table_->Apply(batch);
  ASSERT_TRUE(errors.ok()) << errors.error();
  for (const auto& e : *errors)
    ADD_FAILURE() << batch[e.index].route.ToString() << ": " << e.message;

  const std::string shown = Ip("route show table all proto 17");
  EXPECT_NE(shown.find("10.244.1.0/24 via 192.0.2.2 dev kr-v0"), std::string::npos) << shown;
  EXPECT_NE(shown.find("10.244.2.0/24 via 198.51.100.7 dev kr-v0 onlink"), std::string::npos)
      << shown;
  EXPECT_NE(shown.find("203.0.113.9 dev kr-v0 table 77 src 192.0.2.1"), std::string::npos) << shown;
  EXPECT_NE(shown.find("local 10.96.0.10 dev kr-v0 table local"), std::string::npos) << shown;
  EXPECT_NE(shown.find("fd00:244:1::/64 via fd00:192::2 dev kr-v0"), std::string::npos) << shown;

  std::vector<Route> listed = Ours();
  for (const Route& want : {same_subnet, onlink, overlay_pbr, v6, vip}) {
    EXPECT_NE(std::find(listed.begin(), listed.end(), want), listed.end())
        << "not listed as sent: " << want.ToString();
  }
  EXPECT_EQ(listed.size(), 5u);
}

TEST_F(RoutesNetnsTest, ReplaceDeleteAndPerChangeErrors) {
  ASSERT_TRUE(table_->Add(Via("10.244.1.0/24", "192.0.2.2")).ok());
  ASSERT_TRUE(table_->Replace(Via("10.244.1.0/24", "192.0.2.3")).ok());
  EXPECT_NE(Ip("route show 10.244.1.0/24").find("via 192.0.2.3"), std::string::npos);

  // A route of somebody else to another destination, and one we try to delete as if it were ours.
  Ip("route add 10.244.9.0/24 via 192.0.2.9 proto boot");
  Route not_ours = Via("10.244.9.0/24", "192.0.2.9");

  std::vector<RouteChange> batch = {
      {RouteChange::Op::kAdd, Via("10.244.1.0/24", "192.0.2.4")},    // exists
      {RouteChange::Op::kAdd, Via("10.244.3.0/24", "203.0.113.1")},  // gateway not on link
      {RouteChange::Op::kDelete, not_ours},                          // protocol differs
      {RouteChange::Op::kAdd, Via("10.244.4.0/24", "192.0.2.4")},    // fine
  };
  batch[1].route.device = "";
  Route missing_dev = Via("10.244.5.0/24", "192.0.2.5");
  missing_dev.device = "kr-nope";
  batch.push_back({RouteChange::Op::kAdd, missing_dev});
  auto errors = table_->Apply(batch);
  ASSERT_TRUE(errors.ok()) << errors.error();
  std::vector<size_t> failed;
  for (const auto& e : *errors) failed.push_back(e.index);
  EXPECT_EQ(failed, (std::vector<size_t>{0, 1, 2, 4}));
  EXPECT_NE(Ip("route show 10.244.9.0/24").find("via 192.0.2.9"), std::string::npos)
      << "the other owner's route survives";
  EXPECT_NE(Ip("route show 10.244.4.0/24").find("via 192.0.2.4"), std::string::npos);

  ASSERT_TRUE(table_->Delete(Via("10.244.1.0/24", "192.0.2.3")).ok());
  ASSERT_TRUE(table_->Delete(Via("10.244.4.0/24", "192.0.2.4")).ok());
  EXPECT_TRUE(Ours().empty());
  EXPECT_FALSE(table_->Delete(Via("10.244.4.0/24", "192.0.2.4")).ok());
}

TEST_F(RoutesNetnsTest, LargeBatchesSpanSeveralSendsAndAllAcksAreMatched) {
  // 2,000 routes: eight windows of 256 requests per sendmsg.
  std::vector<RouteChange> adds;
  for (int i = 0; i < 2000; ++i) {
    std::string cidr =
        "10." + std::to_string(100 + i / 256) + "." + std::to_string(i % 256) + ".0/24";
    adds.push_back({RouteChange::Op::kAdd, Via(cidr, "192.0.2.2")});
  }
  adds[1500].route.gateway = A("203.0.113.1");  // unreachable: exactly this one fails
  auto errors = table_->Apply(adds);
  ASSERT_TRUE(errors.ok()) << errors.error();
  ASSERT_EQ(errors->size(), 1u);
  EXPECT_EQ(errors->front().index, 1500u);
  EXPECT_EQ(Ours().size(), 1999u);
  auto count = ns_.Sh("ip route show proto 17 | wc -l");
  ASSERT_TRUE(count.ok());
  EXPECT_EQ(std::stoi(*count), 1999);

  std::vector<RouteChange> deletes;
  for (auto change : adds) {
    change.op = RouteChange::Op::kDelete;
    deletes.push_back(change);
  }
  errors = table_->Apply(deletes);
  ASSERT_TRUE(errors.ok());
  ASSERT_EQ(errors->size(), 1u) << "only the route that was never added";
  EXPECT_TRUE(Ours().empty());
}

// The kernel answers a non-strict route dump (libnl's) with its cached next-hop exceptions
// too: a PMTU exception is a /32 (/128) "route" of protocol 0 without a gateway. Taken for a
// route, it looked like a connected node subnet inside a peer's pod CIDR, and the routing
// controller refused that peer's pod CIDR once traffic through a tunnel had made one.
TEST_F(RoutesNetnsTest, CachedPathMtuExceptionsAreNotListedAsRoutes) {
  Netns router("krrtr");
  const std::string link = "ip link add kr-p0 type veth peer name kr-p1 netns " + router.name();
  ASSERT_TRUE(ns_.Sh(link + " && ip link set kr-p0 up && "
                            "ip addr add 198.51.100.1/24 dev kr-p0 && "
                            "ip addr add fd00:198::1/64 dev kr-p0 nodad && "
                            "ip route add 10.244.7.0/24 via 198.51.100.2 proto boot && "
                            "ip route add fd00:244:7::/64 via fd00:198::2 proto boot")
                  .ok());
  // The router forwards both prefixes onto a 1280-byte link, so 1400-byte packets that may
  // not be fragmented come back as "fragmentation needed" / "packet too big".
  ASSERT_TRUE(router
                  .Sh("ip link set kr-p1 up && ip addr add 198.51.100.2/24 dev kr-p1 && "
                      "ip addr add fd00:198::2/64 dev kr-p1 nodad && "
                      "ip link add kr-n0 mtu 1280 type veth peer name kr-n1 mtu 1280 && "
                      "ip link set kr-n0 up && ip link set kr-n1 up && "
                      "ip route add 10.244.7.0/24 dev kr-n0 && "
                      "ip route add fd00:244:7::/64 dev kr-n0 && "
                      "sysctl -qw net.ipv4.ip_forward=1 net.ipv6.conf.all.forwarding=1")
                  .ok());
  const std::string send_big_datagrams = R"(python3 -c '
import socket
for family, host, level, opt in ((socket.AF_INET, "10.244.7.5", socket.IPPROTO_IP, 10),
                                 (socket.AF_INET6, "fd00:244:7::5", socket.IPPROTO_IPV6, 23)):
    s = socket.socket(family, socket.SOCK_DGRAM)
    s.setsockopt(level, opt, 2)  # IP(V6)_MTU_DISCOVER = IP(V6)_PMTUDISC_DO
    try:
        s.sendto(b"x" * 1400, (host, 9))
    except OSError:
        pass  # the exception is already known: EMSGSIZE
')";
  auto cached = [&] {
    auto v4 = ns_.Sh("ip route show cache 10.244.7.5");
    auto v6 = ns_.Sh("ip -6 route show cache fd00:244:7::5");
    return v4.ok() && v6.ok() && v4->find("mtu 1280") != std::string::npos &&
           v6->find("mtu 1280") != std::string::npos;
  };
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  while (!cached() && std::chrono::steady_clock::now() < deadline) {
    ASSERT_TRUE(ns_.Sh(send_big_datagrams).ok());
  }
  ASSERT_TRUE(cached()) << "the kernel made no PMTU exceptions; nothing to check";

  for (auto family : {IpAddress::Family::kV4, IpAddress::Family::kV6}) {
    RouteFilter filter;
    filter.family = family;
    filter.table = kMainTable;
    auto routes = table_->List(filter);
    ASSERT_TRUE(routes.ok()) << routes.error();
    bool has_prefix = false;
    for (const Route& route : *routes) {
      EXPECT_NE(route.destination.length(), route.destination.address().bit_length())
          << "a cached exception listed as a route: " << route.destination.ToString();
      has_prefix |= route.destination ==
                    P(family == IpAddress::Family::kV4 ? "10.244.7.0/24" : "fd00:244:7::/64");
    }
    EXPECT_TRUE(has_prefix) << "the route the exception hangs off is still listed";
  }
}

}  // namespace
}  // namespace kr::netlink::routes_netns_test
