// The service proxy's event path on the host (no guest, no ip_vs): the real informers (k8s
// Watcher) against fake-apiserver on loopback feed the real NetworkServicesController, run by
// the agent's ControllerRunner, over the stateful fakes (FakeIpvs, FakeLinks, FakeRouteTable).
//
//   build/tests/bench/proxy/proxy_event_bench [--services N] [--rounds R] [--realtime]
//       [--sync-period-ms P [--periodic-rounds R2] [--verify-step-items K]]
//
// N Services x 10 endpoints and 1 Service run side by side (each its own fake-apiserver,
// informers, runner and controller), and their change rounds alternate, so that the 1-Service
// baseline sees the same machine load. It prints:
//   - fake-apiserver's start (manifest load), the informers' first list, the first (full) sync;
//   - one endpoint change (an EndpointSlice merge PATCH) -> the fake kernel written, p50/p99
//     over R rounds at N and at 1 and their ratio (the issue's host-equivalent figure), and
//     the same per stage: the PATCH arriving at fake-apiserver (its own stamp, 1 ms steps) and
//     answered, the informer posting the event, the controller taking it, its sync starting,
//     the IPVS batch with the new destination written, the sync ending; the slowest rounds
//     stage by stage (where a stall sits);
//   - with --sync-period-ms, a second phase at N: R2 (20) rounds whose PATCH is sent during a
//     periodic verification (every other one as it starts, the others after a spread of its
//     steps, --spread-steps), per stage and as a ratio to the first phase's rounds (no
//     verification running: periodic syncs are taken as plain syncs there); then each
//     verification's time per stage (rebuild, kernel reads, diff, writes, extensions), its
//     steps, its longest step (and in which phases) and every step's duration. --verify-step-items
//     sets the step size (a huge value: the whole verification in one step, as before the steps);
//   - the start-up phase (issue 11): the first change after a start at N, with the startup
//     sync absorbing the informers' queued initial events (the agent) against a controller that
//     does not mark its full read (as before: the queued events are one more sync that rebuilds
//     every Service), one start each, one after the other, and their ratio
//     (--no-startup-baseline skips the second start).
// --realtime puts this process and both fake-apiservers under SCHED_FIFO for the rounds: the
// shared build machine's run queue then no longer decides the tail.
// Not a ctest test: a benchmark (the proxy's design note, "Benchmark").
#include <httplib.h>
#include <sched.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iterator>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "kube_router/k8s/store.h"
#include "kube_router/k8s/watcher.h"
#include "kube_router/netlink/fakes.h"
#include "kube_router/proxy/network_services_controller.h"
#include "kube_router/runtime/runner.h"
#include "lib/agent_bench.h"
#include "lib/binaries.h"
#include "lib/forwarding_controller.h"
#include "lib/netns.h"
#include "proxy_bench_cluster.h"

namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;
using kr::testing::Percentile;
using kr::testing::Process;
using kr::testing::TempDir;
using kr::testing::WaitFor;
using kr::testing::proxy_bench::ClusterManifest;
using kr::testing::proxy_bench::Endpoints;
using kr::testing::proxy_bench::EndpointsJson;
using kr::testing::proxy_bench::kEndpointsPerService;
using kr::testing::proxy_bench::ReplacementIp;
using kr::testing::proxy_bench::Vip;

double Ms(Clock::duration d) { return std::chrono::duration<double, std::milli>(d).count(); }

// Where one round's time goes, each stage stamped where it happens (steady clock, one process
// except fake-apiserver): the PATCH answered, the informer's event posted to the dispatcher,
// the controller taking it (OnUpdate), the sync that programmed it (start, kernel write, end).
struct Stamps {
  Clock::time_point sent, arrived, answered, posted, taken, sync_start, written, sync_end;
};

