// Interop with BIRD 2: iBGP and eBGP, both connection directions, attributes read back with
// `birdc show route all`, routes BIRD originates in our Loc-RIB, withdrawals both ways.
#include <algorithm>
#include <mutex>

#include "interop_fixture.h"

namespace kr::bgp::testing {
namespace {

class BirdTest : public InteropTest {};

TEST_F(BirdTest, IbgpWeConnectRoutesBothWays) {
  StartBird(R"(
protocol static s4 { ipv4; route 10.99.1.0/24 via 10.0.0.2; route 10.99.2.0/24 via 10.0.0.2; }
protocol bgp kr {
  local 10.0.0.2 as 64512;
  neighbor 10.0.0.1 as 64512;
  passive on;
  direct;
  hold time 3; keepalive time 1;
  ipv4 { import all; export filter { bgp_community.add((64512,7)); accept; }; gateway direct; };
}
)");
  StartSpeaker(Global(64512));
  speaker_->AddPeer(PeerTo(64512));
  LocalPath path;
  path.prefix = Pfx("10.244.1.0/24");
  path.communities = {Community(64512, 100)};
  path.large_communities = {{64512, 1, 2}};
  path.local_pref = 200;
  speaker_->AddPath(path);

  ASSERT_TRUE(WaitFor([&] { return Established() && BirdEstablished("kr"); }, 15s))
      << Birdc("show protocols all kr") << bird_->Log();
  std::string route;
  ASSERT_TRUE(WaitFor(
      [&] {
        route = Birdc("show route all 10.244.1.0/24");
        return route.find("BGP.next_hop: 10.0.0.1") != std::string::npos;
      },
      10s))
      << route;
  EXPECT_NE(route.find("BGP.local_pref: 200"), std::string::npos) << route;
  EXPECT_NE(route.find("BGP.community: (64512,100)"), std::string::npos) << route;
  EXPECT_NE(route.find("BGP.large_community: (64512, 1, 2)"), std::string::npos) << route;
  EXPECT_NE(route.find("BGP.as_path: \n"), std::string::npos) << route;  // iBGP: empty

  ASSERT_TRUE(WaitFor([&] { return BestPath("10.99.1.0/24") && BestPath("10.99.2.0/24"); }, 10s));
  auto learned = *BestPath("10.99.1.0/24");
  EXPECT_EQ(learned.next_hop, Ip("10.0.0.2"));
  EXPECT_TRUE(learned.ibgp);
  EXPECT_EQ(learned.attributes.communities, std::vector<uint32_t>{Community(64512, 7)});
  EXPECT_EQ(learned.attributes.local_pref, 100u);

  // Withdrawals both ways.
  speaker_->WithdrawPath(Pfx("10.244.1.0/24"));
  EXPECT_TRUE(WaitFor(
      [&] { return Birdc("show route 10.244.1.0/24").find("10.244.1.0/24") == std::string::npos; },
      10s));
  Birdc("disable s4");
  EXPECT_TRUE(WaitFor([&] { return !BestPath("10.99.1.0/24") && !BestPath("10.99.2.0/24"); }, 10s));
  auto status = OurPeer("10.0.0.2");
  ASSERT_TRUE(status);
  EXPECT_EQ(status->prefixes_received, 0u);
  EXPECT_EQ(status->negotiated_hold_time_s, 3);
}

TEST_F(BirdTest, EbgpTheyConnectToOurPortWithPrepend) {
  StartBird(R"(
protocol static s4 { ipv4; route 10.99.3.0/24 via 10.0.0.2; }
protocol bgp kr {
  local 10.0.0.2 as 64513;
  neighbor 10.0.0.1 port 1790 as 64512;
  hold time 3; keepalive time 1; connect retry time 1;
  ipv4 { import all; export all; };
}
)");
  GlobalConfig g = Global(64512);
  g.listen_port = 1790;
  StartSpeaker(g);
  PeerConfig p = PeerTo(64513);
  p.passive = true;
  speaker_->AddPeer(p);
  LocalPath path;
  path.prefix = Pfx("10.244.2.0/24");
  path.prepend_count = 2;
  speaker_->AddPath(path);

  ASSERT_TRUE(WaitFor([&] { return Established() && BirdEstablished("kr"); }, 15s))
      << Birdc("show protocols all kr") << bird_->Log();
  std::string route;
  ASSERT_TRUE(WaitFor(
      [&] {
        route = Birdc("show route all 10.244.2.0/24");
        return route.find("BGP.as_path: 64512 64512 64512") != std::string::npos;
      },
      10s))
      << route;
  EXPECT_NE(route.find("BGP.next_hop: 10.0.0.1"), std::string::npos) << route;
  ASSERT_TRUE(WaitFor([&] { return BestPath("10.99.3.0/24").has_value(); }, 10s));
  auto learned = *BestPath("10.99.3.0/24");
  EXPECT_FALSE(learned.ibgp);
  EXPECT_EQ(learned.attributes.as_path->ToString(), "64513");
  EXPECT_EQ(learned.next_hop, Ip("10.0.0.2"));
}

}  // namespace
}  // namespace kr::bgp::testing

