// The service proxy's event path on the host (no guest, no ip_vs): the real informers (k8s
// Watcher) against fake-apiserver on loopback feed the real NetworkServicesController, run by
// the agent's ControllerRunner, over the stateful fakes (FakeIpvs, FakeLinks, FakeRouteTable).
//
//   build/tests/bench/proxy/proxy_event_bench [--services N] [--rounds R]
//
// For N Services x 10 endpoints and then for 1 Service (same process, same machine) it prints:
//   - fake-apiserver's start (manifest load) and the informers' first list (caches synced);
//   - the controller's first (full) sync;
//   - one endpoint change, API write (an EndpointSlice merge PATCH) -> the controller's sync
//     that programmed it done (an extension sees the new destination in the programmed image),
//     p50/p99 over R rounds, at N and at 1, and the ratio: the issue's host-equivalent figure.
// Not a ctest test: a benchmark (the proxy's design note, "Benchmark").
#include <httplib.h>

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <string>
#include <vector>

#include "kube_router/k8s/store.h"
#include "kube_router/k8s/watcher.h"
#include "kube_router/netlink/fakes.h"
#include "kube_router/proxy/network_services_controller.h"
#include "kube_router/runtime/runner.h"
#include "lib/agent_bench.h"
#include "lib/binaries.h"
#include "lib/netns.h"
#include "proxy_bench_cluster.h"

namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;
using kr::testing::Percentile;
using kr::testing::Process;
using kr::testing::TempDir;
using kr::testing::WaitFor;
using kr::testing::proxy_bench::Endpoints;
using kr::testing::proxy_bench::EndpointsJson;
using kr::testing::proxy_bench::kEndpointsPerService;
using kr::testing::proxy_bench::ReplacementIp;
using kr::testing::proxy_bench::ServiceJson;
using kr::testing::proxy_bench::SliceJson;
using kr::testing::proxy_bench::Vip;

double Ms(Clock::duration d) { return std::chrono::duration<double, std::milli>(d).count(); }

std::string Manifests(int services) {
  std::string out = R"({"apiVersion":"v1","kind":"List","items":[)";
  out +=
      R"({"apiVersion":"v1","kind":"Node","metadata":{"name":"node0"},"status":{"addresses":[{"type":"InternalIP","address":"192.0.2.1"}]}})";
  for (int i = 0; i < services; ++i) out += "," + ServiceJson(i) + "," + SliceJson(i);
  return out + "]}";
}

// Sees every successful sync's snapshot on the controller's thread: records when the wanted
// destination first appears in the programmed image.
class Probe : public kr::proxy::ProxyExtension {
 public:
  std::string Name() const override { return "bench-probe"; }
  kr::Status Apply(const kr::proxy::ProxySnapshot& snapshot) override {
    std::lock_guard lock(mu_);
    ++syncs_;
    if (want_ && snapshot.programmed != nullptr) {
      for (const auto& [id, vs] : snapshot.programmed->services) {
        if (vs.service.address != want_->first) continue;
        for (const auto& [did, d] : vs.destinations) {
          if (d.address == want_->second) {
            seen_ = Clock::now();
            want_.reset();
          }
        }
      }
    }
    changed_.notify_all();
    return kr::Status::Ok();
  }
  void Want(kr::IpAddress vip, kr::IpAddress destination) {
    std::lock_guard lock(mu_);
    want_ = std::make_pair(vip, destination);
    seen_.reset();
  }
  std::optional<Clock::time_point> WaitSeen(Clock::duration timeout) {
    std::unique_lock lock(mu_);
    changed_.wait_for(lock, timeout, [&] { return seen_.has_value(); });
    return seen_;
  }
  bool WaitSyncs(int n, Clock::duration timeout) {
    std::unique_lock lock(mu_);
    return changed_.wait_for(lock, timeout, [&] { return syncs_ >= n; });
  }

 private:
  std::mutex mu_;
  std::condition_variable changed_;
  int syncs_ = 0;
  std::optional<std::pair<kr::IpAddress, kr::IpAddress>> want_;
  std::optional<Clock::time_point> seen_;
};

class NullObserver : public kr::SyncObserver {
 public:
  void OnSyncSucceeded(const std::string&, kr::SyncReason, std::chrono::nanoseconds) override {}
  void OnSyncFailed(const std::string& controller, kr::SyncReason, const kr::Status& e) override {
    std::printf("  %s sync failed: %s\n", controller.c_str(), e.message().c_str());
  }
};

struct Figures {
  double server_start_ms = 0, caches_ms = 0, first_sync_ms = 0;
  std::vector<double> change_ms;
  std::string error;
};

