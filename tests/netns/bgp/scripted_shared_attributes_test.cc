// Issue 14: the speaker interns attribute sets (one set for every path that carries the same
// attributes). A policy that changes one path's attributes, on import or on export, must leave
// every other path sharing the set untouched; the set as received stays for ReapplyPolicies.
#include <map>

#include "scripted_peer.h"

namespace kr::bgp::testing {
namespace {

IpPrefix Nth(int i) { return *IpPrefix::Parse("10.60." + std::to_string(i) + ".0/24"); }

bool Has(const std::vector<uint32_t>& v, uint32_t x) {
  return std::find(v.begin(), v.end(), x) != v.end();
}

TEST_F(ScriptedPeerTest, PolicyEditsOfOnePathLeaveThePathsSharingItsAttributesAlone) {
  StartOurs(false, true);
  AddPassivePeer("127.0.0.3", 64514);
  const uint32_t kImported = Community(64512, 7), kExported = Community(64512, 9);
  speaker_->SetImportPolicy([&](const PeerConfig&, Route& r) {
    if (r.prefix == Nth(2)) return PolicyVerdict::kReject;
    if (r.prefix == Nth(1)) {
      r.attributes.local_pref = 300;
      r.attributes.communities.push_back(kImported);
    }
    return PolicyVerdict::kAccept;
  });
  speaker_->SetExportPolicy([&](const PeerConfig& to, Route& r) {
    if (to.address == Ip("127.0.0.3") && r.prefix == Nth(3)) {
      r.next_hop = Ip("192.0.2.9");
      r.attributes.communities.push_back(kExported);
    }
    return PolicyVerdict::kAccept;
  });

  // 100 prefixes in two UPDATEs with the same attributes.
  ScriptedPeer a;
  Handshake(a, PeerOpen("10.9.9.9", false));
  std::vector<IpPrefix> first, second;
  for (int i = 0; i < 50; ++i) first.push_back(Nth(i));
  for (int i = 50; i < 100; ++i) second.push_back(Nth(i));
  a.Send(Announce(first));
  a.Send(Announce(second));
  ASSERT_TRUE(WaitFor([&] { return speaker_->BestPaths().size() == 99; }, 10s));

  auto rib = speaker_->BestPaths();
  for (const Route& r : rib) {
    SCOPED_TRACE(r.prefix.ToString());
    EXPECT_EQ(r.next_hop, Ip("127.0.0.2"));  // the export rewrite is not the Loc-RIB's
    if (r.prefix == Nth(1)) {
      EXPECT_EQ(r.attributes.local_pref, 300u);
      EXPECT_EQ(r.attributes.communities, std::vector<uint32_t>{kImported});
    } else {
      EXPECT_FALSE(r.attributes.local_pref.has_value());
      EXPECT_TRUE(r.attributes.communities.empty());
    }
  }

  // The second peer gets the table through the export policy: only 10.60.3.0/24 changed.
  ScriptedPeer b;
  Handshake(b, PeerOpen("10.9.9.8", false, 64514), nullptr, 0, "127.0.0.3");
  std::map<IpPrefix, std::pair<IpAddress, std::vector<uint32_t>>> got;
  while (auto u = b.ReceiveUpdate()) {
    if (u->EndOfRib()) break;
    for (const auto& p : u->nlri) got[p] = {*u->attrs.next_hop, u->attrs.communities};
  }
  ASSERT_EQ(got.size(), 99u);
  EXPECT_FALSE(got.count(Nth(2)));
  for (const auto& [prefix, sent] : got) {
    SCOPED_TRACE(prefix.ToString());
    const auto& [next_hop, communities] = sent;
    EXPECT_EQ(next_hop, prefix == Nth(3) ? Ip("192.0.2.9") : Ip("127.0.0.1"));
    EXPECT_EQ(Has(communities, kExported), prefix == Nth(3));
    EXPECT_EQ(Has(communities, kImported), prefix == Nth(1));
  }
  // The export edit did not reach the Loc-RIB either.
  for (const Route& r : speaker_->BestPaths()) {
    EXPECT_EQ(r.next_hop, Ip("127.0.0.2")) << r.prefix.ToString();
    EXPECT_FALSE(Has(r.attributes.communities, kExported)) << r.prefix.ToString();
  }

  // Without the import policy the attributes as received come back, the rejected prefix too.
  speaker_->SetImportPolicy(nullptr);
  speaker_->ReapplyPolicies();
  ASSERT_TRUE(WaitFor([&] { return speaker_->BestPaths().size() == 100; }, 10s));
  for (const Route& r : speaker_->BestPaths()) {
    EXPECT_FALSE(r.attributes.local_pref.has_value()) << r.prefix.ToString();
    EXPECT_TRUE(r.attributes.communities.empty()) << r.prefix.ToString();
  }
  auto status = OurPeer("127.0.0.2");
  ASSERT_TRUE(status.has_value());
  EXPECT_EQ(status->prefixes_received, 100u);
}

}  // namespace
}  // namespace kr::bgp::testing
