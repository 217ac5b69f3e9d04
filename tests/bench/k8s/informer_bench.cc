// Benchmark (not a test): informers listing and watching a large cluster from fake-apiserver.
// Prints time to synced, events/s under churn and the process's peak RSS, each against a
// baseline measured in the same run on the same server:
//   list baseline:  raw paginated GETs of the same collections, JSON parsed, nothing kept
//   churn baseline: a raw watch stream of Services, framed and parsed, nothing kept
// Usage: k8s_informer_bench [services=10000] [slices=10000] [pods=5000] [policies=1000]
//        [churn=5000]
#include <sys/resource.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <nlohmann/json.hpp>
#include <thread>

#include "kube_router/base/log.h"
#include "kube_router/k8s/store.h"
#include "kube_router/k8s/watch_stream.h"
#include "kube_router/k8s/watcher.h"
#include "kube_router/net/http_client.h"
#include "lib/files.h"
#include "lib/netns.h"

namespace {

using Clock = std::chrono::steady_clock;
using nlohmann::json;
using namespace std::chrono_literals;
namespace k8s = kr::k8s;
namespace net = kr::net;

double Seconds(Clock::duration d) { return std::chrono::duration<double>(d).count(); }

long PeakRssKib() {
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  return u.ru_maxrss;
}

std::string Ip(int i, int base) {
  return std::to_string(base) + "." + std::to_string((i >> 16) & 255) + "." +
         std::to_string((i >> 8) & 255) + "." + std::to_string(i & 255);
}

// Writes one `kind: List` JSON file per kind, object by object (the bench's own memory stays
// small, so the peak RSS is the informers').
void WriteManifests(const std::string& dir, int services, int slices, int pods, int policies) {
  auto write = [&](const std::string& file, int n, auto make) {
    std::ofstream out(dir + "/" + file);
    out << R"({"apiVersion":"v1","kind":"List","items":[)";
    for (int i = 0; i < n; ++i) out << (i ? "," : "") << make(i).dump();
    out << "]}";
  };
  write("services.json", services, [](int i) {
    return json{
        {"apiVersion", "v1"},
        {"kind", "Service"},
        {"metadata",
         {{"name", "svc-" + std::to_string(i)}, {"namespace", "ns-" + std::to_string(i % 50)}}},
        {"spec",
         {{"clusterIP", Ip(i, 10)},
          {"selector", {{"app", "app-" + std::to_string(i)}}},
          {"ports", {{{"name", "http"}, {"port", 80}, {"targetPort", 8080}}}}}}};
  });
  write("slices.json", slices, [](int i) {
    json endpoints = json::array();
    for (int e = 0; e < 10; ++e)
      endpoints.push_back({{"addresses", {Ip(i * 10 + e, 11)}},
                           {"conditions", {{"ready", true}}},
                           {"nodeName", "node-" + std::to_string(e)}});
    return json{{"apiVersion", "discovery.k8s.io/v1"},
                {"kind", "EndpointSlice"},
                {"metadata",
                 {{"name", "svc-" + std::to_string(i) + "-abcde"},
                  {"namespace", "ns-" + std::to_string(i % 50)},
                  {"labels", {{"kubernetes.io/service-name", "svc-" + std::to_string(i)}}}}},
                {"addressType", "IPv4"},
                {"endpoints", endpoints},
                {"ports", {{{"name", "http"}, {"port", 8080}, {"protocol", "TCP"}}}}};
  });
  write("pods.json", pods, [](int i) {
    return json{{"apiVersion", "v1"},
                {"kind", "Pod"},
                {"metadata",
                 {{"name", "pod-" + std::to_string(i)},
                  {"namespace", "ns-" + std::to_string(i % 50)},
                  {"labels", {{"app", "app-" + std::to_string(i)}}}}},
                {"spec",
                 {{"nodeName", "node-" + std::to_string(i % 10)},
                  {"containers", {{{"name", "c"}, {"ports", {{{"containerPort", 8080}}}}}}}}},
                {"status", {{"podIP", Ip(i, 12)}, {"phase", "Running"}}}};
  });
  write("policies.json", policies, [](int i) {
    return json{
        {"apiVersion", "networking.k8s.io/v1"},
        {"kind", "NetworkPolicy"},
        {"metadata",
         {{"name", "np-" + std::to_string(i)}, {"namespace", "ns-" + std::to_string(i % 50)}}},
        {"spec",
         {{"podSelector", {{"matchLabels", {{"app", "app-" + std::to_string(i)}}}}},
          {"ingress",
           {{{"from", {{{"podSelector", {{"matchLabels", {{"role", "client"}}}}}}}},
             {"ports", {{{"port", 8080}}}}}}}}}};
  });
}

class CountingSink : public k8s::EventSink {
 public:
  void Post(const k8s::Event& e) override {
    if (e.kind == k8s::ResourceKind::kService && e.type == k8s::EventType::kUpdated) ++updates;
  }
  std::atomic<int> updates{0};
};

}  // namespace

