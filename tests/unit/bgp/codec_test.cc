// Byte-vector tests for the BGP codec: every message type and attribute, 2- and 4-octet AS
// paths, MP_REACH for IPv6, and each malformed case mapped to its RFC 7606 action.
#include "kube_router/bgp/codec.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <iterator>

#include "hex.h"

namespace kr::bgp {
namespace {

using testing::Hex;
using testing::kMarker;
using testing::ToHex;

IpAddress Ip(const char* s) { return *IpAddress::Parse(s); }
IpPrefix Pfx(const char* s) { return *IpPrefix::Parse(s); }

const CodecOptions kAs4{true};
const CodecOptions kAs2{false};

template <typename T>
T DecodeAs(const std::vector<uint8_t>& bytes, const CodecOptions& opt = kAs4) {
  auto r = Decode(bytes, opt);
  if (auto* e = std::get_if<BgpError>(&r)) {
    ADD_FAILURE() << "decode failed: " << e->reason;
    return T{};
  }
  auto* m = std::get_if<T>(&std::get<Message>(r));
  if (!m) {
    ADD_FAILURE() << "unexpected message type";
    return T{};
  }
  return *m;
}

BgpError DecodeError(const std::vector<uint8_t>& bytes, const CodecOptions& opt = kAs4) {
  auto r = Decode(bytes, opt);
  if (auto* e = std::get_if<BgpError>(&r)) return *e;
  ADD_FAILURE() << "expected a decode error";
  return {};
}

// Builds an UPDATE around raw withdrawn/attribute/NLRI bytes (hex), computing the lengths.
std::vector<uint8_t> RawUpdate(const std::string& withdrawn, const std::string& attrs,
                               const std::string& nlri) {
  auto w = Hex(withdrawn), a = Hex(attrs), n = Hex(nlri);
  std::vector<uint8_t> out = Hex(kMarker);
  size_t len = kHeaderSize + 4 + w.size() + a.size() + n.size();
  out.push_back(static_cast<uint8_t>(len >> 8));
  out.push_back(static_cast<uint8_t>(len));
  out.push_back(2);
  out.push_back(static_cast<uint8_t>(w.size() >> 8));
  out.push_back(static_cast<uint8_t>(w.size()));
  out.insert(out.end(), w.begin(), w.end());
  out.push_back(static_cast<uint8_t>(a.size() >> 8));
  out.push_back(static_cast<uint8_t>(a.size()));
  out.insert(out.end(), a.begin(), a.end());
  out.insert(out.end(), n.begin(), n.end());
  return out;
}

TEST(CodecTest, Keepalive) {
  auto bytes = Encode(KeepaliveMessage{}, kAs4);
  EXPECT_EQ(ToHex(bytes), kMarker + "001304");
  DecodeAs<KeepaliveMessage>(bytes);
}

TEST(CodecTest, OpenWithCapabilities) {
  const auto wire = Hex(kMarker + "002d 01 04 fc00 005a 0a000001 10 02 0e" + "01 04 0001 00 01" +
                        "02 00" + "41 04 0000fc00");
  OpenMessage want;
  want.my_as = 64512;
  want.hold_time_s = 90;
  want.bgp_id = Ip("10.0.0.1");
  want.caps.multiprotocol = {kIpv4Unicast};
  want.caps.route_refresh = true;
  want.caps.four_octet_asn = 64512;
  EXPECT_EQ(ToHex(Encode(want, kAs4)), ToHex(wire));
  EXPECT_EQ(DecodeAs<OpenMessage>(wire), want);
}

TEST(CodecTest, OpenFourOctetAsnAndGracefulRestart) {
  OpenMessage o;
  o.my_as = kAsTrans;
  o.hold_time_s = 3;
  o.bgp_id = Ip("192.0.2.1");
  o.caps.four_octet_asn = 4200000000u;
  o.caps.multiprotocol = {kIpv4Unicast, kIpv6Unicast};
  o.caps.graceful_restart = GracefulRestartCap{true, 120, {{kIpv4Unicast, true}}};
  auto bytes = Encode(o, kAs4);
  // Graceful restart: code 64, length 6, R bit + 120 s, IPv4 unicast with F bit.
  EXPECT_NE(ToHex(bytes).find("4006807800010180"), std::string::npos) << ToHex(bytes);
  // 4-octet ASN capability carries the real ASN.
  EXPECT_NE(ToHex(bytes).find("4104fa56ea00"), std::string::npos);
  auto back = DecodeAs<OpenMessage>(bytes);
  EXPECT_EQ(back, o);
  EXPECT_EQ(back.Asn(), 4200000000u);
}

TEST(CodecTest, UnknownCapabilityIsKept) {
  auto wire = Hex(kMarker + "0023 01 04 fc00 005a 0a000001 06 02 04 46 02 abcd");
  auto o = DecodeAs<OpenMessage>(wire);
  ASSERT_EQ(o.caps.unknown.size(), 1u);
  EXPECT_EQ(o.caps.unknown[0].type, 0x46);
}

struct ErrorCase {
  const char* name;
  std::string hex;
  uint8_t code;
  uint8_t subcode;
  std::string data;  // hex
};

TEST(CodecTest, HeaderAndOpenErrors) {
  const ErrorCase cases[] = {
      {"marker", "fffffffffffffffffffffffffffffffe 0013 04", 1, 1, ""},
      {"length below 19", kMarker + "0012 04", 1, 2, "0012"},
      {"length above 4096", kMarker + "1001 04", 1, 2, "1001"},
      {"unknown type", kMarker + "0013 06", 1, 3, "06"},
      {"keepalive with body", kMarker + "0014 04 00", 1, 2, "0014"},
      {"open too short", kMarker + "001c 01 04 fc00 005a 0a000001", 1, 2, "001c"},
      {"route refresh short", kMarker + "0016 05 0001 00", 1, 2, "0016"},
      {"version 3", kMarker + "001d 01 03 fc00 005a 0a000001 00", 2, 1, "0004"},
      {"hold time 1", kMarker + "001d 01 04 fc00 0001 0a000001 00", 2, 6, ""},
      {"hold time 2", kMarker + "001d 01 04 fc00 0002 0a000001 00", 2, 6, ""},
      {"bgp id 0", kMarker + "001d 01 04 fc00 005a 00000000 00", 2, 3, ""},
      {"auth parameter", kMarker + "001f 01 04 fc00 005a 0a000001 02 01 00", 2, 4, ""},
      {"opt params overrun", kMarker + "001f 01 04 fc00 005a 0a000001 05 02 00", 2, 0, ""},
      {"capability overrun", kMarker + "0020 01 04 fc00 005a 0a000001 03 02 01 41", 2, 0, ""},
      {"4-octet cap length 2", kMarker + "0023 01 04 fc00 005a 0a000001 06 02 04 41 02 0000", 2, 0,
       ""},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.name);
    auto e = DecodeError(Hex(c.hex));
    EXPECT_EQ(e.code, c.code);
    EXPECT_EQ(e.subcode, c.subcode);
    EXPECT_EQ(ToHex(e.data), ToHex(Hex(c.data)));
  }
}

TEST(CodecTest, FrameLengthNeedsWholeHeader) {
  auto ka = Encode(KeepaliveMessage{}, kAs4);
  auto partial = std::span<const uint8_t>(ka.data(), 18);
  EXPECT_EQ(std::get<size_t>(FrameLength(partial)), 0u);
  EXPECT_EQ(std::get<size_t>(FrameLength(ka)), 19u);
}

TEST(CodecTest, UpdateWithEveryIpv4Attribute) {
  const std::string attrs =
      "40 01 01 00"                           // ORIGIN IGP
      "40 02 0a 02 02 0000fc01 0000fc02"      // AS_PATH sequence 64513 64514
      "40 03 04 0a000001"                     // NEXT_HOP 10.0.0.1
      "80 04 04 00000005"                     // MED 5
      "40 05 04 000000c8"                     // LOCAL_PREF 200
      "40 06 00"                              // ATOMIC_AGGREGATE
      "c0 07 08 0000fc01 0a000002"            // AGGREGATOR 64513 10.0.0.2
      "c0 08 04 00640064"                     // COMMUNITIES 100:100
      "80 09 04 0a000003"                     // ORIGINATOR_ID
      "80 0a 04 0a000004"                     // CLUSTER_LIST
      "c0 20 0c 0000fc01 00000001 00000002";  // LARGE_COMMUNITIES 64513:1:2
  auto wire = RawUpdate("", attrs, "18 0af401");
  UpdateMessage want;
  want.attrs.origin = Origin::kIgp;
  want.attrs.as_path = AsPath{{{AsSegmentType::kSequence, {64513, 64514}}}};
  want.attrs.next_hop = Ip("10.0.0.1");
  want.attrs.med = 5;
  want.attrs.local_pref = 200;
  want.attrs.atomic_aggregate = true;
  want.attrs.aggregator = Aggregator{64513, Ip("10.0.0.2")};
  want.attrs.communities = {Community(100, 100)};
  want.attrs.originator_id = Ip("10.0.0.3");
  want.attrs.cluster_list = {0x0a000004};
  want.attrs.large_communities = {{64513, 1, 2}};
  want.nlri = {Pfx("10.244.1.0/24")};
  EXPECT_EQ(ToHex(Encode(want, kAs4)), ToHex(wire));
  auto got = DecodeAs<UpdateMessage>(wire);
  EXPECT_EQ(got, want);
  EXPECT_FALSE(got.treat_as_withdraw);
  EXPECT_FALSE(got.EndOfRib().has_value());
}

TEST(CodecTest, WithdrawnRoutesAndOddPrefixLengths) {
  auto wire = RawUpdate("08 0a 11 0a0b80 00", "", "");
  auto u = DecodeAs<UpdateMessage>(wire);
  std::vector<IpPrefix> want = {Pfx("10.0.0.0/8"), Pfx("10.11.128.0/17"), Pfx("0.0.0.0/0")};
  EXPECT_EQ(u.withdrawn, want);
  EXPECT_EQ(ToHex(Encode(u, kAs4)), ToHex(wire));
}

TEST(CodecTest, AsSetAndTwoOctetPath) {
  // From a 2-octet speaker: sequence 64513, set {1 2}.
  auto wire = RawUpdate("", "40 01 01 02  40 02 0a 02 01 fc01 01 02 0001 0002  40 03 04 0a000001",
                        "10 0a01");
  auto u = DecodeAs<UpdateMessage>(wire, kAs2);
  ASSERT_TRUE(u.attrs.as_path);
  EXPECT_EQ(u.attrs.as_path->ToString(), "64513 {1 2}");
  EXPECT_EQ(u.attrs.as_path->Length(), 2u);
  EXPECT_EQ(u.attrs.origin, Origin::kIncomplete);
  EXPECT_EQ(ToHex(Encode(u, kAs2)), ToHex(wire));
}

TEST(CodecTest, As4PathTowardsAndFromTwoOctetSpeaker) {
  UpdateMessage u;
  u.attrs.origin = Origin::kIgp;
  u.attrs.as_path = AsPath{{{AsSegmentType::kSequence, {4200000000u, 64513}}}};
  u.attrs.next_hop = Ip("10.0.0.1");
  u.nlri = {Pfx("10.1.0.0/16")};
  auto bytes = Encode(u, kAs2);
  const std::string hex = ToHex(bytes);
  // AS_PATH carries AS_TRANS (0x5ba0) in place of the 4-octet ASN ...
  EXPECT_NE(hex.find("4002060202"
                     "5ba0fc01"),
            std::string::npos)
      << hex;
  // ... and AS4_PATH (type 17, optional transitive) carries the real path.
  EXPECT_NE(hex.find("c0110a0202"
                     "fa56ea00"
                     "0000fc01"),
            std::string::npos)
      << hex;
  EXPECT_EQ(DecodeAs<UpdateMessage>(bytes, kAs2), u);
  // Between 4-octet speakers there is no AS4_PATH.
  EXPECT_EQ(ToHex(Encode(u, kAs4)).find("c011"), std::string::npos);
}

TEST(CodecTest, As4PathMergeKeepsLeadingTwoOctetAsns) {
  // AS_PATH 64999 23456 64513 (a 2-octet AS prepended after the 4-octet part), AS4_PATH
  // 4200000000 64513: merged = 64999 4200000000 64513 (RFC 6793 4.2.3).
  auto wire = RawUpdate("",
                        "40 01 01 00  40 02 08 02 03 fde7 5ba0 fc01  40 03 04 0a000001"
                        "c0 11 0a 02 02 fa56ea00 0000fc01",
                        "10 0a01");
  auto u = DecodeAs<UpdateMessage>(wire, kAs2);
  EXPECT_EQ(u.attrs.as_path->ToString(), "64999 4200000000 64513");
  // A 4-octet session ignores (and drops) AS4_PATH.
  auto wire4 = RawUpdate("",
                         "40 01 01 00  40 02 06 02 01 0000fc01  40 03 04 0a000001"
                         "c0 11 0a 02 02 fa56ea00 0000fc01",
                         "10 0a01");
  EXPECT_EQ(DecodeAs<UpdateMessage>(wire4, kAs4).attrs.as_path->ToString(), "64513");
}

TEST(CodecTest, Ipv6MpReachAndUnreach) {
  const std::string mp =
      "80 0e 1e 0002 01 10 fd000000000000000000000000000001 00 40 fd00000100000000";
  auto wire = RawUpdate("", "40 01 01 00  40 02 06 02 01 0000fc01 " + mp, "");
  UpdateMessage want;
  want.attrs.origin = Origin::kIgp;
  want.attrs.as_path = AsPath{{{AsSegmentType::kSequence, {64513}}}};
  want.mp_reach = MpReach{kIpv6Unicast, Ip("fd00::1"), std::nullopt, {Pfx("fd00:1::/64")}};
  EXPECT_EQ(ToHex(Encode(want, kAs4)), ToHex(wire));
  EXPECT_EQ(DecodeAs<UpdateMessage>(wire), want);

  // 32-byte next hop: global + link-local.
  UpdateMessage ll = want;
  ll.mp_reach->link_local_next_hop = Ip("fe80::1");
  EXPECT_EQ(DecodeAs<UpdateMessage>(Encode(ll, kAs4)), ll);

  auto unreach = RawUpdate("", "80 0f 0c 0002 01 40 fd00000100000000", "");
  auto u = DecodeAs<UpdateMessage>(unreach);
  ASSERT_TRUE(u.mp_unreach);
  EXPECT_EQ(u.mp_unreach->withdrawn, std::vector<IpPrefix>{Pfx("fd00:1::/64")});
  EXPECT_FALSE(u.EndOfRib());
}

TEST(CodecTest, EndOfRibMarkers) {
  auto v4 = DecodeAs<UpdateMessage>(Hex(kMarker + "0017 02 0000 0000"));
  EXPECT_EQ(v4.EndOfRib(), kIpv4Unicast);
  auto v6 = DecodeAs<UpdateMessage>(RawUpdate("", "80 0f 03 0002 01", ""));
  EXPECT_EQ(v6.EndOfRib(), kIpv6Unicast);
}

TEST(CodecTest, NotificationAndRouteRefresh) {
  NotificationMessage n{6, 2, {0x03, 'b', 'y', 'e'}};
  auto bytes = Encode(n, kAs4);
  EXPECT_EQ(ToHex(bytes), kMarker +
                              "0019030602"
                              "03627965");
  EXPECT_EQ(DecodeAs<NotificationMessage>(bytes), n);

  RouteRefreshMessage rr{kIpv6Unicast, 0};
  bytes = Encode(rr, kAs4);
  EXPECT_EQ(ToHex(bytes), kMarker + "00170500020001");
  EXPECT_EQ(DecodeAs<RouteRefreshMessage>(bytes), rr);
}

TEST(CodecTest, UnknownOptionalAttributes) {
  // Optional transitive type 99 is kept (to be passed on); optional non-transitive 98 dropped.
  auto wire = RawUpdate("", "40 01 01 00 40 02 00 40 03 04 0a000001 c0 63 02 abcd 80 62 01 ff",
                        "18 0a0000");
  auto u = DecodeAs<UpdateMessage>(wire);
  ASSERT_EQ(u.attrs.unknown.size(), 1u);
  EXPECT_EQ(u.attrs.unknown[0].type, 99);
  EXPECT_EQ(u.attrs.unknown[0].flags, 0xc0);
  EXPECT_FALSE(u.treat_as_withdraw);
  // Extended length flag on input is accepted and normalised.
  auto ext = RawUpdate("", "50 01 0001 00 40 02 00 40 03 04 0a000001", "18 0a0000");
  EXPECT_EQ(DecodeAs<UpdateMessage>(ext).attrs.origin, Origin::kIgp);
}

// RFC 7606: each malformed attribute and its action.
struct MalformedCase {
  const char* name;
  std::string attrs;
  std::string nlri;
  ErrorAction action;
  uint8_t subcode = 0;  // for kSessionReset
};

const char* kGood = "40 01 01 00 40 02 00 40 03 04 0a000001 ";

TEST(CodecTest, Rfc7606ActionPerMalformedAttribute) {
  const MalformedCase cases[] = {
      {"ORIGIN length 2", "40 01 02 0000 40 02 00 40 03 04 0a000001", "18 0a0000",
       ErrorAction::kTreatAsWithdraw},
      {"ORIGIN value 3", "40 01 01 03 40 02 00 40 03 04 0a000001", "18 0a0000",
       ErrorAction::kTreatAsWithdraw},
      {"ORIGIN flagged optional", "c0 01 01 00 40 02 00 40 03 04 0a000001", "18 0a0000",
       ErrorAction::kTreatAsWithdraw},
      {"AS_PATH bad segment type", "40 01 01 00 40 02 06 05 01 0000fc01 40 03 04 0a000001",
       "18 0a0000", ErrorAction::kTreatAsWithdraw},
      {"AS_PATH segment overrun", "40 01 01 00 40 02 06 02 02 0000fc01 40 03 04 0a000001",
       "18 0a0000", ErrorAction::kTreatAsWithdraw},
      {"AS_PATH empty segment", "40 01 01 00 40 02 02 02 00 40 03 04 0a000001", "18 0a0000",
       ErrorAction::kTreatAsWithdraw},
      {"NEXT_HOP length 5", "40 01 01 00 40 02 00 40 03 05 0a00000100", "18 0a0000",
       ErrorAction::kTreatAsWithdraw},
      {"MED length 3", std::string(kGood) + "80 04 03 000001", "18 0a0000",
       ErrorAction::kTreatAsWithdraw},
      {"MED flagged transitive", std::string(kGood) + "c0 04 04 00000001", "18 0a0000",
       ErrorAction::kTreatAsWithdraw},
      {"LOCAL_PREF length 2", std::string(kGood) + "40 05 02 0064", "18 0a0000",
       ErrorAction::kTreatAsWithdraw},
      {"ATOMIC_AGGREGATE length 1", std::string(kGood) + "40 06 01 00", "18 0a0000",
       ErrorAction::kAttributeDiscard},
      {"AGGREGATOR length 7", std::string(kGood) + "c0 07 07 0000fc01 0a0000", "18 0a0000",
       ErrorAction::kAttributeDiscard},
      {"COMMUNITIES length 5", std::string(kGood) + "c0 08 05 0064006400", "18 0a0000",
       ErrorAction::kTreatAsWithdraw},
      {"COMMUNITIES length 0", std::string(kGood) + "c0 08 00", "18 0a0000",
       ErrorAction::kTreatAsWithdraw},
      {"LARGE_COMMUNITIES length 8", std::string(kGood) + "c0 20 08 0000fc01 00000001", "18 0a0000",
       ErrorAction::kTreatAsWithdraw},
      {"ORIGINATOR_ID length 3", std::string(kGood) + "80 09 03 0a0000", "18 0a0000",
       ErrorAction::kTreatAsWithdraw},
      {"CLUSTER_LIST length 6", std::string(kGood) + "80 0a 06 0a0000040000", "18 0a0000",
       ErrorAction::kTreatAsWithdraw},
      {"CLUSTER_LIST length 0", std::string(kGood) + "80 0a 00", "18 0a0000",
       ErrorAction::kTreatAsWithdraw},
      {"attribute overruns list", std::string(kGood) + "c0 08 08 00640064", "18 0a0000",
       ErrorAction::kTreatAsWithdraw},
      {"truncated attribute header", std::string(kGood) + "c0", "18 0a0000",
       ErrorAction::kTreatAsWithdraw},
      {"missing NEXT_HOP", "40 01 01 00 40 02 00", "18 0a0000", ErrorAction::kTreatAsWithdraw},
      {"missing ORIGIN", "40 02 00 40 03 04 0a000001", "18 0a0000", ErrorAction::kTreatAsWithdraw},
      {"repeated ORIGIN is discarded", std::string(kGood) + "40 01 01 01", "18 0a0000",
       ErrorAction::kAttributeDiscard},
      {"MP_REACH truncated", std::string(kGood) + "80 0e 03 0002 01", "",
       ErrorAction::kSessionReset, err::kOptionalAttr},
      {"MP_REACH bad next hop length", std::string(kGood) + "80 0e 08 0002 01 03 000000 00", "",
       ErrorAction::kSessionReset, err::kOptionalAttr},
      {"MP_REACH flagged transitive", std::string(kGood) + "c0 0e 05 0002 01 00 00", "",
       ErrorAction::kSessionReset, err::kAttrFlags},
      {"MP_UNREACH repeated", std::string(kGood) + "80 0f 03 0002 01 80 0f 03 0002 01", "",
       ErrorAction::kSessionReset, err::kMalformedAttrList},
      {"MP_UNREACH bad prefix", std::string(kGood) + "80 0f 05 0002 01 81 00", "",
       ErrorAction::kSessionReset, err::kOptionalAttr},
      {"unrecognized well-known", std::string(kGood) + "40 63 01 00", "18 0a0000",
       ErrorAction::kSessionReset, err::kUnrecognizedWellKnown},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.name);
    auto r = Decode(RawUpdate("", c.attrs, c.nlri), kAs4);
    if (c.action == ErrorAction::kSessionReset) {
      ASSERT_TRUE(std::holds_alternative<BgpError>(r));
      const auto& e = std::get<BgpError>(r);
      EXPECT_EQ(e.code, err::kUpdate);
      EXPECT_EQ(e.subcode, c.subcode);
      continue;
    }
    ASSERT_TRUE(std::holds_alternative<Message>(r)) << std::get<BgpError>(r).reason;
    const auto& u = std::get<UpdateMessage>(std::get<Message>(r));
    EXPECT_EQ(u.treat_as_withdraw, c.action == ErrorAction::kTreatAsWithdraw);
    EXPECT_FALSE(u.errors.empty());
  }
}