// The round in flight: each hook stamps its stage once, the first time it sees the change.
class Round {
 public:
  void Arm(std::string slice_key, kr::IpAddress vip, kr::IpAddress destination) {
    std::lock_guard lock(mu_);
    key_ = std::move(slice_key);
    vip_ = vip;
    destination_ = destination;
    stamps_ = Stamps{};
    in_sync_ = false;
    done_ = false;
  }
  void Sent(Clock::time_point t, Clock::time_point answered) {
    std::lock_guard lock(mu_);
    stamps_.sent = t;
    stamps_.answered = answered;
  }
  void Posted(const kr::k8s::Event& e) { Stage(e, &Stamps::posted); }
  void Taken(const kr::k8s::Event& e) { Stage(e, &Stamps::taken); }
  void SyncStarted() {
    std::lock_guard lock(mu_);
    if (stamps_.taken != Clock::time_point{} && stamps_.sync_start == Clock::time_point{}) {
      stamps_.sync_start = Clock::now();
      in_sync_ = true;
    }
  }
  void Wrote(const std::vector<kr::netlink::IpvsWrite>& writes) {
    const auto now = Clock::now();
    std::lock_guard lock(mu_);
    if (!vip_ || stamps_.written != Clock::time_point{}) return;
    for (const auto& w : writes) {
      if (w.op == kr::netlink::IpvsWrite::Op::kAddDestination && w.service.address == *vip_ &&
          w.destination.address == *destination_) {
        stamps_.written = now;
      }
    }
  }
  void SyncEnded() {
    std::lock_guard lock(mu_);
    if (!in_sync_) return;
    in_sync_ = false;
    if (stamps_.written ==
        Clock::time_point{}) {  // that sync did not program it: wait for the next
      stamps_.sync_start = {};
      return;
    }
    stamps_.sync_end = Clock::now();
    done_ = true;
    changed_.notify_all();
  }
  std::optional<Stamps> Wait(Clock::duration timeout) {
    std::unique_lock lock(mu_);
    if (!changed_.wait_for(lock, timeout, [&] { return done_; })) return std::nullopt;
    return stamps_;
  }

 private:
  void Stage(const kr::k8s::Event& e, Clock::time_point Stamps::*stage) {
    if (e.kind != kr::k8s::ResourceKind::kEndpointSlice) return;
    const auto now = Clock::now();
    std::lock_guard lock(mu_);
    if (e.key == key_ && stamps_.*stage == Clock::time_point{}) stamps_.*stage = now;
  }

  std::mutex mu_;
  std::condition_variable changed_;
  std::string key_;
  std::optional<kr::IpAddress> vip_, destination_;
  Stamps stamps_;
  bool in_sync_ = false, done_ = false;
};

// The informers' sink: stamps the event, then hands it to the agent's dispatcher.
class StampingSink : public kr::k8s::EventSink {
 public:
  StampingSink(Round* round, kr::k8s::EventSink* next) : round_(round), next_(next) {}
  void Post(const kr::k8s::Event& event) override {
    round_->Posted(event);
    next_->Post(event);
  }

 private:
  Round* round_;
  kr::k8s::EventSink* next_;
};

// The controller as the runner sees it, with its stages stamped. Without `absorb` it hides the
// proxy's full-read marker from the runner: the start-up as it was before issue 11. Periodic
// syncs pass through only while enabled (otherwise they are taken as plain requested syncs: the
// rounds without a periodic verification running); each completed full sync's stage times are
// kept.
class StampingController : public kr::testing::ForwardingController {
 public:
  StampingController(std::unique_ptr<kr::proxy::NetworkServicesController> inner, Round* round,
                     bool absorb)
      : StampingController(*inner, std::move(inner), round, absorb) {}
  void SetFullReadMarker(std::function<void()> mark) override {
    if (absorb_) ForwardingController::SetFullReadMarker(std::move(mark));
  }
  bool OnUpdate(const kr::k8s::Event& event) override {
    round_->Taken(event);
    ++updates_;
    return ForwardingController::OnUpdate(event);
  }
  kr::Status Sync(kr::SyncReason reason) override {
    if (reason == kr::SyncReason::kPeriodic) {
      if (!periodic_.load()) {
        reason = kr::SyncReason::kRequested;
      } else if (!proxy_.verifying()) {
        std::lock_guard lock(mu_);
        ++verifications_started_;
        synced_.notify_all();
      }
    }
    round_->SyncStarted();
    const bool was_verifying = proxy_.verifying();
    const auto sync_started = Clock::now();
    kr::Status s = ForwardingController::Sync(reason);
    {
      std::lock_guard lock(mu_);
      // Every sync while a verification is under way is one of its steps (with the events it
      // served first): what an event arriving during it waits for.
      if (was_verifying || proxy_.verifying() || proxy_.full_syncs() != full_syncs_seen_) {
        if (reason != kr::SyncReason::kStartup) step_ms_.push_back(Ms(Clock::now() - sync_started));
      }
      ++syncs_;
      if (proxy_.full_syncs() != full_syncs_seen_) {
        full_syncs_seen_ = proxy_.full_syncs();
        if (reason != kr::SyncReason::kStartup) full_syncs_.push_back(proxy_.last_full_sync());
      }
    }
    round_->SyncEnded();  // counted first: the round's waiter reads the count
    synced_.notify_all();
    return s;
  }

