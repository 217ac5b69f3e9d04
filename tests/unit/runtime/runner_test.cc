#include "kube_router/runtime/runner.h"

#include <gtest/gtest.h>

#include <atomic>
#include <condition_variable>
#include <functional>
#include <mutex>
#include <stdexcept>
#include <utility>
#include <vector>

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
  std::atomic<int> sync_failures_left{0};
  Gate sync_gate;
  // Full-read absorption: the controller marks a full read at the start of every Sync; the
  // hooks run inside the first Sync just before and just after the mark.
  bool marks_full_read = false;
  bool marks_twice = false;  // marks again after after_mark (only the first mark may count)
  std::function<void()> before_mark, after_mark;
  std::mutex mu;
  std::vector<k8s::Event> seen;  // every event OnUpdate got, in order
  // Every OnEventsAbsorbed call: its events and its end of the sync.
  std::vector<std::pair<std::vector<k8s::Event>, std::chrono::steady_clock::time_point>> absorbed;
  std::vector<k8s::Event> Seen() {
    std::lock_guard lock(mu);
    return seen;
  }
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
  bool OnUpdate(const k8s::Event& event) override {
    {
      std::lock_guard lock(state_->mu);
      state_->seen.push_back(event);
    }
    state_->events++;
    return state_->request_sync_on_event;
  }
  Status Sync(SyncReason reason) override {
    state_->sync_gate.Pass();
    const bool first = state_->sync_calls == 0;
    if (first && state_->before_mark) state_->before_mark();
    if (state_->marks_full_read) MarkFullRead();
    if (first && state_->after_mark) state_->after_mark();
    if (state_->marks_full_read && state_->marks_twice) MarkFullRead();
    state_->sync_calls++;
    if (reason == SyncReason::kPeriodic) state_->periodic_syncs++;
    if (reason == SyncReason::kStartup) state_->startup_syncs++;
    if (reason == SyncReason::kRequested) state_->requested_syncs++;
    if (state_->throw_in_sync) throw std::runtime_error("boom");
    if (state_->sync_failures_left > 0) {
      state_->sync_failures_left--;
      return Status::Error("dataplane said no");
    }
    return state_->fail_sync ? Status::Error("dataplane said no") : Status::Ok();
  }
  void OnEventsAbsorbed(const std::vector<k8s::Event>& absorbed,
                        std::chrono::steady_clock::time_point programmed) override {
    std::lock_guard lock(state_->mu);
    state_->absorbed.emplace_back(absorbed, programmed);
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

// What the informers do before the runners start: one Added per object, queued while the
// caches fill.
void PostInitialList(ControllerRunner& runner, int objects) {
  for (int i = 0; i < objects; ++i) {
    k8s::Event e = MakeEvent(ResourceKind::kPod, "ns/p" + std::to_string(i));
    e.type = k8s::EventType::kAdded;
    runner.Post(e);
  }
}

// Waits until the loop has gone round once more: an event that asks for no sync, seen by
// OnUpdate. Whatever the loop would still have done with earlier entries is done by then.
void Settle(ControllerRunner& runner, FakeState& state) {
  state.request_sync_on_event = false;
  runner.Post(MakeEvent(ResourceKind::kNode, "settle"));
  ASSERT_TRUE(WaitFor(
      [&] {
        auto seen = state.Seen();
        return !seen.empty() && seen.back().key == "settle";
      },
      kDeadline));
}

// The start-up of issue 11 under `runner`: the initial list of 100 objects queued before Start,
// then, once `done` holds and the loop has settled, the runner stopped, so that what OnUpdate saw
// and what was absorbed are final. Call through ASSERT_NO_FATAL_FAILURE.
void StartOnInitialListThenSettle(ControllerRunner& runner, FakeState& state,
                                  const std::function<bool()>& done) {
  PostInitialList(runner, 100);
  runner.Start();
  ASSERT_TRUE(WaitFor(done, kDeadline));
  Settle(runner, state);
  runner.Stop();
}

std::vector<std::string> Keys(const std::vector<k8s::Event>& events) {
  std::vector<std::string> keys;
  for (const auto& e : events) keys.push_back(e.key);
  return keys;
}

// The start-up case of issue 11: the startup sync read every object, so the initial list's
// events are not taken as one more (full) sync.
TEST(ControllerRunner, FullReadAbsorbsTheEventsItCovered) {
  FakeState state;
  state.marks_full_read = true;
  RecordingObserver observer;
  ControllerRunner runner(Make("A", {ResourceKind::kPod, ResourceKind::kNode}, 1h, &state),
                          &observer);
  ASSERT_NO_FATAL_FAILURE(
      StartOnInitialListThenSettle(runner, state, [&] { return runner.AbsorbedEvents() == 100; }));
  EXPECT_EQ(Keys(state.Seen()), std::vector<std::string>{"settle"});
  EXPECT_EQ(state.startup_syncs, 1);
  EXPECT_EQ(state.requested_syncs, 0);
}

// The controller hears of what was absorbed, once, after the sync: each event with when it reached
// the runner, and when the sync that programmed it ended (its network-programming latency).
TEST(ControllerRunner, AbsorbedEventsReachTheControllerWithArrivalAndSyncEnd) {
  FakeState state;
  state.marks_full_read = true;
  state.sync_gate.Close();
  ControllerRunner runner(Make("A", {ResourceKind::kPod}, 1h, &state), nullptr);
  const auto before_posts = std::chrono::steady_clock::now();
  PostInitialList(runner, 3);
  const auto after_posts = std::chrono::steady_clock::now();
  runner.Start();
  ASSERT_TRUE(WaitFor([&] { return state.sync_gate.waiting() == 1; }, kDeadline));
  const auto released = std::chrono::steady_clock::now();  // the sync cannot end before this
  state.sync_gate.Open();
  ASSERT_TRUE(WaitFor([&] { return runner.AbsorbedEvents() == 3; }, kDeadline));
  runner.Stop();
  const auto stopped = std::chrono::steady_clock::now();
  std::lock_guard lock(state.mu);
  ASSERT_EQ(state.absorbed.size(), 1u);
  const auto& [events, programmed] = state.absorbed[0];
  std::vector<std::string> keys;
  for (const auto& event : events) {
    keys.push_back(event.key);
    EXPECT_GE(event.arrived, before_posts);
    EXPECT_LE(event.arrived, after_posts);
  }
  EXPECT_EQ(keys, (std::vector<std::string>{"ns/p0", "ns/p1", "ns/p2"}));
  EXPECT_GE(programmed, released);
  EXPECT_LE(programmed, stopped);
}

// A controller that does not mark a full read keeps every event (its OnUpdate may remember
// more than the caches say).
TEST(ControllerRunner, WithoutAFullReadMarkEveryEventIsDelivered) {
  FakeState state;
  ControllerRunner runner(Make("A", {ResourceKind::kPod, ResourceKind::kNode}, 1h, &state),
                          nullptr);
  ASSERT_NO_FATAL_FAILURE(
      StartOnInitialListThenSettle(runner, state, [&] { return state.requested_syncs == 1; }));
  EXPECT_EQ(state.events, 101);
  EXPECT_EQ(runner.AbsorbedEvents(), 0u);
}

// The race: changes posted while the full sync runs but after it started reading the caches
// are delivered (a deletion too, although its object's Added came before the read); those
// posted before the read are not.
TEST(ControllerRunner, EventsPostedAfterTheFullReadAreDelivered) {
  FakeState state;
  state.marks_full_read = true;
  state.marks_twice = true;  // a second mark after the read must not absorb what came between
  ControllerRunner runner(Make("A", {ResourceKind::kPod, ResourceKind::kNode}, 1h, &state),
                          nullptr);
  state.before_mark = [&] { runner.Post(MakeEvent(ResourceKind::kPod, "ns/early")); };
  state.after_mark = [&] {
    runner.Post(MakeEvent(ResourceKind::kPod, "ns/p7"));  // an update of a pending object
    runner.Post(MakeEvent(ResourceKind::kPod, "ns/late"));
    k8s::Event gone = MakeEvent(ResourceKind::kPod, "ns/p9");
    gone.type = k8s::EventType::kDeleted;
    auto tombstone = std::make_shared<k8s::Pod>();
    tombstone->pod_ips = {"10.0.0.9"};
    gone.old_object = std::shared_ptr<const k8s::Pod>(tombstone);
    runner.Post(gone);
  };
  ASSERT_NO_FATAL_FAILURE(
      StartOnInitialListThenSettle(runner, state, [&] { return state.requested_syncs == 1; }));
  auto seen = state.Seen();
  ASSERT_EQ(Keys(seen), (std::vector<std::string>{"ns/p7", "ns/p9", "ns/late", "settle"}));
  EXPECT_EQ(seen[0].type, k8s::EventType::kAdded);  // never delivered before: still new
  EXPECT_EQ(seen[1].type, k8s::EventType::kDeleted);
  auto* pod = std::get_if<std::shared_ptr<const k8s::Pod>>(&seen[1].old_object);
  ASSERT_NE(pod, nullptr);
  EXPECT_EQ((*pod)->pod_ip(), "10.0.0.9");
  EXPECT_EQ(runner.AbsorbedEvents(), 99u);  // 100 - p7 - p9 + early
}

// A full sync that failed may have programmed nothing: it absorbs nothing.
TEST(ControllerRunner, AFailedFullSyncAbsorbsNothing) {
  FakeState state;
  state.marks_full_read = true;
  state.sync_failures_left = 1;
  ControllerRunner runner(Make("A", {ResourceKind::kPod, ResourceKind::kNode}, 1h, &state),
                          nullptr);
  ASSERT_NO_FATAL_FAILURE(
      StartOnInitialListThenSettle(runner, state, [&] { return state.requested_syncs == 1; }));
  EXPECT_EQ(state.events, 101);
  EXPECT_EQ(runner.AbsorbedEvents(), 0u);
  std::lock_guard lock(state.mu);
  EXPECT_TRUE(state.absorbed.empty());
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