int main(int argc, char** argv) {
  auto arg = [&](int i, int def) { return argc > i ? std::atoi(argv[i]) : def; };
  int services = arg(1, 10000), slices = arg(2, 10000), pods = arg(3, 5000),
      policies = arg(4, 1000), churn = arg(5, 5000);
  spdlog::set_level(spdlog::level::warn);
  kr::testing::TempDir dir;
  WriteManifests(dir.path(), services, slices, pods, policies);
  std::string kubeconfig = dir.path() + "/kubeconfig";
  kr::testing::Process server(
      {std::string(KR_BINARY_DIR) + "/fake-apiserver", "--listen", "127.0.0.1:0",
       "--kubeconfig-out", kubeconfig, "--manifests", dir.path()},
      dir.path() + "/server.log");
  if (!kr::testing::WaitFor([&] { return std::ifstream(kubeconfig).good(); }, 120s)) {
    std::fprintf(stderr, "fake-apiserver did not start: %s\n", server.Log().c_str());
    return 1;
  }
  const std::string kc = kr::testing::ReadFile(kubeconfig);
  auto pos = kc.find("server: ");
  std::string url = kc.substr(pos + 8, kc.find('\n', pos) - pos - 8);
  auto raw = net::HttpClient::Create(url, {});
  if (!raw.ok()) return 1;

  // Agent: informers for every kind until synced.
  auto cluster = k8s::MakeCluster();
  CountingSink sink;
  auto t0 = Clock::now();
  auto watcher = k8s::Watcher::Start(
      {.kubeconfig = kubeconfig},
      {k8s::ResourceKind::kService, k8s::ResourceKind::kEndpointSlice, k8s::ResourceKind::kPod,
       k8s::ResourceKind::kNode, k8s::ResourceKind::kNamespace, k8s::ResourceKind::kNetworkPolicy},
      cluster.get(), &sink);
  if (!watcher.ok()) {
    std::fprintf(stderr, "%s\n", watcher.error().c_str());
    return 1;
  }
  if (auto s = (*watcher)->WaitForSync(120s); !s.ok()) {
    std::fprintf(stderr, "%s\n", s.message().c_str());
    return 1;
  }
  double synced_s = Seconds(Clock::now() - t0);
  long rss_synced = PeakRssKib();

  // Baseline: the same lists fetched and parsed, nothing decoded or kept.
  auto t1 = Clock::now();
  size_t baseline_items = 0;
  for (const char* path :
       {"/api/v1/services", "/apis/discovery.k8s.io/v1/endpointslices", "/api/v1/pods",
        "/api/v1/nodes", "/api/v1/namespaces", "/apis/networking.k8s.io/v1/networkpolicies"}) {
    std::string cont;
    do {
      net::HttpRequest req;
      req.path = std::string(path) + "?limit=500" + (cont.empty() ? "" : "&continue=" + cont);
      auto res = (*raw)->Do(req, 60s);
      if (!res.ok()) return 1;
      json list = json::parse(res->body);
      baseline_items += list["items"].size();
      cont.clear();
      if (list["metadata"].contains("continue")) {
        for (char c : list["metadata"]["continue"].get<std::string>()) {
          char hex[4];
          std::snprintf(hex, sizeof hex, "%%%02X", static_cast<unsigned char>(c));
          cont += isalnum(static_cast<unsigned char>(c)) ? std::string(1, c) : hex;
        }
      }
    } while (!cont.empty());
  }
  double baseline_list_s = Seconds(Clock::now() - t1);

  // Churn: label updates of Services, seen by the informer and by a raw watch stream.
  std::atomic<int> raw_seen{0};
  std::atomic<bool> stop{false};
  Clock::time_point raw_done;
  std::string rv;
  {
    net::HttpRequest req;
    req.path = "/api/v1/services?limit=1";
    rv = json::parse((*raw)->Do(req, 60s)->body)["metadata"]["resourceVersion"];
  }
  std::thread raw_watch([&] {
    k8s::WatchStreamDecoder decoder;
    std::vector<kr::Result<k8s::WatchEvent>> events;
    net::HttpRequest req;
    req.path = "/api/v1/services?watch=true&resourceVersion=" + rv;
    (void)(*raw)->Stream(
        req, [](const net::HttpResponse&) { return true; },
        [&](std::string_view bytes) {
          events.clear();
          decoder.Feed(bytes, &events);
          for (auto& e : events)
            if (e.ok() && e->type == k8s::WatchEventType::kModified && ++raw_seen == churn)
              raw_done = Clock::now();
          return raw_seen < churn && !stop;
        },
        120s, &stop);
  });
  int before = sink.updates.load();
  auto t2 = Clock::now();
  std::vector<std::thread> writers;
  for (int w = 0; w < 4; ++w) {
    writers.emplace_back([&, w] {
      for (int i = w; i < churn; i += 4) {
        net::HttpRequest req;
        req.method = "PATCH";
        req.path = "/api/v1/namespaces/ns-" + std::to_string(i % services % 50) + "/services/svc-" +
                   std::to_string(i % services);
        req.headers = {{"Content-Type", "application/merge-patch+json"}};
        req.body = json{{"metadata", {{"labels", {{"churn", std::to_string(i)}}}}}}.dump();
        (void)(*raw)->Do(req, 60s);
      }
    });
  }
  for (auto& t : writers) t.join();
  bool all = kr::testing::WaitFor([&] { return sink.updates - before >= churn; }, 120s);
  double agent_churn_s = Seconds(Clock::now() - t2);
  kr::testing::WaitFor([&] { return raw_seen >= churn; }, 60s);
  stop = true;
  raw_watch.join();
  double raw_churn_s = Seconds(raw_done - t2);
  (*watcher)->Stop();

  std::printf("objects: %d services, %d endpointslices (10 endpoints each), %d pods, %d policies\n",
              services, slices, pods, policies);
  std::printf("time to synced (6 informers)      : %.3f s\n", synced_s);
  std::printf("baseline raw GET+parse of lists   : %.3f s (%zu items)\n", baseline_list_s,
              baseline_items);
  std::printf("ratio synced / baseline           : %.2f\n", synced_s / baseline_list_s);
  std::printf("peak RSS when synced              : %.1f MiB\n", rss_synced / 1024.0);
  std::printf("churn: %d service updates%s\n", churn, all ? "" : " (NOT all seen)");
  std::printf("informer events/s                 : %.0f\n",
              (sink.updates - before) / agent_churn_s);
  std::printf("baseline raw watch events/s       : %.0f\n", raw_seen / raw_churn_s);
  std::printf("ratio informer / raw watch        : %.2f\n",
              ((sink.updates - before) / agent_churn_s) / (raw_seen / raw_churn_s));
  std::printf("targets: synced < 3 s: %s; RSS < 80 MiB: %s\n", synced_s < 3 ? "met" : "MISSED",
              rss_synced < 80 * 1024 ? "met" : "MISSED");
  return 0;
}
