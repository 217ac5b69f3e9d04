// Service status updates with conflict retry, and Lease leader election, against fake-apiserver.
#include "kube_router/k8s/writes.h"

#include <gtest/gtest.h>

#include "fake_apiserver_fixture.h"
#include "kube_router/k8s/client_config.h"

namespace kr::k8s::writes_test {
namespace {

using kr::k8s::testing::FakeApiServer;
using kr::testing::TempDir;
using kr::testing::WaitFor;
using nlohmann::json;
using namespace std::chrono_literals;

std::shared_ptr<ApiClient> Connect(const FakeApiServer& server) {
  ConnectionOptions opts;
  opts.kubeconfig = server.kubeconfig();
  auto cfg = LoadClientConfig(opts);
  EXPECT_TRUE(cfg.ok()) << cfg.error();
  auto client = ApiClient::Create(*cfg);
  EXPECT_TRUE(client.ok()) << client.error();
  return *client;
}

TEST(WritesTest, ServiceStatusUpdateRetriesOnConflict) {
  TempDir dir;
  FakeApiServer server(dir.path(), {});
  ASSERT_EQ(server.Create("/api/v1/namespaces/demo/services",
                          {{"metadata", {{"name", "lb"}}}, {"spec", {{"type", "LoadBalancer"}}}}),
            201);
  auto client = Connect(server);
  int calls = 0;
  Status s = UpdateServiceStatus(*client, "demo", "lb", [&](json& svc) {
    if (++calls == 1) {
      // Someone else changes the Service between our GET and PUT: our PUT must conflict.
      EXPECT_EQ(server.MergePatch("/api/v1/namespaces/demo/services/lb",
                                  {{"metadata", {{"labels", {{"x", "y"}}}}}}),
                200);
    }
    svc["status"]["loadBalancer"]["ingress"] = {{{"ip", "203.0.113.10"}}};
    return true;
  });
  ASSERT_TRUE(s.ok()) << s.message();
  EXPECT_EQ(calls, 2);
  std::string body;
  ASSERT_EQ(server.Call("GET", "/api/v1/namespaces/demo/services/lb", "", "", &body), 200);
  auto svc = json::parse(body);
  EXPECT_EQ(svc["status"]["loadBalancer"]["ingress"][0]["ip"], "203.0.113.10");
  EXPECT_EQ(svc["metadata"]["labels"]["x"], "y");  // the other writer's change survived

  // Nothing to do: no PUT.
  s = UpdateServiceStatus(*client, "demo", "lb", [](json&) { return false; });
  EXPECT_TRUE(s.ok());
  EXPECT_FALSE(UpdateServiceStatus(*client, "demo", "missing", [](json&) { return true; }).ok());
}

TEST(WritesTest, LeaderElectionOneLeaderAndHandOverOnRelease) {
  TempDir dir;
  FakeApiServer server(dir.path(), {});
  auto client = Connect(server);
  LeaderElectionConfig base;
  base.lease_namespace = "kube-system";
  base.lease_name = "kube-router-lballoc";
  base.lease_duration = 5s;  // generous: a loaded CI machine may delay renewals
  base.renew_deadline = 4s;
  base.retry_period = 100ms;
  LeaderElectionConfig ca = base, cb = base;
  ca.identity = "node-a";
  cb.identity = "node-b";
  std::atomic<int> a_started{0}, a_stopped{0}, b_started{0};
  auto a = std::make_unique<LeaderElector>(
      client, ca, [&] { ++a_started; }, [&] { ++a_stopped; });
  LeaderElector b(
      client, cb, [&] { ++b_started; }, nullptr);
  a->Start();
  ASSERT_TRUE(WaitFor([&] { return a->IsLeader(); }, 10s));
  b.Start();
  // While A renews every 100 ms, B never sees the lease expire (5 s).
  EXPECT_FALSE(WaitFor([&] { return b.IsLeader(); }, 2s));
  std::string body;
  ASSERT_EQ(server.Call("GET",
                        "/apis/coordination.k8s.io/v1/namespaces/kube-system/leases/"
                        "kube-router-lballoc",
                        "", "", &body),
            200);
  EXPECT_EQ(json::parse(body)["spec"]["holderIdentity"], "node-a");

  a->Stop();  // releases the lease
  EXPECT_EQ(a_started, 1);
  EXPECT_EQ(a_stopped, 1);
  EXPECT_TRUE(WaitFor([&] { return b.IsLeader(); }, 10s));
  // B's started callback runs on its own thread after it takes the lease: wait for it too.
  EXPECT_TRUE(WaitFor([&] { return b_started == 1; }, 10s));
  EXPECT_EQ(b_started, 1);
  ASSERT_EQ(server.Call("GET",
                        "/apis/coordination.k8s.io/v1/namespaces/kube-system/leases/"
                        "kube-router-lballoc",
                        "", "", &body),
            200);
  auto lease = json::parse(body);
  EXPECT_EQ(lease["spec"]["holderIdentity"], "node-b");
  EXPECT_EQ(lease["spec"]["leaseTransitions"], 1);
  b.Stop();
}

}  // namespace
}  // namespace kr::k8s::writes_test