  void EnablePeriodic() { periodic_.store(true); }
  bool WaitSyncs(int n, Clock::duration timeout) {
    std::unique_lock lock(mu_);
    return synced_.wait_for(lock, timeout, [&] { return syncs_ >= n; });
  }
  // Waits until a periodic verification other than the first `seen` ones has started.
  bool WaitVerificationStart(int seen, Clock::duration timeout) {
    std::unique_lock lock(mu_);
    return synced_.wait_for(lock, timeout, [&] { return verifications_started_ > seen; });
  }
  int VerificationsStarted() {
    std::lock_guard lock(mu_);
    return verifications_started_;
  }
  std::vector<kr::proxy::FullSyncStats> FullSyncs() {
    std::lock_guard lock(mu_);
    return full_syncs_;
  }
  std::vector<double> StepMs() {
    std::lock_guard lock(mu_);
    return step_ms_;
  }
  int syncs() {
    std::lock_guard lock(mu_);
    return syncs_;
  }
  int updates() const { return updates_; }

 private:
  // `proxy` is the controller `inner` owns, kept typed for its verification counters.
  StampingController(kr::proxy::NetworkServicesController& proxy,
                     std::unique_ptr<kr::proxy::NetworkServicesController>&& inner, Round* round,
                     bool absorb)
      : ForwardingController(std::move(inner)), proxy_(proxy), round_(round), absorb_(absorb) {}

  kr::proxy::NetworkServicesController& proxy_;
  Round* round_;
  const bool absorb_;
  std::atomic<int> updates_{0};  // events the runner handed to OnUpdate
  std::atomic<bool> periodic_{false};
  std::mutex mu_;
  std::condition_variable synced_;
  int syncs_ = 0;
  int verifications_started_ = 0;
  uint64_t full_syncs_seen_ = 0;
  std::vector<kr::proxy::FullSyncStats> full_syncs_;  // completed after the startup sync
  std::vector<double> step_ms_;                       // each verification step's sync, ms
};

// The fake kernel, with the batch that writes the round's destination stamped.
class StampingIpvs : public kr::netlink::FakeIpvs {
 public:
  explicit StampingIpvs(Round* round) : round_(round) {}
  kr::Result<std::vector<kr::netlink::IpvsWriteError>> Apply(
      const std::vector<kr::netlink::IpvsWrite>& writes) override {
    auto result = FakeIpvs::Apply(writes);
    round_->Wrote(writes);
    return result;
  }

 private:
  Round* round_;
};

class NullObserver : public kr::SyncObserver {
 public:
  void OnSyncSucceeded(const std::string&, kr::SyncReason, std::chrono::nanoseconds) override {}
  void OnSyncFailed(const std::string& controller, kr::SyncReason, const kr::Status& e) override {
    std::printf("  %s sync failed: %s\n", controller.c_str(), e.message().c_str());
  }
};

// One cluster size: its own fake-apiserver, informers, runner and controller over the fakes.
class Rig {
 public:
  Rig(int services, std::chrono::milliseconds sync_period, size_t verify_step_items,
      bool absorb = true)
      : services_(services),
        sync_period_(sync_period),
        verify_step_items_(verify_step_items),
        absorb_(absorb) {}
  ~Rig() {
    if (runner_) runner_->Stop();
    if (watcher_) watcher_->Stop();
  }

