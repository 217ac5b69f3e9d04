// Informers against a real fake-apiserver process on loopback: initial sync, live changes,
// pagination, and convergence under every injected fault.
#include <gtest/gtest.h>
#include <unistd.h>

#include <future>
#include <nlohmann/json.hpp>
#include <thread>

#include "fake_apiserver_fixture.h"
#include "kube_router/k8s/watcher.h"
#include "kube_router/metrics/registry.h"

namespace kr::k8s {
namespace {

using kr::k8s::testing::FakeApiServer;
using kr::k8s::testing::kAllKinds;
using kr::k8s::testing::WatcherHarness;
using kr::k8s::testing::WriteFile;
using kr::testing::WaitFor;
using nlohmann::json;
using namespace std::chrono_literals;

constexpr char kManifest[] = R"(apiVersion: v1
kind: Namespace
metadata: {name: demo, labels: {team: a}}
---
apiVersion: v1
kind: Node
metadata: {name: node1}
spec: {podCIDR: 10.244.1.0/24}
status: {addresses: [{type: InternalIP, address: 192.0.2.1}]}
---
apiVersion: v1
kind: Pod
metadata: {name: web-1, namespace: demo, labels: {app: web}}
spec: {nodeName: node1, containers: [{name: c, image: x, ports: [{containerPort: 80, name: http}]}]}
status: {podIP: 10.244.1.5, phase: Running}
---
apiVersion: v1
kind: Service
metadata: {name: web, namespace: demo}
spec: {clusterIP: 10.96.0.10, selector: {app: web}, ports: [{port: 80, targetPort: http}]}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: web-abc, namespace: demo, labels: {kubernetes.io/service-name: web}}
addressType: IPv4
endpoints: [{addresses: [10.244.1.5], nodeName: node1}]
ports: [{name: "", port: 80}]
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: deny, namespace: demo}
spec: {podSelector: {}}
)";

json PodJson(const std::string& name, const std::string& ip) {
  return {{"apiVersion", "v1"},
          {"kind", "Pod"},
          {"metadata", {{"name", name}, {"namespace", "demo"}, {"labels", {{"app", "web"}}}}},
          {"spec", {{"nodeName", "node1"}}},
          {"status", {{"podIP", ip}}}};
}

struct Harness : WatcherHarness {
  explicit Harness(std::vector<std::string> server_args = {}, bool manifests = true) {
    if (manifests) {
      WriteFile(dir.path() + "/cluster.yaml", kManifest);
      server_args.insert(server_args.end(), {"--manifests", dir.path() + "/cluster.yaml"});
    }
    StartServer(server_args);
  }
  // Sets web-1's pod IP on the server; true once the cache holds it.
  ::testing::AssertionResult Web1IpFollows(const std::string& ip) {
    int code = server->MergePatch("/api/v1/namespaces/demo/pods/web-1/status",
                                  {{"status", {{"podIP", ip}}}});
    if (code != 200) return ::testing::AssertionFailure() << "PATCH answered " << code;
    if (!PodIp("demo/web-1", ip)) {
      return ::testing::AssertionFailure() << "the cache never held web-1 at " << ip;
    }
    return ::testing::AssertionSuccess();
  }
  bool PodIp(const std::string& key, const std::string& ip) {
    return WaitFor(
        [&] {
          auto p = cluster->pods.Get(key);
          return ip.empty() ? p == nullptr : (p && p->pod_ip() == ip);
        },
        30s);
  }
};

