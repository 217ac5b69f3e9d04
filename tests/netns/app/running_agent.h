// The app netns tests' shared parts: a namespace with fake-apiserver and the real agent in it
// (RunningAgent), HTTP over curl inside it and the metrics text helpers. Shared by
// app_netns_test.cc, app_cli_netns_test.cc and app_limits_netns_test.cc.
#pragma once

#include <arpa/inet.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <regex>
#include <sstream>

#include "lib/binaries.h"
#include "lib/files.h"
#include "lib/help_flags.h"
#include "lib/kubeconfig.h"
#include "lib/netns.h"
#include "lib/podnet.h"

namespace kr::app_netns {

using namespace std::chrono_literals;
using testing::kAgentBinary;
using testing::kFakeApiServerBinary;
using testing::Netns;
using testing::Process;
using testing::ReadFile;
using testing::TempDir;
using testing::WaitFor;

inline constexpr auto kDeadline = 60s;

// ---- the running agent ----

struct HttpAnswer {
  int status = 0;  // 0 = no answer
  std::string body;
};

inline HttpAnswer Get(const Netns& ns, const std::string& url) {
  auto r = ns.Run({"curl", "-s", "--max-time", "5", "-w", "\n%{http_code}", url});
  if (!r.ok() || r->exit_code != 0) return {};
  size_t nl = r->out.rfind('\n');
  return {std::atoi(r->out.c_str() + nl + 1), r->out.substr(0, nl)};
}

// Value of the sample line `series` (name{labels}) in a metrics text; -1 if absent.
inline double Sample(const std::string& metrics, const std::string& series) {
  std::istringstream in(metrics);
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind(series + " ", 0) == 0) return std::stod(line.substr(series.size() + 1));
  }
  return -1;
}

inline constexpr char kNodeManifest[] = R"(apiVersion: v1
kind: Node
metadata:
  name: kr-test-node
spec:
  podCIDR: 10.244.1.0/24
  podCIDRs: [10.244.1.0/24]
status:
  addresses:
  - type: InternalIP
    address: 10.0.0.1
---
apiVersion: v1
kind: Namespace
metadata:
  name: demo
---
apiVersion: v1
kind: Pod
metadata:
  name: web
  namespace: demo
  labels: {app: web}
spec:
  nodeName: kr-test-node
  containers: [{name: web, image: x}]
status:
  phase: Running
  podIP: 10.244.1.5
  podIPs: [{ip: 10.244.1.5}]
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata:
  name: deny-all
  namespace: demo
spec:
  podSelector: {}
)";

// A namespace with fake-apiserver and the agent (network policy only) inside it.
class RunningAgent : public ::testing::Test {
 protected:
  void SetUp() override {
    ns_ = std::make_unique<Netns>("kr-app-run");
    std::ofstream(tmp_.path() + "/cluster.yaml") << kNodeManifest;
    kubeconfig_ = tmp_.path() + "/kubeconfig";
    api_ = std::make_unique<Process>(
        ns_->Wrap({kFakeApiServerBinary, "--listen", "127.0.0.1:0", "--manifests",
                   tmp_.path() + "/cluster.yaml", "--kubeconfig-out", kubeconfig_}),
        tmp_.path() + "/apiserver.log");
    ASSERT_TRUE(WaitFor([&] { return std::filesystem::exists(kubeconfig_); }, kDeadline))
        << api_->Log();
    auto server = testing::ParseKubeconfigServer(ReadFile(kubeconfig_));
    ASSERT_TRUE(server.has_value()) << ReadFile(kubeconfig_);
    api_url_ = server->url;
  }

  void StartAgent(const std::vector<std::string>& extra) {
    std::vector<std::string> argv{
        kAgentBinary,          "--kubeconfig=" + kubeconfig_, "--hostname-override=kr-test-node",
        "--health-port=20244", "--metrics-port=20245",        "--cache-sync-timeout=30s"};
    argv.insert(argv.end(), extra.begin(), extra.end());
    agent_ = std::make_unique<Process>(ns_->Wrap(argv), tmp_.path() + "/agent.log");
  }

  // Polls until /healthz answers `status`.
  bool HealthBecomes(int status) {
    return WaitFor([&] { return Get(*ns_, "http://127.0.0.1:20244/healthz").status == status; },
                   kDeadline);
  }

  std::string Metrics() { return Get(*ns_, "http://127.0.0.1:20245/metrics").body; }

  void TearDown() override {
    if (agent_ && agent_->Running()) {
      agent_->Signal(SIGTERM);
      auto code = agent_->Wait(15s);
      EXPECT_EQ(code, std::optional<int>(0)) << "agent did not stop cleanly on SIGTERM:\n"
                                             << agent_->Log();
    }
    agent_.reset();
    api_.reset();
    ns_.reset();
  }

  TempDir tmp_;
  std::unique_ptr<Netns> ns_;
  std::string kubeconfig_;
  std::string api_url_;  // fake-apiserver's, from the kubeconfig it wrote
  std::unique_ptr<Process> api_;
  std::unique_ptr<Process> agent_;
};

inline const std::string kPolicySyncs =
    "kube_router_controller_syncs_total{controller=\"NetworkPolicy\",result=\"success\"}";

}  // namespace kr::app_netns