  // Starts everything and waits until the controller has synced and drained the initial
  // list's events (so that the rounds time one change each). Returns an error text.
  std::string Start() {
    std::filesystem::create_directories(dir_.path() + "/manifests");
    std::ofstream(dir_.path() + "/manifests/cluster.json") << ClusterManifest(services_, false);
    const std::string kubeconfig = dir_.path() + "/kubeconfig";
    auto start = Clock::now();
    api_ = std::make_unique<Process>(
        std::vector<std::string>{kr::testing::kFakeApiServerBinary, "--listen", "127.0.0.1:0",
                                 "--manifests", dir_.path() + "/manifests", "--kubeconfig-out",
                                 kubeconfig},
        dir_.path() + "/fake-apiserver.log");
    if (!WaitFor([&] { return std::filesystem::exists(kubeconfig); }, 600s)) {
      return "fake-apiserver did not start: " + api_->Log();
    }
    server_start_ms = Ms(Clock::now() - start);
    std::ifstream in(kubeconfig);
    std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    const size_t at = text.find("http://127.0.0.1:");
    client_ = std::make_unique<httplib::Client>("127.0.0.1", std::stoi(text.substr(at + 17)));
    client_->set_read_timeout(30s);
    // As kubectl's (Go's) connection: kept open, and no Nagle delay between head and body.
    client_->set_keep_alive(true);
    client_->set_tcp_nodelay(true);

    kr::proxy::ProxyConfig config;
    config.node_name = "node0";
    config.cluster_ip_ranges = {*kr::IpPrefix::Parse("10.96.0.0/12")};
    config.sync_period = sync_period_;
    if (verify_step_items_ > 0) config.verify_step_items = verify_step_items_;
    config.verify_step_time = verify_step_time;
    auto controller = std::make_unique<StampingController>(
        std::make_unique<kr::proxy::NetworkServicesController>(
            config, cluster_.get(), kr::proxy::ProxyDataplane{&ipvs_, &links_, &routes_}, nullptr),
        &round_, absorb_);
    controller_ = controller.get();
    runner_ = std::make_unique<kr::ControllerRunner>(std::move(controller), &observer_);
    dispatcher_.Add(runner_.get());

    start = Clock::now();
    kr::k8s::ConnectionOptions connection{"", kubeconfig};
    auto watcher =
        kr::k8s::Watcher::Start(connection, dispatcher_.WatchedKinds(), cluster_.get(), &sink_);
    if (!watcher.ok()) return "watcher: " + watcher.error();
    watcher_ = std::move(*watcher);
    if (auto s = watcher_->WaitForSync(600s); !s.ok()) return "caches: " + s.message();
    caches_ms = Ms(Clock::now() - start);
    start = Clock::now();
    runner_->Start();
    if (!controller_->WaitSyncs(1, 600s)) return "no first sync";
    first_sync_ms = Ms(Clock::now() - start);
    // The informers' initial ADDEDs wait in the inbox behind the startup sync, which absorbs
    // them (without `absorb`: one more sync, writing nothing, takes them). The first change
    // after the start is sent as soon as the startup sync has ended.
    if (auto error = Change(-1); !error.empty()) return "first change: " + error;
    first_change_ms = Ms(rounds.back().written - rounds.back().sent);
    first_change_updates = controller_->updates();
    first_change_syncs = controller_->syncs();
    std::printf(
        "  at %d service(s)%s: fake-apiserver start %.0f ms, caches synced %.0f ms, first sync "
        "%.0f "
        "ms, first change after it %.1f ms (%d events taken, %d syncs)\n",
        services_, absorb_ ? "" : " without absorption", server_start_ms, caches_ms, first_sync_ms,
        first_change_ms, first_change_updates, first_change_syncs);
    rounds.clear();
    return "";
  }

