// Runs the real build/kube-router binary: its command line (help, versions, exit status 2 with
// one line naming the flag), --cleanup-config in a clean namespace, and start-up with a
// kubeconfig whose exec credential plugin hangs.
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
#include "lib/help_flags.h"
#include "lib/netns.h"
#include "lib/podnet.h"
#include "netns/app/running_agent.h"

namespace kr::app_netns {
namespace {

size_t Lines(const std::string& text) { return std::count(text.begin(), text.end(), '\n'); }

ExecResult RunAgent(const std::vector<std::string>& args) {
  std::vector<std::string> argv{kAgentBinary};
  argv.insert(argv.end(), args.begin(), args.end());
  auto r = Exec(argv);
  EXPECT_TRUE(r.ok()) << r.error();
  return r.ok() ? *r : ExecResult{};
}

TEST(AgentCommandLine, HelpListsEveryFlagWithItsDefault) {
  ExecResult r = RunAgent({"--help"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  testing::ExpectHelpListsEveryFlagWithItsDefault(r.out);
  EXPECT_EQ(RunAgent({"-h"}).out, r.out);
}

TEST(AgentCommandLine, BadCommandLinesExit2WithOneLineNamingTheFlag) {
  struct Case {
    std::vector<std::string> args;
    std::string names;
  };
  const Case cases[] = {
      {{"--run-router=maybe"}, "--run-router"},
      {{"--iptables-sync-period=10"}, "--iptables-sync-period"},
      {{"--routes-sync-period", "0s"}, "--routes-sync-period"},
      {{"--health-port=65536"}, "--health-port"},
      {{"--peer-router-ips=10.0.0.1,nonsense"}, "--peer-router-ips"},
      {{"--cluster-asn=-5"}, "--cluster-asn"},
      {{"--unknown-flag"}, "--unknown-flag"},
      {{"--kubeconfig"}, "--kubeconfig"},
      {{"--run-router", "false"}, "\"false\""},  // Go: a bool flag takes no separate value
      {{"positional"}, "\"positional\""},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.args.front());
    ExecResult r = RunAgent(c.args);
    EXPECT_EQ(r.exit_code, 2) << r.err;
    EXPECT_EQ(Lines(r.err), 1u) << r.err;
    EXPECT_NE(r.err.find(c.names), std::string::npos) << r.err;
    EXPECT_TRUE(r.out.empty()) << r.out;
  }
}

TEST(AgentCommandLine, NoControllerEnabledIsAnError) {
  ExecResult r =
      RunAgent({"--run-router=false", "--run-firewall=false", "--run-service-proxy=false"});
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.exit_code, 2);  // not a syntax error: the values are fine, the combination is not
  EXPECT_NE(r.err.find("no controller enabled"), std::string::npos) << r.err;
}

TEST(AgentCommandLine, Version) {
  for (const char* flag : {"--version", "-V"}) {
    ExecResult r = RunAgent({flag});
    EXPECT_EQ(r.exit_code, 0) << r.err;
    EXPECT_TRUE(std::regex_search(r.out, std::regex("^kube-router v[0-9]+\\.[0-9]+\\.[0-9]+")))
        << r.out;
  }
}

// A namespace with state that does not belong to the agent, which cleanup must not touch.
void AddForeignState(const Netns& ns) {
  ASSERT_TRUE(
      ns.Sh("iptables -w -A INPUT -s 192.0.2.1 -j ACCEPT -m comment --comment foreign").ok());
  ASSERT_TRUE(ns.Sh("ipset create foreign-set hash:ip && ipset add foreign-set 192.0.2.2").ok());
  ASSERT_TRUE(ns.Sh("ip link add foreign0 type veth peer name foreign1").ok());
}

void ExpectForeignStateKept(const Netns& ns) {
  auto rules = ns.Sh("iptables -w -S INPUT");
  ASSERT_TRUE(rules.ok());
  EXPECT_NE(rules->find("192.0.2.1"), std::string::npos) << *rules;
  EXPECT_TRUE(ns.Sh("ipset test foreign-set 192.0.2.2").ok());
  EXPECT_TRUE(ns.Sh("ip link show foreign0").ok());
}

TEST(AgentCleanup, CleanNamespaceExitsZeroAndIsIdempotent) {
  Netns ns("kr-app-cleanup");
  TempDir tmp;
  AddForeignState(ns);
  // Where a routing controller would look for its CNI configuration: never the host's.
  std::vector<std::string> argv =
      ns.Wrap({"env", "KUBE_ROUTER_CNI_CONF_FILE=" + tmp.path() + "/10-kuberouter.conflist",
               kAgentBinary, "--cleanup-config", "--hostname-override=kr-test-node"});
  for (int round = 1; round <= 2; ++round) {
    SCOPED_TRACE("round " + std::to_string(round));
    auto r = Exec(argv);
    ASSERT_TRUE(r.ok()) << r.error();
    EXPECT_EQ(r->exit_code, 0) << r->out << r->err;
    if (round == 2) {
      EXPECT_NE(r->out.find("nothing to remove"), std::string::npos) << r->out;
    }
  }
  ExpectForeignStateKept(ns);
}

// A kubeconfig whose exec credential plugin hangs (ignoring SIGTERM) and writes its pid, so a
// test can check that the agent killed it. The server is never reached.
class HungExecPlugin : public ::testing::Test {
 protected:
  void SetUp() override {
    ns_ = std::make_unique<Netns>("kr-app-plugin");
    pid_file_ = tmp_.path() + "/plugin.pid";
    std::string plugin = tmp_.path() + "/plugin.sh";
    std::ofstream(plugin) << "#!/bin/sh\ntrap '' TERM INT\necho $$ > " << pid_file_
                          << "\nwhile :; do sleep 1; done\n";
    std::filesystem::permissions(plugin, std::filesystem::perms::owner_all);
    kubeconfig_ = tmp_.path() + "/kubeconfig";
    std::ofstream(kubeconfig_)
        << "apiVersion: v1\nkind: Config\ncurrent-context: c\n"
           "clusters: [{name: k, cluster: {server: 'https://127.0.0.1:1'}}]\n"
           "contexts: [{name: c, context: {cluster: k, user: u}}]\n"
           "users: [{name: u, user: {exec: {command: '"
        << plugin
        << "', apiVersion: client.authentication.k8s.io/v1, "
           "interactiveMode: Never}}}]\n";
  }

