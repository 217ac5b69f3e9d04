// The running agent (running_agent.h) inside a throwaway network namespace against
// fake-apiserver: /healthz and /metrics over real HTTP (curl), the process metrics, promtool,
// health across a lost API server and unrefreshable caches, log-line forging, SIGTERM during
// cache sync, a port in use.
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

TEST_F(RunningAgent, HealthzAndMetricsOverHttp) {
  StartAgent({"--run-firewall=true", "--run-router=false", "--run-service-proxy=false",
              "--iptables-sync-period=2s"});
  ASSERT_TRUE(HealthBecomes(200)) << agent_->Log();
  ASSERT_TRUE(WaitFor([&] { return Sample(Metrics(), kPolicySyncs) >= 1; }, kDeadline))
      << agent_->Log();
  HttpAnswer health = Get(*ns_, "http://127.0.0.1:20244/healthz");
  EXPECT_EQ(health.body, "OK\n");
  EXPECT_EQ(Get(*ns_, "http://127.0.0.1:20244/nope").status, 404);

  HttpAnswer metrics = Get(*ns_, "http://127.0.0.1:20245/metrics");
  ASSERT_EQ(metrics.status, 200);
  EXPECT_EQ(Sample(metrics.body, "kube_router_build_info{compiler=\"" __VERSION__
                                 "\",version=\"v" KR_VERSION "\"}"),
            1)
      << metrics.body;
  EXPECT_GE(Sample(metrics.body, kPolicySyncs), 1) << metrics.body;
  EXPECT_GT(Sample(metrics.body,
                   "kube_router_controller_last_successful_sync_timestamp_seconds{"
                   "controller=\"NetworkPolicy\"}"),
            0);
  // The informers count into the registry the app serves (injected, registered at 0).
  EXPECT_EQ(Sample(metrics.body, "kube_router_k8s_malformed_objects_total{kind=\"Pod\"}"), 0)
      << metrics.body;
  // The policy really reached the kernel of this namespace.
  auto rules = ns_->Sh("iptables-save -t filter");
  ASSERT_TRUE(rules.ok());
  EXPECT_NE(rules->find("KUBE-ROUTER-"), std::string::npos) << *rules;
}

long ProcStatusKib(pid_t pid, const char* field) {
  std::istringstream in(ReadFile("/proc/" + std::to_string(pid) + "/status"));
  for (std::string line; std::getline(in, line);) {
    if (line.rfind(field, 0) == 0) return std::stol(line.substr(std::strlen(field)));
  }
  return -1;
}

// The process collector's series are the agent's own figures: the resident size the kernel
// reports for the agent's pid at the moment of the scrape, and the moment the test started it
// (boot time + starttime ticks, as Prometheus' Go collector computes it).
TEST_F(RunningAgent, ProcessMetricsAreTheAgentsOwn) {
  const double spawned =
      std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
  StartAgent({"--run-firewall=true", "--run-router=false", "--run-service-proxy=false",
              "--iptables-sync-period=2s"});
  ASSERT_TRUE(WaitFor([&] { return Sample(Metrics(), kPolicySyncs) >= 1; }, kDeadline))
      << agent_->Log();
  const long rss_before_kib = ProcStatusKib(agent_->pid(), "VmRSS:");
  std::string text = Metrics();
  const long rss_after_kib = ProcStatusKib(agent_->pid(), "VmRSS:");
  ASSERT_GT(rss_before_kib, 0);
  const double rss = Sample(text, "process_resident_memory_bytes");
  // Serving the scrape itself may move the RSS a little: allow 4 MiB around the two readings.
  EXPECT_GE(rss, (std::min(rss_before_kib, rss_after_kib) - 4096) * 1024.0) << text;
  EXPECT_LE(rss, (std::max(rss_before_kib, rss_after_kib) + 4096) * 1024.0) << text;
  // btime has whole seconds and starttime clock ticks: within 2 s of when the test forked it.
  const double start = Sample(text, "process_start_time_seconds");
  EXPECT_NEAR(start, spawned, 2.0) << std::fixed << start << " vs " << spawned;
  // The heap gauges (docs/memory.md): the agent has some heap in use (a small cluster's agent
  // holds well under 1 MiB after its trims), and free bytes are never negative.
  const double in_use = Sample(text, "kube_router_heap_in_use_bytes");
  EXPECT_GT(in_use, 64 << 10) << text;
  EXPECT_GE(Sample(text, "kube_router_heap_free_bytes"), 0) << text;
  EXPECT_GT(Sample(text, "kube_router_k8s_caches_heap_bytes"), 0) << text;
}

