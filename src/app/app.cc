#include "app.h"

#include <signal.h>
#include <spdlog/sinks/stdout_sinks.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <future>
#include <memory>
#include <mutex>
#include <optional>
#include <thread>
#include <vector>

#include "controller_factory.h"
#include "endpoints.h"
#include "kube_router/base/log.h"
#include "kube_router/health/health.h"
#include "kube_router/k8s/watcher.h"
#include "kube_router/metrics/process.h"
#include "kube_router/metrics/registry.h"
#include "kube_router/options/options.h"
#include "kube_router/routing/network_routes_controller.h"
#include "kube_router/runtime/runner.h"
#include "memory.h"
#include "sync_metrics.h"

namespace kr::app {
namespace {

constexpr int kExitOk = 0;
constexpr int kExitError = 1;
constexpr int kExitUsage = 2;

// klog-like lines: "I1126 14:27:10.123456 4711 message".
void SetupLogging(int verbosity) {
  auto logger = spdlog::stderr_logger_mt("kube-router");
  logger->set_pattern("%L%m%d %H:%M:%S.%f %t %v");
  spdlog::set_default_logger(logger);
  spdlog::flush_on(spdlog::level::info);
  log::SetVerbosity(verbosity);
}

// SIGTERM and SIGINT are blocked in every thread (threads inherit the mask) and taken only by
// the main thread with sigtimedwait, so shutdown happens at one well-defined place.
sigset_t ShutdownSignals() {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGINT);
  return set;
}

// Waits up to `timeout` for a shutdown signal; returns it, or 0.
int WaitForSignal(const sigset_t& set, std::chrono::milliseconds timeout) {
  timespec ts{static_cast<time_t>(timeout.count() / 1000),
              static_cast<long>(timeout.count() % 1000 * 1'000'000)};
  int sig = sigtimedwait(&set, nullptr, &ts);
  return sig > 0 ? sig : 0;
}

// Ends the process if an orderly shutdown hangs (for example on an API request the server
// never answers), so that SIGTERM always ends the agent well within kubelet's default 30s.
class ShutdownWatchdog {
 public:
  ShutdownWatchdog(std::chrono::seconds deadline, int exit_code)
      : thread_([this, deadline, exit_code] {
          std::unique_lock lock(mu_);
          if (cv_.wait_for(lock, deadline, [this] { return done_; })) return;
          KR_LOG_ERROR("shutdown did not finish within {}s, exiting now", deadline.count());
          spdlog::default_logger()->flush();
          std::_Exit(exit_code);
        }) {}
  ~ShutdownWatchdog() {
    {
      std::lock_guard lock(mu_);
      done_ = true;
    }
    cv_.notify_all();
    thread_.join();
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  bool done_ = false;
  std::thread thread_;
};

constexpr std::chrono::seconds kShutdownDeadline{10};
// Periodic full syncs return free heap at most this often (malloc_trim walks every arena).
constexpr std::chrono::seconds kTrimInterval{60};

double HeapInUse(metrics::Registry* registry) {
  metrics::UpdateHeapMetrics(registry);
  return registry->GetGauge("kube_router_heap_in_use_bytes", "").Value();
}

int RunCleanup(const Options& options) {
  KR_LOG_INFO("cleanup: removing everything this agent owns");
  auto cluster = k8s::MakeCluster();  // empty: cleanup needs no API server
  ControllerDeps deps{&options, cluster.get(), k8s::ResolveNodeName(options.hostname_override),
                      &metrics::Registry::Default()};
  auto controllers = BuildControllers(deps);
  if (!controllers) {
    KR_LOG_ERROR("cleanup: {}", controllers.error());
    return kExitError;
  }
  int status = kExitOk;
  size_t removed_total = 0;
  // Reverse start order, as kube-router cleans up: the firewall first, routing last.
  for (auto it = controllers->rbegin(); it != controllers->rend(); ++it) {
    auto& controller = *it;
    auto removed = controller->Cleanup();
    if (!removed) {
      KR_LOG_ERROR("cleanup: {}: {}", controller->Name(), removed.error());
      status = kExitError;
      continue;
    }
    for (const std::string& item : *removed) {
      std::printf("%s: removed %s\n", controller->Name().c_str(), item.c_str());
    }
    removed_total += removed->size();
    KR_LOG_INFO("cleanup: {}: removed {} item(s)", controller->Name(), removed->size());
  }
  if (removed_total == 0 && status == kExitOk) std::printf("cleanup: nothing to remove\n");
  std::fflush(stdout);
  return status;
}

// The service proxy controller's name (NetworkServicesController::Name(), kube-router's).
constexpr const char* kServiceProxyName = "NetworkServices";

// Logs flags that this implementation accepts for compatibility but does not act on.
void WarnAboutUnsupported(const Options& o) {
  struct Unsupported {
    bool set;
    const char* flag;
  };
  for (const Unsupported& u :
       {Unsupported{o.run_loadbalancer, "--run-loadbalancer"},
        Unsupported{o.enable_pprof, "--enable-pprof"}, Unsupported{o.enable_bfd, "--enable-bfd"},
        Unsupported{o.use_nftables_for_netpol, "--use-nftables-for-netpol"}}) {
    if (u.set) KR_LOG_WARN("{} is not available in this implementation and is ignored", u.flag);
  }
}

int Run(const Options& options, const sigset_t& signals) {
  // Armed on SIGTERM/SIGINT; declared first so that it also covers every destructor below.
  std::optional<ShutdownWatchdog> watchdog;
  WarnAboutUnsupported(options);
  auto cluster = k8s::MakeCluster();
  metrics::Registry& registry = metrics::Registry::Default();
  RecordBuildInfo(&registry);

  health::HealthChecker checker;
  // The service proxy's gate is set before /healthz listens: a proxy-only agent must not look
  // healthy while it builds its controllers and connects (the runner registers it again below).
  if (options.run_service_proxy) {
    checker.Register(kServiceProxyName, options.ipvs_sync_period, /*until_first_sync=*/true);
  }
  auto endpoints = StartHealthAndMetrics(options, &checker, &registry);
  if (!endpoints) {
    KR_LOG_ERROR("{}", endpoints.error());
    return kExitError;
  }

  std::string node_name = k8s::ResolveNodeName(options.hostname_override);
  KR_LOG_INFO("node name: {}", node_name);
  ControllerDeps deps{&options, cluster.get(), node_name, &registry};
  auto controllers = BuildControllers(deps);
  if (!controllers) {
    KR_LOG_ERROR("{}", controllers.error());
    return kExitError;
  }

  SyncMetrics sync_metrics(&registry);
  FanOutObserver health_and_metrics(&checker, &sync_metrics);
  TrimAfterSync trim(kTrimInterval);
  FanOutObserver observer(&health_and_metrics, &trim);
  std::vector<std::unique_ptr<ControllerRunner>> runners;
  // The routing status view: declared after the runners (which own the controllers) so that
  // it is destroyed first; no request outlives the state it reads.
  std::unique_ptr<net::HttpServer> status_view;
  EventDispatcher dispatcher;
  for (auto& controller : *controllers) {
    if (auto source = routing::StatusViewSource(controller.get()); source && !status_view) {
      auto server = StartStatusView(options, std::move(source));
      if (!server) {
        KR_LOG_ERROR("{}", server.error());
        return kExitError;
      }
      status_view = std::move(*server);
    }
    auto runner = std::make_unique<ControllerRunner>(std::move(controller), &observer);
    // The service proxy gates /healthz until it has programmed the node once.
    checker.Register(runner->name(), runner->sync_period(), runner->name() == kServiceProxyName);
    sync_metrics.Register(runner->name());
    dispatcher.Add(runner.get());
    runners.push_back(std::move(runner));
  }

  std::unique_ptr<k8s::Watcher> watcher;
  std::vector<k8s::ResourceKind> kinds = dispatcher.WatchedKinds();
  // Set on SIGTERM/SIGINT: ends a running exec credential plugin at once.
  std::atomic<bool> stopping{false};
  std::mutex watcher_mu;  // `watcher` is set on the start-up helper thread
  if (!kinds.empty()) {
    k8s::ConnectionOptions connection{options.master, options.kubeconfig};
    connection.exec_plugin_timeout = options.cache_sync_timeout;
    connection.cancel = &stopping;
    connection.registry = &registry;
    // Connecting (which may run an exec credential plugin) and the first lists both happen on a
    // helper thread, within --cache-sync-timeout overall, so that a signal still ends the wait.
    auto deadline = std::chrono::steady_clock::now() + options.cache_sync_timeout;
    const double heap_before_caches = HeapInUse(&registry);
    auto synced = std::async(std::launch::async, [&]() -> Status {
      auto started = k8s::Watcher::Start(connection, kinds, cluster.get(), &dispatcher);
      if (!started) return Status::Error("cannot watch the API server: " + started.error());
      {
        std::lock_guard lock(watcher_mu);
        watcher = std::move(*started);
      }
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
          deadline - std::chrono::steady_clock::now());
      if (stopping) return Status::Error("stopped");
      return watcher->WaitForSync(std::max(left, std::chrono::milliseconds(0)));
    });
    while (synced.wait_for(std::chrono::seconds(0)) != std::future_status::ready) {
      if (int sig = WaitForSignal(signals, std::chrono::milliseconds(100))) {
        KR_LOG_INFO("received {} while waiting for the API caches, shutting down", strsignal(sig));
        // Nothing is programmed yet, so a hung stop may simply end the process.
        watchdog.emplace(kShutdownDeadline, kExitOk);
        stopping = true;
        // The helper publishes `watcher` before it waits; Stop ends that wait.
        auto stop_watcher = [&] {
          std::lock_guard lock(watcher_mu);
          if (watcher) watcher->Stop();
        };
        while (synced.wait_for(std::chrono::milliseconds(20)) != std::future_status::ready)
          stop_watcher();
        stop_watcher();
        return kExitOk;
      }
    }
    Status s = synced.get();
    if (!s.ok()) {
      KR_LOG_ERROR("API caches did not sync within --cache-sync-timeout={}: {}",
                   FormatGoDuration(options.cache_sync_timeout), s.message());
      if (watcher) watcher->Stop();
      return kExitError;
    }
    // What the first lists cost the heap (decoded objects, store indexes, the events queued
    // for the controllers): the caches' share of the agent's memory (docs/memory.md).
    const double caches_heap = HeapInUse(&registry) - heap_before_caches;
    registry
        .GetGauge("kube_router_k8s_caches_heap_bytes",
                  "Heap growth from connecting to the API server to the caches' first sync.")
        .Set(caches_heap);
    // The list pages and their parsed JSON are gone: give their pages back.
    long returned = ReturnFreeMemory();
    KR_LOG_INFO("API caches synced (heap +{:.1f} MiB; {:.1f} MiB of free heap returned)",
                caches_heap / (1 << 20), static_cast<double>(returned) / (1 << 20));
    // A cache that cannot be refreshed for longer than the agent may take to sync one at
    // start-up makes the controllers that read it unhealthy.
    checker.SetStaleCacheProbe([&, bound = options.cache_sync_timeout](const std::string& name) {
      std::vector<std::string> out;
      for (const auto& cache : watcher->StaleCaches(bound)) {
        for (const auto& runner : runners) {
          const auto& kinds = runner->watched_kinds();
          if (runner->name() != name ||
              std::find(kinds.begin(), kinds.end(), cache.kind) == kinds.end())
            continue;
          out.push_back(std::string(k8s::ResourceKindName(cache.kind)) +
                        " cache not refreshed for " +
                        std::to_string(cache.stale_for.count() / 1000) +
                        "s (last error: " + cache.last_error + ")");
        }
      }
      return out;
    });
  }

