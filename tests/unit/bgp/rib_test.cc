// The RFC 4271 9.1.2.2 decision process, one tie-breaker per row, and Loc-RIB bookkeeping.
#include "kube_router/bgp/rib.h"

#include <gtest/gtest.h>

namespace kr::bgp {
namespace {

IpAddress Ip(const char* s) { return *IpAddress::Parse(s); }
IpPrefix Pfx(const char* s) { return *IpPrefix::Parse(s); }

Route Learned(const char* peer, std::vector<uint32_t> path, bool ibgp = false) {
  Route r;
  r.prefix = Pfx("10.1.0.0/16");
  r.next_hop = Ip(peer);
  r.peer = Ip(peer);
  r.peer_router_id = Ip(peer);
  r.ibgp = ibgp;
  r.attributes.origin = Origin::kIgp;
  r.attributes.as_path = AsPath{{{AsSegmentType::kSequence, std::move(path)}}};
  return r;
}

struct Case {
  const char* name;
  Route better;
  Route worse;
};

std::vector<Case> Cases() {
  std::vector<Case> cases;
  {
    Route a = Learned("10.0.0.9", {1, 2, 3}), b = Learned("10.0.0.2", {1});
    a.attributes.local_pref = 200;
    cases.push_back({"higher local-pref wins over shorter path", a, b});
  }
  {
    Route local;
    local.prefix = Pfx("10.1.0.0/16");
    local.attributes.as_path = AsPath{{{AsSegmentType::kSequence, {7, 7, 7}}}};
    cases.push_back({"locally originated wins", local, Learned("10.0.0.2", {1})});
  }
  cases.push_back({"shorter AS path", Learned("10.0.0.9", {1}), Learned("10.0.0.2", {1, 2})});
  {
    Route set = Learned("10.0.0.2", {1});
    set.attributes.as_path->segments.push_back({AsSegmentType::kSet, {5, 6, 7}});
    cases.push_back({"an AS_SET counts as one", set, Learned("10.0.0.1", {1, 2, 3})});
  }
  {
    Route a = Learned("10.0.0.9", {1}), b = Learned("10.0.0.2", {1});
    b.attributes.origin = Origin::kIncomplete;
    cases.push_back({"lower origin", a, b});
  }
  {
    Route a = Learned("10.0.0.9", {1}), b = Learned("10.0.0.2", {1});
    a.attributes.med = 5;
    b.attributes.med = 10;
    cases.push_back({"lower MED from the same neighbour AS", a, b});
  }
  {
    // Different neighbour AS: MED is skipped, the router ID decides.
    Route a = Learned("10.0.0.1", {1}), b = Learned("10.0.0.2", {2});
    a.attributes.med = 50;
    b.attributes.med = 10;
    cases.push_back({"MED ignored across neighbour ASes", a, b});
  }
  cases.push_back({"eBGP over iBGP", Learned("10.0.0.9", {1}), Learned("10.0.0.2", {1}, true)});
  {
    // Router IDs ordered against the peer addresses, so only the router ID can decide.
    Route a = Learned("10.0.0.9", {1}), b = Learned("10.0.0.2", {1});
    a.peer_router_id = Ip("1.1.1.1");
    b.peer_router_id = Ip("2.2.2.2");
    cases.push_back({"lower router ID", a, b});
  }
  {
    Route a = Learned("10.0.0.9", {1}, true), b = Learned("10.0.0.2", {1}, true);
    a.attributes.originator_id = Ip("1.1.1.1");
    cases.push_back({"ORIGINATOR_ID replaces the router ID", a, b});
  }
  {
    // The longer list has the lower peer address, so only the list length can decide.
    Route a = Learned("10.0.0.3", {1}, true), b = Learned("10.0.0.2", {1}, true);
    a.attributes.originator_id = b.attributes.originator_id = Ip("1.1.1.1");
    a.attributes.cluster_list = {1};
    b.attributes.cluster_list = {1, 2};
    cases.push_back({"shorter CLUSTER_LIST", a, b});
  }
  {
    Route a = Learned("10.0.0.2", {1}), b = Learned("10.0.0.3", {1});
    b.peer_router_id = a.peer_router_id = Ip("9.9.9.9");
    cases.push_back({"lower peer address", a, b});
  }
  return cases;
}

TEST(RibTest, DecisionProcess) {
  for (const auto& c : Cases()) {
    SCOPED_TRACE(c.name);
    EXPECT_TRUE(BetterPath(c.better, c.worse));
    EXPECT_FALSE(BetterPath(c.worse, c.better));
  }
}

TEST(RibTest, LocRibReportsBestPathChanges) {
  LocRib rib;
  std::vector<LocRib::Change> changes;
  Route slow = Learned("10.0.0.2", {1, 2}), fast = Learned("10.0.0.3", {1});
  rib.Upsert(slow, changes);
  ASSERT_EQ(changes.size(), 1u);
  EXPECT_EQ(changes[0].best->peer, Ip("10.0.0.2"));

  changes.clear();
  rib.Upsert(fast, changes);
  ASSERT_EQ(changes.size(), 1u);
  EXPECT_EQ(changes[0].best->peer, Ip("10.0.0.3"));

  // A change to a path that is not the best is not a best-path change.
  changes.clear();
  slow.attributes.med = 3;
  rib.Upsert(slow, changes);
  EXPECT_TRUE(changes.empty());

  // Same content again: nothing.
  rib.Upsert(fast, changes);
  EXPECT_TRUE(changes.empty());

  rib.Remove(fast.prefix, fast.peer, changes);
  ASSERT_EQ(changes.size(), 1u);
  EXPECT_EQ(changes[0].best->peer, Ip("10.0.0.2"));

  changes.clear();
  rib.Remove(slow.prefix, Ip("10.0.0.99"), changes);  // unknown source
  EXPECT_TRUE(changes.empty());
  rib.Remove(slow.prefix, slow.peer, changes);
  ASSERT_EQ(changes.size(), 1u);
  EXPECT_FALSE(changes[0].best.has_value());
  EXPECT_EQ(rib.prefix_count(), 0u);
}

TEST(RibTest, AsPathHelpers) {
  AsPath p;
  p.Prepend(64512, 2);
  EXPECT_EQ(p.ToString(), "64512 64512");
  p.segments.push_back({AsSegmentType::kSet, {1, 2}});
  EXPECT_EQ(p.Length(), 3u);
  EXPECT_EQ(p.FirstAsn(), 64512u);
  EXPECT_TRUE(p.Contains(2));
  EXPECT_FALSE(p.Contains(3));
  AsPath set_first{{{AsSegmentType::kSet, {1}}}};
  set_first.Prepend(9);
  EXPECT_EQ(set_first.ToString(), "9 {1}");
}

}  // namespace
}  // namespace kr::bgp
