// Runs the real build/kube-router binary: its command line (help, versions, exit status 2 with
// one line naming the flag), --cleanup-config in a clean namespace, and /healthz and /metrics
// over real HTTP (curl) inside a throwaway network namespace, against fake-apiserver.
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

namespace kr {
namespace {

using namespace std::chrono_literals;
using testing::kAgentBinary;
using testing::kFakeApiServerBinary;
using testing::Netns;
using testing::Process;
using testing::TempDir;
using testing::WaitFor;

constexpr auto kDeadline = 60s;

ExecResult RunAgent(const std::vector<std::string>& args) {
  std::vector<std::string> argv{kAgentBinary};
  argv.insert(argv.end(), args.begin(), args.end());
  auto r = Exec(argv);
  EXPECT_TRUE(r.ok()) << r.error();
  return r.ok() ? *r : ExecResult{};
}

size_t Lines(const std::string& text) { return std::count(text.begin(), text.end(), '\n'); }

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

// ---- the running agent ----

std::string ReadFile(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

struct HttpAnswer {
  int status = 0;  // 0 = no answer
  std::string body;
};

HttpAnswer Get(const Netns& ns, const std::string& url) {
  auto r = ns.Run({"curl", "-s", "--max-time", "5", "-w", "\n%{http_code}", url});
  if (!r.ok() || r->exit_code != 0) return {};
  size_t nl = r->out.rfind('\n');
  return {std::atoi(r->out.c_str() + nl + 1), r->out.substr(0, nl)};
}

// Value of the sample line `series` (name{labels}) in a metrics text; -1 if absent.
double Sample(const std::string& metrics, const std::string& series) {
  std::istringstream in(metrics);
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind(series + " ", 0) == 0) return std::stod(line.substr(series.size() + 1));
  }
  return -1;
}

constexpr char kNodeManifest[] = R"(apiVersion: v1
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
  std::unique_ptr<Process> api_;
  std::unique_ptr<Process> agent_;
};

