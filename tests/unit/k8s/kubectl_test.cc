// fake-apiserver is faithful enough for the real kubectl: create, get, get -w (sees the
// MODIFIED event of a later label), annotate, replace, delete.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "fake_apiserver_fixture.h"
#include "kube_router/base/exec.h"

namespace kr::k8s::kubectl_test {
namespace {

using kr::k8s::testing::FakeApiServer;
using kr::k8s::testing::WriteFile;
using kr::testing::ReadFile;
using kr::testing::TempDir;
using kr::testing::WaitFor;
using namespace std::chrono_literals;

constexpr char kPod[] = R"(apiVersion: v1
kind: Pod
metadata:
  name: web
  namespace: demo
  labels: {app: web}
spec:
  containers: [{name: c, image: nginx}]
)";

class KubectlTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto which = Exec({"sh", "-c", "command -v kubectl"});
    ASSERT_TRUE(which.ok() && which->exit_code == 0)
        << "kubectl is required (scripts/install-deps.sh installs kubernetes-client)";
    WriteFile(dir_.path() + "/ns.yaml",
              "apiVersion: v1\nkind: Namespace\nmetadata: {name: demo}\n");
    server_ = std::make_unique<FakeApiServer>(
        dir_.path(), std::vector<std::string>{"--manifests", dir_.path() + "/ns.yaml"});
  }
  std::vector<std::string> Kubectl(std::vector<std::string> args) {
    std::vector<std::string> argv = {"kubectl", "--kubeconfig", server_->kubeconfig(),
                                     "--cache-dir", dir_.path() + "/kube-cache"};
    argv.insert(argv.end(), args.begin(), args.end());
    return argv;
  }
  // Runs kubectl; returns stdout, failing the test on a non-zero exit.
  std::string Run(std::vector<std::string> args) {
    auto r = Exec(Kubectl(args));
    EXPECT_TRUE(r.ok()) << r.error();
    if (!r.ok()) return "";
    EXPECT_EQ(r->exit_code, 0) << r->err;
    return r->out;
  }

  TempDir dir_;
  std::unique_ptr<FakeApiServer> server_;
};

TEST_F(KubectlTest, CreateGetWatchLabelAnnotateReplaceDelete) {
  std::string pod_file = dir_.path() + "/pod.yaml";
  WriteFile(pod_file, kPod);
  // No OpenAPI document is served, so client-side validation is off.
  EXPECT_NE(Run({"create", "--validate=false", "-f", pod_file}).find("pod/web created"),
            std::string::npos);
  auto pod = nlohmann::json::parse(Run({"get", "pod", "-n", "demo", "web", "-o", "json"}));
  EXPECT_EQ(pod["metadata"]["labels"]["app"], "web");
  EXPECT_FALSE(pod["metadata"]["uid"].get<std::string>().empty());
  EXPECT_NE(Run({"get", "pods", "-A"}).find("web"), std::string::npos);

  // A watch started before the label sees it as a MODIFIED event.
  std::string watch_log = dir_.path() + "/watch.log";
  kr::testing::Process watch(
      Kubectl({"get", "pods", "-n", "demo", "-w", "--output-watch-events", "-o",
               "custom-columns=EVENT:.type,TIER:.object.metadata.labels.tier"}),
      watch_log);
  ASSERT_TRUE(WaitFor([&] { return ReadFile(watch_log).find("ADDED") != std::string::npos; }, 30s))
      << ReadFile(watch_log);
  Run({"label", "pod", "-n", "demo", "web", "tier=front"});
  EXPECT_TRUE(WaitFor(
      [&] {
        return ReadFile(watch_log).find("MODIFIED") != std::string::npos &&
               ReadFile(watch_log).find("front") != std::string::npos;
      },
      30s))
      << ReadFile(watch_log);

  Run({"annotate", "pod", "-n", "demo", "web", "note=hello"});
  EXPECT_EQ(Run({"get", "pod", "-n", "demo", "web", "-o", "jsonpath={.metadata.annotations.note}"}),
            "hello");

  pod = nlohmann::json::parse(Run({"get", "pod", "-n", "demo", "web", "-o", "json"}));
  pod["metadata"]["labels"]["app"] = "web2";
  WriteFile(pod_file, pod.dump());
  Run({"replace", "--validate=false", "-f", pod_file});
  EXPECT_EQ(Run({"get", "pod", "-n", "demo", "web", "-o", "jsonpath={.metadata.labels.app}"}),
            "web2");
  // A replace from the stale resourceVersion conflicts.
  auto stale = Exec(Kubectl({"replace", "--validate=false", "-f", pod_file}));
  ASSERT_TRUE(stale.ok());
  EXPECT_NE(stale->exit_code, 0);
  EXPECT_NE(stale->err.find("modified"), std::string::npos) << stale->err;

  Run({"delete", "pod", "-n", "demo", "web", "--wait=false"});
  auto gone = Exec(Kubectl({"get", "pod", "-n", "demo", "web"}));
  ASSERT_TRUE(gone.ok());
  EXPECT_NE(gone->exit_code, 0);
  EXPECT_NE(gone->err.find("not found"), std::string::npos) << gone->err;
  EXPECT_TRUE(
      WaitFor([&] { return ReadFile(watch_log).find("DELETED") != std::string::npos; }, 30s))
      << ReadFile(watch_log);
}

}  // namespace
}  // namespace kr::k8s::kubectl_test
