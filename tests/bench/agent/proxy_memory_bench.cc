// The service proxy's memory at the scale (issue 14, docs/memory.md), on the host: the
// real informers (k8s Watcher) against fake-apiserver fill the caches, the agent's
// ControllerRunner runs the real NetworkServicesController with the agent's extensions that hold
// state (VIP firewall, healthCheckNodePort servers, kube_router_service_* metrics) over the
// stateful fakes (the host has no ip_vs; the fakes' own tables are measured and taken out).
// The cluster is the guest proxy_bench's (tests/bench/proxy/proxy_bench_cluster.h): N Services
// with one port (--ports 2: two, 80 and 443, the shape of the guest's agent_memory_bench: 2 N
// IPVS services) and one EndpointSlice of 10 endpoints each.
//
// Heap figures come from glibc's mallinfo2 (allocated bytes, all arenas):
//   caches      the heap from connecting to the caches' first sync (Services, EndpointSlices,
//               Nodes; the stores' maps and indexes; events queued for the controller),
//               and per kind a deep copy of every cached object (what the objects hold);
//   proxy       the heap the controller and its extensions hold once the syncs settled: what
//               destroying them frees; per structure a deep copy of the controller's
//               Services (services()), its programmed image (programmed(); a copy shares
//               the destination vectors the images share, so those are not in the copies),
//               its desired image (desired(): pointers into the Services; a baseline built
//               before that view had a desired image as large as the programmed one) and the
//               extensions' share (with and without);
//   fakes       what destroying the fake kernel tables frees (not part of the agent).
// Plus VmRSS/VmHWM of this process at each stage (the informers' list pages included), and the
// first (startup) full sync's time by phase (the controller's last_full_sync(): the sync period
// is an hour, so no later full sync replaces it).
//
//   build*/tests/bench/agent/proxy_memory_bench [--services N] [--ports 1|2] [--baseline=PATH]
//                                               [--exit-settled]
// With --baseline the same measurement is run by another build of this benchmark (e.g. main
// before a change) in a child process, and the ratios are printed. Not a ctest test.
#include <malloc.h>

#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "bench/proxy/proxy_bench_cluster.h"
#include "kube_router/k8s/store.h"
#include "kube_router/k8s/watcher.h"
#include "kube_router/metrics/registry.h"
#include "kube_router/netfilter/fakes.h"
#include "kube_router/netlink/fakes.h"
#include "kube_router/proxy/extensions.h"
#include "kube_router/proxy/network_services_controller.h"
#include "kube_router/runtime/runner.h"
#include "lib/agent_bench.h"
#include "lib/binaries.h"
#include "lib/netns.h"

