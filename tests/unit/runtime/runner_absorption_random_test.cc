// The runner's absorption (docs/runtime.md, "A full sync absorbs the events it read") under
// random interleavings of posts, full-read marks, sync successes and failures and syncs in steps,
// checked against a model that knows nothing of the inbox: the objects' states in the caches,
// what the controller has been told (events it got, or the caches as a successful full read saw
// them at its mark), and a few rules on what must reach it.
//
// Everything happens on the controller's thread (posts from inside Sync and OnUpdate, marks,
// outcomes) in an order drawn from a seeded generator, so a seed is one exact interleaving: the
// run is deterministic and needs no sleeps. Each scripted Sync asks for the next, so each drain of
// the inbox is followed by exactly one Sync; the drain's end is the next Sync's start.
#include <gtest/gtest.h>

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "kube_router/base/log.h"
#include "kube_router/runtime/runner.h"

namespace kr {
namespace {

using namespace std::chrono_literals;
using k8s::EventType;
using k8s::ResourceKind;
using SteadyTime = std::chrono::steady_clock::time_point;

constexpr int kObjects = 4;
constexpr uint32_t kSeeds = 96;
constexpr uint32_t kSeedsAtOnce = 16;
constexpr int kSyncsPerSeed = 25;

// An object's state: its version counts every change posted for it (0: never existed).
struct State {
  uint64_t version = 0;
  bool exists = false;
};

// One posted change, as the model remembers it.
struct Posted {
  uint64_t syncs_started = 0;  // how many syncs had started when it was posted
  bool during_sync = false;
  SteadyTime before;  // read just before Post
};

std::string Key(int object) { return "ns/o" + std::to_string(object); }

k8s::AnyObject PodAt(uint64_t version) {
  auto pod = std::make_shared<k8s::Pod>();
  pod->pod_ips = {std::to_string(version)};
  return std::shared_ptr<const k8s::Pod>(pod);
}

// The version an event's object carries (0 when it carries none).
uint64_t VersionOf(const k8s::AnyObject& object) {
  auto* pod = std::get_if<std::shared_ptr<const k8s::Pod>>(&object);
  return pod ? std::stoull(std::string((*pod)->pod_ip())) : 0;
}

// Records the observer's calls as words: "step", "fail", "pass:<reason>".
class WordObserver : public SyncObserver {
 public:
  void OnSyncSucceeded(const std::string&, SyncReason reason, std::chrono::nanoseconds) override {
    words.push_back("pass:" + std::to_string(static_cast<int>(reason)));
  }
  void OnSyncFailed(const std::string&, SyncReason, const Status&) override {
    words.push_back("fail");
  }
  void OnSyncStepSucceeded(const std::string&, SyncReason, std::chrono::nanoseconds) override {
    words.push_back("step");
  }
  std::vector<std::string> words;  // only the runner's thread writes, read after Stop
};

// The controller that plays the script and the model that judges the runner.
class ScriptedController : public Controller {
 public:
  explicit ScriptedController(uint32_t seed) : random_(seed) {}

  std::string Name() const override { return "Scripted"; }
  std::chrono::milliseconds SyncPeriod() const override { return 1h; }
  std::vector<ResourceKind> WatchedKinds() const override {
    return {ResourceKind::kPod, ResourceKind::kNode};
  }
  void SetSyncRequester(std::function<void()> request_sync) override {
    request_sync_ = std::move(request_sync);
  }
  void SetRunner(ControllerRunner* runner) { runner_ = runner; }

  // The informers' initial list, before the runner starts.
  void PostInitialList() {
    for (int o = 0; o < kObjects; ++o) {
      if (Draw(3) != 0) PostChange(o);
    }
  }

