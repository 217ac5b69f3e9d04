// End-to-end fan-out: informers -> EventDispatcher -> controller runners. A controller stuck in
// OnUpdate must not stall the informers (caches stay current) or another controller.
#include <gtest/gtest.h>

#include <atomic>
#include <condition_variable>
#include <mutex>

#include "fake_apiserver_fixture.h"
#include "kube_router/k8s/watcher.h"
#include "kube_router/runtime/runner.h"

namespace kr::k8s::fanout_test {
namespace {

using kr::k8s::testing::FakeApiServer;
using kr::k8s::testing::WriteFile;
using kr::testing::TempDir;
using kr::testing::WaitFor;
using namespace std::chrono_literals;

// Blocks in OnUpdate until released (when `block` is set); counts the pods it was told about.
class PodController : public Controller {
 public:
  PodController(std::string name, bool block) : name_(std::move(name)), block_(block) {}
  std::string Name() const override { return name_; }
  std::chrono::milliseconds SyncPeriod() const override { return 1h; }
  std::vector<ResourceKind> WatchedKinds() const override { return {ResourceKind::kPod}; }
  bool OnUpdate(const Event& e) override {
    if (block_) {
      std::unique_lock lock(mu_);
      blocked_ = true;
      released_cv_.wait(lock, [&] { return released_; });
    }
    if (e.type == EventType::kAdded) ++pods_added;
    return false;
  }
  Status Sync(SyncReason) override { return Status::Ok(); }
  Result<std::vector<std::string>> Cleanup() override { return std::vector<std::string>{}; }
  void Release() {
    std::lock_guard lock(mu_);
    released_ = true;
    released_cv_.notify_all();
  }
  bool blocked() {
    std::lock_guard lock(mu_);
    return blocked_;
  }
  std::atomic<int> pods_added{0};

 private:
  std::string name_;
  bool block_;
  std::mutex mu_;
  std::condition_variable released_cv_;
  bool blocked_ = false, released_ = false;
};

TEST(FanoutTest, BlockedControllerStallsNeitherWatcherNorOtherControllers) {
  TempDir dir;
  WriteFile(dir.path() + "/pod.yaml",
            "apiVersion: v1\nkind: Pod\nmetadata: {name: p0, namespace: demo}\n"
            "status: {podIP: 10.244.0.1}\n");
  FakeApiServer server(dir.path(), {"--manifests", dir.path() + "/pod.yaml"});
  auto stuck_owned = std::make_unique<PodController>("stuck", true);
  auto healthy_owned = std::make_unique<PodController>("healthy", false);
  PodController* stuck = stuck_owned.get();
  PodController* healthy = healthy_owned.get();
  ControllerRunner stuck_runner(std::move(stuck_owned), nullptr);
  ControllerRunner healthy_runner(std::move(healthy_owned), nullptr);
  EventDispatcher dispatcher;
  dispatcher.Add(&stuck_runner);
  dispatcher.Add(&healthy_runner);
  stuck_runner.Start();
  healthy_runner.Start();

  auto cluster = MakeCluster();
  ConnectionOptions opts;
  opts.kubeconfig = server.kubeconfig();
  auto watcher = Watcher::Start(opts, dispatcher.WatchedKinds(), cluster.get(), &dispatcher);
  ASSERT_TRUE(watcher.ok()) << watcher.error();
  ASSERT_TRUE((*watcher)->WaitForSync(30s).ok());
  ASSERT_TRUE(WaitFor([&] { return stuck->blocked(); }, 30s));

  for (int i = 1; i <= 20; ++i) {
    nlohmann::json pod = {{"metadata", {{"name", "p" + std::to_string(i)}}}};
    ASSERT_EQ(server.Create("/api/v1/namespaces/demo/pods", pod), 201);
  }
  EXPECT_TRUE(WaitFor([&] { return cluster->pods.Size() == 21; }, 30s)) << "watcher stalled";
  EXPECT_TRUE(WaitFor([&] { return healthy->pods_added == 21; }, 30s)) << "healthy stalled";
  EXPECT_EQ(stuck->pods_added, 0);

  stuck->Release();
  EXPECT_TRUE(WaitFor([&] { return stuck->pods_added == 21; }, 30s));
  (*watcher)->Stop();
  stuck_runner.Stop();
  healthy_runner.Stop();
}

}  // namespace
}  // namespace kr::k8s::fanout_test
