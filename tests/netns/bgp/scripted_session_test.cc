// Sessions and capabilities against the scripted peer: OPEN errors, refused connections closed,
// connection collisions (RFC 4271 6.8), route refresh, 4-octet ASNs towards a 2-octet peer,
// unknown transitive attributes passed on, GTSM (RFC 5082).
#include <filesystem>

#include "scripted_peer.h"

namespace kr::bgp::testing {
namespace {

// The descriptors this process holds (the speaker runs in it).
size_t OpenDescriptors() {
  size_t n = 0;
  for ([[maybe_unused]] const auto& entry : std::filesystem::directory_iterator("/proc/self/fd")) {
    ++n;
  }
  return n;
}

// A connection from an address that is no configured peer is accepted and closed at once (the
// speaker owns it as a UniqueFd): the client sees EOF, and no descriptor stays behind.
TEST_F(ScriptedPeerTest, ConnectionsFromUnknownPeersAreClosedAndLeakNothing) {
  StartOurs(false, true);
  const size_t before = OpenDescriptors();
  for (int i = 0; i < 20; ++i) {
    ScriptedPeer stranger;
    InNetns(*us_, [&] {
      ASSERT_TRUE(WaitFor([&] { return stranger.Connect("127.0.0.9", "127.0.0.1", 179); }, 5s));
    });
    // EOF, not the timeout: the speaker closed its end.
    auto started = std::chrono::steady_clock::now();
    ASSERT_FALSE(stranger.Receive(15s).has_value());
    ASSERT_LT(std::chrono::steady_clock::now() - started, 15s) << "connection " << i;
  }
  EXPECT_TRUE(WaitFor([&] { return OpenDescriptors() == before; }, 10s))
      << OpenDescriptors() << " descriptors, " << before << " before";
  EXPECT_TRUE(OurPeer("127.0.0.2").has_value());
}

TEST_F(ScriptedPeerTest, OpenErrorsAreNotified) {
  StartOurs(false, true);
  ScriptedPeer peer;
  InNetns(*us_, [&] {
    ASSERT_TRUE(WaitFor([&] { return peer.Connect("127.0.0.2", "127.0.0.1", 179); }, 5s));
  });
  OpenMessage wrong_as = PeerOpen("10.9.9.9", false);
  wrong_as.my_as = 64999;
  wrong_as.caps.four_octet_asn = 64999;
  peer.Send(wrong_as);
  auto m = peer.ReceiveNonKeepalive();  // our OPEN first
  ASSERT_TRUE(m && std::holds_alternative<OpenMessage>(*m));
  m = peer.ReceiveNonKeepalive();
  ASSERT_TRUE(m && std::holds_alternative<NotificationMessage>(*m));
  EXPECT_EQ(std::get<NotificationMessage>(*m).code, err::kOpen);
  EXPECT_EQ(std::get<NotificationMessage>(*m).subcode, err::kBadPeerAs);
  EXPECT_NE(OurPeer("127.0.0.2")->last_error.find("peer AS 64999"), std::string::npos);
}

// RFC 4271 6.8: both sides connect; the connection opened by the higher BGP identifier wins.
TEST_F(ScriptedPeerTest, ConnectionCollisionKeepsTheHigherIdsConnection) {
  for (bool peer_wins : {true, false}) {
    SCOPED_TRACE(peer_wins ? "peer has the higher ID" : "we have the higher ID");
    if (speaker_) speaker_->Stop();
    int listener = -1;
    InNetns(*us_, [&] {
      listener = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
      int one = 1;
      setsockopt(listener, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
      sockaddr_in a{};
      a.sin_family = AF_INET;
      a.sin_addr.s_addr = htonl(Ip("127.0.0.2").v4_host_order());
      a.sin_port = htons(1179);
      ASSERT_EQ(bind(listener, reinterpret_cast<sockaddr*>(&a), sizeof(a)), 0);
      ASSERT_EQ(listen(listener, 4), 0);
    });
    StartOurs(false, /*passive=*/false, 1179);
    // Connection A: ours, accepted by the scripted peer.
    ScriptedPeer a, b;
    pollfd p{listener, POLLIN, 0};
    ASSERT_EQ(poll(&p, 1, 5000), 1);
    a.Adopt(accept(listener, nullptr, nullptr));
    auto open_a = a.Receive();
    ASSERT_TRUE(open_a && std::holds_alternative<OpenMessage>(*open_a));
    // Connection B: the peer's, while A sits in OpenSent on our side.
    const char* peer_id = peer_wins ? "10.9.9.9" : "10.0.0.0";
    InNetns(*us_, [&] { ASSERT_TRUE(b.Connect("127.0.0.2", "127.0.0.1", 179)); });
    b.Send(PeerOpen(peer_id, false));
    auto open_b = b.Receive();
    ASSERT_TRUE(open_b && std::holds_alternative<OpenMessage>(*open_b));
    ScriptedPeer& winner = peer_wins ? b : a;
    ScriptedPeer& loser = peer_wins ? a : b;
    if (!peer_wins) a.Send(PeerOpen(peer_id, false));  // the OPEN that triggers detection
    auto cease = loser.ReceiveNotification();
    ASSERT_TRUE(cease.has_value());
    EXPECT_EQ(cease->code, err::kCease);
    EXPECT_EQ(cease->subcode, err::kCollisionResolution);
    if (peer_wins) b.Send(KeepaliveMessage{});
    auto ka = winner.Receive();
    ASSERT_TRUE(ka && std::holds_alternative<KeepaliveMessage>(*ka));
    winner.Send(KeepaliveMessage{});
    EXPECT_TRUE(WaitFor([&] { return Established("127.0.0.2"); }, 5s));
    close(listener);
  }
}

TEST_F(ScriptedPeerTest, RouteRefreshResendsTheTable) {
  StartOurs(false, true);
  LocalPath path;
  path.prefix = Pfx("10.244.7.0/24");
  speaker_->AddPath(path);
  ScriptedPeer peer;
  OpenMessage open = PeerOpen("10.9.9.9", false);
  open.caps.route_refresh = true;
  Handshake(peer, open);
  auto first = peer.ReceiveUpdate();
  ASSERT_TRUE(first.has_value());
  EXPECT_EQ(first->nlri, std::vector<IpPrefix>{Pfx("10.244.7.0/24")});
  auto eor = peer.ReceiveUpdate();
  ASSERT_TRUE(eor && eor->EndOfRib() == kIpv4Unicast);
  peer.Send(RouteRefreshMessage{kIpv4Unicast, 0});
  auto again = peer.ReceiveUpdate();
  ASSERT_TRUE(again.has_value());
  EXPECT_EQ(again->nlri, std::vector<IpPrefix>{Pfx("10.244.7.0/24")});
  eor = peer.ReceiveUpdate();
  EXPECT_TRUE(eor && eor->EndOfRib() == kIpv4Unicast);
}

// RFC 6793 towards a peer without the 4-octet capability: AS_TRANS in OPEN and AS_PATH, the
// real path in AS4_PATH.
TEST_F(ScriptedPeerTest, FourOctetAsnTowardsTwoOctetPeer) {
  StartOurs(false, true, 179, 4200000000u);
  LocalPath path;
  path.prefix = Pfx("10.244.7.0/24");
  speaker_->AddPath(path);
  ScriptedPeer peer;
  peer.codec.four_octet_as = false;
  OpenMessage open = PeerOpen("10.9.9.9", false);
  open.caps.four_octet_asn.reset();
  OpenMessage ours;
  Handshake(peer, open, &ours);
  EXPECT_EQ(ours.my_as, kAsTrans);
  EXPECT_EQ(ours.caps.four_octet_asn, 4200000000u);
  auto u = peer.ReceiveUpdate();
  ASSERT_TRUE(u && u->attrs.as_path);
  EXPECT_EQ(u->attrs.as_path->ToString(), "4200000000");  // merged from AS_PATH + AS4_PATH
  // On the wire: AS_PATH [23456] and AS4_PATH [4200000000].
  std::string hex;
  for (uint8_t b : peer.last_raw)
    hex += "0123456789abcdef"[b >> 4], hex += "0123456789abcdef"[b & 15];
  EXPECT_NE(hex.find("40020402015ba0"), std::string::npos) << hex;
  EXPECT_NE(hex.find("c011060201fa56ea00"), std::string::npos) << hex;

  // Its 2-octet paths come in right too.
  UpdateMessage in = Announce({Pfx("10.99.1.0/24")});
  peer.Send(in);
  ASSERT_TRUE(WaitFor([&] { return BestPath("10.99.1.0/24").has_value(); }, 5s));
  EXPECT_EQ(BestPath("10.99.1.0/24")->attributes.as_path->ToString(), "64513");
}

// RFC 4271 5 / 9.1.4: an unknown optional transitive attribute is passed on with the Partial
// bit set; an unknown optional non-transitive one is not.
TEST_F(ScriptedPeerTest, UnknownTransitiveAttributePassedOnWithPartialBit) {
  StartOurs(false, true);
  AddPassivePeer("127.0.0.3", 64514);
  ScriptedPeer from, to;
  Handshake(from, PeerOpen("10.9.9.9", false));
  Handshake(to, PeerOpen("10.9.9.8", false, 64514), nullptr, 0, "127.0.0.3");

  UpdateMessage u = Announce({Pfx("10.99.5.0/24")});
  u.attrs.unknown.push_back(RawAttribute{0xc0, 99, {1, 2, 3}});  // optional transitive
  u.attrs.unknown.push_back(RawAttribute{0x80, 98, {4}});        // optional non-transitive
  from.Send(u);
  std::optional<UpdateMessage> got;
  while ((got = to.ReceiveUpdate()) && got->nlri.empty()) {
  }
  ASSERT_TRUE(got.has_value());
  EXPECT_EQ(got->nlri, std::vector<IpPrefix>{Pfx("10.99.5.0/24")});
  ASSERT_EQ(got->attrs.unknown.size(), 1u);
  EXPECT_EQ(got->attrs.unknown[0].type, 99);
  EXPECT_EQ(got->attrs.unknown[0].flags, 0xe0);
  EXPECT_EQ(got->attrs.unknown[0].value, (std::vector<uint8_t>{1, 2, 3}));
  EXPECT_EQ(got->attrs.as_path->ToString(), "64512 64513");
  EXPECT_EQ(got->attrs.next_hop, Ip("127.0.0.1"));  // next hop self towards eBGP
}

// RFC 5082 GTSM (issue 16 item 10), on loopback where a segment arrives with the TTL it was
// sent with: a peer one hop too far (TTL 254) never gets a session; the same peer sending
// TTL 255 does, and it receives our segments only because we send TTL 255 too (it insists
// on it with its own IP_MINTTL).
TEST_F(ScriptedPeerTest, GtsmAcceptsTtl255AndDropsLowerTtl) {
  peer_tweak_ = [](PeerConfig& p) { p.ttl_security = true; };
  StartOurs(false, true);

  ScriptedPeer far;
  far.ttl = 254;
  InNetns(*us_, [&] { ASSERT_TRUE(far.Connect("127.0.0.2", "127.0.0.1", 179)); });
  far.Send(PeerOpen("10.9.9.9", false));
  auto ours = far.Receive();  // our OPEN reaches it (we send TTL 255)
  ASSERT_TRUE(ours && std::holds_alternative<OpenMessage>(*ours));
  far.Send(KeepaliveMessage{});
  far.Send(Announce({Pfx("10.99.1.0/24")}));
  // Whatever it sends after the connection was accepted is dropped by the kernel.
  EXPECT_FALSE(WaitFor([&] { return Established("127.0.0.2"); }, 3s));
  EXPECT_FALSE(BestPath("10.99.1.0/24").has_value());
  far.Close();

  ScriptedPeer near;
  near.ttl = 255;
  near.min_ttl = 255;
  Handshake(near, PeerOpen("10.9.9.9", false));
  near.Send(Announce({Pfx("10.99.1.0/24")}));
  EXPECT_TRUE(WaitFor([&] { return BestPath("10.99.1.0/24").has_value(); }, 5s));
}

// Without GTSM (the default, as in kube-router) a peer's TTL does not matter.
TEST_F(ScriptedPeerTest, WithoutGtsmAnyTtlIsAccepted) {
  StartOurs(false, true);
  ScriptedPeer peer;
  peer.ttl = 1;
  Handshake(peer, PeerOpen("10.9.9.9", false));
  EXPECT_TRUE(Established("127.0.0.2"));
}

}  // namespace
}  // namespace kr::bgp::testing