// COMMUNITIES and CLUSTER_LIST are lists of 32-bit values, NEXT_HOP, MULTI_EXIT_DISC,
// LOCAL_PREF and ORIGINATOR_ID one each: every value in wire order, or, on a bad length, none
// of them and the reason once.
TEST(CodecTest, ThirtyTwoBitValuesAndTheirLengthErrors) {
  auto u = DecodeAs<UpdateMessage>(RawUpdate(
      "", std::string(kGood) + "c0 08 0c 00640064 00c800c8 ffffff01 80 0a 08 0a000005 0a000004",
      "18 0a0000"));
  EXPECT_EQ(u.attrs.communities,
            (std::vector<uint32_t>{Community(100, 100), Community(200, 200), 0xffffff01}));
  EXPECT_EQ(u.attrs.cluster_list, (std::vector<uint32_t>{0x0a000005, 0x0a000004}));
  EXPECT_TRUE(u.errors.empty());

  const std::string kNoNextHop = "40 01 01 00 40 02 00 ";
  const std::pair<std::string, std::string> bad[] = {
      {kGood + std::string("c0 08 07 00640064 00c800"),
       "COMMUNITIES: length is not a non-zero multiple of 4"},
      {kGood + std::string("80 0a 0a 0a000005 0a000004 0000"),
       "CLUSTER_LIST: length is not a non-zero multiple of 4"},
      {kNoNextHop + "40 03 03 0a0000", "NEXT_HOP: length is not 4"},
      {kGood + std::string("80 04 05 0000000100"), "MULTI_EXIT_DISC: length is not 4"},
      {kGood + std::string("40 05 00"), "LOCAL_PREF: length is not 4"},
      {kGood + std::string("80 09 08 0a000003 0a000003"), "ORIGINATOR_ID: length is not 4"},
  };
  for (const auto& [attrs, why] : bad) {
    SCOPED_TRACE(why);
    u = DecodeAs<UpdateMessage>(RawUpdate("", attrs, "18 0a0000"));
    EXPECT_TRUE(u.treat_as_withdraw);
    EXPECT_TRUE(u.attrs.communities.empty());
    EXPECT_TRUE(u.attrs.cluster_list.empty());
    EXPECT_FALSE(u.attrs.med || u.attrs.local_pref || u.attrs.originator_id);
    EXPECT_EQ(u.errors, std::vector<std::string>{why + " (treat-as-withdraw)"});
  }
}