  // Round r (-1: the warm-up): moves one endpoint of one Service to a new address, waits until
  // the fake kernel has it and keeps the round's stamps.
  std::string Change(int r) {
    const int k = static_cast<int>((static_cast<long>(r + 1) * 7919) % services_);
    std::vector<std::string> ips = Endpoints(k);
    ips[0] = ReplacementIp(r + 1);
    const std::string name = "s" + std::to_string(k) + "-1";
    round_.Arm("default/" + name, *kr::IpAddress::Parse(Vip(k)), *kr::IpAddress::Parse(ips[0]));
    auto sent = Clock::now();
    auto res = client_->Patch("/apis/discovery.k8s.io/v1/namespaces/default/endpointslices/" + name,
                              R"({"endpoints":)" + EndpointsJson(ips) + "}",
                              "application/merge-patch+json");
    round_.Sent(sent, Clock::now());
    if (!res || res->status != 200) return "PATCH failed";
    auto stamps = round_.Wait(r < 0 ? 600s : 30s);
    if (!stamps) return "change " + std::to_string(r) + " never programmed";
    rounds.push_back(*stamps);
    return "";
  }

  // fake-apiserver's own arrival stamp (steady clock, ms) of each round's PATCH, in order.
  void ServerArrivals() {
    auto res = client_->Get("/_fake/requests");
    if (!res || res->status != 200) return;
    auto j = nlohmann::json::parse(res->body, nullptr, false);
    if (!j.is_object() || !j.contains("recent")) return;
    const auto& lines = j["recent"];
    const auto& times = j["recentTimesMs"];
    std::vector<int64_t> patches;
    for (size_t i = 0; i < lines.size() && i < times.size(); ++i) {
      if (lines[i].get<std::string>().rfind("PATCH ", 0) == 0) patches.push_back(times[i]);
    }
    // The last rounds.size() PATCHes are the rounds' (the warm-up's came first).
    if (patches.size() < rounds.size()) return;
    const size_t skip = patches.size() - rounds.size();
    for (size_t i = 0; i < rounds.size(); ++i) {
      rounds[i].arrived = Clock::time_point(std::chrono::milliseconds(patches[skip + i]));
    }
  }

  // Round r, sent as soon as a periodic verification has started and then `after_steps` of its
  // steps have been taken (0: at its start, the worst moment for a verification in one step).
  std::string ChangeDuringVerification(int r, int after_steps) {
    const int seen = controller_->VerificationsStarted();
    if (!controller_->WaitVerificationStart(seen, 600s)) return "no periodic verification";
    if (!controller_->WaitSyncs(controller_->syncs() + after_steps, 600s)) return "no steps";
    return Change(r);
  }

  pid_t server_pid() const { return api_->pid(); }
  StampingController& controller() { return *controller_; }

  std::chrono::microseconds verify_step_time = kr::proxy::ProxyConfig{}.verify_step_time;
  double server_start_ms = 0, caches_ms = 0, first_sync_ms = 0, first_change_ms = 0;
  int first_change_updates = 0, first_change_syncs = 0;
  std::vector<Stamps> rounds;

 private:
  const int services_;
  const std::chrono::milliseconds sync_period_;
  const size_t verify_step_items_;
  const bool absorb_;
  TempDir dir_;
  std::unique_ptr<Process> api_;
  std::unique_ptr<httplib::Client> client_;
  Round round_;
  std::unique_ptr<kr::k8s::Cluster> cluster_ = kr::k8s::MakeCluster();
  kr::netlink::FakeLinks links_;
  kr::netlink::FakeRouteTable routes_{&links_};
  StampingIpvs ipvs_{&round_};
  NullObserver observer_;
  StampingController* controller_ = nullptr;
  std::unique_ptr<kr::ControllerRunner> runner_;
  kr::EventDispatcher dispatcher_;
  StampingSink sink_{&round_, &dispatcher_};
  std::unique_ptr<kr::k8s::Watcher> watcher_;
};

// Puts every thread of process `pid` under SCHED_FIFO, so that the rounds measure the event
// path rather than the shared machine's run queue (a node agent does not wait behind a dozen
// compilers). Threads started later inherit it. False if the kernel refused (not root).
bool Realtime(pid_t pid) {
  sched_param param{};
  param.sched_priority = 10;
  bool ok = true;
  std::error_code ec;
  for (const auto& task :
       std::filesystem::directory_iterator("/proc/" + std::to_string(pid) + "/task", ec)) {
    if (sched_setscheduler(std::stoi(task.path().filename()), SCHED_FIFO, &param) != 0) ok = false;
  }
  return ok && !ec;
}