TEST(InformerTest, SyncsEveryKindAndFollowsChanges) {
  Harness h;
  ASSERT_TRUE(h.StartWatcher().ok()) << h.server->Log();
  auto& c = *h.cluster;
  EXPECT_EQ(c.namespaces.Get("demo")->meta.labels.at("team"), "a");
  EXPECT_EQ(c.nodes.Get("node1")->addresses.at(0).address, "192.0.2.1");
  EXPECT_EQ(c.pods.Get("demo/web-1")->pod_ip(), "10.244.1.5");
  EXPECT_EQ(c.services.Get("demo/web")->cluster_ip(), "10.96.0.10");
  EXPECT_EQ(c.endpoint_slices.ByIndex(kIndexServiceName, "demo/web").size(), 1u);
  EXPECT_TRUE(c.network_policies.Get("demo/deny"));
  EXPECT_EQ(h.sink.Count(EventType::kAdded, "demo/web-1"), 1u);

  // Update, add and delete while watching.
  ASSERT_TRUE(h.Web1IpFollows("10.244.1.6"));
  ASSERT_EQ(h.server->Create("/api/v1/namespaces/demo/pods", PodJson("web-2", "10.244.1.7")), 201);
  EXPECT_TRUE(h.PodIp("demo/web-2", "10.244.1.7"));
  ASSERT_EQ(h.server->Delete("/api/v1/namespaces/demo/services/web"), 200);
  EXPECT_TRUE(WaitFor([&] { return c.services.Get("demo/web") == nullptr; }, 30s));

  EXPECT_TRUE(WaitFor([&] { return h.sink.Count(EventType::kDeleted, "demo/web") == 1; }, 10s));
  EXPECT_EQ(h.sink.Count(EventType::kUpdated, "demo/web-1"), 1u);
  for (const auto& e : h.sink.Events()) {
    if (e.type == EventType::kDeleted && e.key == "demo/web") {
      auto old = std::get<std::shared_ptr<const Service>>(e.old_object);
      EXPECT_EQ(old->cluster_ip(), "10.96.0.10");  // the last known state comes along
    }
    if (e.type == EventType::kUpdated && e.key == "demo/web-1") {
      EXPECT_EQ(std::get<std::shared_ptr<const Pod>>(e.old_object)->pod_ip(), "10.244.1.5");
      EXPECT_EQ(std::get<std::shared_ptr<const Pod>>(e.new_object)->pod_ip(), "10.244.1.6");
    }
  }
}

TEST(InformerTest, ListsInPagesWithContinue) {
  Harness h;
  for (int i = 0; i < 7; ++i) {
    ASSERT_EQ(h.server->Create("/api/v1/namespaces/demo/pods",
                               PodJson("p" + std::to_string(i), "10.244.2." + std::to_string(i))),
              201);
  }
  ConnectionOptions opts;
  opts.list_page_size = 3;
  ASSERT_TRUE(h.StartWatcher(opts).ok());
  EXPECT_EQ(h.cluster->pods.Size(), 8u);
  int pod_pages = 0;
  for (const auto& r : h.server->Requests()) {
    if (r.rfind("GET /api/v1/pods", 0) == 0 && r.find("limit=3") != std::string::npos) ++pod_pages;
  }
  EXPECT_EQ(pod_pages, 3);  // 8 pods in pages of 3
}

// Requests of the fake server with their arrival times.
struct RequestLog {
  std::vector<std::string> lines;
  std::vector<int64_t> times_ms;
};
RequestLog Requests(FakeApiServer& server) {
  std::string body;
  RequestLog log;
  if (server.Call("GET", "/_fake/requests", "", "", &body) != 200) return log;
  auto j = json::parse(body, nullptr, false);
  log.lines = j["recent"].get<std::vector<std::string>>();
  log.times_ms = j["recentTimesMs"].get<std::vector<int64_t>>();
  return log;
}
bool IsPodList(const std::string& line) {
  return line.rfind("GET /api/v1/pods?", 0) == 0 && line.find("watch=true") == std::string::npos;
}
bool IsPodWatch(const std::string& line) {
  return line.rfind("GET /api/v1/pods?", 0) == 0 && line.find("watch=true") != std::string::npos;
}

TEST(InformerTest, DroppedAndCleanlyClosedWatchesResumeWithoutRelisting) {
  Harness h;
  ASSERT_TRUE(h.StartWatcher().ok()) << h.server->Log();
  ASSERT_EQ(h.server->Fault("drop-watches"), 200);
  ASSERT_TRUE(h.Web1IpFollows("10.244.1.6"));
  ASSERT_EQ(h.server->Fault("close-watches"), 200);
  ASSERT_EQ(h.server->Create("/api/v1/namespaces/demo/pods", PodJson("web-3", "10.244.1.8")), 201);
  EXPECT_TRUE(h.PodIp("demo/web-3", "10.244.1.8"));
  // A loaded server can send web-3 on the stream it is closing, so the third watch may not
  // have arrived yet when web-3 is cached: wait for it, then count the lists.
  RequestLog log;
  int lists = 0, watches = 0;
  EXPECT_TRUE(WaitFor(
      [&] {
        log = Requests(*h.server);
        lists = watches = 0;
        for (const auto& l : log.lines) {
          lists += IsPodList(l);
          watches += IsPodWatch(l);
        }
        return watches >= 3;
      },
      30s))
      << watches << " pod watches";
  EXPECT_EQ(lists, 1);  // watches resumed from the last resourceVersion
  for (const auto& l : log.lines) {
    if (IsPodWatch(l)) {
      EXPECT_NE(l.find("allowWatchBookmarks=true"), std::string::npos) << l;
      EXPECT_NE(l.find("timeoutSeconds="), std::string::npos) << l;
    }
  }
}