namespace kr::bgp::testing {
namespace {

// Import policy rejects and rewrites, export policy rewrites, and the best-path stream sees
// additions and withdrawals.
TEST_F(BirdTest, PoliciesAndBestPathSubscription) {
  StartBird(R"(
protocol static s4 { ipv4; route 10.99.1.0/24 via 10.0.0.2; route 10.99.2.0/24 via 10.0.0.2; }
protocol bgp kr {
  local 10.0.0.2 as 64513;
  neighbor 10.0.0.1 as 64512;
  passive on;
  hold time 3; keepalive time 1;
  ipv4 { import all; export all; };
}
)");
  StartSpeaker(Global(64512));
  std::mutex mu;
  std::vector<BestPathChange> seen;
  speaker_->SubscribeBestPaths([&](const BestPathChange& c) {
    std::lock_guard<std::mutex> lock(mu);
    seen.push_back(c);
  });
  speaker_->SetImportPolicy([](const PeerConfig&, Route& r) {
    if (r.prefix == Pfx("10.99.2.0/24")) return PolicyVerdict::kReject;
    r.attributes.communities.push_back(Community(1, 1));
    return PolicyVerdict::kAccept;
  });
  speaker_->SetExportPolicy([](const PeerConfig& to, Route& r) {
    if (r.prefix == Pfx("10.244.9.0/24")) return PolicyVerdict::kReject;
    r.attributes.communities.push_back(Community(static_cast<uint16_t>(to.remote_asn), 42));
    r.attributes.as_path->Prepend(65000);  // lands behind our ASN (GoBGP's order)
    return PolicyVerdict::kAccept;
  });
  speaker_->AddPeer(PeerTo(64513));
  LocalPath sent, filtered;
  sent.prefix = Pfx("10.244.8.0/24");
  filtered.prefix = Pfx("10.244.9.0/24");
  speaker_->AddPath(sent);
  speaker_->AddPath(filtered);

  ASSERT_TRUE(WaitFor([&] { return BestPath("10.99.1.0/24").has_value(); }, 15s));
  EXPECT_EQ(BestPath("10.99.1.0/24")->attributes.communities,
            std::vector<uint32_t>{Community(1, 1)});
  std::string route;
  ASSERT_TRUE(WaitFor(
      [&] {
        route = Birdc("show route all 10.244.8.0/24");
        return route.find("BGP.community: (64513,42)") != std::string::npos;
      },
      10s))
      << route;
  EXPECT_NE(route.find("BGP.as_path: 64512 65000"), std::string::npos) << route;
  // The rejected import is in no best path; the rejected export never reached BIRD even
  // though a later prefix did.
  EXPECT_FALSE(BestPath("10.99.2.0/24").has_value());
  EXPECT_EQ(OurPeer("10.0.0.2")->prefixes_received, 1u);
  EXPECT_EQ(OurPeer("10.0.0.2")->prefixes_sent, 1u);
  EXPECT_EQ(Birdc("show route 10.244.9.0/24").find("10.244.9.0/24"), std::string::npos);

  // Dropping the import filter and re-applying brings the rejected route in.
  speaker_->SetImportPolicy(nullptr);
  speaker_->ReapplyPolicies();
  EXPECT_TRUE(WaitFor([&] { return BestPath("10.99.2.0/24").has_value(); }, 5s));

  Birdc("disable s4");
  bool withdrawn = WaitFor([&] { return !BestPath("10.99.1.0/24").has_value(); }, 10s);
  speaker_->Stop();  // no more callbacks into this test's locals
  ASSERT_TRUE(withdrawn);
  std::lock_guard<std::mutex> lock(mu);
  auto find = [&](const char* prefix, bool withdrawn) {
    return std::any_of(seen.begin(), seen.end(), [&](const BestPathChange& c) {
      return c.prefix == Pfx(prefix) && c.best.has_value() != withdrawn;
    });
  };
  EXPECT_TRUE(find("10.244.8.0/24", false));  // local paths are announced too
  EXPECT_TRUE(find("10.99.1.0/24", false));
  EXPECT_TRUE(find("10.99.1.0/24", true));
  EXPECT_TRUE(find("10.99.2.0/24", false));
}

}  // namespace
}  // namespace kr::bgp::testing