  bool OnUpdate(const k8s::Event& event) override {
    CloseAbsorbWindow();                      // the drain has begun
    if (event.kind == ResourceKind::kNode) {  // the settle event: everything before it is in
      CheckDrainComplete("at the end");
      for (int o = 0; o < kObjects; ++o) {
        if (view_[o].version != cache_[o].version) {
          Fail("object " + std::to_string(o) + " ends at version " +
               std::to_string(view_[o].version) + " but the caches hold " +
               std::to_string(cache_[o].version));
        }
      }
      {
        std::lock_guard lock(done_mu_);
        done_ = true;
      }
      done_cv_.notify_all();
      return false;
    }
    const int o = std::stoi(event.key.substr(4));
    const State& want = eligible_[o];
    const bool deleted = event.type == EventType::kDeleted;
    const uint64_t got = deleted ? want.version : VersionOf(event.new_object);
    if (deleted == want.exists || got != want.version) {
      Fail("object " + std::to_string(o) + " delivered as " + (deleted ? "deleted" : "version ") +
           (deleted ? "" : std::to_string(got)) + ", the latest change before the drain is " +
           std::to_string(want.version) + (want.exists ? "" : " (deleted)"));
    } else if (want.version <= view_[o].version) {
      Fail("object " + std::to_string(o) + " version " + std::to_string(want.version) +
           " delivered again (the controller has " + std::to_string(view_[o].version) + ")");
    }
    view_[o] = want;
    ++delivered;
    if (finishing_) return false;  // the last sync has run: nothing more
    if (Draw(2) == 0) PostChange(static_cast<int>(Draw(kObjects)));
    return Draw(2) == 0;
  }

  Status Sync(SyncReason reason) override {
    CheckDrainComplete("before sync " + std::to_string(syncs_started_ + 1));
    ++syncs_started_;
    in_sync_ = true;
    if (!pass_reason_) pass_reason_ = reason;
    snapshot_.reset();
    if (finishing_) return EndSync(true, false, reason);
    for (uint64_t n = Draw(3); n > 0; --n) PostChange(static_cast<int>(Draw(kObjects)));
    if (Draw(5) < 3) Mark();
    for (uint64_t n = Draw(3); n > 0; --n) PostChange(static_cast<int>(Draw(kObjects)));
    if (snapshot_ && Draw(4) == 0) {
      Mark();  // a second mark: only the first may count
      for (uint64_t n = Draw(2); n > 0; --n) PostChange(static_cast<int>(Draw(kObjects)));
    }
    const bool ok = Draw(4) != 0;
    const bool continues = ok && Draw(3) == 0;
    return EndSync(ok, continues, reason);
  }
  bool SyncContinues() const override { return continues_; }

  void OnEventsAbsorbed(const std::vector<k8s::Event>& absorbed, SteadyTime programmed) override {
    if (!absorb_window_) {
      Fail("events absorbed outside the end of a successful full read");
      return;
    }
    std::set<int> reported;
    for (const auto& a : absorbed) {
      const int o = std::stoi(a.key.substr(4));
      if (!reported.insert(o).second) Fail("object " + std::to_string(o) + " absorbed twice");
      const State& before = view_before_absorb_[o];
      const State& read = last_snapshot_[o];
      if (read.version <= before.version || cache_[o].version != read.version) {
        Fail("object " + std::to_string(o) + " absorbed though its latest change " +
             std::to_string(cache_[o].version) + " is not one the read saw first (read " +
             std::to_string(read.version) + ", told " + std::to_string(before.version) + ")");
        continue;
      }
      const Posted& first = posts_[o][before.version];  // the first change not yet told
      if (a.arrived < first.before || a.arrived > last_mark_time_ || programmed < last_sync_end_) {
        Fail("object " + std::to_string(o) + ": arrival or programmed time out of order");
      }
    }
    absorbed_reported += absorbed.size();
    for (int o : must_absorb_) {
      if (!reported.contains(o)) Fail("object " + std::to_string(o) + " was not absorbed");
    }
    must_absorb_.clear();
    absorb_window_ = false;
  }

  Result<std::vector<std::string>> Cleanup() override { return std::vector<std::string>{}; }

  // Until the settle event was judged (then everything before it was).
  bool WaitDone(std::chrono::seconds timeout) {
    std::unique_lock lock(done_mu_);
    return done_cv_.wait_for(lock, timeout, [this] { return done_; });
  }

  // What the model expects the runner and its observer to have counted.
  uint64_t successes = 0, failures = 0, delivered = 0, absorbed_reported = 0;
  std::vector<std::string> expected_words;
  std::string failure;  // the first rule broken, empty if none

