// Our speaker against a scripted peer: the test itself speaks BGP over TCP (with our codec) so
// it can do what real daemons will not do on demand: send malformed UPDATEs, cross two
// connection attempts, restart at an exact moment and hold back its End-of-RIB.
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>

#include <fstream>
#include <functional>

#include "interop_fixture.h"
#include "kube_router/bgp/codec.h"

namespace kr::bgp::testing {
namespace {

class ScriptedPeer {
 public:
  ~ScriptedPeer() { Close(); }
  void Close() {
    if (fd_ >= 0) close(fd_);
    fd_ = -1;
    buf_.clear();
  }
  // `rcvbuf` > 0 shrinks the receive buffer (and so the TCP window) before connecting.
  bool Connect(const char* local, const char* remote, uint16_t port, int rcvbuf = 0) {
    Close();
    fd_ = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (rcvbuf > 0) setsockopt(fd_, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof(rcvbuf));
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(Ip(local).v4_host_order());
    if (bind(fd_, reinterpret_cast<sockaddr*>(&a), sizeof(a)) != 0) return false;
    a.sin_addr.s_addr = htonl(Ip(remote).v4_host_order());
    a.sin_port = htons(port);
    return connect(fd_, reinterpret_cast<sockaddr*>(&a), sizeof(a)) == 0;
  }
  void Adopt(int fd) {
    Close();
    fd_ = fd;
  }
  void SendBytes(const std::vector<uint8_t>& b) {
    ASSERT_EQ(send(fd_, b.data(), b.size(), MSG_NOSIGNAL), static_cast<ssize_t>(b.size()));
  }
  void Send(const Message& m) { SendBytes(Encode(m, codec)); }
  // For floods that may meet a closed connection: false once the peer is gone.
  bool TrySend(const std::vector<uint8_t>& b) {
    return send(fd_, b.data(), b.size(), MSG_NOSIGNAL) == static_cast<ssize_t>(b.size());
  }
  // The next message, or nullopt on timeout or EOF.
  std::optional<Message> Receive(std::chrono::milliseconds timeout = 5s) {
    auto deadline = std::chrono::steady_clock::now() + timeout;
    while (true) {
      auto frame = FrameLength(buf_);
      if (auto* len = std::get_if<size_t>(&frame); len && *len && *len <= buf_.size()) {
        last_raw.assign(buf_.begin(), buf_.begin() + static_cast<long>(*len));
        auto r = Decode(std::span<const uint8_t>(buf_).first(*len), codec);
        buf_.erase(buf_.begin(), buf_.begin() + static_cast<long>(*len));
        if (auto* m = std::get_if<Message>(&r)) return *m;
        return std::nullopt;
      }
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
          deadline - std::chrono::steady_clock::now());
      if (left.count() <= 0) return std::nullopt;
      pollfd p{fd_, POLLIN, 0};
      if (poll(&p, 1, static_cast<int>(left.count())) <= 0) continue;
      uint8_t chunk[4096];
      ssize_t n = read(fd_, chunk, sizeof(chunk));
      if (n <= 0) return std::nullopt;
      buf_.insert(buf_.end(), chunk, chunk + n);
    }
  }
  // Skips everything up to the next NOTIFICATION.
  std::optional<NotificationMessage> ReceiveNotification(std::chrono::milliseconds timeout = 5s) {
    while (auto m = Receive(timeout))
      if (auto* n = std::get_if<NotificationMessage>(&*m)) return *n;
    return std::nullopt;
  }
  // Skips KEEPALIVEs.
  std::optional<Message> ReceiveNonKeepalive(std::chrono::milliseconds timeout = 5s) {
    while (auto m = Receive(timeout))
      if (!std::holds_alternative<KeepaliveMessage>(*m)) return m;
    return std::nullopt;
  }

  // Skips everything up to the next UPDATE.
  std::optional<UpdateMessage> ReceiveUpdate(std::chrono::milliseconds timeout = 5s) {
    while (auto m = Receive(timeout))
      if (auto* u = std::get_if<UpdateMessage>(&*m)) return *u;
    return std::nullopt;
  }

  CodecOptions codec;             // what this peer negotiated
  std::vector<uint8_t> last_raw;  // bytes of the last message received