// While the informers cannot watch, objects are deleted, added and changed and the history is
// compacted; the next watch gets 410 and the relist must turn the difference into events.
void GoneScenario(bool gone_as_http_status) {
  Harness h;
  ASSERT_TRUE(h.StartWatcher().ok()) << h.server->Log();
  if (gone_as_http_status) {
    ASSERT_EQ(h.server->Fault("settings", R"({"goneAsHttpStatus":true})"), 200);
  }
  ASSERT_EQ(h.server->Fault("fail?count=1000000&code=500&match=watch%3Dtrue"), 200);
  ASSERT_EQ(h.server->Fault("drop-watches"), 200);
  ASSERT_EQ(h.server->Delete("/api/v1/namespaces/demo/pods/web-1"), 200);
  ASSERT_EQ(h.server->Create("/api/v1/namespaces/demo/pods", PodJson("web-9", "10.244.1.9")), 201);
  ASSERT_EQ(h.server->MergePatch("/api/v1/namespaces/demo/services/web",
                                 {{"spec", {{"externalIPs", {"203.0.113.5"}}}}}),
            200);
  ASSERT_EQ(h.server->Fault("compact"), 200);
  ASSERT_EQ(h.server->Fault("fail?count=0"), 200);

  EXPECT_TRUE(h.PodIp("demo/web-1", ""));
  EXPECT_TRUE(h.PodIp("demo/web-9", "10.244.1.9"));
  EXPECT_TRUE(WaitFor(
      [&] {
        auto s = h.cluster->services.Get("demo/web");
        return s && s->external_ips == std::vector<std::string>{"203.0.113.5"};
      },
      30s));
  bool tombstone = false;
  for (const auto& e : h.sink.Events()) {
    if (e.type == EventType::kDeleted && e.key == "demo/web-1") {
      auto last = std::get<std::shared_ptr<const Pod>>(e.old_object);
      tombstone = last && last->pod_ip() == "10.244.1.5";
    }
  }
  EXPECT_TRUE(tombstone) << "the relist's delete carries the last known object";
  EXPECT_EQ(h.sink.Count(EventType::kAdded, "demo/web-9"), 1u);
  EXPECT_EQ(h.sink.Count(EventType::kUpdated, "demo/web"), 1u);
  // Untouched objects produce no events on relist (same resourceVersion).
  EXPECT_EQ(h.sink.Count(EventType::kUpdated, "node1"), 0u);
  bool consistent_relist = false;
  for (const auto& l : Requests(*h.server).lines) {
    if (IsPodList(l) && l.find("resourceVersion") == std::string::npos) consistent_relist = true;
  }
  EXPECT_TRUE(consistent_relist) << "after 410 the list asks for the latest state (RV \"\")";
}

TEST(InformerTest, GoneAsWatchErrorEventRelistsAndDiffs) { GoneScenario(false); }
TEST(InformerTest, GoneAsHttpStatusRelistsAndDiffs) { GoneScenario(true); }

TEST(InformerTest, ExpiredWatchesRelist) {
  Harness h;
  ASSERT_TRUE(h.StartWatcher().ok()) << h.server->Log();
  ASSERT_EQ(h.server->Fault("expire-watches"), 200);
  ASSERT_EQ(h.server->Create("/api/v1/namespaces/demo/pods", PodJson("web-4", "10.244.1.4")), 201);
  EXPECT_TRUE(h.PodIp("demo/web-4", "10.244.1.4"));
  EXPECT_TRUE(WaitFor(
      [&] {
        int lists = 0;
        for (const auto& l : Requests(*h.server).lines) lists += IsPodList(l);
        return lists == 2;
      },
      30s));
}