// One stage of every round, in ms.
using Stage = double (*)(const Stamps&);
struct NamedStage {
  const char* name;
  Stage of;
};
const NamedStage kStages[] = {
    {"PATCH sent -> arrived at fake-apiserver (1 ms steps)",
     [](const Stamps& s) { return Ms(s.arrived - s.sent); }},
    {"PATCH sent -> answered (fake-apiserver)",
     [](const Stamps& s) { return Ms(s.answered - s.sent); }},
    {"PATCH sent -> informer posted the event",
     [](const Stamps& s) { return Ms(s.posted - s.sent); }},
    {"posted -> controller took it (inbox)",
     [](const Stamps& s) { return Ms(s.taken - s.posted); }},
    {"taken -> its sync started", [](const Stamps& s) { return Ms(s.sync_start - s.taken); }},
    {"sync start -> kernel written", [](const Stamps& s) { return Ms(s.written - s.sync_start); }},
    {"kernel written -> sync end", [](const Stamps& s) { return Ms(s.sync_end - s.written); }},
    {"TOTAL: PATCH sent -> kernel written", [](const Stamps& s) { return Ms(s.written - s.sent); }},
};

std::vector<double> Values(const std::vector<Stamps>& rounds, Stage of) {
  std::vector<double> out;
  out.reserve(rounds.size());
  for (const auto& r : rounds) out.push_back(of(r));
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  setvbuf(stdout, nullptr, _IOLBF, 0);
  int services = 10000;
  int rounds = 200;
  bool realtime = false;
  bool startup_baseline = true;
  // Default: no periodic sync during the rounds (they time the event path alone).
  std::chrono::milliseconds sync_period = std::chrono::hours(1);
  int periodic_rounds = 0;
  size_t verify_step_items = kr::proxy::ProxyConfig{}.verify_step_items;
  std::chrono::microseconds verify_step_time = kr::proxy::ProxyConfig{}.verify_step_time;
  int expected_steps = 0;  // the spread of the later rounds' arrival, in steps (--spread-steps)
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--realtime") realtime = true;
    if (a == "--no-startup-baseline") startup_baseline = false;
    if (a == "--services" && i + 1 < argc) services = std::stoi(argv[++i]);
    if (a == "--rounds" && i + 1 < argc) rounds = std::stoi(argv[++i]);
    if (a == "--sync-period-ms" && i + 1 < argc) {
      sync_period = std::chrono::milliseconds(std::stoi(argv[++i]));
      if (periodic_rounds == 0) periodic_rounds = 20;
    }
    if (a == "--periodic-rounds" && i + 1 < argc) periodic_rounds = std::stoi(argv[++i]);
    if (a == "--verify-step-items" && i + 1 < argc) verify_step_items = std::stoul(argv[++i]);
    if (a == "--spread-steps" && i + 1 < argc) expected_steps = std::stoi(argv[++i]);
    if (a == "--verify-step-time-us" && i + 1 < argc) {
      verify_step_time = std::chrono::microseconds(std::stol(argv[++i]));
    }
  }
  if (expected_steps == 0) {
    // About what a verification at N takes: a Service, VIP and virtual service each an item,
    // each raw dumped object an eighth.
    expected_steps = static_cast<int>(
        (static_cast<size_t>(services) * 3 + static_cast<size_t>(services) * 3 / 8) /
        std::max<size_t>(1, verify_step_items));
  }
  std::printf("proxy_event_bench: %d services x %d endpoints, %d change rounds, %s scheduling\n",
              services, kEndpointsPerService, rounds, realtime ? "SCHED_FIFO" : "normal");
  // The start-up baseline first, on its own (its fake-apiserver and caches are gone before the
  // measured rigs start): the first change after a start at N without absorption.
  double before_ms = 0;
  int before_updates = 0, before_syncs = 0;
  if (startup_baseline) {
    Rig before(services, sync_period, verify_step_items, false);
    if (auto error = before.Start(); !error.empty()) {
      std::printf("at %d service(s) without absorption: %s\n", services, error.c_str());
      return 1;
    }
    before_ms = before.first_change_ms;
    before_updates = before.first_change_updates;
    before_syncs = before.first_change_syncs;
  }
  // Both sizes run side by side and their rounds alternate, so the 1-Service baseline sees the
  // same machine load as the N-Service rounds.
  Rig big(services, sync_period, verify_step_items), small(1, sync_period, verify_step_items);
  big.verify_step_time = small.verify_step_time = verify_step_time;
  for (auto [rig, n] : {std::pair{&big, services}, std::pair{&small, 1}}) {
    if (auto error = rig->Start(); !error.empty()) {
      std::printf("at %d service(s): %s\n", n, error.c_str());
      return 1;
    }
  }
  if (startup_baseline) {
    std::printf(
        "  start-up: the first change after a start at %d services, API PATCH -> fake kernel "
        "written: %.1f ms without absorption (%d events taken, %d syncs), %.1f ms with it (%d, "
        "%d): ratio %.1f\n",
        services, before_ms, before_updates, before_syncs, big.first_change_ms,
        big.first_change_updates, big.first_change_syncs, before_ms / big.first_change_ms);
  }
  if (realtime &&
      !(Realtime(getpid()) && Realtime(big.server_pid()) && Realtime(small.server_pid()))) {
    std::printf("--realtime: sched_setscheduler(SCHED_FIFO) refused (needs root)\n");
    return 1;
  }
  for (int r = 0; r < rounds; ++r) {
    for (auto [rig, n] : {std::pair{&big, services}, std::pair{&small, 1}}) {
      if (auto error = rig->Change(r); !error.empty()) {
        std::printf("at %d service(s): %s\n", n, error.c_str());
        return 1;
      }
    }
  }
  big.ServerArrivals();
  small.ServerArrivals();

  std::printf("  one endpoint change, API PATCH -> fake kernel written (n=%d), per stage (ms):\n",
              rounds);
  std::printf("    %-44s %-26s %-26s\n", "stage", "at N: p50 / p99 / max", "at 1: p50 / p99 / max");
  for (const auto& stage : kStages) {
    auto b = Values(big.rounds, stage.of), s = Values(small.rounds, stage.of);
    std::printf("    %-44s %8.2f %8.2f %8.2f %8.2f %8.2f %8.2f\n", stage.name, Percentile(b, 0.5),
                Percentile(b, 0.99), Percentile(b, 1.0), Percentile(s, 0.5), Percentile(s, 0.99),
                Percentile(s, 1.0));
  }
  const Stage total = kStages[std::size(kStages) - 1].of;
  auto b = Values(big.rounds, total), s = Values(small.rounds, total);
  const double big50 = Percentile(b, 0.5), big99 = Percentile(b, 0.99);
  const double small50 = Percentile(s, 0.5), small99 = Percentile(s, 0.99);
  std::printf("    at %d services: p50 %.2f ms, p99 %.2f ms\n", services, big50, big99);
  std::printf("    at 1 service:   p50 %.2f ms, p99 %.2f ms\n", small50, small99);
  std::printf("    ratio p50 %.2f, p99 %.2f\n", big50 / small50, big99 / small99);
  // The slowest rounds, stage by stage: where a stall sits.
  for (auto [rig, n, values] : {std::tuple{&big, services, &b}, std::tuple{&small, 1, &s}}) {
    std::vector<size_t> order(rig->rounds.size());
    for (size_t i = 0; i < order.size(); ++i) order[i] = i;
    std::sort(order.begin(), order.end(),
              [&](size_t x, size_t y) { return (*values)[x] > (*values)[y]; });
    std::printf(
        "  slowest rounds at %d service(s), ms after PATCH sent: arrived at server (1 ms "
        "steps), answered, event posted, taken, sync start, kernel written, sync end\n",
        n);
    for (size_t i = 0; i < std::min<size_t>(5, order.size()); ++i) {
      const Stamps& r = rig->rounds[order[i]];
      std::printf("    round %3zu: %7.1f %7.2f %7.2f %7.2f %7.2f %7.2f %7.2f\n", order[i],
                  Ms(r.arrived - r.sent), Ms(r.answered - r.sent), Ms(r.posted - r.sent),
                  Ms(r.taken - r.sent), Ms(r.sync_start - r.sent), Ms(r.written - r.sent),
                  Ms(r.sync_end - r.sent));
    }
  }
  if (periodic_rounds == 0) return 0;

  // Phase two: each round's PATCH is sent as soon as a periodic verification at N has started,
  // against the rounds above (no verification running) as the baseline of the same run.
  const std::vector<Stamps> quiet = std::move(big.rounds);
  big.rounds.clear();
  big.controller().EnablePeriodic();
  // Half the rounds at a verification's start, the others after a spread of step counts, so
  // that events also arrive during the dump and sort steps (a verification at 10k is several
  // hundred steps).
  const int spread = std::max(1, expected_steps);
  for (int r = 0; r < periodic_rounds; ++r) {
    const int after = r % 2 == 0 ? 0 : static_cast<int>((static_cast<long>(r) * 7919) % spread);
    if (auto error = big.ChangeDuringVerification(rounds + r, after); !error.empty()) {
      std::printf("at %d service(s), during a verification: %s\n", services, error.c_str());
      return 1;
    }
  }
  big.ServerArrivals();
  std::printf(
      "  one endpoint change sent during a periodic verification (half at its start, half after "
      "0..%d of its steps), at %d services (n=%d; verification steps of %zu items"
      " and at most %ld us each), per stage (ms):\n",
      spread, services, periodic_rounds, verify_step_items,
      static_cast<long>(verify_step_time.count()));
  std::printf("    %-44s %-26s %-26s\n", "stage", "during: p50 / p99 / max",
              "none running: p50 / p99 / max");
  for (const auto& stage : kStages) {
    auto d = Values(big.rounds, stage.of), q = Values(quiet, stage.of);
    std::printf("    %-44s %8.2f %8.2f %8.2f %8.2f %8.2f %8.2f\n", stage.name, Percentile(d, 0.5),
                Percentile(d, 0.99), Percentile(d, 1.0), Percentile(q, 0.5), Percentile(q, 0.99),
                Percentile(q, 1.0));
  }
  auto d = Values(big.rounds, total), q = Values(quiet, total);
  std::printf("    ratio during / none running: p50 %.2f, p99 %.2f\n",
              Percentile(d, 0.5) / Percentile(q, 0.5), Percentile(d, 0.99) / Percentile(q, 0.99));
  auto full = big.controller().FullSyncs();
  if (full.empty()) return 0;
  std::printf("  periodic verifications at %d services: %zu completed; per stage p50 / max (ms):\n",
              services, full.size());
  using Field = double (*)(const kr::proxy::FullSyncStats&);
  const std::pair<const char*, Field> fields[] = {
      {"rebuild (BuildService, claims)", [](const auto& f) { return f.rebuild_seconds * 1e3; }},
      {"kernel reads (dumps)", [](const auto& f) { return f.read_seconds * 1e3; }},
      {"diff", [](const auto& f) { return f.diff_seconds * 1e3; }},
      {"writes (repairs)", [](const auto& f) { return f.write_seconds * 1e3; }},
      {"extensions' full apply", [](const auto& f) { return f.extensions_seconds * 1e3; }},
      {"wall: first step start -> last step end",
       [](const auto& f) { return f.wall_seconds * 1e3; }},
      {"longest step (what an event can wait)",
       [](const auto& f) { return f.longest_step_seconds * 1e3; }},
      {"steps", [](const auto& f) { return static_cast<double>(f.steps); }},
      {"repairs written", [](const auto& f) { return static_cast<double>(f.repairs); }},
  };
  for (const auto& [name, of] : fields) {
    std::vector<double> values;
    for (const auto& f : full) values.push_back(of(f));
    std::printf("    %-44s %10.1f %10.1f\n", name, Percentile(values, 0.5),
                Percentile(values, 1.0));
  }
  auto steps = big.controller().StepMs();
  std::printf("    every step's sync (n=%zu): p50 %.2f ms, p99 %.2f ms, max %.2f ms\n",
              steps.size(), Percentile(steps, 0.5), Percentile(steps, 0.99),
              Percentile(steps, 1.0));
  std::printf("    longest step's phases, per verification:");
  for (const auto& f : full)
    std::printf(" [%s %.1f ms]", f.longest_step_phases.c_str(), f.longest_step_seconds * 1e3);
  std::printf("\n");
  return 0;
}