 private:
  uint64_t Draw(uint64_t n) { return random_() % n; }

  void Fail(const std::string& what) {
    if (failure.empty()) failure = "sync " + std::to_string(syncs_started_) + ": " + what;
    finishing_ = true;  // stop the script; the runner still settles
  }

  // An API change of object `o`: the cache first, then the event (as the informers do).
  void PostChange(int o) {
    State& s = cache_[o];
    k8s::Event e;
    e.kind = ResourceKind::kPod;
    e.key = Key(o);
    const uint64_t previous = s.version;
    s.version = posts_[o].size() + 1;
    if (!s.exists) {
      e.type = EventType::kAdded;
      s.exists = true;
      e.new_object = PodAt(s.version);
    } else if (Draw(3) == 0) {
      e.type = EventType::kDeleted;
      s.exists = false;
      e.old_object = PodAt(previous);  // the tombstone: the last state
    } else {
      e.type = EventType::kUpdated;
      e.old_object = PodAt(previous);
      e.new_object = PodAt(s.version);
    }
    posts_[o].push_back({syncs_started_, in_sync_, std::chrono::steady_clock::now()});
    runner_->Post(e);
  }

  void Mark() {
    if (!snapshot_) {
      snapshot_ = cache_;
      last_mark_time_ = std::chrono::steady_clock::now();
    }
    MarkFullRead();
  }

  Status EndSync(bool ok, bool continues, SyncReason reason) {
    (void)reason;
    in_sync_ = false;
    continues_ = continues;
    eligible_ = cache_;  // what the next drain must deliver, if not told or absorbed
    must_absorb_.clear();
    if (ok && snapshot_) {
      // The controller programmed every object as its read saw it.
      view_before_absorb_ = view_;
      last_snapshot_ = *snapshot_;
      for (int o = 0; o < kObjects; ++o) {
        const State& read = (*snapshot_)[o];
        if (read.version < view_[o].version) Fail("the read saw less than was told");
        if (read.version > view_[o].version && cache_[o].version == read.version &&
            !Cancellable(o, read)) {
          must_absorb_.insert(o);
        }
        view_[o] = read;
      }
      absorb_window_ = true;
    } else {
      absorb_window_ = false;
    }
    ok ? ++successes : ++failures;
    if (!ok) {
      expected_words.emplace_back("fail");
      pass_reason_.reset();
    } else if (continues) {
      expected_words.emplace_back("step");
    } else {
      expected_words.push_back("pass:" + std::to_string(static_cast<int>(*pass_reason_)));
      pass_reason_.reset();
    }
    last_sync_end_ = std::chrono::steady_clock::now();
    if (finishing_) {
      // The settle event: the drain after this sync ends with it.
      k8s::Event settle;
      settle.kind = ResourceKind::kNode;
      settle.key = "settle";
      runner_->Post(settle);
    } else {
      if (syncs_started_ >= kSyncsPerSeed) finishing_ = true;
      request_sync_();
    }
    return ok ? Status::Ok() : Status::Error("scripted failure");
  }

  // The changes of `o` after what the controller was told, ending in `latest`, may reach it
  // as nothing: the object was unknown to it before and after, and no sync ran or started
  // while they came (none can have read it).
  bool Cancellable(int o, const State& latest) const {
    const State& told = view_[o];
    if (told.exists || latest.exists) return false;
    const auto& list = posts_[o];
    const uint64_t first = told.version;  // index of the first untold change
    if (first >= latest.version) return false;
    for (uint64_t i = first; i < latest.version; ++i) {
      if (list[i].during_sync || list[i].syncs_started != list[first].syncs_started) return false;
    }
    return true;
  }

  // After a successful full read the runner tells of what it absorbed before the drain begins.
  void CloseAbsorbWindow() {
    if (absorb_window_ && !must_absorb_.empty()) Fail("a successful full read absorbed nothing");
    absorb_window_ = false;
  }