TEST(InformerTest, ServerErrorsBackOffAndRecover) {
  Harness h;
  ASSERT_EQ(h.server->Fault("fail?count=12&code=500"), 200);
  ASSERT_TRUE(h.StartWatcher().ok()) << h.server->Log();  // lists retried until they work
  ASSERT_EQ(h.server->Fault("fail?count=3&code=500&match=watch%3Dtrue"), 200);
  ASSERT_EQ(h.server->Fault("drop-watches"), 200);
  ASSERT_TRUE(h.Web1IpFollows("10.244.1.66"));
}

TEST(InformerTest, HonoursRetryAfterOn429) {
  Harness h;
  // StartWatcher returns once every watch is open: the 429 answers the pod informer's second
  // watch, not its first.
  ASSERT_TRUE(h.StartWatcher().ok()) << h.server->Log();
  ASSERT_EQ(h.server->Fault("fail?count=1&code=429&retryAfter=3&match=%2Fapi%2Fv1%2Fpods%3F"), 200);
  ASSERT_EQ(h.server->Fault("drop-watches"), 200);
  ASSERT_TRUE(h.Web1IpFollows("10.244.1.77"));
  auto log = Requests(*h.server);
  std::vector<int64_t> watch_times;
  for (size_t i = 0; i < log.lines.size(); ++i)
    if (IsPodWatch(log.lines[i])) watch_times.push_back(log.times_ms[i]);
  // 1st: the initial watch (dropped), 2nd: answered 429, 3rd: after Retry-After.
  ASSERT_GE(watch_times.size(), 3u);
  EXPECT_GE(watch_times[2] - watch_times[1], 2900) << "Retry-After: 3 was not honoured";
}

// Counted in the registry the watcher was given (the agent's /metrics one), not a global.
TEST(InformerTest, MalformedObjectsAreSkippedAndCounted) {
  metrics::Registry registry;
  auto& counter = registry.GetCounter("kube_router_k8s_malformed_objects_total",
                                      "API objects skipped because they could not be decoded",
                                      {{"kind", "Service"}});
  double before = counter.Value();
  ConnectionOptions opts;
  opts.registry = &registry;
  Harness h;
  json bad = {{"metadata", {{"name", "bad"}, {"namespace", "demo"}}},
              {"spec", {{"ports", {{{"port", "eighty"}}}}}}};
  ASSERT_EQ(h.server->Create("/api/v1/namespaces/demo/services", bad), 201);
  ASSERT_TRUE(h.StartWatcher(opts).ok()) << h.server->Log();
  EXPECT_TRUE(h.cluster->services.Get("demo/web"));  // the rest of the list is there
  EXPECT_FALSE(h.cluster->services.Get("demo/bad"));
  EXPECT_EQ(counter.Value(), before + 1);
  bad["metadata"]["name"] = "bad2";
  ASSERT_EQ(h.server->Create("/api/v1/namespaces/demo/services", bad), 201);
  json good = {{"metadata", {{"name", "good"}, {"namespace", "demo"}}},
               {"spec", {{"clusterIP", "10.96.0.20"}}}};
  ASSERT_EQ(h.server->Create("/api/v1/namespaces/demo/services", good), 201);
  EXPECT_TRUE(WaitFor([&] { return h.cluster->services.Get("demo/good") != nullptr; }, 30s));
  EXPECT_FALSE(h.cluster->services.Get("demo/bad2"));
  EXPECT_EQ(counter.Value(), before + 2);
  EXPECT_NE(registry.Render().find("kube_router_k8s_malformed_objects_total{kind=\"Service\"}"),
            std::string::npos);
  EXPECT_EQ(metrics::Registry::Default().Render().find("kube_router_k8s_malformed_objects_total"),
            std::string::npos);
}

TEST(InformerTest, SyncTimeoutNamesTheKindsThatDidNotSync) {
  Harness h;
  ASSERT_EQ(h.server->Fault("fail?count=1000000&code=500&match=%2Fapi%2Fv1%2Fnodes"), 200);
  ConnectionOptions opts;
  opts.kubeconfig = h.server->kubeconfig();
  auto w = Watcher::Start(opts, kAllKinds, h.cluster.get(), &h.sink);
  ASSERT_TRUE(w.ok()) << w.error();
  // Under load the other kinds may need a few rounds; Nodes can never sync.
  Status s = (*w)->WaitForSync(1500ms);
  for (int i = 0; i < 20 && !s.ok() && s.message().find("Pod") != std::string::npos; ++i)
    s = (*w)->WaitForSync(1500ms);
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.message().find("Node"), std::string::npos) << s.message();
  EXPECT_NE(s.message().find("HTTP 500"), std::string::npos) << s.message();
  EXPECT_EQ(s.message().find("Pod"), std::string::npos) << s.message();
  (*w)->Stop();
}

