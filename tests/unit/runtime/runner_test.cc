#include "kube_router/runtime/runner.h"

#include <gtest/gtest.h>

#include <atomic>
#include <condition_variable>
#include <mutex>
#include <stdexcept>

#include "lib/netns.h"  // WaitFor

namespace kr {
namespace {

using namespace std::chrono_literals;
using k8s::ResourceKind;
using testing::WaitFor;

constexpr auto kDeadline = 10s;

// A gate a controller blocks on until the test opens it.
class Gate {
 public:
  void Close() {
    std::lock_guard lock(mu_);
    open_ = false;
  }
  void Open() {
    {
      std::lock_guard lock(mu_);
      open_ = true;
    }
    cv_.notify_all();
  }
  void Pass() {
    std::unique_lock lock(mu_);
    waiting_++;
    cv_.wait(lock, [this] { return open_; });
    waiting_--;
  }
  int waiting() {
    std::lock_guard lock(mu_);
    return waiting_;
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  bool open_ = true;
  int waiting_ = 0;
};

// Records what the runner did to it; every knob is set before Start().
struct FakeState {
  std::atomic<int> init_calls{0};
  std::atomic<int> init_failures_left{0};
  std::atomic<int> sync_calls{0};
  std::atomic<int> periodic_syncs{0};
  std::atomic<int> startup_syncs{0};
  std::atomic<int> requested_syncs{0};
  std::atomic<bool> fail_sync{false};
  std::atomic<bool> throw_in_sync{false};
  std::atomic<int> events{0};
  std::atomic<int> shutdown_calls{0};
  std::atomic<bool> request_sync_on_event{true};
  Gate sync_gate;
};

class FakeController : public Controller {
 public:
  FakeController(std::string name, std::vector<ResourceKind> kinds,
                 std::chrono::milliseconds period, FakeState* state)
      : name_(std::move(name)), kinds_(std::move(kinds)), period_(period), state_(state) {}
  std::string Name() const override { return name_; }
  std::chrono::milliseconds SyncPeriod() const override { return period_; }
  std::vector<ResourceKind> WatchedKinds() const override { return kinds_; }
  Status Init() override {
    state_->init_calls++;
    if (state_->init_failures_left > 0) {
      state_->init_failures_left--;
      return Status::Error("not yet");
    }
    return Status::Ok();
  }
  bool OnUpdate(const k8s::Event&) override {
    state_->events++;
    return state_->request_sync_on_event;
  }
  Status Sync(SyncReason reason) override {
    state_->sync_gate.Pass();
    state_->sync_calls++;
    if (reason == SyncReason::kPeriodic) state_->periodic_syncs++;
    if (reason == SyncReason::kStartup) state_->startup_syncs++;
    if (reason == SyncReason::kRequested) state_->requested_syncs++;
    if (state_->throw_in_sync) throw std::runtime_error("boom");
    return state_->fail_sync ? Status::Error("dataplane said no") : Status::Ok();
  }
  void Shutdown() override { state_->shutdown_calls++; }
  Result<std::vector<std::string>> Cleanup() override { return std::vector<std::string>{}; }

 private:
  std::string name_;
  std::vector<ResourceKind> kinds_;
  std::chrono::milliseconds period_;
  FakeState* state_;
};

class RecordingObserver : public SyncObserver {
 public:
  void OnSyncSucceeded(const std::string& name, SyncReason, std::chrono::nanoseconds) override {
    std::lock_guard lock(mu_);
    succeeded_[name]++;
  }
  void OnSyncFailed(const std::string& name, SyncReason, const Status& s) override {
    std::lock_guard lock(mu_);
    failed_[name]++;
    last_error_ = s.message();
  }
  int succeeded(const std::string& n) {
    std::lock_guard lock(mu_);
    return succeeded_[n];
  }
  int failed(const std::string& n) {
    std::lock_guard lock(mu_);
    return failed_[n];
  }
  std::string last_error() {
    std::lock_guard lock(mu_);
    return last_error_;
  }

