// Informers against fake-apiserver --gzip: the lists arrive gzip-compressed (the server counts
// them) and the caches still equal the server's state.
#include <gtest/gtest.h>

#include <algorithm>
#include <nlohmann/json.hpp>
#include <set>

#include "fake_apiserver_fixture.h"
#include "kube_router/k8s/watcher.h"

namespace kr::k8s::gzip_informer_test {
namespace {

using kr::k8s::testing::FakeApiServer;
using kr::k8s::testing::kAllKinds;
using kr::k8s::testing::WatcherHarness;
using kr::testing::WaitFor;
using nlohmann::json;
using namespace std::chrono_literals;

json Pod(int i) {
  return {{"apiVersion", "v1"},
          {"kind", "Pod"},
          {"metadata", {{"name", "p" + std::to_string(i)}, {"namespace", "demo"}}},
          {"spec", {{"nodeName", "node1"}}},
          {"status",
           {{"podIP", "10.244." + std::to_string(i / 200) + "." + std::to_string(i % 200 + 1)}}}};
}

uint64_t GzipResponses(FakeApiServer& server) {
  std::string body;
  if (server.Call("GET", "/_fake/requests", "", "", &body) != 200) return 0;
  auto j = json::parse(body, nullptr, false);
  return j.is_object() ? j.value("gzipResponses", uint64_t{0}) : 0;
}

// Keys "ns/name" (or "name") of every item of a list, read through the control client.
std::set<std::string> ServerKeys(FakeApiServer& server, const std::string& path) {
  std::string body;
  EXPECT_EQ(server.Call("GET", path, "", "", &body), 200);
  std::set<std::string> keys;
  auto j = json::parse(body, nullptr, false);
  if (!j.is_object()) return keys;
  for (const auto& item : j["items"]) {
    const auto& m = item["metadata"];
    keys.insert(m.contains("namespace")
                    ? m["namespace"].get<std::string>() + "/" + m["name"].get<std::string>()
                    : m["name"].get<std::string>());
  }
  return keys;
}

template <typename S>
std::set<std::string> CacheKeys(const S& store) {
  auto keys = store.Keys();
  return {keys.begin(), keys.end()};
}

struct GzipHarness : WatcherHarness {
  explicit GzipHarness(bool gzip) {
    std::vector<std::string> args;
    if (gzip) args.push_back("--gzip");
    StartServer(args);
    EXPECT_EQ(server->Create(
                  "/api/v1/namespaces",
                  {{"apiVersion", "v1"}, {"kind", "Namespace"}, {"metadata", {{"name", "demo"}}}}),
              201);
    EXPECT_EQ(
        server->Create("/api/v1/nodes",
                       {{"apiVersion", "v1"}, {"kind", "Node"}, {"metadata", {{"name", "node1"}}}}),
        201);
    EXPECT_EQ(server->Create("/api/v1/namespaces/demo/services",
                             {{"apiVersion", "v1"},
                              {"kind", "Service"},
                              {"metadata", {{"name", "web"}, {"namespace", "demo"}}},
                              {"spec", {{"clusterIP", "10.96.0.10"}}}}),
              201);
    // Enough pods for several list pages of a compressible size.
    for (int i = 0; i < 300; ++i)
      EXPECT_EQ(server->Create("/api/v1/namespaces/demo/pods", Pod(i)), 201);
  }
  // Every kind, in pages of 100 (the 300 pods take several).
  Status StartWatcher() {
    ConnectionOptions opts;
    opts.list_page_size = 100;
    return WatcherHarness::StartWatcher(opts);
  }
  void ExpectCacheEqualsServer() {
    EXPECT_EQ(CacheKeys(cluster->pods), ServerKeys(*server, "/api/v1/pods"));
    EXPECT_EQ(CacheKeys(cluster->services), ServerKeys(*server, "/api/v1/services"));
    EXPECT_EQ(CacheKeys(cluster->nodes), ServerKeys(*server, "/api/v1/nodes"));
    EXPECT_EQ(CacheKeys(cluster->namespaces), ServerKeys(*server, "/api/v1/namespaces"));
    EXPECT_EQ(cluster->pods.Keys().size(), 300u);
    for (int i : {0, 150, 299}) {
      auto p = cluster->pods.Get("demo/p" + std::to_string(i));
      ASSERT_TRUE(p) << i;
      EXPECT_EQ(p->pod_ip(), Pod(i)["status"]["podIP"].get<std::string>());
    }
  }
};

TEST(GzipInformerTest, SyncsFromGzippedListsAndFollowsChanges) {
  GzipHarness h(/*gzip=*/true);
  uint64_t before = GzipResponses(*h.server);
  ASSERT_TRUE(h.StartWatcher().ok()) << h.server->Log();
  // Every kind's list (pods in 3 pages) came compressed.
  uint64_t lists = GzipResponses(*h.server) - before;
  EXPECT_GE(lists, kAllKinds.size() + 2) << "the lists were not gzip-encoded";
  h.ExpectCacheEqualsServer();
  // Changes keep arriving over the watches; a relist after 410 is gzipped again.
  ASSERT_EQ(h.server->MergePatch("/api/v1/namespaces/demo/pods/p7/status",
                                 {{"status", {{"podIP", "10.244.9.9"}}}}),
            200);
  EXPECT_TRUE(WaitFor(
      [&] {
        auto p = h.cluster->pods.Get("demo/p7");
        return p && p->pod_ip() == "10.244.9.9";
      },
      30s));
  ASSERT_EQ(h.server->Delete("/api/v1/namespaces/demo/pods/p8"), 200);
  uint64_t before_relist = GzipResponses(*h.server);
  ASSERT_EQ(h.server->Fault("compact"), 200);
  ASSERT_EQ(h.server->Fault("expire-watches"), 200);
  EXPECT_TRUE(WaitFor([&] { return GzipResponses(*h.server) >= before_relist + 4; }, 30s));
  EXPECT_TRUE(WaitFor([&] { return h.cluster->pods.Keys().size() == 299u; }, 30s));
  EXPECT_EQ(CacheKeys(h.cluster->pods), ServerKeys(*h.server, "/api/v1/pods"));
}

TEST(GzipInformerTest, WithoutGzipTheServerSendsIdentityBodies) {
  // The counter is not trivially positive: with --gzip off nothing is compressed.
  GzipHarness h(/*gzip=*/false);
  ASSERT_TRUE(h.StartWatcher().ok()) << h.server->Log();
  h.ExpectCacheEqualsServer();
  EXPECT_EQ(GzipResponses(*h.server), 0u);
  // Switched on at run time, the next list is compressed.
  ASSERT_EQ(h.server->Call("POST", "/_fake/settings", R"({"gzip":true})"), 200);
  std::string body;
  ASSERT_EQ(h.server->Call("GET", "/api/v1/pods?limit=500", "", "", &body), 200);
  EXPECT_EQ(json::parse(body)["items"].size(), 300u);
  EXPECT_EQ(GzipResponses(*h.server), 1u);
}

}  // namespace
}  // namespace kr::k8s::gzip_informer_test