TEST(InformerTest, FailedRelistKeepsTheCache) {
  Harness h;
  ASSERT_TRUE(h.StartWatcher().ok()) << h.server->Log();
  ASSERT_EQ(h.server->Fault("fail?count=1000000&code=500&match=%2Fapi%2Fv1%2Fpods"), 200);
  ASSERT_EQ(h.server->Fault("expire-watches"), 200);
  // The relist keeps failing; the informer must keep serving what it had.
  ASSERT_TRUE(WaitFor(
      [&] {
        int failed_lists = 0;
        for (const auto& l : Requests(*h.server).lines) failed_lists += IsPodList(l);
        return failed_lists >= 3;  // the initial list plus two failed relists
      },
      60s));
  EXPECT_TRUE(h.cluster->pods.Get("demo/web-1"));
  EXPECT_EQ(h.sink.Count(EventType::kDeleted, "demo/web-1"), 0u);
  ASSERT_EQ(h.server->Fault("fail?count=0"), 200);
  ASSERT_TRUE(h.Web1IpFollows("10.244.1.99"));
}

// Synced is not watching: with every request held 300 ms by the server, the watches reach it
// well after the lists that made the caches sync. StartWatcher waits for them, so a fault
// injected right after it reaches every kind's open watch.
TEST(InformerTest, StartWatcherReturnsOnceEveryWatchIsOpen) {
  Harness h;
  ASSERT_EQ(h.server->Fault("delay?ms=300"), 200);
  ASSERT_TRUE(h.StartWatcher().ok()) << h.server->Log();
  auto open = h.server->OpenWatches();
  for (ResourceKind kind : kAllKinds) {
    EXPECT_GE(open[ResourceKindName(kind)], 1) << ResourceKindName(kind);
  }
  ASSERT_EQ(h.server->Fault("delay?ms=0"), 200);
  ASSERT_EQ(h.server->Fault("drop-watches"), 200);
  EXPECT_TRUE(WaitFor(
      [&] {
        int pod_watches = 0;
        for (const auto& l : Requests(*h.server).lines) pod_watches += IsPodWatch(l);
        return pod_watches >= 2;  // the dropped one and its successor
      },
      30s));
}

TEST(InformerTest, SlowServerStillConverges) {
  Harness h;
  ASSERT_EQ(h.server->Fault("delay?ms=300"), 200);
  ASSERT_TRUE(h.StartWatcher().ok()) << h.server->Log();
  ASSERT_EQ(h.server->Create("/api/v1/namespaces/demo/pods", PodJson("slow", "10.244.3.1")), 201);
  EXPECT_TRUE(h.PodIp("demo/slow", "10.244.3.1"));
}

TEST(InformerTest, StopEndsStalledListsAndAWaitForSyncPromptly) {
  Harness h;
  // The server accepts every API request but answers none within the test's lifetime.
  ASSERT_EQ(h.server->Fault("delay?ms=60000"), 200);
  ConnectionOptions opts;
  opts.kubeconfig = h.server->kubeconfig();
  auto w = Watcher::Start(opts, kAllKinds, h.cluster.get(), &h.sink);
  ASSERT_TRUE(w.ok()) << w.error();
  // As the agent does: wait for the caches on another thread while a signal may come.
  auto synced = std::async(std::launch::async, [&] { return (*w)->WaitForSync(60s); });
  ASSERT_TRUE(WaitFor([&] { return Requests(*h.server).lines.size() >= kAllKinds.size(); }, 10s));
  std::this_thread::sleep_for(500ms);  // every informer is now waiting for its list
  ASSERT_EQ(synced.wait_for(0s), std::future_status::timeout);
  auto started = std::chrono::steady_clock::now();
  (*w)->Stop();
  auto stop_took = std::chrono::steady_clock::now() - started;
  EXPECT_LT(stop_took, 3s)
      << std::chrono::duration_cast<std::chrono::milliseconds>(stop_took).count()
      << " ms in Stop()";
  // The pending WaitForSync ends with the stop, not at its 60 s timeout.
  ASSERT_EQ(synced.wait_for(3s), std::future_status::ready);
  Status s = synced.get();
  EXPECT_FALSE(s.ok());
  EXPECT_NE(s.message().find("stopped"), std::string::npos) << s.message();
  EXPECT_LT(std::chrono::steady_clock::now() - started, 3s);
  ASSERT_EQ(h.server->Fault("delay?ms=0"), 200);
}

