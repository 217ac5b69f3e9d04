// Graceful restart (RFC 4724) against the scripted peer: stale routes kept across its restart
// until its End-of-RIB, and gone with the session when it did not negotiate the capability.
#include "scripted_peer.h"

namespace kr::bgp::testing {
namespace {

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

}  // namespace
}  // namespace kr::bgp::testing