TEST(CodecTest, As4PathMalformedIsDiscarded) {
  auto r = Decode(RawUpdate("", std::string(kGood) + "c0 11 03 020100", "18 0a0000"), kAs2);
  const auto& u = std::get<UpdateMessage>(std::get<Message>(r));
  EXPECT_FALSE(u.treat_as_withdraw);
  ASSERT_EQ(u.errors.size(), 1u);
  EXPECT_NE(u.errors[0].find("discarded"), std::string::npos);
}

TEST(CodecTest, UnrecognizedWellKnownCarriesAttributeAsData) {
  auto e = DecodeError(RawUpdate("", std::string(kGood) + "40 63 01 07", "18 0a0000"));
  EXPECT_EQ(ToHex(e.data), "40630107");
}

TEST(CodecTest, MalformedAttributesWithoutNlriAreHarmless) {
  // Nothing announced: a bad ORIGIN has nothing to withdraw, and missing attributes are fine.
  auto r = Decode(RawUpdate("18 0a0000", "", ""), kAs4);
  EXPECT_FALSE(std::get<UpdateMessage>(std::get<Message>(r)).treat_as_withdraw);
}

TEST(CodecTest, NlriAndWithdrawnFieldErrorsResetTheSession) {
  const ErrorCase cases[] = {
      {"prefix length 33", "", 3, err::kInvalidNetwork, ""},
      {"withdrawn overrun", "", 3, err::kMalformedAttrList, ""},
      {"attr length overrun", "", 3, err::kMalformedAttrList, ""},
  };
  std::vector<std::vector<uint8_t>> inputs = {
      RawUpdate("", kGood, "21 0a000000 00"),
      Hex(kMarker + "0019 02 0005 0000 00 00"),
      Hex(kMarker + "0019 02 0000 0009 00 00"),
  };
  for (size_t i = 0; i < inputs.size(); ++i) {
    SCOPED_TRACE(cases[i].name);
    auto e = DecodeError(inputs[i]);
    EXPECT_EQ(e.code, cases[i].code);
    EXPECT_EQ(e.subcode, cases[i].subcode);
  }
}

