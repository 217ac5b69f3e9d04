#include "ipvs_codec.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <linux/ip_vs.h>
#include <netlink/attr.h>
#include <netlink/genl/genl.h>

namespace kr::netlink::detail::ipvs_codec_test {
namespace {

IpAddress A(const char* text) { return *IpAddress::Parse(text); }
constexpr int kFamily = 42;  // any generic-netlink family id

struct Parsed {
  uint8_t command = 0;
  nlattr* tb[IPVS_CMD_ATTR_MAX + 1] = {};
};

Parsed Parse(nl_msg* msg) {
  Parsed p;
  nlmsghdr* hdr = nlmsg_hdr(msg);
  EXPECT_EQ(hdr->nlmsg_type, kFamily);
  p.command = static_cast<genlmsghdr*>(nlmsg_data(hdr))->cmd;
  EXPECT_EQ(genlmsg_parse(hdr, 0, p.tb, IPVS_CMD_ATTR_MAX, nullptr), 0);
  return p;
}

TEST(IpvsCodec, NewServiceRoundTrips) {
  IpvsService svc{A("10.96.0.10"),
                  IpvsProtocol::kUdp,
                  53,
                  0,
                  "sh",
                  ipvs_flags::kPersistent | ipvs_flags::kSchedFlag2,
                  10800};
  auto msg = BuildIpvsRequest(kFamily, IPVS_CMD_NEW_SERVICE, 0, &svc, nullptr, true);
  ASSERT_TRUE(msg.ok()) << msg.error();
  Parsed p = Parse(msg->get());
  EXPECT_EQ(p.command, IPVS_CMD_NEW_SERVICE);
  auto back = ParseIpvsService(p.tb[IPVS_CMD_ATTR_SERVICE]);
  ASSERT_TRUE(back.ok()) << back.error();
  EXPECT_EQ(*back, svc);

  // The kernel needs the netmask of a full entry: one address for IPv4.
  nlattr* svc_tb[IPVS_SVC_ATTR_MAX + 1] = {};
  ASSERT_EQ(nla_parse_nested(svc_tb, IPVS_SVC_ATTR_MAX, p.tb[IPVS_CMD_ATTR_SERVICE], nullptr), 0);
  ASSERT_NE(svc_tb[IPVS_SVC_ATTR_NETMASK], nullptr);
  EXPECT_EQ(nla_get_u32(svc_tb[IPVS_SVC_ATTR_NETMASK]), 0xffffffffu);
  EXPECT_EQ(nla_get_u16(svc_tb[IPVS_SVC_ATTR_PORT]), htons(53));
}

TEST(IpvsCodec, FwmarkIpv6ServiceRoundTrips) {
  IpvsService svc;
  svc.address = A("::");
  svc.fwmark = 0x3fff;
  svc.scheduler = "mh";
  auto msg = BuildIpvsRequest(kFamily, IPVS_CMD_NEW_SERVICE, 0, &svc, nullptr, true);
  ASSERT_TRUE(msg.ok());
  Parsed p = Parse(msg->get());
  auto back = ParseIpvsService(p.tb[IPVS_CMD_ATTR_SERVICE]);
  ASSERT_TRUE(back.ok()) << back.error();
  EXPECT_EQ(*back, svc);
  EXPECT_TRUE(back->is_v6());
}

TEST(IpvsCodec, DestinationCommandNamesServiceByIdentityOnly) {
  IpvsService svc{A("fd00:96::1"), IpvsProtocol::kTcp, 443};
  IpvsDestination dest{A("fd00:1::5"), 8443, IpvsForward::kTunnel, 3, 100, 10};
  auto msg = BuildIpvsRequest(kFamily, IPVS_CMD_NEW_DEST, 0, &svc, &dest, true);
  ASSERT_TRUE(msg.ok());
  Parsed p = Parse(msg->get());
  nlattr* svc_tb[IPVS_SVC_ATTR_MAX + 1] = {};
  ASSERT_EQ(nla_parse_nested(svc_tb, IPVS_SVC_ATTR_MAX, p.tb[IPVS_CMD_ATTR_SERVICE], nullptr), 0);
  EXPECT_EQ(svc_tb[IPVS_SVC_ATTR_SCHED_NAME], nullptr);
  EXPECT_NE(svc_tb[IPVS_SVC_ATTR_PORT], nullptr);
  auto back = ParseIpvsDestination(p.tb[IPVS_CMD_ATTR_DEST], IpAddress::Family::kV6);
  ASSERT_TRUE(back.ok()) << back.error();
  EXPECT_TRUE(back->SameConfig(dest));
}

TEST(IpvsCodec, DeleteCarriesNoAttributesBeyondIdentity) {
  IpvsService svc{A("10.96.0.1"), IpvsProtocol::kTcp, 443};
  IpvsDestination dest{A("10.1.0.5"), 8443};
  auto msg = BuildIpvsRequest(kFamily, IPVS_CMD_DEL_DEST, 0, &svc, &dest, false);
  ASSERT_TRUE(msg.ok());
  Parsed p = Parse(msg->get());
  nlattr* dest_tb[IPVS_DEST_ATTR_MAX + 1] = {};
  ASSERT_EQ(nla_parse_nested(dest_tb, IPVS_DEST_ATTR_MAX, p.tb[IPVS_CMD_ATTR_DEST], nullptr), 0);
  EXPECT_EQ(dest_tb[IPVS_DEST_ATTR_WEIGHT], nullptr);
  EXPECT_NE(dest_tb[IPVS_DEST_ATTR_ADDR], nullptr);
}

TEST(IpvsCodec, TimeoutsOnlyCarryNonZeroValues) {
  auto msg = BuildIpvsTimeouts(kFamily, {900, 0, 300});
  ASSERT_TRUE(msg.ok());
  Parsed p = Parse(msg->get());
  EXPECT_EQ(p.command, IPVS_CMD_SET_CONFIG);
  ASSERT_NE(p.tb[IPVS_CMD_ATTR_TIMEOUT_TCP], nullptr);
  EXPECT_EQ(nla_get_u32(p.tb[IPVS_CMD_ATTR_TIMEOUT_TCP]), 900u);
  EXPECT_EQ(p.tb[IPVS_CMD_ATTR_TIMEOUT_TCP_FIN], nullptr);
  EXPECT_EQ(nla_get_u32(p.tb[IPVS_CMD_ATTR_TIMEOUT_UDP]), 300u);
}

TEST(IpvsCodec, ServiceCountersFromStats64) {
  MsgPtr msg(nlmsg_alloc());
  nlattr* service = nla_nest_start(msg.get(), IPVS_CMD_ATTR_SERVICE);
  nla_put_u16(msg.get(), IPVS_SVC_ATTR_AF, AF_INET);
  nlattr* stats = nla_nest_start(msg.get(), IPVS_SVC_ATTR_STATS64);
  nla_put_u64(msg.get(), IPVS_STATS_ATTR_CONNS, 7);
  nla_put_u64(msg.get(), IPVS_STATS_ATTR_INPKTS, 1ull << 40);  // beyond 32 bits
  nla_put_u64(msg.get(), IPVS_STATS_ATTR_OUTBYTES, 12345);
  nla_put_u64(msg.get(), IPVS_STATS_ATTR_CPS, 2);
  nla_nest_end(msg.get(), stats);
  nla_nest_end(msg.get(), service);
  auto parsed = ParseIpvsServiceStats(service);
  ASSERT_TRUE(parsed.ok()) << parsed.error();
  EXPECT_EQ(parsed->connections, 7u);
  EXPECT_EQ(parsed->packets_in, 1ull << 40);
  EXPECT_EQ(parsed->bytes_out, 12345u);
  EXPECT_EQ(parsed->connections_per_second, 2u);
  EXPECT_EQ(parsed->bytes_in, 0u) << "absent counters are zero";

  // A truncated counter is ignored rather than read past its end.
  MsgPtr bad(nlmsg_alloc());
  nlattr* bad_service = nla_nest_start(bad.get(), IPVS_CMD_ATTR_SERVICE);
  nlattr* bad_stats = nla_nest_start(bad.get(), IPVS_SVC_ATTR_STATS64);
  nla_put_u16(bad.get(), IPVS_STATS_ATTR_CONNS, 9);
  nla_nest_end(bad.get(), bad_stats);
  nla_nest_end(bad.get(), bad_service);
  auto truncated = ParseIpvsServiceStats(bad_service);
  ASSERT_TRUE(truncated.ok());
  EXPECT_EQ(truncated->connections, 0u);
}

TEST(IpvsCodec, MalformedAnswersAreErrorsNotCrashes) {
  EXPECT_FALSE(ParseIpvsService(nullptr).ok());
  // A service whose family attribute is one byte long, and one of an unknown family.
  for (int variant = 0; variant < 3; ++variant) {
    MsgPtr msg(nlmsg_alloc());
    nlattr* nest = nla_nest_start(msg.get(), IPVS_CMD_ATTR_SERVICE);
    if (variant == 0) {
      uint8_t short_af = AF_INET;
      nla_put(msg.get(), IPVS_SVC_ATTR_AF, 1, &short_af);
    } else if (variant == 1) {
      nla_put_u16(msg.get(), IPVS_SVC_ATTR_AF, 99);
    } else {
      nla_put_u16(msg.get(), IPVS_SVC_ATTR_AF, AF_INET6);
      uint8_t short_addr[4] = {10, 0, 0, 1};  // too short for IPv6
      nla_put(msg.get(), IPVS_SVC_ATTR_ADDR, sizeof(short_addr), short_addr);
      nla_put_u16(msg.get(), IPVS_SVC_ATTR_PROTOCOL, 6);
      nla_put_u16(msg.get(), IPVS_SVC_ATTR_PORT, htons(80));
    }
    nla_nest_end(msg.get(), nest);
    auto parsed = ParseIpvsService(nest);
    EXPECT_FALSE(parsed.ok()) << "variant " << variant;
  }
  MsgPtr msg(nlmsg_alloc());
  nlattr* nest = nla_nest_start(msg.get(), IPVS_CMD_ATTR_DEST);
  nla_put_u16(msg.get(), IPVS_DEST_ATTR_PORT, htons(80));
  nla_nest_end(msg.get(), nest);
  EXPECT_FALSE(ParseIpvsDestination(nest, IpAddress::Family::kV4).ok());
}

}  // namespace
}  // namespace kr::netlink::detail::ipvs_codec_test
