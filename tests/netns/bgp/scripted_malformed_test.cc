// Malformed messages on the wire from the scripted peer: the RFC 4271 6.1 header checks and the
// RFC 7606 action (session reset, treat-as-withdraw, attribute discard) for each malformed UPDATE.
#include "scripted_peer.h"

namespace kr::bgp::testing {
namespace {

TEST_F(ScriptedPeerTest, MalformedUpdatesOnTheWire) {
  StartOurs(false, true);
  ScriptedPeer peer;
  Handshake(peer, PeerOpen("10.9.9.9", false));
  peer.Send(Announce({Pfx("10.99.1.0/24"), Pfx("10.99.2.0/24")}));
  ASSERT_TRUE(WaitFor([&] { return BestPath("10.99.2.0/24").has_value(); }, 5s));

  // COMMUNITIES of length 5: treat-as-withdraw (RFC 7606 7.8), the session stays up.
  auto bad = Encode(Announce({Pfx("10.99.2.0/24")}), CodecOptions{});
  const uint8_t community[] = {0xc0, 0x08, 0x05, 0, 1, 0, 1, 0};
  // Splice the attribute in before the NLRI and fix up the lengths.
  size_t attr_len_at = kHeaderSize + 2;
  size_t attr_len = (bad[attr_len_at] << 8) | bad[attr_len_at + 1];
  bad.insert(bad.begin() + static_cast<long>(attr_len_at + 2 + attr_len), community,
             community + sizeof(community));
  attr_len += sizeof(community);
  bad[attr_len_at] = static_cast<uint8_t>(attr_len >> 8);
  bad[attr_len_at + 1] = static_cast<uint8_t>(attr_len);
  bad[16] = static_cast<uint8_t>(bad.size() >> 8);
  bad[17] = static_cast<uint8_t>(bad.size());
  peer.SendBytes(bad);
  ASSERT_TRUE(WaitFor([&] { return !BestPath("10.99.2.0/24").has_value(); }, 5s));
  EXPECT_TRUE(BestPath("10.99.1.0/24").has_value());
  EXPECT_TRUE(Established("127.0.0.2"));

  // An unrecognized well-known attribute resets the session with 3/2.
  UpdateMessage u = Announce({Pfx("10.99.3.0/24")});
  u.attrs.unknown.push_back(RawAttribute{0x40, 99, {1}});
  peer.Send(u);
  auto n = peer.ReceiveNotification();
  ASSERT_TRUE(n.has_value());
  EXPECT_EQ(n->code, err::kUpdate);
  EXPECT_EQ(n->subcode, err::kUnrecognizedWellKnown);
  EXPECT_EQ(n->data, (std::vector<uint8_t>{0x40, 99, 1, 1}));  // the attribute as sent
  EXPECT_TRUE(WaitFor([&] { return !Established("127.0.0.2"); }, 5s));
  EXPECT_FALSE(BestPath("10.99.1.0/24").has_value());
}

// RFC 4271 6.1 header checks and the RFC 7606 action for each malformed UPDATE, on the wire:
// every malformed UPDATE announces 10.99.9.0/24 via 127.0.0.9 after a good UPDATE put it there
// via the peer. Withdraw: the prefix is gone, the session stays. Discard: the prefix is via
// 127.0.0.9 now. Reset: the NOTIFICATION named, the session down, the prefix gone.
TEST_F(ScriptedPeerTest, MalformedMessageTableOnTheWire) {
  StartOurs(false, true);
  AddPassivePeer("127.0.0.3", 64512);

  const std::string nlri = "18 0a6309";  // 10.99.9.0/24
  // eBGP: ORIGIN, AS_PATH [64513]; iBGP: ORIGIN, empty AS_PATH. Then NEXT_HOP 127.0.0.9.
  const std::string ebgp = "40 01 01 00 40 02 06 02 01 0000fc01 ";
  const std::string ibgp = "40 01 01 00 40 02 00 ";
  const std::string nh9 = "40 03 04 7f000009 ";
  auto header = [&](const std::string& rest) { return FromHex(kMarkerHex + rest); };
  auto e = [&](const std::string& attrs) { return WireUpdate("", ebgp + nh9 + attrs, nlri); };
  auto i = [&](const std::string& attrs) { return WireUpdate("", ibgp + nh9 + attrs, nlri); };
  using O = Outcome;
  const WireCase cases[] = {
      // RFC 4271 6.1
      {"marker not all ones", false, FromHex("fe" + kMarkerHex.substr(2) + "0013 04"), O::kReset,
       err::kHeader, err::kNotSynchronized},
      {"length 18", false, header("0012 04"), O::kReset, err::kHeader, err::kBadLength},
      {"length 4097", false, header("1001 02"), O::kReset, err::kHeader, err::kBadLength},
      {"KEEPALIVE length 20", false, header("0014 04 00"), O::kReset, err::kHeader,
       err::kBadLength},
      {"UPDATE length 22", false, header("0016 02 000000"), O::kReset, err::kHeader,
       err::kBadLength},
      {"NOTIFICATION length 20", false, header("0014 03 06"), O::kReset, err::kHeader,
       err::kBadLength},
      {"OPEN length 28", false, header("001c 01 04fc01001e0a090909"), O::kReset, err::kHeader,
       err::kBadLength},
      {"ROUTE-REFRESH length 24", false, header("0018 05 00010001 00"), O::kReset, err::kHeader,
       err::kBadLength},
      {"type 6", false, header("0013 06"), O::kReset, err::kHeader, err::kBadType},
      {"type 0", false, header("0013 00"), O::kReset, err::kHeader, err::kBadType},
      // RFC 7606 3 b, 3 g, 5.2, 5.3, 7.11 and RFC 4271 6.3: session reset
      {"withdrawn length overruns", false, header("0017 02 0005 0000"), O::kReset, err::kUpdate,
       err::kMalformedAttrList},
      {"NLRI prefix length 33", false, WireUpdate("", ebgp + nh9, "21 0a630900 00"), O::kReset,
       err::kUpdate, err::kInvalidNetwork},
      {"MP_UNREACH twice", false, e("80 0f 03 0002 01 80 0f 03 0002 01"), O::kReset, err::kUpdate,
       err::kMalformedAttrList},
      {"MP_REACH next hop length 3", false, e("80 0e 08 0002 01 03 000000 00"), O::kReset,
       err::kUpdate, err::kOptionalAttr},
      {"MP_REACH flagged transitive", false, e("c0 0e 05 0002 01 00 00"), O::kReset, err::kUpdate,
       err::kAttrFlags},
      {"unrecognized well-known", false, e("40 63 01 00"), O::kReset, err::kUpdate,
       err::kUnrecognizedWellKnown},
      {"5.2 bad ORIGIN in a withdraw-only UPDATE", false,
       WireUpdate("18 0a6308", "40 01 01 09 40 02 00", ""), O::kReset, err::kUpdate,
       err::kInvalidOrigin},
      // treat-as-withdraw
      {"7.1 ORIGIN value 3", false,
       WireUpdate("", "40 01 01 03 40 02 06 02 01 0000fc01 " + nh9, nlri), O::kWithdraw},
      {"7.1 ORIGIN length 2", false,
       WireUpdate("", "40 01 02 0000 40 02 06 02 01 0000fc01 " + nh9, nlri), O::kWithdraw},
      {"7.2 AS_PATH segment type 5", false,
       WireUpdate("", "40 01 01 00 40 02 06 05 01 0000fc01 " + nh9, nlri), O::kWithdraw},
      {"7.2 AS_CONFED_SEQUENCE", false,
       WireUpdate("", "40 01 01 00 40 02 06 03 01 0000fc01 " + nh9, nlri), O::kWithdraw},
      {"7.2 AS_PATH empty segment", false,
       WireUpdate("", "40 01 01 00 40 02 02 02 00 " + nh9, nlri), O::kWithdraw},
      {"7.2 leftmost AS not the peer's", false,
       WireUpdate("", "40 01 01 00 40 02 06 02 01 0000fde7 " + nh9, nlri), O::kWithdraw},
      {"7.3 NEXT_HOP length 5", false, WireUpdate("", ebgp + "40 03 05 7f00000900", nlri),
       O::kWithdraw},
      {"3 e NEXT_HOP multicast", false, WireUpdate("", ebgp + "40 03 04 e0000009", nlri),
       O::kWithdraw},
      {"RFC 4271 6.3 NEXT_HOP is our address", false,
       WireUpdate("", ebgp + "40 03 04 7f000001", nlri), O::kWithdraw},
      {"7.4 MED length 3", false, e("80 04 03 000001"), O::kWithdraw},
      {"3 c MED flagged transitive", false, e("c0 04 04 00000001"), O::kWithdraw},
      {"7.8 COMMUNITIES length 5", false, e("c0 08 05 0000000000"), O::kWithdraw},
      {"7.14 EXTENDED_COMMUNITIES length 7", false, e("c0 10 07 00020000000001"), O::kWithdraw},
      {"RFC 8092 LARGE_COMMUNITIES length 8", false, e("c0 20 08 0000fc0100000001"), O::kWithdraw},
      {"3 d ORIGIN missing", false, WireUpdate("", "40 02 06 02 01 0000fc01 " + nh9, nlri),
       O::kWithdraw},
      {"3 d NEXT_HOP missing", false, WireUpdate("", ebgp, nlri), O::kWithdraw},
      {"4 last attribute overruns the list", false, e("c0 08 08 0000"), O::kWithdraw},
      {"7.5 LOCAL_PREF length 2 from iBGP", true, i("40 05 02 0064"), O::kWithdraw},
      {"7.9 ORIGINATOR_ID length 3 from iBGP", true, i("80 09 03 0a0000"), O::kWithdraw},
      {"7.10 CLUSTER_LIST length 0 from iBGP", true, i("80 0a 00"), O::kWithdraw},
      {"3 c LOCAL_PREF flagged optional from iBGP", true, i("c0 05 04 00000064"), O::kWithdraw},
      // attribute discard
      {"7.5 LOCAL_PREF length 2 from eBGP", false, e("40 05 02 0064"), O::kDiscard},
      {"7.9 ORIGINATOR_ID from eBGP", false, e("80 09 04 7f000001"), O::kDiscard},
      {"7.10 CLUSTER_LIST length 3 from eBGP", false, e("80 0a 03 0a0000"), O::kDiscard},
      {"7.6 ATOMIC_AGGREGATE length 1", false, e("40 06 01 00"), O::kDiscard},
      {"3 f ATOMIC_AGGREGATE flagged optional", false, e("c0 06 00"), O::kDiscard},
      {"7.7 AGGREGATOR length 7", false, e("c0 07 07 0000fc01 0a0000"), O::kDiscard},
      {"3 g COMMUNITIES twice", false, e("c0 08 04 00010001 c0 08 04 00020002"), O::kDiscard},
  };

  ScriptedPeer external, internal_peer;
  const OpenMessage ibgp_open = PeerOpen("10.9.9.8", false, 64512);
  for (const auto& c : cases) {
    SCOPED_TRACE(c.name);
    ScriptedPeer& peer = c.ibgp ? internal_peer : external;
    const char* from = c.ibgp ? "127.0.0.3" : "127.0.0.2";
    if (!Established(from)) {
      Handshake(peer, c.ibgp ? ibgp_open : PeerOpen("10.9.9.9", false), nullptr, 0, from);
    }
    // The prefix via the peer itself first.
    const std::string good_nh = c.ibgp ? "40 03 04 7f000003" : "40 03 04 7f000002";
    peer.SendBytes(WireUpdate("", (c.ibgp ? ibgp : ebgp) + good_nh, nlri));
    ASSERT_TRUE(WaitFor(
        [&] {
          auto best = BestPath("10.99.9.0/24");
          return best && best->peer == Ip(from) && best->next_hop == Ip(from);
        },
        5s));
    peer.SendBytes(c.bytes);
    switch (c.outcome) {
      case Outcome::kReset: {
        auto n = peer.ReceiveNotification();
        ASSERT_TRUE(n.has_value());
        EXPECT_EQ(n->code, c.code);
        EXPECT_EQ(n->subcode, c.subcode);
        EXPECT_TRUE(WaitFor([&] { return !Established(from); }, 5s));
        EXPECT_TRUE(WaitFor([&] { return !BestPath("10.99.9.0/24").has_value(); }, 5s));
        peer.Close();
        break;
      }
      case Outcome::kWithdraw:
        EXPECT_TRUE(WaitFor([&] { return !BestPath("10.99.9.0/24").has_value(); }, 5s));
        EXPECT_TRUE(Established(from));
        break;
      case Outcome::kDiscard:
        EXPECT_TRUE(WaitFor(
            [&] {
              auto best = BestPath("10.99.9.0/24");
              return best && best->next_hop == Ip("127.0.0.9");
            },
            5s));
        EXPECT_TRUE(Established(from));
        if (auto best = BestPath("10.99.9.0/24")) {
          EXPECT_FALSE(best->attributes.originator_id.has_value());
          EXPECT_TRUE(best->attributes.cluster_list.empty());
          EXPECT_FALSE(best->attributes.atomic_aggregate);
          EXPECT_FALSE(best->attributes.aggregator.has_value());
        }
        break;
    }
  }
}

}  // namespace
}  // namespace kr::bgp::testing