// RFC 7606 rules that depend on the session or on the rest of the message, one row each.
struct SessionRuleCase {
  const char* name;
  bool external;  // the peer is in another AS
  std::string withdrawn, attrs, nlri;
  // Expected: kSessionReset (with subcode), kTreatAsWithdraw, or kAttributeDiscard (decoded,
  // not withdrawn, a note in errors); `clean` means no error at all.
  ErrorAction action;
  uint8_t subcode = 0;
  bool clean = false;
};

TEST(CodecTest, Rfc7606RulesThatDependOnThePeerAndTheMessage) {
  const std::string nlri = "18 0a0000";
  const SessionRuleCase cases[] = {
      // 7.5, 7.9, 7.10: from an external peer discarded whatever they hold ...
      {"LOCAL_PREF from eBGP", true, "", kGood + std::string("40 05 04 00000064"), nlri,
       ErrorAction::kAttributeDiscard},
      {"malformed LOCAL_PREF from eBGP", true, "", kGood + std::string("40 05 02 0064"), nlri,
       ErrorAction::kAttributeDiscard},
      {"ORIGINATOR_ID from eBGP", true, "", kGood + std::string("80 09 04 0a000001"), nlri,
       ErrorAction::kAttributeDiscard},
      {"malformed CLUSTER_LIST from eBGP", true, "", kGood + std::string("80 0a 03 0a0000"), nlri,
       ErrorAction::kAttributeDiscard},
      // ... and from an internal one withdrawn when malformed.
      {"malformed LOCAL_PREF from iBGP", false, "", kGood + std::string("40 05 02 0064"), nlri,
       ErrorAction::kTreatAsWithdraw},
      {"malformed ORIGINATOR_ID from iBGP", false, "", kGood + std::string("80 09 03 0a0000"), nlri,
       ErrorAction::kTreatAsWithdraw},
      // 3 c / 3 f: wrong flags withdraw, except on ATOMIC_AGGREGATE/AGGREGATOR (discard).
      {"ATOMIC_AGGREGATE flagged optional", false, "", kGood + std::string("c0 06 00"), nlri,
       ErrorAction::kAttributeDiscard},
      {"LOCAL_PREF flagged optional from iBGP", false, "", kGood + std::string("c0 05 04 00000064"),
       nlri, ErrorAction::kTreatAsWithdraw},
      // 3 e with RFC 4271 6.3: a NEXT_HOP that is not a host address.
      {"NEXT_HOP multicast", true, "", "40 01 01 00 40 02 00 40 03 04 e0000001", nlri,
       ErrorAction::kTreatAsWithdraw},
      {"NEXT_HOP 0.0.0.0", true, "", "40 01 01 00 40 02 00 40 03 04 00000000", nlri,
       ErrorAction::kTreatAsWithdraw},
      {"NEXT_HOP broadcast", true, "", "40 01 01 00 40 02 00 40 03 04 ffffffff", nlri,
       ErrorAction::kTreatAsWithdraw},
      {"MP_REACH next hop ::", true, "",
       "40 01 01 00 40 02 00 80 0e 1c 0002 01 10 00000000000000000000000000000000 00 "
       "30 20010db80001",
       "", ErrorAction::kTreatAsWithdraw},
      {"NEXT_HOP 0.0.0.0 beside MP_REACH only is ignored", true, "",
       "40 01 01 00 40 02 00 40 03 04 00000000 80 0e 1c 0002 01 10 "
       "20010db8000000000000000000000001 00 30 20010db80001",
       "", ErrorAction::kAttributeDiscard, 0, /*clean=*/true},
      // 7.14, 7.15: validated, passed on.
      {"EXTENDED_COMMUNITIES length 7", true, "", kGood + std::string("c0 10 07 00020000000001"),
       nlri, ErrorAction::kTreatAsWithdraw},
      {"IPV6_EXTENDED_COMMUNITIES length 19", true, "",
       kGood + std::string("c0 19 13 00020000000000000000000000000000000001"), nlri,
       ErrorAction::kTreatAsWithdraw},
      {"EXTENDED_COMMUNITIES length 8 is fine", true, "",
       kGood + std::string("c0 10 08 0002fc0100000001"), nlri, ErrorAction::kAttributeDiscard, 0,
       true},
      // 7.2: a confederation segment (we are in no confederation).
      {"AS_CONFED_SEQUENCE", true, "", "40 01 01 00 40 02 06 03 01 0000fc01 40 03 04 0a000001",
       nlri, ErrorAction::kTreatAsWithdraw},
      // 5.2: errors other than attribute discard, and no NLRI to withdraw: reset.
      {"bad ORIGIN in a withdraw-only UPDATE", true, "18 0a0000",
       "40 01 01 07 40 02 00 40 03 04 0a000001", "", ErrorAction::kSessionReset,
       err::kInvalidOrigin},
      {"bad COMMUNITIES without NLRI", true, "", kGood + std::string("c0 08 03 000000"), "",
       ErrorAction::kSessionReset, err::kOptionalAttr},
      {"overrun without NLRI", true, "", kGood + std::string("c0 08 08 0000"), "",
       ErrorAction::kSessionReset, err::kMalformedAttrList},
      {"bad NEXT_HOP flags without NLRI", true, "", "40 01 01 00 40 02 00 c0 03 04 0a000001", "",
       ErrorAction::kSessionReset, err::kAttrFlags},
      {"attribute discard without NLRI is no reset", true, "", kGood + std::string("40 06 01 00"),
       "", ErrorAction::kAttributeDiscard},
      {"empty MP_UNREACH alone (End-of-RIB)", true, "", "80 0f 03 0002 01", "",
       ErrorAction::kAttributeDiscard, 0, true},
      // 3 h: the strongest action wins.
      {"discard and withdraw", true, "", kGood + std::string("40 06 01 00 c0 08 05 0000000000"),
       nlri, ErrorAction::kTreatAsWithdraw},
      {"withdraw and reset", true, "", kGood + std::string("c0 08 05 0000000000 80 0e 03 0002 01"),
       nlri, ErrorAction::kSessionReset, err::kOptionalAttr},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.name);
    CodecOptions opt;
    opt.external_peer = c.external;
    auto r = Decode(RawUpdate(c.withdrawn, c.attrs, c.nlri), opt);
    if (c.action == ErrorAction::kSessionReset) {
      ASSERT_TRUE(std::holds_alternative<BgpError>(r));
      EXPECT_EQ(std::get<BgpError>(r).code, err::kUpdate);
      EXPECT_EQ(std::get<BgpError>(r).subcode, c.subcode) << std::get<BgpError>(r).reason;
      continue;
    }
    ASSERT_TRUE(std::holds_alternative<Message>(r)) << std::get<BgpError>(r).reason;
    const auto& u = std::get<UpdateMessage>(std::get<Message>(r));
    EXPECT_EQ(u.treat_as_withdraw, c.action == ErrorAction::kTreatAsWithdraw);
    EXPECT_EQ(u.errors.empty(), c.clean) << (u.errors.empty() ? "" : u.errors[0]);
    if (c.action == ErrorAction::kAttributeDiscard && !c.clean) {
      EXPECT_FALSE(u.attrs.local_pref || u.attrs.originator_id || u.attrs.atomic_aggregate);
      EXPECT_TRUE(u.attrs.cluster_list.empty());
    }
  }
}

