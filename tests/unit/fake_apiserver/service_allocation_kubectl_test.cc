// The real kubectl against fake-apiserver with Service allocation on: `kubectl create service`
// and `kubectl expose` objects (no clusterIP, no nodePort) get them, a taken one is refused with
// kubectl printing kube-apiserver's field error, delete frees.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "kube_router/base/exec.h"
#include "unit/k8s/fake_apiserver_fixture.h"

namespace kr::k8s {
namespace {

using kr::k8s::testing::FakeApiServer;
using kr::k8s::testing::WriteFile;
using kr::testing::TempDir;

class AllocationKubectlTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto which = Exec({"sh", "-c", "command -v kubectl"});
    ASSERT_TRUE(which.ok() && which->exit_code == 0)
        << "kubectl is required (scripts/install-deps.sh installs kubernetes-client)";
    WriteFile(dir_.path() + "/seed.yaml", R"(apiVersion: v1
kind: Namespace
metadata: {name: demo}
---
apiVersion: v1
kind: Pod
metadata: {name: web-0, namespace: demo, labels: {app: web}}
spec: {containers: [{name: c, image: x, ports: [{containerPort: 8080, name: http}]}]}
)");
    server_ = std::make_unique<FakeApiServer>(
        dir_.path(), std::vector<std::string>{"--manifests", dir_.path() + "/seed.yaml",
                                              "--service-cluster-ip-range", "10.96.0.0/24",
                                              "--service-node-port-range", "30000-30099"});
  }
  ExecResult Kubectl(std::vector<std::string> args) {
    std::vector<std::string> argv = {"kubectl",
                                     "--kubeconfig",
                                     server_->kubeconfig(),
                                     "--cache-dir",
                                     dir_.path() + "/kube-cache",
                                     "-n",
                                     "demo"};
    argv.insert(argv.end(), args.begin(), args.end());
    auto r = Exec(argv);
    EXPECT_TRUE(r.ok()) << r.error();
    return r.ok() ? *r : ExecResult{};
  }
  nlohmann::json GetService(const std::string& name) {
    auto r = Kubectl({"get", "service", name, "-o", "json"});
    EXPECT_EQ(r.exit_code, 0) << r.err;
    return nlohmann::json::parse(r.out, nullptr, false);
  }

  TempDir dir_;
  std::unique_ptr<FakeApiServer> server_;
};

TEST_F(AllocationKubectlTest, CreateServiceAndExposeGetAddressesAndPorts) {
  auto created = Kubectl({"create", "service", "clusterip", "web", "--tcp=80:8080"});
  ASSERT_EQ(created.exit_code, 0) << created.err << server_->Log();
  EXPECT_EQ(GetService("web")["spec"]["clusterIP"], "10.96.0.1");

  auto np = Kubectl({"create", "service", "nodeport", "np", "--tcp=80:8080"});
  ASSERT_EQ(np.exit_code, 0) << np.err;
  auto np_svc = GetService("np");
  EXPECT_EQ(np_svc["spec"]["clusterIP"], "10.96.0.2");
  EXPECT_EQ(np_svc["spec"]["ports"][0]["nodePort"], 30000);

  auto exposed = Kubectl({"expose", "pod", "web-0", "--name", "web-lb", "--port", "80",
                          "--target-port", "http", "--type", "LoadBalancer"});
  ASSERT_EQ(exposed.exit_code, 0) << exposed.err;
  auto lb = GetService("web-lb");
  EXPECT_EQ(lb["spec"]["selector"]["app"], "web");
  EXPECT_EQ(lb["spec"]["clusterIP"], "10.96.0.3");
  EXPECT_EQ(lb["spec"]["ports"][0]["nodePort"], 30001);

  // No server-side tables are served, so columns are asked for explicitly.
  auto listed =
      Kubectl({"get", "services", "-o",
               "custom-columns=N:.metadata.name,IP:.spec.clusterIP,NP:.spec.ports[*].nodePort"});
  EXPECT_NE(listed.out.find("np       10.96.0.2   30000"), std::string::npos) << listed.out;
}

TEST_F(AllocationKubectlTest, TakenAddressAndPortAreRefusedAndDeleteFrees) {
  ASSERT_EQ(Kubectl({"create", "service", "clusterip", "a", "--tcp=80", "--clusterip=10.96.0.10"})
                .exit_code,
            0);
  auto taken =
      Kubectl({"create", "service", "clusterip", "b", "--tcp=80", "--clusterip=10.96.0.10"});
  EXPECT_NE(taken.exit_code, 0);
  EXPECT_NE(taken.err.find("spec.clusterIPs: Invalid value"), std::string::npos) << taken.err;
  EXPECT_NE(taken.err.find("provided IP is already allocated"), std::string::npos) << taken.err;

  ASSERT_EQ(
      Kubectl({"create", "service", "nodeport", "n1", "--tcp=80", "--node-port=30050"}).exit_code,
      0);
  auto port_taken =
      Kubectl({"create", "service", "nodeport", "n2", "--tcp=80", "--node-port=30050"});
  EXPECT_NE(port_taken.exit_code, 0);
  EXPECT_NE(port_taken.err.find("spec.ports[0].nodePort: Invalid value: 30050: provided port is "
                                "already allocated"),
            std::string::npos)
      << port_taken.err;

  ASSERT_EQ(Kubectl({"delete", "service", "a", "n1"}).exit_code, 0);
  EXPECT_EQ(Kubectl({"create", "service", "clusterip", "b", "--tcp=80", "--clusterip=10.96.0.10"})
                .exit_code,
            0);
  EXPECT_EQ(
      Kubectl({"create", "service", "nodeport", "n2", "--tcp=80", "--node-port=30050"}).exit_code,
      0);
}

}  // namespace
}  // namespace kr::k8s