// promtool must accept /metrics. The only finding allowed is the lint about counters without
// a "_total" suffix for kube-router's historical names, kept for dashboard compatibility.
TEST_F(RunningAgent, PromtoolAcceptsMetrics) {
  StartAgent({"--run-firewall=true", "--run-router=false", "--run-service-proxy=false",
              "--iptables-sync-period=2s"});
  ASSERT_TRUE(HealthBecomes(200)) << agent_->Log();
  ASSERT_TRUE(WaitFor([&] { return Sample(Metrics(), kPolicySyncs) >= 1; }, kDeadline));
  std::string text = Metrics();
  ASSERT_FALSE(text.empty());
  // The process collector's series and the heap gauges are part of what promtool judges.
  for (const char* family : {"process_resident_memory_bytes", "process_start_time_seconds",
                             "kube_router_heap_in_use_bytes", "kube_router_heap_free_bytes"}) {
    EXPECT_NE(text.find(std::string("\n# TYPE ") + family + " gauge\n"), std::string::npos)
        << family;
  }
  auto r = Exec({"promtool", "check", "metrics"}, text);
  ASSERT_TRUE(r.ok()) << r.error();
  std::string findings = r->out + r->err;
  std::istringstream in(findings);
  std::string line;
  const std::regex legacy_counter(
      "^kube_router_[a-z_]+ counter metrics should have \"_total\" suffix$");
  while (std::getline(in, line)) {
    if (line.empty()) continue;
    EXPECT_TRUE(std::regex_match(line, legacy_counter)) << line << "\n" << text;
  }
  if (findings.empty()) {
    EXPECT_EQ(r->exit_code, 0);
  }
  EXPECT_TRUE(r->exit_code == 0 || r->exit_code == 3) << findings;  // 3 = lint findings only
}

// Losing the API server must not fail health while the controller keeps syncing from its
// caches: /healthz stays 200 across more successful syncs than period + start-up + grace
// (2s + start-up + 5s) can hold.
TEST_F(RunningAgent, HealthSurvivesLosingTheApiServer) {
  // The outage outlasts --cache-sync-timeout: an unreachable server is not a stale cache.
  StartAgent({"--run-firewall=true", "--run-router=false", "--run-service-proxy=false",
              "--iptables-sync-period=1s", "--cache-sync-timeout=3s"});
  ASSERT_TRUE(HealthBecomes(200)) << agent_->Log();
  ASSERT_TRUE(WaitFor([&] { return Sample(Metrics(), kPolicySyncs) >= 1; }, kDeadline));
  api_->Signal(SIGKILL);
  ASSERT_TRUE(api_->Wait(10s).has_value());
  double before = Sample(Metrics(), kPolicySyncs);
  int unhealthy_answers = 0;
  bool enough = WaitFor(
      [&] {
        if (Get(*ns_, "http://127.0.0.1:20244/healthz").status != 200) ++unhealthy_answers;
        return Sample(Metrics(), kPolicySyncs) >= before + 9;
      },
      kDeadline);
  EXPECT_TRUE(enough) << agent_->Log();
  EXPECT_EQ(unhealthy_answers, 0) << agent_->Log();
  EXPECT_TRUE(agent_->Running());
}

// Caches the server refuses to refresh (every API request answered 403, as after an RBAC
// change) for longer than --cache-sync-timeout make /healthz fail, naming the controller and
// the cache, even though the controller keeps syncing from them; health returns once the
// server serves them again.
TEST_F(RunningAgent, HealthFailsWhileCachesCannotBeRefreshed) {
  StartAgent({"--run-firewall=true", "--run-router=false", "--run-service-proxy=false",
              "--iptables-sync-period=1s", "--cache-sync-timeout=4s"});
  // /healthz is 200 while the agent waits for its first lists too: the faults must start
  // after the caches synced (a refused first list ends the agent, as kube-router does).
  ASSERT_TRUE(HealthBecomes(200)) << agent_->Log();
  ASSERT_TRUE(WaitFor([&] { return Sample(Metrics(), kPolicySyncs) >= 1; }, kDeadline))
      << agent_->Log();
  auto fault = [&](const std::string& what) {
    auto r = ns_->Run({"curl", "-s", "-f", "-X", "POST", "-d", "", api_url_ + what});
    return r.ok() && r->exit_code == 0;
  };
  ASSERT_TRUE(fault("/_fake/fail?count=1000000&code=403"));
  ASSERT_TRUE(fault("/_fake/drop-watches"));
  ASSERT_TRUE(HealthBecomes(500)) << agent_->Log();
  HttpAnswer health = Get(*ns_, "http://127.0.0.1:20244/healthz");
  EXPECT_NE(health.body.find("cache not refreshed"), std::string::npos) << health.body;
  EXPECT_NE(health.body.find("NetworkPolicy"), std::string::npos) << health.body;
  ASSERT_TRUE(fault("/_fake/fail?count=0"));
  EXPECT_TRUE(HealthBecomes(200)) << agent_->Log();
}

