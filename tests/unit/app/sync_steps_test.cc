// A sync taken in steps (Controller::SyncContinues; the service proxy's periodic verification)
// is one sync to the agent's observers: kube_router_controller_syncs_total and
// ..._sync_duration_seconds observe it once, with the steps' summed time, and TrimAfterSync
// trims after its last step, not after its first. Health takes every step as a heartbeat.
#include <gtest/gtest.h>

#include <atomic>
#include <memory>
#include <mutex>
#include <vector>

#include "kube_router/health/health.h"
#include "kube_router/runtime/runner.h"
#include "lib/netns.h"  // WaitFor
#include "memory.h"
#include "sync_metrics.h"

namespace kr::app {
namespace {

using namespace std::chrono_literals;

// Its periodic sync is `steps` Syncs: the first (kPeriodic) starts it, each asks for the next.
// Every Sync records its index in the pass and what the observers had done before it.
class SteppingController : public Controller {
 public:
  struct Seen {
    int step = 0;  // index in its periodic pass (-1: the startup sync)
    int pass = 0;
    int trims = 0;
    double successes = 0;
  };
  SteppingController(int steps, const std::atomic<int>* trims, metrics::Registry* registry)
      : steps_(steps), trims_(trims), registry_(registry) {}
  std::string Name() const override { return "Stepper"; }
  std::chrono::milliseconds SyncPeriod() const override { return 50ms; }
  std::vector<k8s::ResourceKind> WatchedKinds() const override { return {}; }
  void SetSyncRequester(std::function<void()> request) override { request_ = std::move(request); }
  bool OnUpdate(const k8s::Event&) override { return false; }
  Status Sync(SyncReason reason) override {
    Seen seen{-1, passes_, trims_->load(), Successes()};
    if (reason == SyncReason::kPeriodic && left_ == 0) {
      left_ = steps_;
      ++passes_;
      seen.pass = passes_;
    }
    if (left_ > 0) {
      seen.step = steps_ - left_;
      if (--left_ > 0) request_();  // the next step
    }
    std::lock_guard lock(mu_);
    seen_.push_back(seen);
    return Status::Ok();
  }
  bool SyncContinues() const override { return left_ > 0; }
  Result<std::vector<std::string>> Cleanup() override { return std::vector<std::string>{}; }

  double Successes() const {
    return registry_
        ->GetCounter(kMetricSyncs, "", {{"controller", "Stepper"}, {"result", "success"}})
        .Value();
  }
  std::vector<Seen> seen() {
    std::lock_guard lock(mu_);
    return seen_;
  }

 private:
  const int steps_;
  const std::atomic<int>* trims_;
  metrics::Registry* registry_;
  std::function<void()> request_;
  int left_ = 0;  // steps of the periodic pass still to come (the runner's thread only)
  int passes_ = 0;
  std::mutex mu_;
  std::vector<Seen> seen_;
};

class StepCounter : public SyncObserver {
 public:
  void OnSyncSucceeded(const std::string&, SyncReason reason, std::chrono::nanoseconds) override {
    std::lock_guard lock(mu_);
    reasons_.push_back(reason);
  }
  void OnSyncFailed(const std::string&, SyncReason, const Status&) override {}
  void OnSyncStepSucceeded(const std::string&, SyncReason, std::chrono::nanoseconds) override {
    ++steps;
  }
  std::vector<SyncReason> reasons() {
    std::lock_guard lock(mu_);
    return reasons_;
  }
  std::atomic<int> steps{0};

 private:
  std::mutex mu_;
  std::vector<SyncReason> reasons_;
};

TEST(SyncInSteps, IsOneSyncToTheMetricsAndTrimsAfterItsLastStep) {
  constexpr int kSteps = 5;
  metrics::Registry registry;
  SyncMetrics sync_metrics(&registry);
  sync_metrics.Register("Stepper");
  std::atomic<int> trims{0};
  TrimAfterSync trim(0s, [&] {
    ++trims;
    return 0L;
  });
  StepCounter counter;
  FanOutObserver metrics_and_trim(&sync_metrics, &trim);
  FanOutObserver observer(&metrics_and_trim, &counter);
  auto owned = std::make_unique<SteppingController>(kSteps, &trims, &registry);
  SteppingController* controller = owned.get();
  ControllerRunner runner(std::move(owned), &observer);
  runner.Start();
  // The startup sync and at least three periodic passes (each of kSteps Syncs) completed.
  ASSERT_TRUE(testing::WaitFor([&] { return counter.reasons().size() >= 4; }, 30s));
  runner.Stop();

  const auto reasons = counter.reasons();
  const int passes = static_cast<int>(reasons.size()) - 1;
  EXPECT_EQ(reasons.front(), SyncReason::kStartup);
  for (size_t i = 1; i < reasons.size(); ++i) {
    EXPECT_EQ(reasons[i], SyncReason::kPeriodic) << "sync " << i << ": the pass's first reason";
  }
  // Every Sync of a pass saw the counters and trims as they were when the pass began: nothing
  // was counted or trimmed after its first step; pass p began after the startup sync and p-1
  // whole passes.
  for (const auto& seen : controller->seen()) {
    if (seen.step < 0) continue;
    EXPECT_EQ(seen.successes, seen.pass) << "pass " << seen.pass << " step " << seen.step;
    EXPECT_EQ(seen.trims, seen.pass) << "pass " << seen.pass << " step " << seen.step;
  }
  // One observation per whole sync; each step but a pass's last told as a step.
  EXPECT_EQ(controller->Successes(), static_cast<double>(reasons.size()));
  auto& duration = registry.GetHistogram(kMetricSyncDuration, "", {}, {{"controller", "Stepper"}});
  EXPECT_EQ(duration.Count(), reasons.size());
  EXPECT_EQ(trims.load(), static_cast<int>(reasons.size()));
  EXPECT_GE(counter.steps.load(), passes * (kSteps - 1));
}

// Health: each step is a heartbeat (a verification in many steps is progress, not a stall).
TEST(SyncInSteps, EveryStepIsAHealthHeartbeat) {
  health::HealthChecker checker(0ms);
  checker.Register("Stepper", 100ms);
  checker.MarkStarted();
  checker.OnSyncSucceeded("Stepper", SyncReason::kStartup, 1ms);
  ASSERT_TRUE(testing::WaitFor([&] { return !checker.Check().healthy; }, 30s));
  const auto before_step = health::Clock::now();
  checker.OnSyncStepSucceeded("Stepper", SyncReason::kRequested, 1ms);
  EXPECT_TRUE(checker.Check(before_step).healthy) << checker.Check(before_step).detail;
}

}  // namespace
}  // namespace kr::app
