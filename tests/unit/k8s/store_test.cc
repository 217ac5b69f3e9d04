#include "kube_router/k8s/store.h"

#include <gtest/gtest.h>

namespace kr::k8s {
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
  EXPECT_EQ(pods.ByIndex(kIndexNamespace, "x").size(), 2u);
  EXPECT_EQ(pods.ByIndex(kIndexNodeName, "node1").size(), 2u);

  auto old = pods.Upsert("x/a", MakePod("x", "a", "node2"));  // moved node
  ASSERT_TRUE(old);
  EXPECT_EQ(old->node_name, "node1");
  EXPECT_EQ(pods.ByIndex(kIndexNodeName, "node1").size(), 1u);
  EXPECT_EQ(pods.ByIndex(kIndexNodeName, "node2").size(), 2u);

  EXPECT_TRUE(pods.Remove("y/c"));
  EXPECT_FALSE(pods.Remove("y/c"));
  EXPECT_TRUE(pods.ByIndex(kIndexNodeName, "node1").empty());
  EXPECT_TRUE(pods.ByIndex(kIndexNamespace, "y").empty());
  EXPECT_EQ(pods.Size(), 2u);
  EXPECT_TRUE(pods.ByIndex("no-such-index", "x").empty());
}

TEST(StoreTest, ListIsASnapshotThatOutlivesWrites) {
  Store<Pod> pods;
  pods.Upsert("x/a", MakePod("x", "a", "n"));
  auto snapshot = pods.List();
  pods.Remove("x/a");
  ASSERT_EQ(snapshot.size(), 1u);
  EXPECT_EQ(snapshot[0]->meta.name, "a");  // still valid: objects are shared and immutable
}

TEST(StoreTest, NamespacesByLabel) {
  auto cluster = MakeCluster();
  auto ns = [](const std::string& name, Labels labels) {
    auto n = std::make_shared<Namespace>();
    n->meta.name = name;
    n->meta.labels = std::move(labels);
    return std::shared_ptr<const Namespace>(n);
  };
  cluster->namespaces.Upsert("a", ns("a", {{"team", "x"}, {"env", "prod"}}));
  cluster->namespaces.Upsert("b", ns("b", {{"team", "x"}}));
  EXPECT_EQ(cluster->namespaces.ByIndex(kIndexLabel, "team=x").size(), 2u);
  EXPECT_EQ(cluster->namespaces.ByIndex(kIndexLabel, "env=prod").size(), 1u);
  cluster->namespaces.Upsert("a", ns("a", {{"team", "y"}}));  // relabelled
  EXPECT_EQ(cluster->namespaces.ByIndex(kIndexLabel, "team=x").size(), 1u);
  EXPECT_TRUE(cluster->namespaces.ByIndex(kIndexLabel, "env=prod").empty());
}

}  // namespace
}  // namespace kr::k8s