TEST(CodecTest, ExtendedCommunitiesArePassedOnAsReceived) {
  auto u = DecodeAs<UpdateMessage>(
      RawUpdate("", kGood + std::string("c0 10 08 0002fc0100000001"), "18 0a0000"));
  ASSERT_EQ(u.attrs.unknown.size(), 1u);
  EXPECT_EQ(u.attrs.unknown[0].type, 16);
  EXPECT_EQ(ToHex(u.attrs.unknown[0].value), "0002fc0100000001");
}

TEST(CodecTest, EmptyAs4PathFromTwoOctetSpeakerIsDiscarded) {
  auto r = Decode(RawUpdate("", kGood + std::string("c0 11 00"), "18 0a0000"), kAs2);
  const auto& u = std::get<UpdateMessage>(std::get<Message>(r));
  EXPECT_FALSE(u.treat_as_withdraw);
  ASSERT_EQ(u.errors.size(), 1u);
  EXPECT_NE(u.errors[0].find("AS4_PATH"), std::string::npos);
}

TEST(CodecTest, PackAnnouncementsStaysWithinMaximumSize) {
  PathAttributes attrs;
  attrs.origin = Origin::kIgp;
  attrs.as_path = AsPath{};
  attrs.communities = {Community(1, 2)};
  for (bool v6 : {false, true}) {
    SCOPED_TRACE(v6 ? "IPv6" : "IPv4");
    std::vector<IpPrefix> prefixes;
    for (uint32_t i = 0; i < 3000; ++i) {
      if (v6) {
        std::array<uint8_t, 16> b{0xfd, 0, static_cast<uint8_t>(i >> 8), static_cast<uint8_t>(i)};
        prefixes.emplace_back(IpAddress::V6(b), 64);
      } else {
        prefixes.emplace_back(IpAddress::V4(0x0a000000 | (i << 8)), 24);
      }
    }
    auto nh = v6 ? Ip("fd00::1") : Ip("10.0.0.1");
    auto messages = PackAnnouncements(attrs, nh, prefixes, kAs4);
    EXPECT_GE(messages.size(), 3u);
    std::vector<IpPrefix> seen;
    for (const auto& m : messages) {
      EXPECT_LE(m.size(), kMaxMessageSize);
      auto u = DecodeAs<UpdateMessage>(m);
      auto& got = v6 ? u.mp_reach->nlri : u.nlri;
      seen.insert(seen.end(), got.begin(), got.end());
      EXPECT_EQ(u.attrs.communities, attrs.communities);
    }
    EXPECT_EQ(seen, prefixes);
    auto withdrawals = PackWithdrawals(prefixes, kAs4);
    seen.clear();
    for (const auto& m : withdrawals) {
      EXPECT_LE(m.size(), kMaxMessageSize);
      auto u = DecodeAs<UpdateMessage>(m);
      auto& got = v6 ? u.mp_unreach->withdrawn : u.withdrawn;
      seen.insert(seen.end(), got.begin(), got.end());
    }
    EXPECT_EQ(seen, prefixes);
  }
}

}  // namespace
}  // namespace kr::bgp

namespace kr::bgp {
namespace {

// The fuzz corpus seeds must be valid messages, or the fuzzer starts from noise.
TEST(CodecTest, FuzzCorpusSeedsDecode) {
  const std::filesystem::path dir = std::filesystem::path(KR_SOURCE_DIR) / "tests/fuzz/bgp/corpus";
  int count = 0;
  for (const auto& entry : std::filesystem::directory_iterator(dir)) {
    SCOPED_TRACE(entry.path().filename().string());
    std::ifstream in(entry.path(), std::ios::binary);
    std::vector<uint8_t> data((std::istreambuf_iterator<char>(in)),
                              std::istreambuf_iterator<char>());
    ASSERT_GE(data.size(), 20u);
    CodecOptions opt{data[0] == 0};
    auto r = Decode(std::span<const uint8_t>(data).subspan(1), opt);
    EXPECT_TRUE(std::holds_alternative<Message>(r)) << std::get<BgpError>(r).reason;
    ++count;
  }
  EXPECT_GE(count, 10);
}

}  // namespace
}  // namespace kr::bgp
