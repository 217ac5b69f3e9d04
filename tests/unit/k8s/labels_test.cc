// Shared label sets (docs/memory.md): equal sets decoded for different objects are one copy, and
// a write to one object's labels never shows in another's.
#include "kube_router/k8s/labels.h"

#include <gtest/gtest.h>

#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "kube_router/k8s/decode.h"

namespace kr::k8s {
namespace {

using nlohmann::json;

std::shared_ptr<const Pod> DecodedPod(const std::string& name, const std::string& labels_json) {
  auto r = DecodePod(json::parse(R"({"metadata":{"name":")" + name +
                                 R"(","namespace":"n","labels":)" + labels_json + "}}"));
  EXPECT_TRUE(r.ok()) << r.error();
  return std::make_shared<const Pod>(std::move(r).value());
}

TEST(LabelsTest, DecodedObjectsWithEqualLabelsShareOneCopy) {
  auto a = DecodedPod("a", R"({"app":"web","role":"server"})");
  auto b = DecodedPod("b", R"({"role":"server","app":"web"})");  // same set, other order
  auto c = DecodedPod("c", R"({"app":"web","role":"client"})");
  EXPECT_TRUE(a->meta.labels.SharesWith(b->meta.labels));
  EXPECT_FALSE(a->meta.labels.SharesWith(c->meta.labels));
  EXPECT_EQ(a->meta.labels, b->meta.labels);
  EXPECT_NE(a->meta.labels, c->meta.labels);
  EXPECT_EQ(b->meta.labels, (Labels{{"app", "web"}, {"role", "server"}}));
  // Other kinds share through the same pool; no labels is no copy at all.
  auto svc = DecodeService(json::parse(
      R"({"metadata":{"name":"s","namespace":"n","labels":{"role":"server","app":"web"}}})"));
  ASSERT_TRUE(svc.ok()) << svc.error();
  EXPECT_TRUE(svc->meta.labels.SharesWith(a->meta.labels));
  auto bare = DecodedPod("d", "{}");
  EXPECT_TRUE(bare->meta.labels.empty());
  EXPECT_FALSE(bare->meta.labels.SharesWith(DecodedPod("e", "{}")->meta.labels));
}

// The controllers' tests and benchmarks build objects by copying and editing: an edit of one
// object's labels, shared with others by decoding or by copying, changes that object only, and
// the pool keeps handing out the original set.
TEST(LabelsTest, WritingOneObjectsLabelsLeavesTheOthersAlone) {
  auto a = DecodedPod("a", R"({"app":"web","tier":"1"})");
  auto b = DecodedPod("b", R"({"app":"web","tier":"1"})");
  ASSERT_TRUE(a->meta.labels.SharesWith(b->meta.labels));
  Pod edited = *b;
  edited.meta.labels["app"] = "db";
  edited.meta.labels.erase("tier");
  EXPECT_EQ(edited.meta.labels, (Labels{{"app", "db"}}));
  EXPECT_EQ(a->meta.labels, (Labels{{"app", "web"}, {"tier", "1"}}));
  EXPECT_EQ(b->meta.labels, (Labels{{"app", "web"}, {"tier", "1"}}));
  auto again = DecodedPod("c", R"({"app":"web","tier":"1"})");
  EXPECT_TRUE(again->meta.labels.SharesWith(a->meta.labels));
  EXPECT_EQ(again->meta.labels.at("app"), "web");

  // Sets made in code: a copy shares until one side writes.
  SharedLabels first{{"k", "v"}};
  SharedLabels second = first;
  EXPECT_TRUE(second.SharesWith(first));
  second["k"] = "w";
  EXPECT_EQ(first.at("k"), "v");
  EXPECT_EQ(second.at("k"), "w");
  first["k2"] = "x";  // the only holder now: written in place, still only its own
  EXPECT_EQ(first, (Labels{{"k", "v"}, {"k2", "x"}}));
  EXPECT_EQ(second, (Labels{{"k", "w"}}));
}

// The pool tracks only sets some object still holds (plus the dead ones until its next sweep):
// churning through many distinct sets does not grow it without bound.
TEST(LabelsTest, PoolForgetsSetsNoObjectHolds) {
  LabelSetPool pool;
  std::vector<SharedLabels> live;
  for (int i = 0; i < 100; ++i) live.push_back(pool.Share({{"keep", std::to_string(i)}}));
  for (int i = 0; i < 50000; ++i) {
    SharedLabels gone = pool.Share({{"pod-template-hash", std::to_string(i)}});
    EXPECT_EQ(gone.at("pod-template-hash"), std::to_string(i));
  }
  EXPECT_LE(pool.TrackedSets(), 2048u);
  for (int i = 0; i < 100; ++i) {
    EXPECT_TRUE(pool.Share({{"keep", std::to_string(i)}}).SharesWith(live[i])) << i;
  }
}

}  // namespace
}  // namespace kr::k8s