Figures Measure(int services, int rounds) {
  Figures f;
  TempDir dir;
  std::filesystem::create_directories(dir.path() + "/manifests");
  std::ofstream(dir.path() + "/manifests/cluster.json") << Manifests(services);
  const std::string kubeconfig = dir.path() + "/kubeconfig";
  auto start = Clock::now();
  Process api({kr::testing::kFakeApiServerBinary, "--listen", "127.0.0.1:0", "--manifests",
               dir.path() + "/manifests", "--kubeconfig-out", kubeconfig},
              dir.path() + "/fake-apiserver.log");
  if (!WaitFor([&] { return std::filesystem::exists(kubeconfig); }, 600s)) {
    f.error = "fake-apiserver did not start: " + api.Log();
    return f;
  }
  f.server_start_ms = Ms(Clock::now() - start);
  std::ifstream in(kubeconfig);
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  const size_t at = text.find("http://127.0.0.1:");
  const int port = std::stoi(text.substr(at + 17));

  auto cluster = kr::k8s::MakeCluster();
  kr::netlink::FakeLinks links;
  kr::netlink::FakeRouteTable routes(&links);
  kr::netlink::FakeIpvs ipvs;
  kr::proxy::ProxyConfig config;
  config.node_name = "node0";
  config.cluster_ip_ranges = {*kr::IpPrefix::Parse("10.96.0.0/12")};
  config.sync_period = std::chrono::hours(1);  // the rounds time the event path only
  auto controller = std::make_unique<kr::proxy::NetworkServicesController>(
      config, cluster.get(), kr::proxy::ProxyDataplane{&ipvs, &links, &routes}, nullptr);
  auto probe_owned = std::make_unique<Probe>();
  Probe* probe = probe_owned.get();
  controller->AddExtension(std::move(probe_owned));
  NullObserver observer;
  kr::ControllerRunner runner(std::move(controller), &observer);
  kr::EventDispatcher dispatcher;
  dispatcher.Add(&runner);

  start = Clock::now();
  kr::k8s::ConnectionOptions connection{"", kubeconfig};
  auto watcher =
      kr::k8s::Watcher::Start(connection, dispatcher.WatchedKinds(), cluster.get(), &dispatcher);
  if (!watcher.ok()) {
    f.error = "watcher: " + watcher.error();
    return f;
  }
  if (auto s = (*watcher)->WaitForSync(600s); !s.ok()) {
    f.error = "caches: " + s.message();
    return f;
  }
  f.caches_ms = Ms(Clock::now() - start);
  start = Clock::now();
  runner.Start();
  if (!probe->WaitSyncs(1, 600s)) {
    f.error = "no first sync";
    return f;
  }
  f.first_sync_ms = Ms(Clock::now() - start);
  std::printf(
      "  at %d service(s): fake-apiserver start %.0f ms, caches synced %.0f ms, first sync %.0f "
      "ms\n",
      services, f.server_start_ms, f.caches_ms, f.first_sync_ms);

  httplib::Client client("127.0.0.1", port);
  client.set_read_timeout(30s);
  for (int r = 0; r < rounds; ++r) {
    const int k = static_cast<int>((static_cast<long>(r) * 7919) % services);
    std::vector<std::string> ips = Endpoints(k);
    ips[0] = ReplacementIp(r);
    probe->Want(*kr::IpAddress::Parse(Vip(k)), *kr::IpAddress::Parse(ips[0]));
    auto sent = Clock::now();
    auto res = client.Patch(
        "/apis/discovery.k8s.io/v1/namespaces/default/endpointslices/s" + std::to_string(k) + "-1",
        R"({"endpoints":)" + EndpointsJson(ips) + "}", "application/merge-patch+json");
    if (!res || res->status != 200) {
      f.error = "PATCH failed";
      break;
    }
    auto seen = probe->WaitSeen(30s);
    if (!seen) {
      f.error = "change " + std::to_string(r) + " never programmed";
      break;
    }
    f.change_ms.push_back(Ms(*seen - sent));
  }
  runner.Stop();
  (*watcher)->Stop();
  return f;
}

}  // namespace

int main(int argc, char** argv) {
  setvbuf(stdout, nullptr, _IOLBF, 0);
  int services = 10000;
  int rounds = 200;
  for (int i = 1; i + 1 < argc; i += 2) {
    if (std::string(argv[i]) == "--services") services = std::stoi(argv[i + 1]);
    if (std::string(argv[i]) == "--rounds") rounds = std::stoi(argv[i + 1]);
  }
  std::printf("proxy_event_bench: %d services x %d endpoints, %d change rounds\n", services,
              kEndpointsPerService, rounds);
  Figures big = Measure(services, rounds);
  if (!big.error.empty()) {
    std::printf("at %d services: %s\n", services, big.error.c_str());
    return 1;
  }
  Figures small = Measure(1, rounds);
  if (!small.error.empty()) {
    std::printf("at 1 service: %s\n", small.error.c_str());
    return 1;
  }
  std::printf("  one endpoint change, API PATCH -> controller sync done (n=%d):\n", rounds);
  const double big50 = Percentile(big.change_ms, 0.5), big99 = Percentile(big.change_ms, 0.99);
  const double small50 = Percentile(small.change_ms, 0.5),
               small99 = Percentile(small.change_ms, 0.99);
  std::printf("    at %d services: p50 %.2f ms, p99 %.2f ms\n", services, big50, big99);
  std::printf("    at 1 service:   p50 %.2f ms, p99 %.2f ms\n", small50, small99);
  std::printf("    ratio p50 %.2f, p99 %.2f\n", big50 / small50, big99 / small99);
  return 0;
}
