#include "route_codec.h"

#include <gtest/gtest.h>
#include <linux/rtnetlink.h>
#include <netlink/route/route.h>

namespace kr::netlink::detail::route_codec_test {
namespace {

IpAddress A(const char* text) { return *IpAddress::Parse(text); }

constexpr int kEth0Index = 7;
std::string NameOf(int ifindex) { return ifindex == kEth0Index ? "eth0" : "?"; }

// Builds the request and decodes it again with libnl's own parser.
Route RoundTrip(const RouteChange& change, int ifindex, uint16_t* type = nullptr,
                uint16_t* flags = nullptr) {
  auto msg = BuildRouteRequest(change, ifindex);
  EXPECT_TRUE(msg.ok()) << msg.error();
  nlmsghdr* hdr = nlmsg_hdr(msg->get());
  if (type) *type = hdr->nlmsg_type;
  if (flags) *flags = hdr->nlmsg_flags;
  rtnl_route* parsed = nullptr;
  EXPECT_EQ(rtnl_route_parse(hdr, &parsed), 0);
  auto route = RouteFromKernel(parsed, NameOf);
  rtnl_route_put(parsed);
  EXPECT_TRUE(route.has_value());
  return route.value_or(Route{});
}

TEST(RouteCodec, AddCarriesEveryField) {
  Route r;
  r.destination = *IpPrefix::Parse("10.1.0.0/24");
  r.gateway = A("192.0.2.2");
  r.device = "eth0";
  r.source = A("192.0.2.1");
  r.table = kKubeRouterOverlayTable;
  r.metric = 5;
  r.onlink = true;
  uint16_t type = 0, flags = 0;
  EXPECT_EQ(RoundTrip({RouteChange::Op::kAdd, r}, kEth0Index, &type, &flags), r);
  EXPECT_EQ(type, RTM_NEWROUTE);
  const uint16_t want = NLM_F_REQUEST | NLM_F_CREATE | NLM_F_EXCL | NLM_F_ACK;
  EXPECT_EQ(flags & want, want) << "without NLM_F_REQUEST the kernel ignores the request";
  EXPECT_EQ(flags & NLM_F_REPLACE, 0);
}

TEST(RouteCodec, ReplaceOfLocalIpv6RouteWithHostScope) {
  Route r;
  r.destination = *IpPrefix::Parse("fd00:96::10/128");
  r.device = "eth0";
  r.table = kLocalTable;
  r.type = RouteType::kLocal;
  r.scope = Scope::kHost;
  r.protocol = kProtocolKernel;
  uint16_t flags = 0;
  EXPECT_EQ(RoundTrip({RouteChange::Op::kReplace, r}, kEth0Index, nullptr, &flags), r);
  EXPECT_EQ(flags & NLM_F_REPLACE, NLM_F_REPLACE);
  EXPECT_EQ(flags & NLM_F_EXCL, 0);
}

TEST(RouteCodec, DeleteNamesOnlyTheIdentityAnyScope) {
  Route r;
  r.destination = *IpPrefix::Parse("10.1.0.0/24");
  r.gateway = A("192.0.2.2");
  r.device = "eth0";
  r.metric = 3;
  uint16_t type = 0;
  Route sent = RoundTrip({RouteChange::Op::kDelete, r}, 0, &type);
  EXPECT_EQ(type, RTM_DELROUTE);
  EXPECT_EQ(sent.destination, r.destination);
  EXPECT_EQ(sent.metric, 3u);
  EXPECT_EQ(sent.protocol, kKubeRouterRouteProtocol);
  EXPECT_FALSE(sent.gateway.has_value());
  EXPECT_TRUE(sent.device.empty());
  EXPECT_EQ(sent.scope, Scope::kNowhere);
}

TEST(RouteCodec, DefaultRouteAndMixedFamilies) {
  Route r;
  r.destination = *IpPrefix::Parse("0.0.0.0/0");
  r.gateway = A("192.0.2.254");
  EXPECT_EQ(RoundTrip({RouteChange::Op::kAdd, r}, 0), r);
  r.gateway = A("fd00::1");
  EXPECT_FALSE(BuildRouteRequest({RouteChange::Op::kAdd, r}, 0).ok());
}

}  // namespace
}  // namespace kr::netlink::detail::route_codec_test