  // At a drain's end: every object the controller is behind on was delivered in it, or its
  // changes cancelled out (then the controller rightly takes it as still absent).
  void CheckDrainComplete(const std::string& when) {
    CloseAbsorbWindow();
    if (syncs_started_ == 0) return;  // before the startup sync there is no drain
    for (int o = 0; o < kObjects; ++o) {
      if (view_[o].version == eligible_[o].version) continue;
      if (Cancellable(o, eligible_[o])) {
        view_[o] = eligible_[o];
      } else {
        Fail("object " + std::to_string(o) + " changed to version " +
             std::to_string(eligible_[o].version) + " before the drain, but the controller has " +
             std::to_string(view_[o].version) + " " + when + " (lost)");
      }
    }
  }

  std::mutex done_mu_;
  std::condition_variable done_cv_;
  bool done_ = false;
  std::mt19937 random_;
  ControllerRunner* runner_ = nullptr;
  std::function<void()> request_sync_;
  std::vector<State> cache_ = std::vector<State>(kObjects);
  std::vector<State> view_ = std::vector<State>(kObjects);  // what the controller was told
  std::vector<State> eligible_ = std::vector<State>(kObjects);
  std::vector<std::vector<Posted>> posts_ = std::vector<std::vector<Posted>>(kObjects);
  std::optional<std::vector<State>> snapshot_;  // the caches at this sync's first mark
  std::vector<State> last_snapshot_, view_before_absorb_;
  std::set<int> must_absorb_;
  SteadyTime last_mark_time_, last_sync_end_;
  std::optional<SyncReason> pass_reason_;
  uint64_t syncs_started_ = 0;
  bool in_sync_ = false;
  bool continues_ = false;
  bool finishing_ = false;
  bool absorb_window_ = false;
};

// One seed's run: its controller (script and model), the runner and the observer.
struct SeedRun {
  explicit SeedRun(uint32_t seed) : seed(seed) {
    auto owned = std::make_unique<ScriptedController>(seed);
    script = owned.get();
    runner = std::make_unique<ControllerRunner>(std::move(owned), &observer);
    script->SetRunner(runner.get());
    script->PostInitialList();
  }
  uint32_t seed;
  ScriptedController* script;
  WordObserver observer;
  std::unique_ptr<ControllerRunner> runner;
};

TEST(RunnerAbsorption, RandomInterleavingsMatchTheModel) {
  // A quarter of the syncs fail on purpose: thousands of error lines otherwise.
  const auto level = spdlog::get_level();
  spdlog::set_level(spdlog::level::off);
  struct Restore {
    spdlog::level::level_enum level;
    ~Restore() { spdlog::set_level(level); }
  } restore{level};
  uint64_t absorbed = 0, delivered = 0, failed = 0;
  // Seeds run a batch at a time, each on its own runner (a seed's run depends on nothing else):
  // the waits for a thread to be scheduled overlap instead of adding up on a loaded machine.
  for (uint32_t first = 1; first <= kSeeds; first += kSeedsAtOnce) {
    std::vector<std::unique_ptr<SeedRun>> runs;
    for (uint32_t seed = first; seed < first + kSeedsAtOnce; ++seed) {
      runs.push_back(std::make_unique<SeedRun>(seed));
    }
    for (auto& run : runs) run->runner->Start();
    for (auto& run : runs) {
      ASSERT_TRUE(run->script->WaitDone(30s)) << "seed " << run->seed;
      run->runner->Stop();
      const ScriptedController& script = *run->script;
      const ControllerRunner& runner = *run->runner;
      ASSERT_EQ(script.failure, "") << "seed " << run->seed;
      ASSERT_EQ(runner.SuccessfulSyncs(), script.successes) << "seed " << run->seed;
      ASSERT_EQ(runner.FailedSyncs(), script.failures) << "seed " << run->seed;
      ASSERT_EQ(runner.AbsorbedEvents(), script.absorbed_reported) << "seed " << run->seed;
      ASSERT_EQ(run->observer.words, script.expected_words) << "seed " << run->seed;
      absorbed += script.absorbed_reported;
      delivered += script.delivered;
      failed += script.failures;
    }
  }
  // The seeds covered what they are for: absorption, delivery and failed syncs, many times.
  EXPECT_GT(absorbed, 1000u);
  EXPECT_GT(delivered, 1000u);
  EXPECT_GT(failed, 500u);
}

}  // namespace
}  // namespace kr