  void StartAgent(const std::string& cache_sync_timeout) {
    agent_ = std::make_unique<Process>(
        ns_->Wrap({kAgentBinary, "--kubeconfig=" + kubeconfig_, "--hostname-override=kr-test-node",
                   "--health-port=20244", "--metrics-port=20245", "--run-firewall=true",
                   "--run-router=false", "--run-service-proxy=false",
                   "--cache-sync-timeout=" + cache_sync_timeout}),
        tmp_.path() + "/agent.log");
    ASSERT_TRUE(WaitFor([&] { return PluginPid() > 0; }, kDeadline)) << agent_->Log();
  }

  pid_t PluginPid() {
    std::ifstream in(pid_file_);
    pid_t pid = 0;
    in >> pid;
    return pid;
  }

  // The plugin is gone (or a zombie waiting for init to reap it).
  bool PluginGone(pid_t pid) {
    return WaitFor(
        [&] {
          std::ifstream stat("/proc/" + std::to_string(pid) + "/stat");
          std::string line;
          return !std::getline(stat, line) || line.find(") Z ") != std::string::npos;
        },
        10s);
  }

  void TearDown() override {
    if (agent_ && agent_->Running()) agent_->Signal(SIGKILL);
    if (pid_t pid = PluginPid(); pid > 0) kill(pid, SIGKILL);
  }

  TempDir tmp_;
  std::unique_ptr<Netns> ns_;
  std::string kubeconfig_, pid_file_;
  std::unique_ptr<Process> agent_;
};

TEST_F(HungExecPlugin, CacheSyncTimeoutEndsStartup) {
  StartAgent("3s");
  pid_t plugin = PluginPid();
  auto code = agent_->Wait(30s);
  ASSERT_TRUE(code.has_value()) << "agent still waiting for its plugin:\n" << agent_->Log();
  EXPECT_EQ(*code, 1) << agent_->Log();
  EXPECT_NE(agent_->Log().find("timed out after 3000 ms"), std::string::npos) << agent_->Log();
  EXPECT_TRUE(PluginGone(plugin)) << "plugin " << plugin << " outlived the agent";
}

TEST_F(HungExecPlugin, SigtermStopsStartup) {
  StartAgent("60s");
  pid_t plugin = PluginPid();
  auto signalled = std::chrono::steady_clock::now();
  agent_->Signal(SIGTERM);
  auto code = agent_->Wait(15s);
  ASSERT_TRUE(code.has_value()) << agent_->Log();
  EXPECT_EQ(*code, 0) << agent_->Log();
  EXPECT_LT(std::chrono::steady_clock::now() - signalled, 5s) << agent_->Log();
  EXPECT_EQ(agent_->Log().find("shutdown did not finish"), std::string::npos) << agent_->Log();
  EXPECT_TRUE(PluginGone(plugin)) << "plugin " << plugin << " outlived the agent";
}

}  // namespace
}  // namespace kr::app_netns