TEST(InformerTest, BookmarksMoveTheResumePointPastACompaction) {
  Harness h;
  ASSERT_TRUE(h.StartWatcher().ok()) << h.server->Log();
  // Only Services change, so the Pod informer learns the new RV from a bookmark alone.
  for (int i = 0; i < 5; ++i) {
    ASSERT_EQ(h.server->MergePatch("/api/v1/namespaces/demo/services/web",
                                   {{"metadata", {{"labels", {{"n", std::to_string(i)}}}}}}),
              200);
  }
  std::string body;
  auto sent = [&] {
    h.server->Call("GET", "/_fake/requests", "", "", &body);
    return json::parse(body)["bookmarksSent"].get<int>();
  };
  int before = sent();
  ASSERT_EQ(h.server->Fault("bookmark"), 200);
  // Six watches each get one; a bookmark written before the drop is read before the close.
  ASSERT_TRUE(WaitFor([&] { return sent() >= before + 6; }, 30s));
  ASSERT_EQ(h.server->Fault("compact"), 200);
  ASSERT_EQ(h.server->Fault("drop-watches"), 200);
  ASSERT_EQ(h.server->Create("/api/v1/namespaces/demo/pods", PodJson("web-5", "10.244.1.50")), 201);
  EXPECT_TRUE(h.PodIp("demo/web-5", "10.244.1.50"));
  int pod_lists = 0;
  for (const auto& l : Requests(*h.server).lines) pod_lists += IsPodList(l);
  EXPECT_EQ(pod_lists, 1) << "the bookmark's RV should have avoided a 410 and a relist";
}

// The API server restarts on restored data with a new resourceVersion sequence: the informers'
// RVs are now beyond the server's. Watching from them must not go on forever (the server
// answers "Too large resource version"); a consistent relist must bring deletions, additions
// and changes made after the restart.
TEST(InformerTest, ServerRestartWithResetResourceVersionsRelists) {
  Harness h;
  ASSERT_TRUE(h.StartWatcher().ok()) << h.server->Log();
  // Push the Pod informer's RV well beyond what the restarted server will count to.
  for (int i = 0; i < 30; ++i) {
    ASSERT_EQ(h.server->MergePatch("/api/v1/namespaces/demo/pods/web-1",
                                   {{"metadata", {{"labels", {{"n", std::to_string(i)}}}}}}),
              200);
  }
  ASSERT_TRUE(WaitFor(
      [&] {
        auto pod = h.cluster->pods.Get("demo/web-1");
        return pod && pod->meta.labels.count("n") && pod->meta.labels.at("n") == "29";
      },
      30s));
  ASSERT_EQ(h.server->Fault("restart"), 200);
  ASSERT_EQ(h.server->Delete("/api/v1/namespaces/demo/pods/web-1"), 200);
  ASSERT_EQ(h.server->Delete("/apis/networking.k8s.io/v1/namespaces/demo/networkpolicies/deny"),
            200);
  ASSERT_EQ(h.server->Create("/api/v1/namespaces/demo/pods", PodJson("web-9", "10.244.1.9")), 201);
  EXPECT_TRUE(h.PodIp("demo/web-1", ""));
  EXPECT_TRUE(h.PodIp("demo/web-9", "10.244.1.9"));
  EXPECT_TRUE(
      WaitFor([&] { return h.cluster->network_policies.Get("demo/deny") == nullptr; }, 30s));
  EXPECT_TRUE(WaitFor([&] { return h.sink.Count(EventType::kDeleted, "demo/web-1") == 1; }, 10s));
  bool consistent_relist = false;
  for (const auto& l : Requests(*h.server).lines) {
    if (IsPodList(l) && l.find("resourceVersion") == std::string::npos) consistent_relist = true;
  }
  EXPECT_TRUE(consistent_relist) << "a too-large RV must lead to a list with RV \"\"";
  // And the informers follow the new sequence from there.
  ASSERT_EQ(h.server->MergePatch("/api/v1/namespaces/demo/pods/web-9/status",
                                 {{"status", {{"podIP", "10.244.1.19"}}}}),
            200);
  EXPECT_TRUE(h.PodIp("demo/web-9", "10.244.1.19"));
}

