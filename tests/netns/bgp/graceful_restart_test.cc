// RFC 4724 with BIRD 2 on both sides of a restart: as receiving speaker we keep a restarting
// peer's routes (marked stale) and drop the ones it no longer has after its End-of-RIB; as
// restarting speaker, BIRD keeps our routes while we are down and drops the ones we no longer
// announce after our End-of-RIB.
#include <signal.h>

#include "interop_fixture.h"

namespace kr::bgp::testing {
namespace {

class GracefulRestartTest : public InteropTest {
 protected:
  static std::string BirdProtocols(const std::string& static_routes) {
    return "protocol static s4 { ipv4; " + static_routes +
           " }\n"
           "protocol bgp kr {\n"
           "  local 10.0.0.2 as 64513;\n"
           "  neighbor 10.0.0.1 as 64512;\n"
           "  hold time 3; keepalive time 1; connect retry time 1;\n"
           "  graceful restart on; graceful restart time 30;\n"
           "  ipv4 { import all; export all; };\n"
           "}\n";
  }
  GlobalConfig GrGlobal() {
    GlobalConfig g = Global(64512);
    g.graceful_restart = true;
    g.graceful_restart_time_s = 30;
    return g;
  }
};

TEST_F(GracefulRestartTest, PeerRestartKeepsStaleRoutesUntilEndOfRib) {
  StartBird(BirdProtocols("route 10.99.1.0/24 via 10.0.0.2; route 10.99.2.0/24 via 10.0.0.2;"));
  StartSpeaker(GrGlobal());
  speaker_->AddPeer(PeerTo(64513));
  ASSERT_TRUE(WaitFor([&] { return BestPath("10.99.1.0/24") && BestPath("10.99.2.0/24"); }, 15s))
      << Birdc("show protocols all kr");

  bird_->Signal(SIGKILL);
  bird_->Wait(5s);
  ASSERT_TRUE(WaitFor([&] { return !Established(); }, 5s));
  // Receiving speaker: routes stay, marked stale.
  auto kept = BestPath("10.99.2.0/24");
  ASSERT_TRUE(kept.has_value());
  EXPECT_TRUE(kept->stale);
  ASSERT_TRUE(BestPath("10.99.1.0/24").has_value());

  // BIRD comes back without 10.99.2.0/24.
  StartBird(BirdProtocols("route 10.99.1.0/24 via 10.0.0.2;"));
  ASSERT_TRUE(WaitFor([&] { return Established(); }, 15s)) << Birdc("show protocols all kr");
  // BIRD (started without -R) does not claim preserved forwarding state, so its stale routes
  // may go as soon as it is back; either way 10.99.2.0/24 must go and 10.99.1.0/24 must come
  // back fresh. The End-of-RIB path is covered deterministically in scripted_peer_test.cc.
  ASSERT_TRUE(WaitFor(
      [&] {
        auto refreshed = BestPath("10.99.1.0/24");
        return !BestPath("10.99.2.0/24") && refreshed && !refreshed->stale;
      },
      10s));
}

TEST_F(GracefulRestartTest, OurRestartKeepsOurRoutesAtThePeer) {
  StartBird(BirdProtocols(""));
  StartSpeaker(GrGlobal());
  speaker_->AddPeer(PeerTo(64513));
  LocalPath a, b;
  a.prefix = Pfx("10.244.1.0/24");
  b.prefix = Pfx("10.244.2.0/24");
  speaker_->AddPath(a);
  speaker_->AddPath(b);
  auto bird_has = [&](const char* prefix) {
    return Birdc(std::string("show route ") + prefix).find(prefix) != std::string::npos;
  };
  ASSERT_TRUE(WaitFor([&] { return bird_has("10.244.1.0/24") && bird_has("10.244.2.0/24"); }, 15s))
      << Birdc("show protocols all kr");

  // Stop without a NOTIFICATION: BIRD keeps our routes while we are away.
  speaker_->Stop(/*graceful_restart=*/true);
  ASSERT_TRUE(WaitFor([&] { return !BirdEstablished("kr"); }, 10s));
  EXPECT_TRUE(bird_has("10.244.1.0/24"));
  EXPECT_TRUE(bird_has("10.244.2.0/24"));

  // Back with only one of the two paths: after our End-of-RIB BIRD drops the other.
  StartSpeaker(GrGlobal());
  speaker_->AddPeer(PeerTo(64513));
  speaker_->AddPath(a);
  ASSERT_TRUE(WaitFor([&] { return Established() && BirdEstablished("kr"); }, 15s))
      << Birdc("show protocols all kr");
  EXPECT_TRUE(WaitFor([&] { return !bird_has("10.244.2.0/24"); }, 10s));
  EXPECT_TRUE(bird_has("10.244.1.0/24"));
}

}  // namespace
}  // namespace kr::bgp::testing
