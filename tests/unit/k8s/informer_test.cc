// Informers against a real fake-apiserver process on loopback: initial sync, live changes,
// pagination, and convergence under every injected fault.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "fake_apiserver_fixture.h"
#include "kube_router/k8s/watcher.h"
#include "kube_router/metrics/registry.h"

namespace kr::k8s {
namespace {

using kr::k8s::testing::FakeApiServer;
using kr::k8s::testing::RecordingSink;
using kr::k8s::testing::WriteFile;
using kr::testing::TempDir;
using kr::testing::WaitFor;
using nlohmann::json;
using namespace std::chrono_literals;

const std::vector<ResourceKind> kAllKinds = {
    ResourceKind::kService, ResourceKind::kEndpointSlice, ResourceKind::kPod,
    ResourceKind::kNode,    ResourceKind::kNamespace,     ResourceKind::kNetworkPolicy};

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

struct Harness {
  TempDir dir;
  std::unique_ptr<FakeApiServer> server;
  std::unique_ptr<Cluster> cluster = MakeCluster();
  RecordingSink sink;
  std::unique_ptr<Watcher> watcher;

  explicit Harness(std::vector<std::string> server_args = {}, bool manifests = true) {
    if (manifests) {
      WriteFile(dir.path() + "/cluster.yaml", kManifest);
      server_args.insert(server_args.end(), {"--manifests", dir.path() + "/cluster.yaml"});
    }
    server = std::make_unique<FakeApiServer>(dir.path(), server_args);
  }
  ~Harness() {
    if (watcher) watcher->Stop();
  }
  Status StartWatcher(ConnectionOptions opts = {}) {
    if (opts.kubeconfig.empty()) opts.kubeconfig = server->kubeconfig();
    auto w = Watcher::Start(opts, kAllKinds, cluster.get(), &sink);
    if (!w.ok()) return w.status();
    watcher = std::move(*w);
    return watcher->WaitForSync(30s);
  }
  bool PodIp(const std::string& key, const std::string& ip) {
    return WaitFor(
        [&] {
          auto p = cluster->pods.Get(key);
          return ip.empty() ? p == nullptr : (p && p->pod_ip == ip);
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
  EXPECT_EQ(c.pods.Get("demo/web-1")->pod_ip, "10.244.1.5");
  EXPECT_EQ(c.services.Get("demo/web")->cluster_ip, "10.96.0.10");
  EXPECT_EQ(c.endpoint_slices.ByIndex(kIndexServiceName, "demo/web").size(), 1u);
  EXPECT_TRUE(c.network_policies.Get("demo/deny"));
  EXPECT_EQ(h.sink.Count(EventType::kAdded, "demo/web-1"), 1u);

  // Update, add and delete while watching.
  ASSERT_EQ(h.server->MergePatch("/api/v1/namespaces/demo/pods/web-1/status",
                                 {{"status", {{"podIP", "10.244.1.6"}}}}),
            200);
  EXPECT_TRUE(h.PodIp("demo/web-1", "10.244.1.6"));
  ASSERT_EQ(h.server->Create("/api/v1/namespaces/demo/pods", PodJson("web-2", "10.244.1.7")), 201);
  EXPECT_TRUE(h.PodIp("demo/web-2", "10.244.1.7"));
  ASSERT_EQ(h.server->Delete("/api/v1/namespaces/demo/services/web"), 200);
  EXPECT_TRUE(WaitFor([&] { return c.services.Get("demo/web") == nullptr; }, 30s));

  EXPECT_TRUE(WaitFor([&] { return h.sink.Count(EventType::kDeleted, "demo/web") == 1; }, 10s));
  EXPECT_EQ(h.sink.Count(EventType::kUpdated, "demo/web-1"), 1u);
  for (const auto& e : h.sink.Events()) {
    if (e.type == EventType::kDeleted && e.key == "demo/web") {
      auto old = std::get<std::shared_ptr<const Service>>(e.old_object);
      EXPECT_EQ(old->cluster_ip, "10.96.0.10");  // the last known state comes along
    }
    if (e.type == EventType::kUpdated && e.key == "demo/web-1") {
      EXPECT_EQ(std::get<std::shared_ptr<const Pod>>(e.old_object)->pod_ip, "10.244.1.5");
      EXPECT_EQ(std::get<std::shared_ptr<const Pod>>(e.new_object)->pod_ip, "10.244.1.6");
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

}  // namespace
}  // namespace kr::k8s