// Object names are tenant input: a name with a newline and a forged klog header must come out
// escaped, on one line, and the rest of the agent keeps working.
TEST_F(RunningAgent, ObjectNamesCannotForgeLogLines) {
  StartAgent({"--run-firewall=true", "--run-router=false", "--run-service-proxy=false",
              "--iptables-sync-period=1s"});
  ASSERT_TRUE(HealthBecomes(200)) << agent_->Log();
  const std::string forged = "E1206 06:06:06.000000 1 forged: all policies removed";
  // A policy the decoder rejects (podSelector is not a map), so the agent logs its name.
  std::string body = R"({"metadata":{"name":"x\n)" + forged + R"(","namespace":"demo"},)" +
                     R"("spec":{"podSelector":"everything"}})";
  auto created = ns_->Run({"curl", "-s", "-f", "-X", "POST", "-H", "Content-Type: application/json",
                           "-d", body,
                           api_url_ + "/apis/networking.k8s.io/v1/namespaces/demo/"
                                      "networkpolicies"});
  ASSERT_TRUE(created.ok() && created->exit_code == 0) << body;
  ASSERT_TRUE(WaitFor([&] { return agent_->Log().find("x\\nE1206 06:06:06") != std::string::npos; },
                      kDeadline))
      << agent_->Log();
  std::istringstream lines(agent_->Log());
  std::string line;
  while (std::getline(lines, line)) EXPECT_NE(line.rfind("E1206 06:06:06", 0), 0u) << line;
  HttpAnswer health = Get(*ns_, "http://127.0.0.1:20244/healthz");
  EXPECT_EQ(health.status, 200) << health.body;
}

// Proxy-only: /healthz is not vacuously healthy while the service proxy has not synced (here
// the API server answers nothing, so the caches never load). That it turns healthy after the
// first sync needs ip_vs (its -m ipvs rules): the guest tests of the proxy show it.
TEST_F(RunningAgent, ServiceProxyOnlyIsUnhealthyUntilItHasSynced) {
  auto delayed =
      ns_->Run({"curl", "-s", "-f", "-X", "POST", "-d", "", api_url_ + "/_fake/delay?ms=60000"});
  ASSERT_TRUE(delayed.ok() && delayed->exit_code == 0);
  StartAgent({"--run-firewall=false", "--run-router=false", "--run-service-proxy=true"});
  // Every answer from the first one on is 500: none while the agent builds its controllers.
  int unhealthy = 0;
  std::optional<std::string> healthy_body;
  ASSERT_TRUE(WaitFor(
      [&] {
        HttpAnswer a = Get(*ns_, "http://127.0.0.1:20244/healthz");
        if (a.status == 200) healthy_body = a.body;
        if (a.status == 500) ++unhealthy;
        return healthy_body || unhealthy >= 5;
      },
      kDeadline))
      << agent_->Log();
  EXPECT_FALSE(healthy_body) << *healthy_body << "\n" << agent_->Log();
  EXPECT_NE(Get(*ns_, "http://127.0.0.1:20244/healthz").body.find("NetworkServices"),
            std::string::npos);
}

TEST_F(RunningAgent, SigtermDuringCacheSyncStopsPromptly) {
  // An API server that answers nothing in time keeps the caches from syncing.
  auto delayed =
      ns_->Run({"curl", "-s", "-f", "-X", "POST", "-d", "", api_url_ + "/_fake/delay?ms=60000"});
  ASSERT_TRUE(delayed.ok() && delayed->exit_code == 0) << api_url_;
  StartAgent({"--run-firewall=true", "--run-router=false", "--run-service-proxy=false"});
  ASSERT_TRUE(HealthBecomes(200)) << agent_->Log();  // healthy while waiting for caches
  auto signalled = std::chrono::steady_clock::now();
  agent_->Signal(SIGTERM);
  auto code = agent_->Wait(15s);
  auto took = std::chrono::steady_clock::now() - signalled;
  ASSERT_TRUE(code.has_value()) << agent_->Log();
  EXPECT_EQ(*code, 0) << agent_->Log();
  // Well before the 10 s shutdown watchdog, which would also exit 0 here.
  EXPECT_LT(took, 5s) << agent_->Log();
  EXPECT_EQ(agent_->Log().find("shutdown did not finish"), std::string::npos) << agent_->Log();
}

TEST_F(RunningAgent, PortInUseIsAClearError) {
  Process blocker(ns_->Wrap({"socat", "TCP-LISTEN:20244,reuseaddr,fork", "SYSTEM:true"}),
                  tmp_.path() + "/socat.log");
  ASSERT_TRUE(WaitFor([&] { return ns_->Sh("ss -ltn | grep -q ':20244 '").ok(); }, kDeadline));
  StartAgent({"--run-firewall=true", "--run-router=false", "--run-service-proxy=false"});
  auto code = agent_->Wait(kDeadline);
  ASSERT_TRUE(code.has_value());
  EXPECT_EQ(*code, 1);
  EXPECT_NE(agent_->Log().find("20244"), std::string::npos) << agent_->Log();
}

}  // namespace
}  // namespace kr::app_netns