 private:
  std::mutex mu_;
  std::map<std::string, int> succeeded_, failed_;
  std::string last_error_;
};

k8s::Event MakeEvent(ResourceKind kind, const std::string& key) {
  k8s::Event e;
  e.kind = kind;
  e.type = k8s::EventType::kUpdated;
  e.key = key;
  return e;
}

std::unique_ptr<Controller> Make(const std::string& name, std::vector<ResourceKind> kinds,
                                 std::chrono::milliseconds period, FakeState* state) {
  return std::make_unique<FakeController>(name, std::move(kinds), period, state);
}

TEST(ControllerRunner, InitThenStartupSyncThenHeartbeat) {
  FakeState state;
  RecordingObserver observer;
  ControllerRunner runner(Make("A", {ResourceKind::kPod}, 1h, &state), &observer);
  runner.Start();
  ASSERT_TRUE(WaitFor([&] { return observer.succeeded("A") == 1; }, kDeadline));
  EXPECT_EQ(state.init_calls, 1);
  EXPECT_EQ(state.startup_syncs, 1);
  runner.Stop();
  EXPECT_EQ(state.shutdown_calls, 1);
  runner.Stop();  // idempotent
  EXPECT_EQ(state.shutdown_calls, 1);
}

TEST(ControllerRunner, FailedInitIsRetried) {
  FakeState state;
  state.init_failures_left = 1;
  RecordingObserver observer;
  ControllerRunner runner(Make("A", {}, 1h, &state), &observer);
  runner.Start();
  ASSERT_TRUE(WaitFor([&] { return observer.succeeded("A") == 1; }, kDeadline));
  EXPECT_EQ(state.init_calls, 2);
}

TEST(ControllerRunner, PeriodicSyncsRunAtThePeriod) {
  FakeState state;
  RecordingObserver observer;
  ControllerRunner runner(Make("A", {}, 20ms, &state), &observer);
  runner.Start();
  ASSERT_TRUE(WaitFor([&] { return state.periodic_syncs >= 3; }, kDeadline));
  EXPECT_EQ(state.startup_syncs, 1);
  EXPECT_EQ(state.requested_syncs, 0);
}

TEST(ControllerRunner, HeartbeatOnlyAfterSuccessfulSync) {
  FakeState state;
  state.fail_sync = true;
  RecordingObserver observer;
  ControllerRunner runner(Make("A", {ResourceKind::kPod}, 1h, &state), &observer);
  runner.Start();
  ASSERT_TRUE(WaitFor([&] { return observer.failed("A") >= 1; }, kDeadline));
  EXPECT_EQ(observer.succeeded("A"), 0);
  EXPECT_EQ(observer.last_error(), "dataplane said no");
  state.fail_sync = false;
  runner.RequestSync();
  ASSERT_TRUE(WaitFor([&] { return observer.succeeded("A") >= 1; }, kDeadline));
  EXPECT_GE(runner.FailedSyncs(), 1u);
}

TEST(ControllerRunner, ExceptionInSyncIsAFailedSyncNotACrash) {
  FakeState state;
  state.throw_in_sync = true;
  RecordingObserver observer;
  ControllerRunner runner(Make("A", {}, 1h, &state), &observer);
  runner.Start();
  ASSERT_TRUE(WaitFor([&] { return observer.failed("A") >= 1; }, kDeadline));
  EXPECT_NE(observer.last_error().find("boom"), std::string::npos);
  EXPECT_EQ(observer.succeeded("A"), 0);
}

TEST(ControllerRunner, RequestsDuringASyncCoalesceIntoOneMoreSync) {
  FakeState state;
  state.sync_gate.Close();
  RecordingObserver observer;
  ControllerRunner runner(Make("A", {ResourceKind::kPod}, 1h, &state), &observer);
  runner.Start();
  // The startup sync is now blocked in the gate; pile up requests behind it.
  ASSERT_TRUE(WaitFor([&] { return state.sync_gate.waiting() == 1; }, kDeadline));
  for (int i = 0; i < 100; ++i) runner.RequestSync();
  state.sync_gate.Open();
  ASSERT_TRUE(WaitFor([&] { return state.sync_calls == 2; }, kDeadline));
  // An event that does not ask for a sync: once it is handled the loop has gone round again,
  // so a third sync would already have started.
  state.request_sync_on_event = false;
  runner.Post(MakeEvent(ResourceKind::kPod, "ns/p"));
  ASSERT_TRUE(WaitFor([&] { return state.events == 1; }, kDeadline));
  runner.Stop();
  EXPECT_EQ(state.sync_calls, 2);
  EXPECT_EQ(state.requested_syncs, 1);
}

TEST(EventDispatcher, RoutesEventsByWatchedKind) {
  FakeState pods_state, nodes_state;
  ControllerRunner pods(
      Make("Pods", {ResourceKind::kPod, ResourceKind::kNamespace}, 1h, &pods_state), nullptr);
  ControllerRunner nodes(Make("Nodes", {ResourceKind::kNode, ResourceKind::kPod}, 1h, &nodes_state),
                         nullptr);
  EventDispatcher dispatcher;
  dispatcher.Add(&pods);
  dispatcher.Add(&nodes);
  EXPECT_EQ(dispatcher.WatchedKinds(),
            (std::vector<ResourceKind>{ResourceKind::kPod, ResourceKind::kNode,
                                       ResourceKind::kNamespace}));
  pods.Start();
  nodes.Start();
  dispatcher.Post(MakeEvent(ResourceKind::kNamespace, "a"));
  dispatcher.Post(MakeEvent(ResourceKind::kNode, "b"));
  dispatcher.Post(MakeEvent(ResourceKind::kPod, "ns/c"));
  dispatcher.Post(MakeEvent(ResourceKind::kService, "ns/d"));  // nobody watches services
  ASSERT_TRUE(
      WaitFor([&] { return pods_state.events == 2 && nodes_state.events == 2; }, kDeadline));
  pods.Stop();
  nodes.Stop();
  EXPECT_EQ(pods_state.events, 2);
  EXPECT_EQ(nodes_state.events, 2);
}

// The runtime's central promise: a controller stuck in Sync neither blocks the dispatcher
// (the watchers' thread) nor delays another controller, and its inbox stays bounded.
TEST(EventDispatcher, BlockedControllerBlocksNobody) {
  FakeState stuck_state, healthy_state;
  stuck_state.sync_gate.Close();
  RecordingObserver observer;
  ControllerRunner stuck(Make("Stuck", {ResourceKind::kPod}, 1h, &stuck_state), &observer);
  ControllerRunner healthy(Make("Healthy", {ResourceKind::kPod}, 1h, &healthy_state), &observer);
  EventDispatcher dispatcher;
  dispatcher.Add(&stuck);
  dispatcher.Add(&healthy);
  stuck.Start();
  healthy.Start();
  ASSERT_TRUE(WaitFor([&] { return stuck_state.sync_gate.waiting() == 1; }, kDeadline));

  constexpr int kEvents = 20000;
  constexpr int kObjects = 50;
  for (int i = 0; i < kEvents; ++i) {
    dispatcher.Post(MakeEvent(ResourceKind::kPod, "ns/pod-" + std::to_string(i % kObjects)));
  }
  // The healthy controller saw the events and synced while the other one is still stuck.
  ASSERT_TRUE(
      WaitFor([&] { return healthy_state.requested_syncs >= 1 && healthy.PendingEvents() == 0; },
              kDeadline));
  EXPECT_EQ(stuck_state.sync_gate.waiting(), 1);
  EXPECT_EQ(stuck_state.events, 0);
  EXPECT_EQ(stuck.PendingEvents(), static_cast<size_t>(kObjects));
  EXPECT_EQ(observer.succeeded("Stuck"), 0);

  stuck_state.sync_gate.Open();
  ASSERT_TRUE(WaitFor([&] { return stuck_state.events == kObjects; }, kDeadline));
  ASSERT_TRUE(WaitFor([&] { return stuck_state.requested_syncs == 1; }, kDeadline));
  stuck.Stop();
  healthy.Stop();
}

}  // namespace
}  // namespace kr