// A watch ERROR event that is not 410 (here a 500 InternalError Status in the stream) ends the
// watch and leads to a relist, as client-go's reflector does; the watch is not simply
// resumed from the same RV.
TEST(InformerTest, OtherWatchErrorEventsRelist) {
  Harness h;
  ASSERT_TRUE(h.StartWatcher().ok()) << h.server->Log();
  ASSERT_EQ(h.server->Fault("expire-watches?code=500"), 200);
  EXPECT_TRUE(WaitFor(
      [&] {
        int lists = 0;
        for (const auto& l : Requests(*h.server).lines) lists += IsPodList(l);
        return lists == 2;
      },
      30s));
  bool relist_from_last_rv = false;
  for (const auto& l : Requests(*h.server).lines) {
    if (IsPodList(l) && l.find("resourceVersion=") != std::string::npos &&
        l.find("resourceVersion=0") == std::string::npos)
      relist_from_last_rv = true;
  }
  EXPECT_TRUE(relist_from_last_rv) << "client-go relists from the last RV after such errors";
  ASSERT_EQ(h.server->Create("/api/v1/namespaces/demo/pods", PodJson("web-8", "10.244.1.8")), 201);
  EXPECT_TRUE(h.PodIp("demo/web-8", "10.244.1.8"));
}

// A cache the server refuses to refresh (here 403 Forbidden, as after an RBAC change) is
// reported stale once it has been so for longer than the bound, and no longer once the
// server serves it again. An outage (500s) is not reported.
TEST(InformerTest, StaleCachesAreReportedUntilTheServerAnswersAgain) {
  Harness h;
  ASSERT_TRUE(h.StartWatcher().ok()) << h.server->Log();
  EXPECT_TRUE(h.watcher->StaleCaches(0ms).empty()) << "open watches keep every cache current";
  ASSERT_EQ(h.server->Fault("fail?count=1000000&code=500&match=%2Fapi%2Fv1%2Fpods"), 200);
  ASSERT_EQ(h.server->Fault("drop-watches"), 200);
  // Two failed pod watches (the first backoff alone is >= 0.8 s) span more than 1 s.
  ASSERT_TRUE(WaitFor(
      [&] {
        int watches = 0;
        for (const auto& l : Requests(*h.server).lines) watches += IsPodWatch(l);
        return watches >= 3;
      },
      30s));
  EXPECT_TRUE(h.watcher->StaleCaches(1000ms).empty()) << "an outage is not staleness";
  ASSERT_EQ(h.server->Fault("fail?count=1000000&code=403&match=%2Fapi%2Fv1%2Fpods"), 200);
  ASSERT_EQ(h.server->Fault("drop-watches"), 200);
  // The other kinds are back within their first backoff (at most 1.6 s); Pods never are.
  std::vector<Watcher::StaleCache> stale;
  ASSERT_TRUE(WaitFor(
      [&] {
        stale = h.watcher->StaleCaches(2500ms);
        return stale.size() == 1 && stale[0].kind == ResourceKind::kPod;
      },
      30s));
  EXPECT_GT(stale[0].stale_for, 2500ms);
  EXPECT_NE(stale[0].last_error.find("HTTP 403"), std::string::npos) << stale[0].last_error;
  ASSERT_EQ(h.server->Fault("fail?count=0"), 200);
  EXPECT_TRUE(WaitFor([&] { return h.watcher->StaleCaches(2500ms).empty(); }, 60s));
}

TEST(ResolveNodeNameTest, OverrideThenEnvThenHostname) {
  EXPECT_EQ(ResolveNodeName("explicit"), "explicit");
  const char* old = std::getenv("NODE_NAME");
  std::string saved = old ? old : "";
  setenv("NODE_NAME", "from-env", 1);
  EXPECT_EQ(ResolveNodeName(""), "from-env");
  unsetenv("NODE_NAME");
  char host[256] = {};
  gethostname(host, sizeof host - 1);
  EXPECT_EQ(ResolveNodeName(""), host);
  if (old) setenv("NODE_NAME", saved.c_str(), 1);
}

}  // namespace
}  // namespace kr::k8s
