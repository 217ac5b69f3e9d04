// Interop with GoBGP: eBGP and iBGP in both directions, attributes read back with
// `gobgp global rib -j`, routes GoBGP originates and withdraws, TCP MD5 with the right and a
// wrong password, dead-peer detection by the hold timer, and IPv6 unicast over MP-BGP.
#include <signal.h>

#include <sstream>

#include "interop_fixture.h"

namespace kr::bgp::testing {
namespace {

class GobgpTest : public InteropTest {};

const char* kPassive = "  [neighbors.transport.config]\n    passive-mode = true\n";

TEST_F(GobgpTest, EbgpWeConnectRoutesBothWays) {
  StartGobgp(GobgpConfig(64513, 64512, kPassive));
  StartSpeaker(Global(64512));
  speaker_->AddPeer(PeerTo(64513));
  LocalPath path;
  path.prefix = Pfx("10.244.5.0/24");
  path.communities = {Community(64512, 100)};
  path.large_communities = {{64512, 3, 4}};
  speaker_->AddPath(path);
  ASSERT_TRUE(WaitFor([&] { return Established() && GobgpEstablished(); }, 15s))
      << Gobgp("neighbor 10.0.0.1") << gobgpd_->Log();
  std::string rib;
  ASSERT_TRUE(WaitFor(
      [&] {
        rib = Gobgp("global rib -a ipv4 -j");
        return rib.find("10.244.5.0/24") != std::string::npos;
      },
      10s))
      << rib;
  EXPECT_NE(rib.find("\"nexthop\":\"10.0.0.1\""), std::string::npos) << rib;
  EXPECT_NE(rib.find("\"as_paths\":[{\"segment_type\":2,\"num\":1,\"asns\":[64512]}]"),
            std::string::npos)
      << rib;
  EXPECT_NE(rib.find("\"communities\":[" + std::to_string(Community(64512, 100)) + "]"),
            std::string::npos)
      << rib;
  EXPECT_NE(rib.find("{\"ASN\":64512,\"LocalData1\":3,\"LocalData2\":4}"), std::string::npos)
      << rib;

  // GoBGP originates and withdraws.
  Gobgp("global rib add 10.98.0.0/24 -a ipv4 nexthop 10.0.0.2 community 100:200 med 30");
  ASSERT_TRUE(WaitFor([&] { return BestPath("10.98.0.0/24").has_value(); }, 10s));
  auto learned = *BestPath("10.98.0.0/24");
  EXPECT_EQ(learned.next_hop, Ip("10.0.0.2"));
  EXPECT_EQ(learned.attributes.as_path->ToString(), "64513");
  EXPECT_EQ(learned.attributes.communities, std::vector<uint32_t>{Community(100, 200)});
  EXPECT_EQ(learned.attributes.med, 30u);
  Gobgp("global rib del 10.98.0.0/24 -a ipv4");
  EXPECT_TRUE(WaitFor([&] { return !BestPath("10.98.0.0/24").has_value(); }, 10s));

  speaker_->WithdrawPath(Pfx("10.244.5.0/24"));
  EXPECT_TRUE(WaitFor(
      [&] { return Gobgp("global rib -a ipv4 -j").find("10.244.5.0/24") == std::string::npos; },
      10s));
}

TEST_F(GobgpTest, IbgpTheyConnectWithIpv6) {
  StartGobgp(GobgpConfig(64512, 64512, "  [neighbors.transport.config]\n    remote-port = 1791\n"));
  GlobalConfig g = Global(64512);
  g.listen_port = 1791;
  StartSpeaker(g);
  PeerConfig p = PeerTo(64512);
  p.passive = true;
  speaker_->AddPeer(p);
  LocalPath v6;
  v6.prefix = Pfx("fd10:244::/64");
  v6.next_hop = Ip("fd00::1");
  v6.local_pref = 150;
  speaker_->AddPath(v6);
  ASSERT_TRUE(WaitFor([&] { return Established() && GobgpEstablished(); }, 15s))
      << Gobgp("neighbor 10.0.0.1") << gobgpd_->Log();
  std::string rib;
  ASSERT_TRUE(WaitFor(
      [&] {
        rib = Gobgp("global rib -a ipv6 -j");
        return rib.find("fd10:244::/64") != std::string::npos;
      },
      10s))
      << rib;
  EXPECT_NE(rib.find("fd00::1"), std::string::npos) << rib;
  EXPECT_NE(rib.find("{\"type\":5,\"value\":150}"), std::string::npos) << rib;

  Gobgp("global rib add fd20::/48 -a ipv6 nexthop fd00::2");
  ASSERT_TRUE(WaitFor([&] { return BestPath("fd20::/48").has_value(); }, 10s));
  EXPECT_EQ(BestPath("fd20::/48")->next_hop, Ip("fd00::2"));
  EXPECT_TRUE(BestPath("fd20::/48")->ibgp);
}

TEST_F(GobgpTest, Md5RightPasswordEstablishes) {
  StartGobgp(GobgpConfig(64513, 64512,
                         "    auth-password = \"kube-router-s3cret\"\n" + std::string(kPassive)));
  StartSpeaker(Global(64512));
  PeerConfig p = PeerTo(64513);
  p.password = "kube-router-s3cret";
  speaker_->AddPeer(p);
  EXPECT_TRUE(WaitFor([&] { return Established() && GobgpEstablished(); }, 15s))
      << Gobgp("neighbor 10.0.0.1") << gobgpd_->Log();
}

TEST_F(GobgpTest, Md5WrongPasswordDoesNotEstablish) {
  StartGobgp(GobgpConfig(64513, 64512, "    auth-password = \"right\"\n"));
  StartSpeaker(Global(64512));
  PeerConfig p = PeerTo(64513);
  p.password = "wrong";
  speaker_->AddPeer(p);
  // Both sides connect (GoBGP is active here too) and retry every second; none of those
  // connections may complete a handshake within several retry rounds.
  EXPECT_FALSE(WaitFor([&] { return Established() || GobgpEstablished(); }, 6s));
  // The control: fixing the password establishes the session.
  p.password = "right";
  speaker_->UpdatePeer(p);
  EXPECT_TRUE(WaitFor([&] { return Established() && GobgpEstablished(); }, 15s))
      << Gobgp("neighbor 10.0.0.1");
}

TEST_F(GobgpTest, HoldTimerDetectsFrozenPeerAndKilledPeer) {
  StartGobgp(GobgpConfig(64513, 64512, kPassive));
  StartSpeaker(Global(64512));
  speaker_->AddPeer(PeerTo(64513));
  Gobgp("global rib add 10.97.0.0/24 -a ipv4 nexthop 10.0.0.2");
  ASSERT_TRUE(WaitFor([&] { return Established() && BestPath("10.97.0.0/24"); }, 15s));
  // A frozen peer keeps the TCP connection open but sends no KEEPALIVEs: only the 3 s hold
  // timer can notice.
  auto frozen_at = std::chrono::steady_clock::now();
  gobgpd_->Signal(SIGSTOP);
  ASSERT_TRUE(WaitFor([&] { return !Established(); }, 10s));
  auto detected = std::chrono::steady_clock::now() - frozen_at;
  EXPECT_LE(detected, 5000ms);  // hold time 3 s plus slack for loaded CI machines
  EXPECT_GE(detected, 1500ms);  // not before the (reset-by-last-keepalive) hold time
  EXPECT_FALSE(BestPath("10.97.0.0/24").has_value());
  EXPECT_NE(OurPeer("10.0.0.2")->last_error.find("Hold Timer Expired"), std::string::npos);
  gobgpd_->Signal(SIGCONT);
  ASSERT_TRUE(WaitFor([&] { return Established(); }, 15s));
  // A killed peer: the kernel closes its socket, noticed at once.
  gobgpd_->Signal(SIGKILL);
  EXPECT_TRUE(WaitFor([&] { return !Established(); }, 3s));
}

// A session over IPv6 transport: next-hop-self for an IPv6 prefix is our IPv6 address.
TEST_F(GobgpTest, Ipv6TransportSession) {
  StartGobgp(R"([global.config]
  as = 64513
  router-id = "10.0.0.2"
  local-address-list = ["fd00::2"]
[[neighbors]]
  [neighbors.config]
    neighbor-address = "fd00::1"
    peer-as = 64512
  [neighbors.transport.config]
    passive-mode = true
    local-address = "fd00::2"
  [neighbors.timers.config]
    hold-time = 3
    keepalive-interval = 1
  [[neighbors.afi-safis]]
    [neighbors.afi-safis.config]
      afi-safi-name = "ipv6-unicast"
)");
  StartSpeaker(Global(64512));
  PeerConfig p = PeerTo(64513);
  p.address = Ip("fd00::2");
  speaker_->AddPeer(p);
  LocalPath path;
  path.prefix = Pfx("fd10:1::/64");
  speaker_->AddPath(path);
  ASSERT_TRUE(WaitFor([&] { return Established("fd00::2"); }, 15s)) << gobgpd_->Log();
  std::string rib;
  ASSERT_TRUE(WaitFor(
      [&] {
        rib = Gobgp("global rib -a ipv6 -j");
        return rib.find("fd10:1::/64") != std::string::npos;
      },
      10s))
      << rib;
  EXPECT_NE(rib.find("\"nexthop\":\"fd00::1\""), std::string::npos) << rib;
  Gobgp("global rib add fd20::/48 -a ipv6 nexthop fd00::2");
  ASSERT_TRUE(WaitFor([&] { return BestPath("fd20::/48").has_value(); }, 10s));
  EXPECT_EQ(BestPath("fd20::/48")->peer, Ip("fd00::2"));
}

// TTL per peer: 1 for a directly connected eBGP peer, the configured multihop TTL otherwise.
// Counted by iptables rules (inside the peer's namespace) on packets arriving from us.
TEST_F(GobgpTest, EbgpTtlAndMultihop) {
  // iptables-legacy: its rules live in the namespace's own tables, no nft set-up needed.
  for (int ttl : {1, 5}) {
    auto r = peer_->Sh("iptables-legacy -A INPUT -s 10.0.0.1 -p tcp --dport 179 -m ttl --ttl-eq " +
                       std::to_string(ttl) + " -j ACCEPT");
    ASSERT_TRUE(r.ok()) << r.error();
  }
  auto count = [&](int ttl) {
    auto out = peer_->Sh("iptables-legacy -L INPUT -v -x -n");
    if (!out.ok()) return -1L;
    std::istringstream in(*out);
    std::string line;
    while (std::getline(in, line)) {
      if (line.find("TTL match TTL == " + std::to_string(ttl)) == std::string::npos) continue;
      std::istringstream fields(line);
      long packets = 0;
      fields >> packets;
      return packets;
    }
    return -1L;
  };
  StartGobgp(GobgpConfig(64513, 64512, kPassive));
  StartSpeaker(Global(64512));
  speaker_->AddPeer(PeerTo(64513));
  ASSERT_TRUE(WaitFor([&] { return Established(); }, 15s));
  EXPECT_GT(count(1), 0);
  EXPECT_EQ(count(5), 0);

  PeerConfig multihop = PeerTo(64513);
  multihop.multihop_ttl = 5;
  speaker_->UpdatePeer(multihop);  // resets the session with the new TTL
  ASSERT_TRUE(WaitFor([&] { return count(5) > 0; }, 15s));
  EXPECT_TRUE(WaitFor([&] { return Established(); }, 15s));
}

}  // namespace
}  // namespace kr::bgp::testing
