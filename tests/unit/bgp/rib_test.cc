// The RFC 4271 9.1.2.2 decision process, one tie-breaker per row, and Loc-RIB bookkeeping.
#include "kube_router/bgp/rib.h"

#include <gtest/gtest.h>

namespace kr::bgp::rib_test {
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
  PathInterners in;
  LocRib rib;
  std::vector<LocRib::Change> changes;
  Route slow = Learned("10.0.0.2", {1, 2}), fast = Learned("10.0.0.3", {1});
  rib.Upsert(slow.prefix, in.FromRoute(slow), changes);
  ASSERT_EQ(changes.size(), 1u);
  EXPECT_EQ(changes[0].best->peer(), Ip("10.0.0.2"));

  changes.clear();
  rib.Upsert(fast.prefix, in.FromRoute(fast), changes);
  ASSERT_EQ(changes.size(), 1u);
  EXPECT_EQ(changes[0].best->peer(), Ip("10.0.0.3"));

  // A change to a path that is not the best is not a best-path change.
  changes.clear();
  slow.attributes.med = 3;
  rib.Upsert(slow.prefix, in.FromRoute(slow), changes);
  EXPECT_TRUE(changes.empty());

  // Same content again: nothing.
  rib.Upsert(fast.prefix, in.FromRoute(fast), changes);
  EXPECT_TRUE(changes.empty());

  // The best path turning unusable (rejected by policy) hands over to the next one; the
  // rejected path stays (it is the Adj-RIB-In's).
  RibPath rejected = in.FromRoute(fast);
  rejected.info = {};
  rib.Upsert(fast.prefix, rejected, changes);
  ASSERT_EQ(changes.size(), 1u);
  EXPECT_EQ(changes[0].best->peer(), Ip("10.0.0.2"));
  ASSERT_TRUE(rib.Find(fast.prefix, fast.peer).has_value());
  EXPECT_FALSE(rib.Find(fast.prefix, fast.peer)->usable());
  changes.clear();
  rib.Upsert(fast.prefix, in.FromRoute(fast), changes);
  ASSERT_EQ(changes.size(), 1u);
  EXPECT_EQ(changes[0].best->peer(), Ip("10.0.0.3"));

  changes.clear();
  rib.Remove(fast.prefix, fast.peer, changes);
  ASSERT_EQ(changes.size(), 1u);
  EXPECT_EQ(changes[0].best->peer(), Ip("10.0.0.2"));

  changes.clear();
  rib.Remove(slow.prefix, Ip("10.0.0.99"), changes);  // unknown source
  EXPECT_TRUE(changes.empty());
  rib.Remove(slow.prefix, slow.peer, changes);
  ASSERT_EQ(changes.size(), 1u);
  EXPECT_FALSE(changes[0].best.has_value());
  EXPECT_EQ(rib.prefix_count(), 0u);
}

TEST(RibTest, PathListKeepsTheBestFirstAcrossRemovals) {
  PathInterners in;
  LocRib rib;
  std::vector<LocRib::Change> changes;
  const char* peers[] = {"10.0.0.5", "10.0.0.4", "10.0.0.3", "10.0.0.2"};
  for (const char* p : peers)
    rib.Upsert(Pfx("10.1.0.0/16"), in.FromRoute(Learned(p, {1})), changes);
  EXPECT_EQ(rib.Paths(Pfx("10.1.0.0/16"))->size(), 4u);
  for (const char* p : {"10.0.0.2", "10.0.0.4", "10.0.0.3"}) {
    changes.clear();
    rib.Remove(Pfx("10.1.0.0/16"), Ip(p), changes);
    ASSERT_TRUE(rib.Best(Pfx("10.1.0.0/16")).has_value());
  }
  EXPECT_EQ(rib.Best(Pfx("10.1.0.0/16"))->peer(), Ip("10.0.0.5"));
  EXPECT_EQ(rib.Paths(Pfx("10.1.0.0/16"))->size(), 1u);
}

// One usable path whose accepted set is the received one is stored as two handles; a path the
// policy changed or rejected keeps its set as received too.
TEST(RibTest, PathListKeepsTheReceivedSetOfEditedAndRejectedPaths) {
  PathInterners in;
  LocRib rib;
  std::vector<LocRib::Change> changes;
  Route r = Learned("10.0.0.2", {1});
  RibPath edited = in.FromRoute(r);
  Route changed = r;
  changed.attributes.local_pref = 50;
  edited.info = in.FromRoute(changed).info;
  rib.Upsert(r.prefix, edited, changes);
  auto got = rib.Find(r.prefix, r.peer);
  ASSERT_TRUE(got.has_value());
  EXPECT_EQ(got->received->attributes, r.attributes);
  EXPECT_EQ(got->info->attributes.local_pref, 50u);

  RibPath rejected = in.FromRoute(r);
  rejected.info = {};
  rib.Upsert(r.prefix, rejected, changes);
  got = rib.Find(r.prefix, r.peer);
  ASSERT_TRUE(got.has_value());
  EXPECT_FALSE(got->usable());
  EXPECT_EQ(got->received->attributes, r.attributes);
  EXPECT_FALSE(rib.Best(r.prefix).has_value());
  EXPECT_EQ(rib.prefix_count(), 1u);
}

