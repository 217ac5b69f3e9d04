// scripts/sandbox.sh up's flags: node count, which controllers run, extra kube-router flags.
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <string>

#include "kube_router/base/exec.h"
#include "lib/binaries.h"
#include "lib/files.h"
#include "lib/free_port.h"
#include "lib/netns.h"

namespace kr {
namespace {

using namespace std::chrono_literals;
using testing::TempDir;

class SandboxFlagsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(testing::IsRoot()) << "the netns tier runs as root";
    prefix_ = "krf" + std::to_string(getpid() % 100000);
  }
  void TearDown() override {
    auto down = Sh("scripts/sandbox.sh down --reap");
    EXPECT_EQ(down.exit_code, 0) << down.err;
  }
  ExecResult Sh(const std::string& command, std::chrono::milliseconds timeout = 60s) {
    ExecOptions options;
    options.env = {{"KRSB_PREFIX", prefix_},
                   {"KRSB_DIR", dir_.path() + "/state"},
                   {"KR_BUILD_DIR", KR_BINARY_DIR},
                   {"KR_FAKE_APISERVER", testing::kFakeApiServerBinary},
                   {"KUBECONFIG", dir_.path() + "/state/kubeconfig"}};
    options.timeout = timeout;
    auto r = Exec({"bash", "-c", "cd " KR_SOURCE_DIR " && " + command}, "", options);
    return r.ok() ? *r : ExecResult{-1, "", r.error()};
  }
  std::string AgentCommandLine(int node) {
    std::ifstream pid_file(dir_.path() + "/state/pids/kube-router-n" + std::to_string(node));
    std::string pid;
    pid_file >> pid;
    std::string text = testing::ReadFile("/proc/" + pid + "/cmdline");
    std::replace(text.begin(), text.end(), '\0', ' ');
    return text;
  }

  TempDir dir_;
  std::string prefix_;
};

TEST_F(SandboxFlagsTest, NodesControllersAndExtraFlags) {
  auto up = Sh("scripts/sandbox.sh up --nodes 2 --controllers firewall --api-port " +
                   std::to_string(testing::FreeLoopbackPort()) +
                   " "
                   "--kube-router-flags '--metrics-port=20245 --iptables-sync-period=1m'",
               180s);
  ASSERT_EQ(up.exit_code, 0) << up.out << up.err;
  EXPECT_NE(up.out.find("router=false firewall=true service-proxy=false"), std::string::npos)
      << up.out;
  auto nodes = Sh("kubectl get nodes -o name");
  EXPECT_EQ(nodes.out, "node/n1\nnode/n2\n") << nodes.err;
  EXPECT_FALSE(std::filesystem::exists("/run/netns/" + prefix_ + "-n3"));
  for (int node : {1, 2}) {
    std::string cmdline = AgentCommandLine(node);
    EXPECT_NE(cmdline.find("--run-router=false --run-firewall=true --run-service-proxy=false"),
              std::string::npos)
        << cmdline;
    EXPECT_NE(cmdline.find("--iptables-sync-period=1m"), std::string::npos) << cmdline;
    // The extra flag took effect: metrics on the port it names.
    auto metrics = Exec({"ip", "netns", "exec", prefix_ + "-n" + std::to_string(node), "curl",
                         "-sf", "-m", "5", "http://127.0.0.1:20245/metrics"});
    ASSERT_TRUE(metrics.ok());
    EXPECT_EQ(metrics->exit_code, 0);
    EXPECT_NE(metrics->out.find("kube_router_"), std::string::npos);
  }
}

}  // namespace
}  // namespace kr