 private:
  int fd_ = -1;
  std::vector<uint8_t> buf_;
};

OpenMessage PeerOpen(const char* id, bool graceful_restart) {
  OpenMessage o;
  o.my_as = 64513;
  o.hold_time_s = 30;
  o.bgp_id = Ip(id);
  o.caps.multiprotocol = {kIpv4Unicast};
  o.caps.four_octet_asn = 64513;
  if (graceful_restart)
    o.caps.graceful_restart = GracefulRestartCap{false, 30, {{kIpv4Unicast, true}}};
  return o;
}

UpdateMessage Announce(std::vector<IpPrefix> nlri) {
  UpdateMessage u;
  u.attrs.origin = Origin::kIgp;
  u.attrs.as_path = AsPath{{{AsSegmentType::kSequence, {64513}}}};
  u.attrs.next_hop = Ip("127.0.0.2");
  u.nlri = std::move(nlri);
  return u;
}

class ScriptedPeerTest : public InteropTest {
 protected:
  void StartOurs(bool graceful_restart, bool passive, uint16_t peer_port = 179,
                 uint32_t local_asn = 64512) {
    GlobalConfig g = Global(local_asn);
    g.listen_addresses = {Ip("127.0.0.1")};
    g.graceful_restart = graceful_restart;
    if (tweak_) tweak_(g);
    StartSpeaker(g);
    PeerConfig p;
    p.address = Ip("127.0.0.2");
    p.remote_asn = 64513;
    p.passive = passive;
    p.port = peer_port;
    speaker_->AddPeer(p);
    // Connections from a peer the speaker does not know yet are refused; Peers() answers
    // only after the AddPeer task ran.
    ASSERT_TRUE(OurPeer("127.0.0.2").has_value());
  }
  // Connects, exchanges OPEN and KEEPALIVE, and waits for Established.
  void Handshake(ScriptedPeer& peer, const OpenMessage& open, OpenMessage* theirs = nullptr,
                 int rcvbuf = 0) {
    InNetns(*us_, [&] {
      ASSERT_TRUE(WaitFor([&] { return peer.Connect("127.0.0.2", "127.0.0.1", 179, rcvbuf); }, 5s));
    });
    peer.Send(open);
    auto m = peer.Receive();
    ASSERT_TRUE(m && std::holds_alternative<OpenMessage>(*m));
    if (theirs) *theirs = std::get<OpenMessage>(*m);
    peer.Send(KeepaliveMessage{});
    ASSERT_TRUE(WaitFor([&] { return Established("127.0.0.2"); }, 5s));
  }
  // Small kernel socket buffers in our namespace, so output a peer does not read piles up in
  // the speaker's own queue within a few hundred kilobytes instead of megabytes.
  void SmallSocketBuffers() {
    auto r = us_->Sh("sysctl -qw net.ipv4.tcp_wmem='4096 16384 65536'");
    ASSERT_TRUE(r.ok()) << r.error();
  }
  // `count` local paths, each with its own community so that each is its own UPDATE.
  void OriginateDistinctPaths(int count) {
    for (int i = 0; i < count; ++i) {
      LocalPath path;
      path.prefix = *IpPrefix::Parse("10." + std::to_string(100 + i / 256) + "." +
                                     std::to_string(i % 256) + ".0/24");
      path.communities = {Community(1, static_cast<uint16_t>(i))};
      speaker_->AddPath(path);
    }
    ASSERT_TRUE(
        WaitFor([&] { return speaker_->BestPaths().size() == static_cast<size_t>(count); }, 10s));
  }
  // Reads UPDATEs until the IPv4 End-of-RIB; returns the prefixes announced before it.
  static std::optional<size_t> ReadTable(ScriptedPeer& peer) {
    size_t prefixes = 0;
    while (auto u = peer.ReceiveUpdate()) {
      if (u->EndOfRib()) return prefixes;
      prefixes += u->nlri.size();
    }
    return std::nullopt;
  }
  std::function<void(GlobalConfig&)> tweak_;
};

size_t RssBytes() {
  std::ifstream status("/proc/self/status");
  std::string line;
  while (std::getline(status, line)) {
    if (line.rfind("VmRSS:", 0) == 0) return std::stoul(line.substr(6)) * 1024;
  }
  return 0;
}

TEST_F(ScriptedPeerTest, GracefulRestartKeepsStaleRoutesUntilEndOfRib) {
  StartOurs(/*graceful_restart=*/true, /*passive=*/true);
  ScriptedPeer peer;
  OpenMessage ours;
  Handshake(peer, PeerOpen("10.9.9.9", true), &ours);
  ASSERT_TRUE(ours.caps.graceful_restart.has_value());
  EXPECT_EQ(ours.caps.graceful_restart->families.size(), 2u);
  EXPECT_TRUE(ours.caps.graceful_restart->families[0].forwarding_preserved);
  // Our initial table is empty: the first UPDATE is our IPv4 End-of-RIB.
  auto eor = peer.ReceiveNonKeepalive();
  ASSERT_TRUE(eor && std::holds_alternative<UpdateMessage>(*eor));
  EXPECT_EQ(std::get<UpdateMessage>(*eor).EndOfRib(), kIpv4Unicast);

  peer.Send(Announce({Pfx("10.99.1.0/24"), Pfx("10.99.2.0/24")}));
  ASSERT_TRUE(WaitFor([&] { return BestPath("10.99.1.0/24") && BestPath("10.99.2.0/24"); }, 5s));

  peer.Close();  // the peer "crashes": no NOTIFICATION
  ASSERT_TRUE(WaitFor([&] { return !Established("127.0.0.2"); }, 5s));
  ASSERT_TRUE(BestPath("10.99.2.0/24").has_value());
  EXPECT_TRUE(BestPath("10.99.2.0/24")->stale);

  Handshake(peer, PeerOpen("10.9.9.9", true));
  // Back, but no End-of-RIB yet: both routes still there, still stale.
  ASSERT_TRUE(BestPath("10.99.1.0/24") && BestPath("10.99.2.0/24"));
  EXPECT_TRUE(BestPath("10.99.2.0/24")->stale);
  peer.Send(Announce({Pfx("10.99.1.0/24")}));
  ASSERT_TRUE(WaitFor([&] { return !BestPath("10.99.1.0/24")->stale; }, 5s));
  EXPECT_TRUE(BestPath("10.99.2.0/24").has_value());
  peer.Send(UpdateMessage{});  // End-of-RIB
  ASSERT_TRUE(WaitFor([&] { return !BestPath("10.99.2.0/24").has_value(); }, 5s));
  EXPECT_TRUE(BestPath("10.99.1.0/24").has_value());
}

TEST_F(ScriptedPeerTest, WithoutGracefulRestartRoutesGoWithTheSession) {
  StartOurs(/*graceful_restart=*/true, /*passive=*/true);
  ScriptedPeer peer;
  Handshake(peer, PeerOpen("10.9.9.9", /*graceful_restart=*/false));
  peer.Send(Announce({Pfx("10.99.1.0/24")}));
  ASSERT_TRUE(WaitFor([&] { return BestPath("10.99.1.0/24").has_value(); }, 5s));
  peer.Close();
  EXPECT_TRUE(WaitFor([&] { return !BestPath("10.99.1.0/24").has_value(); }, 5s));
}

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
  PeerConfig second;
  second.address = Ip("127.0.0.3");
  second.remote_asn = 64514;
  second.passive = true;
  speaker_->AddPeer(second);
  ASSERT_TRUE(OurPeer("127.0.0.3").has_value());
  ScriptedPeer from, to;
  Handshake(from, PeerOpen("10.9.9.9", false));
  InNetns(*us_, [&] { ASSERT_TRUE(to.Connect("127.0.0.3", "127.0.0.1", 179)); });
  OpenMessage open = PeerOpen("10.9.9.8", false);
  open.my_as = 64514;
  open.caps.four_octet_asn = 64514;
  to.Send(open);
  ASSERT_TRUE(to.Receive().has_value());  // our OPEN
  to.Send(KeepaliveMessage{});
  ASSERT_TRUE(WaitFor([&] { return Established("127.0.0.3"); }, 5s));

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

// Issue 16 item 4: a peer that never reads and repeats ROUTE-REFRESH. The refreshes are
// coalesced (at most one extra copy of the table is ever queued), memory stays flat, and the
// RFC 9687 send hold timer ends the session.
TEST_F(ScriptedPeerTest, RouteRefreshFloodFromAPeerThatDoesNotReadIsBounded) {
  SmallSocketBuffers();
  tweak_ = [](GlobalConfig& g) {
    g.send_hold_time_s = 6;
    g.max_output_queue_bytes = 4u << 20;
  };
  StartOurs(false, true);
  OriginateDistinctPaths(3000);  // ~180 KB of UPDATEs
  const size_t rss_before = RssBytes();
  ScriptedPeer peer;
  OpenMessage open = PeerOpen("10.9.9.9", false);
  open.caps.route_refresh = true;
  Handshake(peer, open, nullptr, /*rcvbuf=*/4096);
  // From here on the peer reads nothing.
  const auto refresh = Encode(RouteRefreshMessage{kIpv4Unicast, 0}, peer.codec);
  uint64_t max_queued = 0;
  int sent = 0;
  const auto deadline = std::chrono::steady_clock::now() + 20s;
  while (std::chrono::steady_clock::now() < deadline) {
    // It keeps sending, so our hold timer never expires: only the send side can end this.
    for (int i = 0; i < 20 && peer.TrySend(refresh); ++i) ++sent;
    auto status = OurPeer("127.0.0.2");
    ASSERT_TRUE(status.has_value());
    max_queued = std::max(max_queued, status->output_queue_bytes);
    if (status->state != PeerState::kEstablished) break;
  }
  auto status = OurPeer("127.0.0.2");
  ASSERT_TRUE(status.has_value());
  EXPECT_NE(status->state, PeerState::kEstablished) << "the session outlived the send hold time";
  EXPECT_NE(status->last_error.find("Send Hold Timer Expired"), std::string::npos)
      << status->last_error;
  EXPECT_GT(sent, 500);  // the flood really happened
  EXPECT_GT(max_queued, 0u);
  EXPECT_LT(max_queued, 1u << 20) << "refreshes were not coalesced";
  EXPECT_LT(RssBytes(), rss_before + (64u << 20));
}

// The per-connection output bound: a table larger than the bound for a peer that does not
// read ends with Cease/Out of Resources (RFC 4486) instead of growing the queue.
TEST_F(ScriptedPeerTest, OutputQueueBoundClosesWithOutOfResources) {
  SmallSocketBuffers();
  tweak_ = [](GlobalConfig& g) { g.max_output_queue_bytes = 64u << 10; };
  StartOurs(false, true);
  OriginateDistinctPaths(3000);
  ScriptedPeer peer;
  Handshake(peer, PeerOpen("10.9.9.9", false), nullptr, /*rcvbuf=*/4096);
  ASSERT_TRUE(WaitFor([&] { return !Established("127.0.0.2"); }, 10s));
  auto status = OurPeer("127.0.0.2");
  ASSERT_TRUE(status.has_value());
  EXPECT_NE(status->last_error.find("Out of Resources"), std::string::npos) << status->last_error;
  EXPECT_EQ(status->output_queue_bytes, 0u);
  // The connection is gone: reading what was in flight ends in EOF.
  while (peer.Receive(5s)) {
  }
}

// A slow but honest peer: it reads only after our queue has backed up, and still gets the
// whole table; ROUTE-REFRESHes sent meanwhile are answered by exactly one more copy.
TEST_F(ScriptedPeerTest, SlowPeerThatReadsLateConverges) {
  SmallSocketBuffers();
  tweak_ = [](GlobalConfig& g) { g.hold_time_s = 30; };  // the script sends no keepalives
  StartOurs(false, true);
  OriginateDistinctPaths(3000);
  ScriptedPeer peer;
  OpenMessage open = PeerOpen("10.9.9.9", false);
  open.caps.route_refresh = true;
  Handshake(peer, open, nullptr, /*rcvbuf=*/4096);
  ASSERT_TRUE(WaitFor(
      [&] {
        auto status = OurPeer("127.0.0.2");
        return status && status->output_queue_bytes > 0;
      },
      5s));
  for (int i = 0; i < 50; ++i) peer.Send(RouteRefreshMessage{kIpv4Unicast, 0});
  EXPECT_EQ(ReadTable(peer), 3000u);
  EXPECT_EQ(ReadTable(peer), 3000u);  // the one coalesced refresh
  EXPECT_FALSE(peer.ReceiveUpdate(2s).has_value());
  EXPECT_TRUE(Established("127.0.0.2"));
  EXPECT_TRUE(WaitFor([&] { return OurPeer("127.0.0.2")->output_queue_bytes == 0; }, 5s));
}

}  // namespace
}  // namespace kr::bgp::testing