namespace {

using namespace std::chrono_literals;
using kr::testing::Process;
using kr::testing::TempDir;
using kr::testing::WaitFor;
namespace pb = kr::testing::proxy_bench;

constexpr char kNode[] = "node0";

double HeapBytes() {
  struct mallinfo2 m = mallinfo2();
  return static_cast<double>(m.uordblks + m.hblkhd);
}
double MiB(double bytes) { return bytes / (1 << 20); }

// The heap a deep copy of `value` takes: what the value holds (maps and exact-size vectors;
// spare vector capacity of the original is not counted).
template <typename T>
double CopySize(const T& value) {
  const double before = HeapBytes();
  auto copy = std::make_unique<T>(value);
  const double size = HeapBytes() - before;
  return size - sizeof(T);
}

template <typename T>
double ObjectsSize(const kr::k8s::Store<T>& store) {
  auto list = store.List();
  const double before = HeapBytes();
  std::vector<T> copies;
  copies.reserve(list.size());
  for (const auto& p : list) copies.push_back(*p);
  return HeapBytes() - before;
}

class NullObserver : public kr::SyncObserver {
 public:
  void OnSyncSucceeded(const std::string&, kr::SyncReason, std::chrono::nanoseconds) override {}
  void OnSyncFailed(const std::string& controller, kr::SyncReason, const kr::Status& e) override {
    std::fprintf(stderr, "  %s sync failed: %s\n", controller.c_str(), e.message().c_str());
  }
};

// Every figure, by name (also the child's output with --baseline).
using Figures = std::map<std::string, double>;

// One /metrics scrape (Registry::Render, what the agent's handler serves) while nothing else
// allocates: its wall time, the response's size, the heap the collected families hold when the
// last collector ran (a probe collector added after the proxy's), the heap the response holds,
// and the free heap the scrape leaves behind once both are gone.
void MeasureScrape(kr::metrics::Registry& registry, const std::string& p, Figures& f) {
  malloc_trim(0);
  const double before = HeapBytes();
  const double free_before = static_cast<double>(mallinfo2().fordblks);
  double at_collect = before;
  const int probe = registry.AddCollector([&] {
    at_collect = HeapBytes();
    return std::vector<kr::metrics::Registry::CollectedFamily>{};
  });
  const auto start = std::chrono::steady_clock::now();
  auto text = std::make_unique<std::string>(registry.Render());
  f[p + "scrape.seconds"] =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  const double with_text = HeapBytes();
  registry.RemoveCollector(probe);
  f[p + "scrape.bytes"] = static_cast<double>(text->size());
  f[p + "scrape.collected"] = at_collect - before;
  f[p + "scrape.response"] = with_text - before;
  text.reset();
  f[p + "scrape.free_left"] = static_cast<double>(mallinfo2().fordblks) - free_before;
}

long Kib(const char* field) { return kr::testing::ProcStatusKib(getpid(), field); }

// One measurement: fake-apiserver with `services` Services of `ports` ports, the caches, the
// controller with (`extensions`) or without the agent's stateful extensions.
std::string Measure(int services, int ports, bool extensions, bool exit_settled, Figures& f) {
  TempDir dir;
  std::filesystem::create_directories(dir.path() + "/manifests");
  std::ofstream(dir.path() + "/manifests/cluster.json")
      << pb::ClusterManifest(services, true, ports);
  const std::string kubeconfig = dir.path() + "/kubeconfig";
  Process api({kr::testing::kFakeApiServerBinary, "--listen", "127.0.0.1:0", "--manifests",
               dir.path() + "/manifests", "--kubeconfig-out", kubeconfig},
              dir.path() + "/fake-apiserver.log");
  if (!WaitFor([&] { return std::filesystem::exists(kubeconfig); }, 600s)) {
    return "fake-apiserver did not start: " + api.Log();
  }
  const std::string p = extensions ? "" : "bare.";
  malloc_trim(0);
  const double start = HeapBytes();

  auto cluster = kr::k8s::MakeCluster();
  auto fakes =
      std::make_unique<std::tuple<kr::netlink::FakeLinks, kr::netlink::FakeIpvs,
                                  kr::netfilter::FakeIptables, kr::netfilter::FakeIpset>>();
  auto& [links, ipvs, iptables, ipset] = *fakes;
  auto routes = std::make_unique<kr::netlink::FakeRouteTable>(&links);
  links.Seed({.name = "eth0", .kind = "", .mtu = 1500, .up = true});
  (void)links.AddAddress(
      {"eth0", *kr::IpAddress::Parse("192.0.2.1"), 24, kr::netlink::Scope::kUniverse});
  kr::metrics::Registry registry;
  kr::proxy::ProxyConfig config;
  config.node_name = kNode;
  config.cluster_ip_ranges = {*kr::IpPrefix::Parse("10.96.0.0/12")};
  config.sync_period = std::chrono::hours(1);
  auto controller = std::make_unique<kr::proxy::NetworkServicesController>(
      config, cluster.get(), kr::proxy::ProxyDataplane{&ipvs, &links, routes.get()}, &registry);
  kr::proxy::NetworkServicesController* proxy = controller.get();
  if (extensions) {
    kr::proxy::FirewallDeps deps{cluster.get(), &links, &iptables, nullptr, &ipset, nullptr};
    controller->AddExtension(kr::proxy::MakeFirewallExtension(config, deps));
    controller->AddExtension(kr::proxy::MakeHealthCheckExtension("127.0.0.1"));
    controller->AddExtension(kr::proxy::MakeMetricsExtension(registry, ipvs));
  }
  NullObserver observer;
  auto runner = std::make_unique<kr::ControllerRunner>(std::move(controller), &observer);
  kr::EventDispatcher dispatcher;
  dispatcher.Add(runner.get());

  kr::k8s::ConnectionOptions connection{"", kubeconfig};
  auto watcher =
      kr::k8s::Watcher::Start(connection, dispatcher.WatchedKinds(), cluster.get(), &dispatcher);
  if (!watcher.ok()) return "watcher: " + watcher.error();
  if (auto s = (*watcher)->WaitForSync(600s); !s.ok()) return "caches: " + s.message();
  malloc_trim(0);
  const double synced = HeapBytes();
  f[p + "caches"] = synced - start;
  f[p + "caches.services"] = ObjectsSize(cluster->services);
  f[p + "caches.slices"] = ObjectsSize(cluster->endpoint_slices);
  f[p + "rss.caches"] = static_cast<double>(Kib("VmRSS:")) * 1024;

  runner->Start();
  // Settled: the first (full) sync and the one for the events queued meanwhile are done, and
  // nothing is pending for 2 s.
  uint64_t last = 0;
  auto quiet_since = std::chrono::steady_clock::now();
  WaitFor(
      [&] {
        const uint64_t n = runner->SuccessfulSyncs();
        if (n != last || runner->PendingEvents() != 0) {
          last = n;
          quiet_since = std::chrono::steady_clock::now();
          return false;
        }
        return n > 0 && std::chrono::steady_clock::now() - quiet_since > 2s;
      },
      900s);
  if (runner->SuccessfulSyncs() == 0 ||
      proxy->programmed().services.size() != size_t(services) * size_t(ports)) {
    return "the proxy never programmed every Service";
  }
  f[p + "rss.peak"] = static_cast<double>(Kib("VmHWM:")) * 1024;
  f[p + "rss.proxy"] = static_cast<double>(Kib("VmRSS:")) * 1024;
  f[p + "heap.free_before_trim"] = static_cast<double>(mallinfo2().fordblks);
  malloc_trim(0);
  f[p + "rss.proxy_trimmed"] = static_cast<double>(Kib("VmRSS:")) * 1024;
  const double settled = HeapBytes();
  runner->Stop();
  (*watcher)->Stop();
  const kr::proxy::FullSyncStats& sync = proxy->last_full_sync();
  f[p + "sync.wall"] = sync.wall_seconds;
  f[p + "sync.rebuild"] = sync.rebuild_seconds;
  f[p + "sync.read"] = sync.read_seconds;
  f[p + "sync.diff"] = sync.diff_seconds;
  f[p + "sync.write"] = sync.write_seconds;
  f[p + "sync.extensions"] = sync.extensions_seconds;
  MeasureScrape(registry, p, f);
  // Quiet now (no other thread allocates): the per-structure copies are exact.
  f[p + "proxy.services"] = CopySize(proxy->services());
  f[p + "proxy.programmed"] = CopySize(proxy->programmed());
  f[p + "proxy.desired"] = CopySize(proxy->desired());
  const double stopped = HeapBytes();
  if (exit_settled) {
    // For a heap profiler: everything still held here is reported as leaked, by call site.
    std::printf("proxy_memory_bench: exiting with the caches and the proxy held\n");
    api.Signal(SIGTERM);  // (no destructor runs: fake-apiserver must not outlive the bench)
    std::exit(0);
  }
  runner.reset();  // the controller and its extensions
  const double without_proxy = HeapBytes();
  f[p + "proxy"] = stopped - without_proxy;
  f[p + "proxy.settled_minus_caches"] = settled - synced;
  routes.reset();
  fakes.reset();
  f[p + "fakes"] = without_proxy - HeapBytes();
  return "";
}

void PrintFigures(const Figures& f, const std::string& p) {
  auto get = [&](const std::string& k) {
    auto it = f.find(p + k);
    return it == f.end() ? 0.0 : it->second;
  };
  std::printf("  %s\n", p.empty() ? "with the agent's extensions (firewall, health, metrics):"
                                  : "controller alone (no extensions):");
  std::printf("    caches' heap at sync          %7.1f MiB (objects: Services %.1f, slices %.1f)\n",
              MiB(get("caches")), MiB(get("caches.services")), MiB(get("caches.slices")));
  std::printf("    proxy's heap (freed with it)  %7.1f MiB\n", MiB(get("proxy")));
  // (A copy shares the destination vectors, so they are in "rest" when the images share them.)
  std::printf("      Services (DesiredService)   %7.1f MiB\n", MiB(get("proxy.services")));
  // (A baseline before the desired view has no "proxy.desired": its desired image was a copy
  // as large as the programmed one.)
  const bool view = f.contains(p + "proxy.desired");
  const double desired = view ? get("proxy.desired") : get("proxy.programmed");
  std::printf("      programmed image            %7.1f MiB\n", MiB(get("proxy.programmed")));
  std::printf("      desired image               %7.1f MiB (%s)\n", MiB(desired),
              view ? "a view into the Services" : "copies: as large as the programmed image");
  std::printf("      rest (claims, extensions, shared destination vectors) %7.1f MiB\n",
              MiB(get("proxy") - get("proxy.services") - get("proxy.programmed") - desired));
  std::printf("    fakes (not in the agent)      %7.1f MiB\n", MiB(get("fakes")));
  std::printf(
      "    RSS: caches %.1f MiB, proxy settled %.1f MiB (after trim %.1f); free heap before "
      "trim %.1f MiB\n",
      MiB(get("rss.caches")), MiB(get("rss.proxy")), MiB(get("rss.proxy_trimmed")),
      MiB(get("heap.free_before_trim")));
  std::printf(
      "    /metrics scrape: %.3f s, %.1f MiB of text; heap: collected families %.1f MiB, "
      "response %.1f MiB; free heap left %.1f MiB\n",
      get("scrape.seconds"), MiB(get("scrape.bytes")), MiB(get("scrape.collected")),
      MiB(get("scrape.response")), MiB(get("scrape.free_left")));
  std::printf(
      "    first full sync %.3f s (rebuild %.3f, read %.3f, diff %.3f, write %.3f, extensions "
      "%.3f)\n",
      get("sync.wall"), get("sync.rebuild"), get("sync.read"), get("sync.diff"), get("sync.write"),
      get("sync.extensions"));
  // (The process's peak is the first run's, the agent's set: the bare run comes second.)
  if (p.empty()) std::printf("    RSS peak (VmHWM) %.1f MiB\n", MiB(get("rss.peak")));
}

}  // namespace

