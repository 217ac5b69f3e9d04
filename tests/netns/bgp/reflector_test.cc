// Route reflection (RFC 4456) with two real iBGP peers: BIRD (10.0.0.2) as our client and
// GoBGP (10.0.0.3) as a non-client. Also both sides connecting actively (RFC 4271 6.8
// collision detection when their attempts cross).
#include "interop_fixture.h"

namespace kr::bgp::testing {
namespace {

class ReflectorTest : public InteropTest {};

TEST_F(ReflectorTest, ReflectsBetweenClientAndNonClientOnly) {
  ASSERT_TRUE(peer_->Sh("ip addr add 10.0.0.3/24 dev v1").ok());
  StartBird(R"(
protocol static s4 { ipv4; route 10.99.1.0/24 via 10.0.0.2; }
protocol bgp kr {
  local 10.0.0.2 as 64512;
  neighbor 10.0.0.1 as 64512;
  passive on; direct; strict bind on;  # GoBGP listens on 10.0.0.3:179 beside it
  hold time 3; keepalive time 1;
  ipv4 { import all; export all; gateway direct; };
}
)");
  StartGobgp(R"([global.config]
  as = 64512
  router-id = "10.0.0.3"
  local-address-list = ["10.0.0.3"]
[[neighbors]]
  [neighbors.config]
    neighbor-address = "10.0.0.1"
    peer-as = 64512
  [neighbors.transport.config]
    passive-mode = true
    local-address = "10.0.0.3"
  [neighbors.timers.config]
    hold-time = 3
    keepalive-interval = 1
)");
  StartSpeaker(Global(64512));
  PeerConfig bird = PeerTo(64512);
  bird.route_reflector_client = true;
  PeerConfig gobgp = PeerTo(64512);
  gobgp.address = Ip("10.0.0.3");
  speaker_->AddPeer(bird);
  speaker_->AddPeer(gobgp);
  ASSERT_TRUE(WaitFor([&] { return Established("10.0.0.2") && Established("10.0.0.3"); }, 15s));
  // Not 10.0.0.3: BIRD shares the namespace and ignores next hops that are its own address.
  Gobgp("global rib add 10.98.0.0/24 -a ipv4 nexthop 10.0.0.9");

  // Client -> non-client, with ORIGINATOR_ID and our cluster ID (router ID by default).
  std::string rib;
  ASSERT_TRUE(WaitFor(
      [&] {
        rib = Gobgp("global rib -a ipv4 -j");
        return rib.find("10.99.1.0/24") != std::string::npos;
      },
      10s))
      << rib;
  EXPECT_NE(rib.find("{\"type\":9,\"value\":\"10.0.0.2\"}"), std::string::npos) << rib;
  EXPECT_NE(rib.find("{\"type\":10,\"value\":[\"10.0.0.1\"]}"), std::string::npos) << rib;
  // Non-client -> client.
  std::string route;
  ASSERT_TRUE(WaitFor(
      [&] {
        route = Birdc("show route all 10.98.0.0/24");
        return route.find("BGP.originator_id: 10.0.0.3") != std::string::npos;
      },
      10s))
      << route;
  EXPECT_NE(route.find("BGP.cluster_list: 10.0.0.1"), std::string::npos) << route;
  EXPECT_NE(route.find("BGP.next_hop: 10.0.0.9"), std::string::npos) << route;

  // Without the client flag nothing learned over iBGP goes to the other iBGP peer.
  bird.route_reflector_client = false;
  speaker_->UpdatePeer(bird);
  ASSERT_TRUE(WaitFor(
      [&] {
        return Established("10.0.0.2") && Established("10.0.0.3") && BestPath("10.99.1.0/24") &&
               BestPath("10.98.0.0/24");
      },
      15s));
  EXPECT_EQ(OurPeer("10.0.0.2")->prefixes_sent, 0u);
  EXPECT_EQ(OurPeer("10.0.0.3")->prefixes_sent, 0u);
  EXPECT_TRUE(WaitFor(
      [&] { return Gobgp("global rib -a ipv4 -j").find("10.99.1.0/24") == std::string::npos; },
      10s));
}

TEST_F(ReflectorTest, BothSidesActiveLeavesOneStableSession) {
  StartBird(R"(
protocol bgp kr {
  local 10.0.0.2 as 64513;
  neighbor 10.0.0.1 as 64512;
  hold time 3; keepalive time 1; connect retry time 1; connect delay time 1;
  ipv4 { import all; export none; };
}
)");
  StartSpeaker(Global(64512));
  speaker_->AddPeer(PeerTo(64513));
  ASSERT_TRUE(WaitFor([&] { return Established() && BirdEstablished("kr"); }, 15s))
      << Birdc("show protocols all kr");
  // Stays up: no flapping between the two connections for more than a hold time.
  EXPECT_FALSE(WaitFor([&] { return !Established() || !BirdEstablished("kr"); }, 4s));
}

}  // namespace
}  // namespace kr::bgp::testing