const std::string kPolicySyncs =
    "kube_router_controller_syncs_total{controller=\"NetworkPolicy\",result=\"success\"}";

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
  std::smatch server;
  std::string config = ReadFile(kubeconfig_);
  ASSERT_TRUE(std::regex_search(config, server, std::regex("server: *\"?(http[^\"\\s]+)")));
  auto fault = [&](const std::string& what) {
    auto r = ns_->Run({"curl", "-s", "-f", "-X", "POST", "-d", "", server[1].str() + what});
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
  std::smatch server;
  std::string config = ReadFile(kubeconfig_);
  ASSERT_TRUE(std::regex_search(config, server, std::regex("server: *\"?(http[^\"\\s]+)")));
  const std::string forged = "E1206 06:06:06.000000 1 forged: all policies removed";
  // A policy the decoder rejects (podSelector is not a map), so the agent logs its name.
  std::string body = R"({"metadata":{"name":"x\n)" + forged + R"(","namespace":"demo"},)" +
                     R"("spec":{"podSelector":"everything"}})";
  auto created = ns_->Run({"curl", "-s", "-f", "-X", "POST", "-H", "Content-Type: application/json",
                           "-d", body,
                           server[1].str() + "/apis/networking.k8s.io/v1/namespaces/demo/"
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
  std::smatch server;
  std::string config = ReadFile(kubeconfig_);
  ASSERT_TRUE(std::regex_search(config, server, std::regex("server: *\"?(http[^\"\\s]+)")))
      << config;
  auto delayed = ns_->Run(
      {"curl", "-s", "-f", "-X", "POST", "-d", "", server[1].str() + "/_fake/delay?ms=60000"});
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
  std::smatch server;
  std::string config = ReadFile(kubeconfig_);
  ASSERT_TRUE(std::regex_search(config, server, std::regex("server: *\"?(http[^\"\\s]+)")))
      << config;
  auto delayed = ns_->Run(
      {"curl", "-s", "-f", "-X", "POST", "-d", "", server[1].str() + "/_fake/delay?ms=60000"});
  ASSERT_TRUE(delayed.ok() && delayed->exit_code == 0) << config;
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

// ---- resource bounds per listener, through the real binary ----

// A /proc/<pid>/status field in KiB (VmRSS...), or a count of /proc/<pid>/fd entries.
long ProcStatusKiB(pid_t pid, const std::string& field) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/status");
  std::string line;
  while (std::getline(in, line))
    if (line.rfind(field + ":", 0) == 0) return std::atol(line.c_str() + field.size() + 1);
  return -1;
}
long OpenFds(pid_t pid) {
  std::error_code ec;
  long n = 0;
  for (auto it = std::filesystem::directory_iterator("/proc/" + std::to_string(pid) + "/fd", ec);
       !ec && it != std::filesystem::directory_iterator(); it.increment(ec))
    ++n;
  return n;
}

// Connections opened from the test (inside the agent's namespace) and held open: from
// 127.0.0.<10+i/per_source>, each sending `partial` (a request head that never ends).
class HeldConnections {
 public:
  HeldConnections(const std::string& netns, const std::string& ip, int port, int count,
                  int per_source, const std::string& partial) {
    testing::ScopedNetns in(netns);
    for (int i = 0; i < count; ++i) {
      int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
      if (fd < 0) break;
      sockaddr_in src{}, dst{};
      src.sin_family = dst.sin_family = AF_INET;
      src.sin_addr.s_addr = htonl((127u << 24) | (10u + static_cast<unsigned>(i / per_source)));
      ::bind(fd, reinterpret_cast<sockaddr*>(&src), sizeof src);
      dst.sin_port = htons(static_cast<uint16_t>(port));
      inet_pton(AF_INET, ip.c_str(), &dst.sin_addr);
      ::connect(fd, reinterpret_cast<sockaddr*>(&dst), sizeof dst);
      pollfd p{fd, POLLOUT, 0};
      if (::poll(&p, 1, 200) == 1 && !(p.revents & (POLLERR | POLLHUP))) {
        ::send(fd, partial.data(), partial.size(), MSG_NOSIGNAL);
        ++connected_;
      }
      fds_.push_back(fd);
    }
  }
  ~HeldConnections() {
    for (int fd : fds_) ::close(fd);
  }
  int connected() const { return connected_; }

 private:
  std::vector<int> fds_;
  int connected_ = 0;
};

// Every listener of an agent running the firewall and the router (health, metrics, the routing
// status view, BGP) holds up against a crowd of idle, half-sent connections: a normal client
// keeps getting answers while they are held, and the agent's descriptors and memory stay
// bounded (the HTTP caps: 8 per source, 256 per listener; BGP closes non-peers at accept).
TEST_F(RunningAgent, EveryListenerKeepsAnsweringUnderIdleConnectionsWithBoundedResources) {
  rlimit nofile{};
  getrlimit(RLIMIT_NOFILE, &nofile);
  nofile.rlim_cur = nofile.rlim_max;
  setrlimit(RLIMIT_NOFILE, &nofile);
  // The router needs the Node's address on an interface of this node.
  ASSERT_TRUE(ns_->Sh("ip link add kr-node0 type veth peer name kr-node1 && ip addr add "
                      "10.0.0.1/24 dev kr-node0 "
                      "&& ip link set kr-node0 up && ip link set kr-node1 up")
                  .ok());
  // The router writes its CNI config: into the test's directory, never the host's.
  agent_ = std::make_unique<Process>(
      ns_->Wrap({"env", "KUBE_ROUTER_CNI_CONF_FILE=" + tmp_.path() + "/10-kuberouter.conflist",
                 kAgentBinary, "--kubeconfig=" + kubeconfig_, "--hostname-override=kr-test-node",
                 "--health-port=20244", "--metrics-port=20245", "--cache-sync-timeout=30s",
                 "--run-firewall=true", "--run-router=true", "--run-service-proxy=false",
                 "--iptables-sync-period=30s", "--routes-sync-period=30s"}),
      tmp_.path() + "/agent.log");
  ASSERT_TRUE(HealthBecomes(200)) << agent_->Log();
  ASSERT_TRUE(WaitFor([&] { return Sample(Metrics(), kPolicySyncs) >= 1; }, kDeadline))
      << agent_->Log();
  std::string bgp_ip;
  ASSERT_TRUE(WaitFor(
      [&] {
        auto ss = ns_->Sh("ss -Hltn 'sport = :179'");
        if (!ss.ok() || ss->empty()) return false;
        bgp_ip = ss->find("10.0.0.1:179") != std::string::npos ? "10.0.0.1" : "127.0.0.1";
        return true;
      },
      kDeadline))
      << agent_->Log();
  struct Listener {
    std::string name, ip;
    int port;
    std::string probe_url;  // a normal client's request; empty for BGP
    std::string partial;
  };
  const std::string head = "GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ";
  const Listener listeners[] = {
      {"health", "127.0.0.1", 20244, "http://127.0.0.1:20244/healthz", head},
      {"metrics", "127.0.0.1", 20245, "http://127.0.0.1:20245/metrics", head},
      {"status view", "127.0.0.1", 50051, "http://127.0.0.1:50051/status", head},
      {"bgp", bgp_ip, 179, "", std::string(16, '\xff') + "\x00"},
  };
  pid_t pid = agent_->pid();
  // Warm every listener once, then take the baseline.
  for (const auto& l : listeners) {
    if (!l.probe_url.empty()) {
      ASSERT_EQ(Get(*ns_, l.probe_url).status, 200) << l.name;
    }
  }
  const long fds_before = OpenFds(pid);
  const long rss_before = ProcStatusKiB(pid, "VmRSS");
  for (const auto& l : listeners) {
    SCOPED_TRACE(l.name);
    {
      // 400 connections from 50 sources (8 each, the per-source cap).
      HeldConnections crowd(ns_->name(), l.ip, l.port, 400, 8, l.partial);
      EXPECT_GT(crowd.connected(), 0);
      for (int i = 0; i < 10; ++i) {
        if (!l.probe_url.empty()) {
          auto start = std::chrono::steady_clock::now();
          HttpAnswer a = Get(*ns_, l.probe_url);
          EXPECT_EQ(a.status, 200) << "probe " << i;
          EXPECT_LT(std::chrono::steady_clock::now() - start, 2s) << "probe " << i;
        }
        EXPECT_EQ(Get(*ns_, "http://127.0.0.1:20244/healthz").status, 200) << "health " << i;
      }
      long fds = OpenFds(pid);
      std::cout << l.name << ": " << crowd.connected() << " held, agent descriptors " << fds_before
                << " -> " << fds << "\n";
      EXPECT_LE(fds, fds_before + 256 + 16) << "more than the listener's cap held";
    }
    // Once they are gone, so are their descriptors.
    EXPECT_TRUE(WaitFor([&] { return OpenFds(pid) <= fds_before + 16; }, 15s))
        << OpenFds(pid) << " descriptors, " << fds_before << " before";
  }
  long rss_after = ProcStatusKiB(pid, "VmRSS");
  std::cout << "agent RSS " << rss_before << " -> " << rss_after << " KiB\n";
  EXPECT_LT(rss_after - rss_before, 32 * 1024) << "the agent kept memory for idle connections";
  EXPECT_TRUE(agent_->Running()) << agent_->Log();
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
}  // namespace kr