  checker.MarkStarted();
  for (auto& runner : runners) runner->Start();
  KR_LOG_INFO("kube-router is running with {} controller(s)", runners.size());

  int sig = 0;
  while (!(sig = WaitForSignal(signals, std::chrono::seconds(1)))) {
  }
  KR_LOG_INFO("received {}, shutting down", strsignal(sig));
  watchdog.emplace(kShutdownDeadline, kExitError);
  stopping = true;
  // Stop the event source first, then the controllers (in reverse start order), then HTTP.
  if (watcher) watcher->Stop();
  for (auto it = runners.rbegin(); it != runners.rend(); ++it) (*it)->Stop();
  if (status_view) status_view->Stop();
  endpoints->Stop();
  KR_LOG_INFO("shutdown complete");
  return kExitOk;
}

}  // namespace

int Main(int argc, char** argv) {
  auto options = ParseOptions(argc, argv);
  if (!options) {
    std::fprintf(stderr, "kube-router: %s\n", options.error().c_str());
    return kExitUsage;
  }
  if (options->help) {
    std::fputs(HelpText(argc > 0 ? argv[0] : "kube-router").c_str(), stdout);
    return kExitOk;
  }
  if (options->version) {
    std::printf("%s\n", VersionLine().c_str());
    return kExitOk;
  }
  ConfigureAllocator(kAgentArenas);  // before any thread exists
  SetupLogging(options->verbosity);
  if (Status s = ValidateForRun(*options); !s.ok()) {
    KR_LOG_ERROR("{}", s.message());
    return kExitError;
  }
  if (geteuid() != 0) {
    KR_LOG_ERROR("kube-router must run as root: it programs iptables, ipsets, routes and IPVS");
    return kExitError;
  }
  // A peer closing a socket must not kill the agent; writes report EPIPE instead.
  signal(SIGPIPE, SIG_IGN);
  sigset_t signals = ShutdownSignals();
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);

  KR_LOG_INFO("{}", VersionLine());
  if (options->cleanup_config) return RunCleanup(*options);
  return Run(*options, signals);
}

}  // namespace kr::app
