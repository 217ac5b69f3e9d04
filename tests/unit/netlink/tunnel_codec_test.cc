// The tunnel request we send reads back as the tunnel we asked for (the same attributes the
// kernel reports in a link dump), encapsulation included.
#include "tunnel_codec.h"

#include <gtest/gtest.h>
#include <linux/if_link.h>
#include <linux/if_tunnel.h>
#include <linux/rtnetlink.h>
#include <netinet/in.h>
#include <netlink/attr.h>

namespace kr::netlink::tunnel_codec_test {
namespace {

IpAddress Ip(const std::string& text) { return *IpAddress::Parse(text); }

Link RoundTrip(const TunnelSpec& spec) {
  auto msg = detail::BuildTunnelRequest(spec);
  EXPECT_TRUE(msg.ok()) << msg.error();
  Link link;
  if (msg.ok()) detail::ParseTunnelInfo(nlmsg_hdr(msg->get()), link);
  return link;
}

detail::MsgPtr Build(const TunnelSpec& spec) {
  auto msg = detail::BuildTunnelRequest(spec);
  EXPECT_TRUE(msg.ok());
  return msg.ok() ? std::move(*msg) : nullptr;
}

// The IFLA_INFO_DATA attributes of a built request.
struct Data {
  explicit Data(const TunnelSpec& spec) : msg(Build(spec)) {
    nlattr* top[IFLA_MAX + 1] = {};
    nlattr* info[IFLA_INFO_MAX + 1] = {};
    EXPECT_EQ(nlmsg_parse(nlmsg_hdr(msg.get()), sizeof(ifinfomsg), top, IFLA_MAX, nullptr), 0);
    EXPECT_EQ(nla_parse_nested(info, IFLA_INFO_MAX, top[IFLA_LINKINFO], nullptr), 0);
    EXPECT_EQ(nla_parse_nested(attrs, IFLA_IPTUN_MAX, info[IFLA_INFO_DATA], nullptr), 0);
    EXPECT_EQ(nlmsg_hdr(msg.get())->nlmsg_flags & (NLM_F_CREATE | NLM_F_EXCL),
              NLM_F_CREATE | NLM_F_EXCL);
  }
  detail::MsgPtr msg;
  nlattr* attrs[IFLA_IPTUN_MAX + 1] = {};
};

TEST(TunnelCodecTest, PlainIpipTunnel) {
  Link link = RoundTrip({"tun-A", Ip("192.0.2.1"), Ip("198.51.100.2"), 0, 0, {}});
  EXPECT_EQ(link.kind, "ipip");
  EXPECT_EQ(link.tunnel_local, Ip("192.0.2.1"));
  EXPECT_EQ(link.tunnel_remote, Ip("198.51.100.2"));
  EXPECT_EQ(link.tunnel_encap, TunnelEncap{});
  Data data({"tun-A", Ip("192.0.2.1"), Ip("198.51.100.2"), 0, 0, {}});
  EXPECT_EQ(data.attrs[IFLA_IPTUN_ENCAP_TYPE], nullptr);
}

TEST(TunnelCodecTest, GueEncapsulatedIpipTunnel) {
  TunnelSpec spec{
      "tun-B", Ip("192.0.2.1"), Ip("198.51.100.2"), 0, 0, {TunnelEncapType::kGue, 0, 5555}};
  Link link = RoundTrip(spec);
  EXPECT_EQ(link.kind, "ipip");
  EXPECT_EQ(link.tunnel_encap, spec.encap);
  Data data(spec);
  // Ports in network order, as the kernel wants them; no UDP checksum over IPv4.
  EXPECT_EQ(nla_get_u16(data.attrs[IFLA_IPTUN_ENCAP_DPORT]), htons(5555));
  EXPECT_EQ(nla_get_u16(data.attrs[IFLA_IPTUN_ENCAP_FLAGS]), 0);
}

TEST(TunnelCodecTest, Ip6ip6TunnelWithGueAndAnIpv6UdpChecksum) {
  TunnelSpec spec{
      "tun-C", Ip("2001:db8:1::1"), Ip("2001:db8:2::2"), 0, 0, {TunnelEncapType::kGue, 0, 6000}};
  Link link = RoundTrip(spec);
  EXPECT_EQ(link.kind, "ip6tnl");
  EXPECT_EQ(link.tunnel_local, Ip("2001:db8:1::1"));
  EXPECT_EQ(link.tunnel_remote, Ip("2001:db8:2::2"));
  EXPECT_EQ(link.tunnel_encap, spec.encap);
  Data data(spec);
  EXPECT_EQ(nla_get_u8(data.attrs[IFLA_IPTUN_PROTO]), IPPROTO_IPV6);  // mode ip6ip6
  EXPECT_EQ(nla_get_u16(data.attrs[IFLA_IPTUN_ENCAP_FLAGS]), TUNNEL_ENCAP_FLAG_CSUM6);
}

TEST(TunnelCodecTest, BadSpecsAreRefused) {
  EXPECT_FALSE(detail::BuildTunnelRequest({"tun-D", Ip("192.0.2.1"), Ip("2001:db8::2")}).ok());
  EXPECT_FALSE(
      detail::BuildTunnelRequest({"a-name-far-too-long", Ip("192.0.2.1"), Ip("192.0.2.2")}).ok());
  EXPECT_FALSE(detail::BuildTunnelRequest(
                   {"tun-E", Ip("192.0.2.1"), Ip("192.0.2.2"), 0, 0, {TunnelEncapType::kGue, 0, 0}})
                   .ok());
}

TEST(TunnelCodecTest, OtherLinksAreLeftAlone) {
  Link link;
  link.kind = "bridge";
  detail::MsgPtr msg(nlmsg_alloc_simple(RTM_NEWLINK, 0));
  ifinfomsg header{};
  ASSERT_EQ(nlmsg_append(msg.get(), &header, sizeof(header), NLMSG_ALIGNTO), 0);
  nlattr* info = nla_nest_start(msg.get(), IFLA_LINKINFO);
  ASSERT_EQ(nla_put_string(msg.get(), IFLA_INFO_KIND, "bridge"), 0);
  nla_nest_end(msg.get(), info);
  detail::ParseTunnelInfo(nlmsg_hdr(msg.get()), link);
  EXPECT_EQ(link.kind, "bridge");
  EXPECT_FALSE(link.tunnel_local);
}

}  // namespace
}  // namespace kr::netlink::tunnel_codec_test