// Issue 14: attribute sets are hash-consed. Many paths with the same attributes hold one set;
// changing one path's attributes gives it a new set and leaves the others' alone; the last
// reference dropped frees the set.
TEST(RibTest, PathsWithTheSameAttributesShareOneSet) {
  PathInterners in;
  LocRib rib;
  std::vector<LocRib::Change> changes;
  Route r = Learned("10.0.0.2", {1, 2, 3});
  r.attributes.communities = {Community(64512, 1)};
  for (int i = 0; i < 1000; ++i) {
    r.prefix = IpPrefix(IpAddress::V4(0x0a000000u + (static_cast<uint32_t>(i) << 8)), 24);
    rib.Upsert(r.prefix, in.FromRoute(r), changes);
  }
  changes.clear();  // changes hold handles too
  EXPECT_EQ(rib.prefix_count(), 1000u);
  EXPECT_EQ(in.infos.size(), 1u);
  EXPECT_EQ(in.sources.size(), 1u);
  std::optional<RibPath> first = rib.Best(Pfx("10.0.0.0/24"));
  std::optional<RibPath> other = rib.Best(Pfx("10.0.7.0/24"));
  ASSERT_TRUE(first && other);
  EXPECT_EQ(first->info.get(), other->info.get());  // one object, not equal copies
  EXPECT_GE(first->info.use_count(), 1000u);        // every path holds it

  // What an import policy does to one path: edit a copy, intern it, replace that path only.
  const PathAttributes original = first->info->attributes;
  Route edited = ToRoute(Pfx("10.0.0.0/24"), *first);
  edited.attributes.local_pref = 300;
  edited.attributes.communities.push_back(kNoExport);
  RibPath modified = *first;
  modified.info = in.infos.Intern(PathInfo{edited.attributes, edited.next_hop});
  rib.Upsert(Pfx("10.0.0.0/24"), std::move(modified), changes);
  changes.clear();
  EXPECT_EQ(in.infos.size(), 2u);
  EXPECT_EQ(rib.Best(Pfx("10.0.0.0/24"))->info->attributes.local_pref, 300u);
  EXPECT_EQ(rib.Best(Pfx("10.0.0.0/24"))->received->attributes, original);  // as received
  for (const char* other_prefix : {"10.0.1.0/24", "10.0.7.0/24", "10.3.231.0/24"}) {
    SCOPED_TRACE(other_prefix);
    std::optional<RibPath> p = rib.Best(Pfx(other_prefix));
    ASSERT_TRUE(p.has_value());
    EXPECT_EQ(p->info->attributes, original);
    EXPECT_FALSE(p->info->attributes.local_pref.has_value());
  }
  // A next-hop rewrite is a new set as well.
  PathInfo moved = *other->info;
  moved.next_hop = Ip("192.0.2.1");
  Interned<PathInfo> moved_set = in.infos.Intern(moved);
  EXPECT_EQ(in.infos.size(), 3u);
  EXPECT_EQ(rib.Best(Pfx("10.0.7.0/24"))->info->next_hop, Ip("10.0.0.2"));

  // Equal values intern to the same set; dropping the last handle frees it.
  EXPECT_EQ(in.infos.Intern(moved), moved_set);
  moved_set = {};
  first.reset();
  other.reset();
  EXPECT_EQ(in.infos.size(), 2u);
  changes.clear();
  rib.Remove(Pfx("10.0.0.0/24"), Ip("10.0.0.2"), changes);
  changes.clear();
  EXPECT_EQ(in.infos.size(), 1u);  // the edited set had one user
  for (int i = 1; i < 1000; ++i) {
    rib.Remove(IpPrefix(IpAddress::V4(0x0a000000u + (static_cast<uint32_t>(i) << 8)), 24),
               Ip("10.0.0.2"), changes);
  }
  changes.clear();
  EXPECT_EQ(in.infos.size(), 0u);
  EXPECT_EQ(in.sources.size(), 0u);
}

TEST(RibTest, InternedHandlesOutliveTheirInterner) {
  Interned<PathInfo> kept;
  {
    Interner<PathInfo> infos(HashPathInfo);
    kept = infos.Intern(PathInfo{});
  }
  EXPECT_EQ(kept.use_count(), 1u);
  kept = {};  // frees without touching the gone interner (ASan would see it)
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
}  // namespace kr::bgp::rib_test
