// fake-apiserver's graceful Pod deletion through its ObjectStore (object_store.h,
// EnableGracefulPodDeletion): a DELETE marks a scheduled Pod terminating for its grace period
// (the request's, else the pod's terminationGracePeriodSeconds, else 30 s), the reaper removes
// it when the period ends, a grace period of 0 or an unscheduled Pod goes at once.
#include <gtest/gtest.h>

#include "object_store.h"

namespace fake_apiserver::graceful_deletion_test {
namespace {

using std::chrono::seconds;
using Clock = std::chrono::steady_clock;

const ResourceType& Pods() { return *FindByPath("", "v1", "pods"); }

class GracefulDeletionTest : public ::testing::Test {
 protected:
  void SetUp() override { store_.EnableGracefulPodDeletion(); }
  void CreatePod(const std::string& name, const std::string& node, json grace = json()) {
    json pod = {{"metadata", {{"name", name}}}, {"spec", {{"containers", json::array()}}}};
    if (!node.empty()) pod["spec"]["nodeName"] = node;
    if (!grace.is_null()) pod["spec"]["terminationGracePeriodSeconds"] = grace;
    ASSERT_TRUE(std::holds_alternative<json>(store_.Create(Pods(), "demo", pod)));
  }
  json Delete(const std::string& name, std::optional<int64_t> grace = std::nullopt) {
    auto out = store_.Delete(Pods(), "demo", name, grace);
    EXPECT_TRUE(std::holds_alternative<json>(out));
    return std::holds_alternative<json>(out) ? std::get<json>(out) : json();
  }
  bool Exists(const std::string& name) {
    return std::holds_alternative<json>(store_.Get(Pods(), "demo", name));
  }
  // The event types after `rv`, in order.
  std::vector<std::string> EventsAfter(uint64_t rv) {
    std::vector<WatchEvent> events;
    store_.WaitEvents(Pods(), Filter{}, rv, store_.Signals(), Clock::now(), &events);
    std::vector<std::string> types;
    for (const auto& e : events) types.push_back(e.type);
    return types;
  }

  ObjectStore store_;
};

TEST_F(GracefulDeletionTest, ScheduledPodTerminatesForItsGracePeriodThenGoes) {
  CreatePod("web", "n1", 20);
  uint64_t rv = store_.CurrentRv();
  auto before = Clock::now();
  json terminating = Delete("web");
  EXPECT_TRUE(terminating["metadata"].contains("deletionTimestamp")) << terminating.dump();
  EXPECT_EQ(terminating["metadata"]["deletionGracePeriodSeconds"], 20);
  EXPECT_TRUE(Exists("web"));
  EXPECT_EQ(EventsAfter(rv), std::vector<std::string>{"MODIFIED"});
  // A full update (a client's PUT) keeps the server-owned deletion fields.
  json put = std::get<json>(store_.Get(Pods(), "demo", "web"));
  put["metadata"].erase("deletionTimestamp");
  put["metadata"]["labels"] = {{"a", "b"}};
  ASSERT_TRUE(std::holds_alternative<json>(store_.Update(Pods(), "demo", "web", put, false)));
  EXPECT_TRUE(
      std::get<json>(store_.Get(Pods(), "demo", "web"))["metadata"].contains("deletionTimestamp"));

  EXPECT_EQ(store_.ReapTerminatingPods(before + seconds(19)), 0u);
  EXPECT_TRUE(Exists("web"));
  EXPECT_EQ(store_.ReapTerminatingPods(Clock::now() + seconds(21)), 1u);
  EXPECT_FALSE(Exists("web"));
  EXPECT_EQ(EventsAfter(rv), (std::vector<std::string>{"MODIFIED", "MODIFIED", "DELETED"}));
  EXPECT_EQ(store_.ReapTerminatingPods(Clock::now() + seconds(60)), 0u);
}

TEST_F(GracefulDeletionTest, GracePeriodFromRequestPodOrDefault) {
  CreatePod("asked", "n1", 20);
  CreatePod("own", "n1", 5);
  CreatePod("default", "n1");
  EXPECT_EQ(Delete("asked", 2)["metadata"]["deletionGracePeriodSeconds"], 2);
  EXPECT_EQ(Delete("own")["metadata"]["deletionGracePeriodSeconds"], 5);
  EXPECT_EQ(Delete("default")["metadata"]["deletionGracePeriodSeconds"], 30);
  EXPECT_EQ(store_.ReapTerminatingPods(Clock::now() + seconds(3)), 1u);
  EXPECT_FALSE(Exists("asked"));
  EXPECT_TRUE(Exists("own"));
  EXPECT_TRUE(Exists("default"));
}

TEST_F(GracefulDeletionTest, ShorterPeriodShortensLongerKeepsZeroRemovesAtOnce) {
  CreatePod("web", "n1", 30);
  Delete("web");
  EXPECT_EQ(Delete("web", 60)["metadata"]["deletionGracePeriodSeconds"], 30);
  EXPECT_EQ(Delete("web", 3)["metadata"]["deletionGracePeriodSeconds"], 3);
  EXPECT_EQ(store_.ReapTerminatingPods(Clock::now() + seconds(4)), 1u);

  // kubectl delete --force --grace-period=0, the pod GC, a kubelet finalising: gone at once.
  CreatePod("forced", "n1", 30);
  uint64_t rv = store_.CurrentRv();
  Delete("forced", 0);
  EXPECT_FALSE(Exists("forced"));
  EXPECT_EQ(EventsAfter(rv), std::vector<std::string>{"DELETED"});
  CreatePod("terminating", "n1", 30);
  Delete("terminating");
  Delete("terminating", 0);
  EXPECT_FALSE(Exists("terminating"));
  EXPECT_EQ(store_.ReapTerminatingPods(Clock::now() + seconds(60)), 0u);
}

TEST_F(GracefulDeletionTest, UnscheduledOrEndedPodsGoAtOnce) {
  CreatePod("pending", "");
  Delete("pending");
  EXPECT_FALSE(Exists("pending"));
  CreatePod("done", "n1", 30);
  json status = {{"status", {{"phase", "Succeeded"}}}};
  ASSERT_TRUE(std::holds_alternative<json>(
      store_.Patch(Pods(), "demo", "done", PatchType::kMerge, status, true)));
  Delete("done");
  EXPECT_FALSE(Exists("done"));
}

TEST(ImmediateDeletionTest, WithoutGracefulDeletionEveryDeleteRemovesAtOnce) {
  ObjectStore store;
  json pod = {{"metadata", {{"name", "web"}}},
              {"spec", {{"nodeName", "n1"}, {"terminationGracePeriodSeconds", 30}}}};
  ASSERT_TRUE(std::holds_alternative<json>(store.Create(Pods(), "demo", pod)));
  ASSERT_TRUE(std::holds_alternative<json>(store.Delete(Pods(), "demo", "web", 30)));
  EXPECT_TRUE(std::holds_alternative<ApiError>(store.Get(Pods(), "demo", "web")));
}

}  // namespace
}  // namespace fake_apiserver::graceful_deletion_test
