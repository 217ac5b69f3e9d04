#include "kube_router/k8s/store.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <map>
#include <string>
#include <vector>

namespace kr::k8s::store_test {
namespace {

std::shared_ptr<const Pod> MakePod(const std::string& ns, const std::string& name,
                                   const std::string& node) {
  auto p = std::make_shared<Pod>();
  p->meta.namespace_ = ns;
  p->meta.name = name;
  p->node_name = node;
  return p;
}

TEST(StoreTest, IndexesFollowUpdatesAndRemovals) {
  auto cluster = MakeCluster();
  auto& pods = cluster->pods;
  pods.Upsert("x/a", MakePod("x", "a", "node1"));
  pods.Upsert("x/b", MakePod("x", "b", "node2"));
  pods.Upsert("y/c", MakePod("y", "c", "node1"));
  EXPECT_EQ(pods.ByIndex(kIndexNodeName, "node1").size(), 2u);
  EXPECT_EQ(pods.ByIndex(kIndexNodeName, "node2").size(), 1u);

  auto old = pods.Upsert("x/a", MakePod("x", "a", "node2"));  // moved node
  ASSERT_TRUE(old);
  EXPECT_EQ(old->node_name, "node1");
  EXPECT_EQ(pods.ByIndex(kIndexNodeName, "node1").size(), 1u);
  EXPECT_EQ(pods.ByIndex(kIndexNodeName, "node2").size(), 2u);

  EXPECT_TRUE(pods.Remove("y/c"));
  EXPECT_FALSE(pods.Remove("y/c"));
  EXPECT_TRUE(pods.ByIndex(kIndexNodeName, "node1").empty());
  EXPECT_EQ(pods.ByIndex(kIndexNodeName, "node2").size(), 2u);
  EXPECT_EQ(pods.Size(), 2u);
  EXPECT_TRUE(pods.ByIndex("no-such-index", "x").empty());
}

TEST(StoreTest, ListIsASnapshotThatOutlivesWrites) {
  Store<Pod> pods;
  pods.Upsert("x/a", MakePod("x", "a", "n"));
  EXPECT_EQ(pods.ListCalls(), 0u);
  auto snapshot = pods.List();
  EXPECT_EQ(pods.ListCalls(), 1u);  // counted: tests prove how often a sync reads a kind
  pods.Remove("x/a");
  ASSERT_EQ(snapshot.size(), 1u);
  EXPECT_EQ(snapshot[0]->meta.name, "a");  // still valid: objects are shared and immutable
}

// A multi-valued index: a dual-stack pod is filed under each address, and re-filed when its
// addresses change.
TEST(StoreTest, PodsByEachAddress) {
  auto cluster = MakeCluster();
  auto pod = [](const std::string& name, std::vector<std::string> ips, std::string ip = "") {
    auto p = std::make_shared<Pod>();
    p->meta.namespace_ = "x";
    p->meta.name = name;
    // The decoder files a legacy podIP alone as the list (DecodeTest.PodIpsAreOneCompactList).
    if (ips.empty() && !ip.empty()) ips.push_back(ip);
    p->pod_ips = AddressList(ips);
    return std::shared_ptr<const Pod>(p);
  };
  auto& pods = cluster->pods;
  pods.Upsert("x/a", pod("a", {"10.244.1.5", "fd00::5"}));
  pods.Upsert("x/b", pod("b", {}, "10.244.1.6"));  // only the legacy podIP field
  EXPECT_EQ(pods.ByIndex(kIndexPodIp, "10.244.1.5").size(), 1u);
  EXPECT_EQ(pods.ByIndex(kIndexPodIp, "fd00::5").size(), 1u);
  EXPECT_EQ(pods.ByIndex(kIndexPodIp, "10.244.1.6").size(), 1u);
  pods.Upsert("x/a", pod("a", {"10.244.1.7"}));  // readdressed
  EXPECT_TRUE(pods.ByIndex(kIndexPodIp, "10.244.1.5").empty());
  EXPECT_TRUE(pods.ByIndex(kIndexPodIp, "fd00::5").empty());
  EXPECT_EQ(pods.ByIndex(kIndexPodIp, "10.244.1.7").size(), 1u);
}

// The indexes file pointers to the store's own entries (no key copies): through inserts that
// rehash the store, moves between buckets, replacements and removals, every bucket answers
// exactly the objects a scan of the store finds under that value, in key order.
TEST(StoreTest, IndexesMatchAScanThroughRehashesMovesAndRemovals) {
  auto cluster = MakeCluster();
  auto& pods = cluster->pods;
  auto node_of = [](int i, int round) { return "node" + std::to_string((i * 7 + round) % 5); };
  auto check = [&](const std::string& when) {
    std::map<std::string, std::vector<std::string>> scan;  // node -> keys, sorted
    for (const auto& p : pods.List()) scan[p->node_name].push_back(p->meta.Key());
    for (int n = 0; n < 5; ++n) {
      const std::string node = "node" + std::to_string(n);
      auto& want = scan[node];
      std::sort(want.begin(), want.end());
      std::vector<std::string> got;
      for (const auto& p : pods.ByIndex(kIndexNodeName, node)) {
        got.push_back(p->meta.Key());
        EXPECT_EQ(p->node_name, node) << when;  // the current object, not a replaced one
      }
      EXPECT_EQ(got, want) << when << ", " << node;
    }
  };
  // Keys inserted in an order unlike their sort order; 600 entries rehash the store's table.
  for (int i = 0; i < 600; ++i) {
    int k = (i * 37) % 600;
    pods.Upsert("ns/p" + std::to_string(k), MakePod("ns", "p" + std::to_string(k), node_of(k, 0)));
  }
  check("after the inserts");
  for (int round = 1; round <= 3; ++round) {
    for (int k = round; k < 600; k += 3) {  // a third moves node each round
      pods.Upsert("ns/p" + std::to_string(k),
                  MakePod("ns", "p" + std::to_string(k), node_of(k, round)));
    }
    for (int k = round; k < 600; k += 50) pods.Remove("ns/p" + std::to_string(k));
    check("after round " + std::to_string(round));
  }
  for (const auto& key : pods.Keys()) pods.Remove(key);
  for (int n = 0; n < 5; ++n)
    EXPECT_TRUE(pods.ByIndex(kIndexNodeName, "node" + std::to_string(n)).empty());
}

}  // namespace
}  // namespace kr::k8s::store_test