int main(int argc, char** argv) {
  setvbuf(stdout, nullptr, _IOLBF, 0);
  int services = 10000;
  int ports = 1;
  std::string baseline;
  bool machine = false;  // --machine: "name value" lines only (the baseline child)
  // --exit-settled: exit once the agent's set settled, without freeing (heaptrack -o F ...:
  // its "leaked" figures are then the steady-state heap by call site).
  bool exit_settled = false;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--services" && i + 1 < argc) {
      services = std::atoi(argv[++i]);
    } else if (a == "--ports" && i + 1 < argc) {
      ports = std::atoi(argv[++i]);
    } else if (a.rfind("--baseline=", 0) == 0) {
      baseline = a.substr(11);
    } else if (a == "--exit-settled") {
      exit_settled = true;
    } else if (a == "--machine") {
      machine = true;
    } else {
      std::fprintf(stderr,
                   "usage: proxy_memory_bench [--services N] [--ports 1|2] [--baseline=PATH] "
                   "[--exit-settled]\n");
      return 2;
    }
  }
  if (services < 1 || ports < 1 || ports > 2) return 2;
  Figures f;
  for (bool extensions : {true, false}) {  // the agent's set first: its peak is the process's
    if (auto e = Measure(services, ports, extensions, exit_settled, f); !e.empty()) {
      std::fprintf(stderr, "proxy_memory_bench: %s\n", e.c_str());
      return 1;
    }
  }
  if (machine) {
    for (const auto& [k, v] : f) std::printf("%s %.9g\n", k.c_str(), v);  // (seconds too)
    return 0;
  }
  std::printf("proxy_memory_bench: %d Services x %d port%s, %d EndpointSlices x %d endpoints\n",
              services, ports, ports > 1 ? "s" : "", services, pb::kEndpointsPerService);
  PrintFigures(f, "bare.");
  PrintFigures(f, "");
  std::printf("  extensions' share: %.1f MiB\n", MiB(f["proxy"] - f["bare.proxy"]));
  if (!baseline.empty()) {
    // (--ports only when not 1: a baseline built before the option runs the one-port shape.)
    std::string cmd = baseline + " --machine --services " + std::to_string(services) +
                      (ports > 1 ? " --ports " + std::to_string(ports) : "");
    FILE* pipe = popen(cmd.c_str(), "r");
    if (pipe == nullptr) return 1;
    Figures b;
    char line[512];
    while (std::fgets(line, sizeof(line), pipe) != nullptr) {
      char name[128];
      double value = 0;
      // (The child's log lines share its stdout: only "name value" lines are figures.)
      if (line[0] != '[' && std::sscanf(line, "%127s %lf", name, &value) == 2) b[name] = value;
    }
    if (pclose(pipe) != 0 || b.empty()) {
      std::fprintf(stderr, "proxy_memory_bench: the baseline %s failed\n", baseline.c_str());
      return 1;
    }
    std::printf("  baseline %s (same run):\n", baseline.c_str());
    PrintFigures(b, "");
    std::printf(
        "  ratios (this / baseline): proxy heap %.2fx (%.1f / %.1f MiB), caches %.2fx, "
        "RSS after trim %.2fx, peak %.2fx\n",
        f["proxy"] / b["proxy"], MiB(f["proxy"]), MiB(b["proxy"]), f["caches"] / b["caches"],
        f["rss.proxy_trimmed"] / b["rss.proxy_trimmed"], f["rss.peak"] / b["rss.peak"]);
    std::printf(
        "  scrape (this / baseline): time %.2fx (%.3f / %.3f s), collected heap %.2fx, "
        "free heap left %.2fx, text %.2fx\n",
        f["scrape.seconds"] / b["scrape.seconds"], f["scrape.seconds"], b["scrape.seconds"],
        f["scrape.collected"] / b["scrape.collected"],
        f["scrape.free_left"] / b["scrape.free_left"], f["scrape.bytes"] / b["scrape.bytes"]);
    if (b["sync.wall"] > 0) {  // (a baseline built before the sync figures has none)
      std::printf(
          "  first full sync (this / baseline): %.2fx (%.3f / %.3f s), rebuild %.2fx, diff "
          "%.2fx, write %.2fx\n",
          f["sync.wall"] / b["sync.wall"], f["sync.wall"], b["sync.wall"],
          f["sync.rebuild"] / b["sync.rebuild"], f["sync.diff"] / b["sync.diff"],
          f["sync.write"] / b["sync.write"]);
    }
  }
  return 0;
}
