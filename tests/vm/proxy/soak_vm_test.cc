// Issue 16's kill -9 soak with the service proxy (the host kernel has no ip_vs, so it runs in the
// guest, in the same boot as agent_vm_test.cc but in its own ProxyWorld): the REAL agent with the
// service proxy and the firewall on two node namespaces, Services of every kind that leaves
// kernel state (ClusterIP, NodePort, ClientIP affinity, a LoadBalancer with
// externalTrafficPolicy=Local and its healthCheckNodePort server) with endpoints on both nodes.
//
// The objects alternate between two configurations, A and B; the state a FRESH start writes for
// each (objects set, our state removed with --cleanup-config, agents started) is recorded first.
// Each seeded round then SIGKILLs an agent at a random point of a sync (a random delay after a
// Service/EndpointSlice change, or into its restart, or both agents), changes objects while it is
// down (ending at A or B), restarts it, and requires on every node, once converged:
//   * the kernel state (ipvsadm -Sn sorted, iptables-save without counters in rule order, ipset
//     save sorted without the hash seed, kube-dummy-if addresses, routes and rules of every
//     table, listening TCP sockets) equal to the fresh start's for that configuration: nothing
//     missing, stale or duplicated;
//   * real TCP probes to every Service answered only by its backends;
//   * a TCP connection through a ClusterIP opened before round 1 still echoing.
// KR_PROXY_SOAK_SEED=N reproduces a run (CI uses a fixed seed and few rounds);
// KR_PROXY_SOAK_ROUNDS=50 is the long run (docs/security.md, "kill -9 soak").
#include <arpa/inet.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <random>
#include <regex>
#include <set>
#include <sstream>
#include <thread>

#include "lib/answer_server.h"
#include "lib/files.h"
#include "vm/proxy/proxy_world.h"

namespace kr::testing::soak_vm_test {
namespace {

using namespace std::chrono_literals;

constexpr uint64_t kCiSeed = 16;
constexpr uint64_t kCiRounds = 3;
constexpr auto kConverge = 90s;  // a restart's first sync in the loaded TCG guest, with margin
constexpr int kMetricsPort = 9101;

const char* const kA0 = "default/a0";
const char* const kB1 = "default/b1";
const char* const kC1 = "default/c1";
const char* const kClient0 = "default/client0";

uint64_t EnvOr(const char* name, uint64_t fallback) {
  const char* v = std::getenv(name);
  return v && *v ? std::strtoull(v, nullptr, 10) : fallback;
}

std::string Q(const std::string& s) { return "\"" + s + "\""; }

std::string ServiceJson(const std::string& name, const std::string& spec) {
  return R"({"apiVersion":"v1","kind":"Service","metadata":{"namespace":"default","name":)" +
         Q(name) + R"(},"spec":)" + spec + "}";
}

// One TCP port 80 -> 8080 named "t" (with a nodePort when not 0).
std::string Port(int node_port = 0) {
  return R"([{"name":"t","port":80,"protocol":"TCP","targetPort":8080)" +
         (node_port ? R"(,"nodePort":)" + std::to_string(node_port) : std::string()) + "}]";
}

std::string ClusterIp(const std::string& vip) {
  return R"("clusterIP":)" + Q(vip) + R"(,"clusterIPs":[)" + Q(vip) + "]";
}

// Sorted lines of `text`, each passed through `edit` (dropped when it returns "").
template <typename Edit>
std::string SortedLines(const std::string& text, Edit edit) {
  std::vector<std::string> lines;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) {
    line = edit(line);
    if (!line.empty()) lines.push_back(line);
  }
  std::sort(lines.begin(), lines.end());
  std::string out;
  for (const auto& l : lines) out += l + "\n";
  return out;
}

std::string Same(const std::string& line) { return line; }

class ProxySoakVmTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    ProxyWorldOptions options;
    options.prefix = "kps";
    options.kubectl = false;       // objects go straight over HTTP
    options.start_agents = false;  // the first start is the first configuration's fresh start
    // Long periods: after a restart's first sync nothing else syncs within kConverge, so a stale
    // or missing object is not hidden by a later periodic sync.
    options.agent_flags = {"--run-firewall=true", "--metrics-port=" + std::to_string(kMetricsPort),
                           "--ipvs-sync-period=30m", "--iptables-sync-period=30m"};
    world_ = new ProxyWorld(options);
    for (const char* pod : {kA0, kClient0}) world_->AddPod(0, pod);
    for (const char* pod : {kB1, kC1}) world_->AddPod(1, pod);
    for (const char* pod : {kA0, kB1, kC1}) {
      servers_->push_back(std::make_unique<AnswerServer>(world_->PodNs(pod), Name(pod), 8080,
                                                         AnswerServer::Kind::kTcp));
    }
    world_->Start();
  }
  static void TearDownTestSuite() {
    servers_->clear();
    delete world_;
    world_ = nullptr;
  }
  void TearDown() override {
    if (HasFailure()) {
      for (int i = 0; i < 2; ++i) {
        std::cerr << "--- agent node" << i << " log:\n" << world_->AgentLog(i) << "\n";
      }
    }
  }

  static std::string Name(const char* pod) { return std::string(pod).substr(8); }
  static SliceEndpoint Ep(const char* pod) {
    const auto& p = world_->net().pod(pod);
    return {p.ip, world_->NodeName(p.node), true, true, false};
  }
  static Status Slice(const std::string& service, const std::vector<const char*>& pods) {
    std::vector<SliceEndpoint> eps;
    for (const char* pod : pods) eps.push_back(Ep(pod));
    return world_->Apply(
        SliceJson("default", service + "-1", service, "IPv4", eps, {{"t", 8080, "TCP"}}));
  }

  // The two configurations. Both: "keep" (the held connection's Service, never changed).
  // A: web -> {a0, b1}, sticky with ClientIP affinity, the Local LoadBalancer "local" with its
  // healthCheckNodePort. B: web -> {c1}, sticky without affinity, no "local", "extra" -> {c1}.
  struct Config {
    bool b = false;
    std::string Label() const { return b ? "B" : "A"; }
  };
  // Writes the objects of `c` (and removes those it lacks), whatever the objects were before.
  void SetConfig(const Config& c) {
    ASSERT_TRUE(world_
                    ->Apply(ServiceJson(
                        "keep", "{" + ClusterIp("10.96.3.1") + R"(,"ports":)" + Port() + "}"))
                    .ok());
    ASSERT_TRUE(Slice("keep", {kA0, kB1}).ok());
    ASSERT_TRUE(world_
                    ->Apply(ServiceJson("web", R"({"type":"NodePort",)" + ClusterIp("10.96.3.2") +
                                                   R"(,"ports":)" + Port(30080) + "}"))
                    .ok());
    ASSERT_TRUE(
        Slice("web", c.b ? std::vector<const char*>{kC1} : std::vector<const char*>{kA0, kB1})
            .ok());
    ASSERT_TRUE(
        world_
            ->Apply(ServiceJson("sticky", "{" + ClusterIp("10.96.3.3") + R"(,"ports":)" + Port() +
                                              (c.b ? R"(,"sessionAffinity":"None"})"
                                                   : R"(,"sessionAffinity":"ClientIP",)"
                                                     R"("sessionAffinityConfig":{"clientIP":)"
                                                     R"({"timeoutSeconds":600}}})")))
            .ok());
    ASSERT_TRUE(Slice("sticky", {kB1, kC1}).ok());
    SetPresent(
        "local", !c.b,
        ServiceJson("local", R"({"type":"LoadBalancer","externalTrafficPolicy":"Local",)"
                             R"("healthCheckNodePort":30300,)" +
                                 ClusterIp("10.96.3.4") + R"(,"ports":)" + Port(30081) + "}"),
        {kA0});
    SetPresent("extra", c.b,
               ServiceJson("extra", "{" + ClusterIp("10.96.3.5") + R"(,"ports":)" + Port() + "}"),
               {kC1});
  }
  // Creates (Service and slice) or removes the Service `name`; removing what is absent is fine.
  void SetPresent(const std::string& name, bool present, const std::string& service_json,
                  const std::vector<const char*>& pods) {
    if (present) {
      ASSERT_TRUE(world_->Apply(service_json).ok());
      ASSERT_TRUE(Slice(name, pods).ok());
      present_.insert(name);
    } else if (present_.erase(name) > 0) {
      ASSERT_TRUE(world_->Remove("EndpointSlice", "default", name + "-1").ok());
      ASSERT_TRUE(world_->Remove("Service", "default", name).ok());
    }
  }
  // Junk that must not survive: a Service made and (later) deleted, the web endpoints moved.
  void Churn(int round, std::mt19937_64& rng) {
    const std::vector<std::vector<const char*>> sets = {{kA0}, {kB1, kC1}, {kA0, kB1, kC1}};
    const auto& pods = sets[rng() % sets.size()];
    SetPresent("tmp", true,
               ServiceJson("tmp", R"({"type":"NodePort",)" + ClusterIp("10.96.3.9") +
                                      R"(,"ports":)" + Port(30090 + round % 5) + "}"),
               pods);
    ASSERT_TRUE(Slice("web", pods).ok());
  }

  // True once every controller of the agent on `node` reports a successful sync at or after
  // `since` (kube_router_controller_last_successful_sync_timestamp_seconds; at least the proxy
  // and the firewall).
  static bool WaitSynced(int node, std::chrono::system_clock::time_point since) {
    const std::string metric = "\nkube_router_controller_last_successful_sync_timestamp_seconds{";
    const double after = std::chrono::duration<double>(since.time_since_epoch()).count() - 1;
    return WaitFor(
        [&] {
          std::this_thread::sleep_for(200ms);  // polled in-process; leave the agent the CPU
          auto metrics = world_->Metrics(node, kMetricsPort);
          if (!metrics.ok()) return false;
          int fresh = 0;
          for (size_t at = metrics->find(metric); at != std::string::npos;
               at = metrics->find(metric, at + 1)) {
            const size_t value = metrics->find("} ", at);
            if (value == std::string::npos) return false;
            if (std::strtod(metrics->c_str() + value + 2, nullptr) < after) return false;
            ++fresh;
          }
          return fresh >= 2;
        },
        kConverge);
  }

  // Our kernel state on one node, normalised so that two syncs of the same objects compare
  // equal (see the file comment).
  static std::string KernelState(int node) {
    // One shell for all of it: a process start costs tens of ms of emulated CPU, and polling
    // must not starve the agent being polled.
    auto dump = world_->NodeNs(node).Sh(
        "echo @ipvs; ipvsadm -Sn; for t in filter nat mangle; do echo @iptables; "
        "iptables-save -t $t; done; echo @ipset; ipset save; echo @dummy; "
        "ip -o addr show dev kube-dummy-if; echo @routes; ip route show table all; "
        "ip -6 route show table all; echo @rules; ip rule show; echo @listen; ss -ltnH");
    if (!dump.ok()) return "dump failed: " + dump.error();
    std::map<std::string, std::string> sections;
    std::string section, iptables;
    std::istringstream in(*dump);
    for (std::string line; std::getline(in, line);) {
      if (!line.empty() && line[0] == '@') {
        section = line.substr(1);
        continue;
      }
      // The kernel makes an IPv6 link-local address (and its route) from a link's random MAC:
      // kube-dummy-if made again has another one.
      if (line.find("fe80:") != std::string::npos) continue;
      if (section == "iptables") {
        if (line.empty() || line[0] == '#') continue;
        if (line[0] == ':') line = line.substr(0, line.find(' '));  // policy and counters
        iptables += line + "\n";                                    // rule order kept: it matters
      } else if (section == "ipset") {
        // A set's hash seed is random per creation; a set made again is the same set.
        sections[section] +=
            std::regex_replace(line, std::regex(" initval 0x[0-9a-f]+"), "") + "\n";
      } else if (section == "dummy") {
        std::smatch m;
        if (std::regex_search(line, m, std::regex("inet6? [0-9a-f.:/]+"))) {
          sections[section] += m.str() + "\n";
        }
      } else if (section == "listen") {
        std::istringstream words(line);
        std::string state, recv, send, local;
        words >> state >> recv >> send >> local;
        sections[section] += local + "\n";
      } else {
        sections[section] += line + "\n";
      }
    }
    std::string out = "iptables:\n" + iptables;
    for (const auto& [name, text] : sections) out += name + ":\n" + SortedLines(text, Same);
    return out;
  }

  // The state of a fresh start for the objects as they are: our state removed, agents started.
  // `first`: no agent ran yet in this world, so there is nothing to remove.
  void FreshState(std::vector<std::string>* state, bool first) {
    if (!first) {
      ASSERT_NO_FATAL_FAILURE(Clean());
    }
    const auto started = std::chrono::system_clock::now();
    for (int node = 0; node < 2; ++node) world_->StartAgent(node);
    running_ = true;
    state->clear();
    for (int node = 0; node < 2; ++node) {
      ASSERT_TRUE(WaitSynced(node, started)) << world_->AgentLog(node);
      state->push_back(KernelState(node));
    }
  }
  void Clean() {
    for (int node = 0; node < 2; ++node) world_->StopAgent(node, SIGTERM);
    Result<std::string> cleaned[2] = {Status::Error("not run"), Status::Error("not run")};
    std::thread other([&] { cleaned[1] = world_->RunAgentOnce(1, {"--cleanup-config"}); });
    cleaned[0] = world_->RunAgentOnce(0, {"--cleanup-config"});
    other.join();
    for (const auto& c : cleaned) ASSERT_TRUE(c.ok()) << c.error();
  }

  // Every node's state equals `want` (polled: a node that was not killed follows by watch).
  void ExpectConverged(const std::vector<std::string>& want, const std::string& what) {
    for (int node = 0; node < 2; ++node) {
      std::string have;
      bool same = WaitFor(
          [&] {
            have = KernelState(node);
            return have == want[node];
          },
          kConverge);
      ASSERT_TRUE(same) << what << ": node" << node << " differs from a fresh start:\n"
                        << testing::LineDifference(want[node], have, 6000);
    }
  }

  // Three fresh TCP connections to ip:port from `ns`, each answered by one of `names`.
  static std::string Probe(const std::string& ns, const std::string& ip, int port,
                           const std::set<std::string>& names) {
    std::string wrong;
    bool ok = WaitFor(
        [&] {
          for (int i = 0; i < 3; ++i) {
            Answer a = Ask(ns, ip, port, Proto::kTcp, 3000ms);
            if (!a.ok() || names.count(a.name) == 0) {
              wrong = ip + ":" + std::to_string(port) + " " + a.ToString();
              return false;
            }
          }
          return true;
        },
        20s);
    return ok ? "" : wrong;
  }
  void ExpectAnswers(const Config& c) {
    const std::string pod = world_->PodNs(kClient0);
    const std::string outside = world_->ClientNs();
    std::vector<std::string> wrong = {
        Probe(pod, "10.96.3.1", 80, {"a0", "b1"}),
        Probe(pod, "10.96.3.2", 80,
              c.b ? std::set<std::string>{"c1"} : std::set<std::string>{"a0", "b1"}),
        Probe(outside, world_->NodeIp(0), 30080,
              c.b ? std::set<std::string>{"c1"} : std::set<std::string>{"a0", "b1"}),
        Probe(pod, "10.96.3.3", 80, {"b1", "c1"}),
        c.b ? Probe(pod, "10.96.3.5", 80, {"c1"})
            : Probe(outside, world_->NodeIp(0), 30081, {"a0"}),
    };
    for (const auto& w : wrong) EXPECT_EQ(w, "") << "config " << c.Label();
  }

  void Kill(int node) { world_->StopAgent(node, SIGKILL); }

  static ProxyWorld* world_;
  static std::vector<std::unique_ptr<AnswerServer>>* servers_;
  static std::set<std::string> present_;  // Services of SetPresent that exist now
  static bool running_;                   // the agents were started (FreshState)
};

ProxyWorld* ProxySoakVmTest::world_ = nullptr;
std::set<std::string> ProxySoakVmTest::present_;
bool ProxySoakVmTest::running_ = false;
std::vector<std::unique_ptr<AnswerServer>>* ProxySoakVmTest::servers_ =
    new std::vector<std::unique_ptr<AnswerServer>>();

TEST_F(ProxySoakVmTest, KillNineAtRandomPointsConvergesToTheFreshStateAndKeepsConnections) {
  const uint64_t seed = EnvOr("KR_PROXY_SOAK_SEED", kCiSeed);
  const uint64_t rounds = EnvOr("KR_PROXY_SOAK_ROUNDS", kCiRounds);
  std::cout << "proxy kill -9 soak: KR_PROXY_SOAK_SEED=" << seed
            << " KR_PROXY_SOAK_ROUNDS=" << rounds << std::endl;
  std::mt19937_64 rng(seed);
  auto uniform = [&](int n) { return static_cast<int>(rng() % static_cast<uint64_t>(n)); };

  // The fresh starts' states of both configurations (before the held connection: a clean-up
  // removes the Services it goes through).
  std::vector<std::string> fresh[2];
  for (bool b : {true, false}) {
    ASSERT_NO_FATAL_FAILURE(SetConfig({b}));
    ASSERT_NO_FATAL_FAILURE(FreshState(&fresh[b], /*first=*/b));
    world_->Stamp(std::string("fresh state of ") + (b ? "B" : "A") + " recorded");
  }
  ASSERT_NE(fresh[0][0], fresh[1][0]) << "the two configurations must differ in kernel state";
  ASSERT_NO_FATAL_FAILURE(ExpectAnswers({false}));
  TcpHolder held(world_->PodNs(kClient0), "10.96.3.1", 80, 5000ms);
  ASSERT_TRUE(held.greeting().ok()) << held.greeting().ToString();

  for (uint64_t round = 0; round < rounds; ++round) {
    const int mode = uniform(3);
    const int node = uniform(2);
    const int delay_ms = uniform(1500);
    const Config target{uniform(2) == 1};
    const char* kModes[] = {"kill during start-up", "kill during a change", "kill both"};
    const std::string what = "round " + std::to_string(round) + ": " + kModes[mode] + ", node" +
                             std::to_string(node) + ", after " + std::to_string(delay_ms) +
                             " ms, to config " + target.Label() +
                             " (KR_PROXY_SOAK_SEED=" + std::to_string(seed) + ")";
    world_->Stamp(what);
    SCOPED_TRACE(what);
    // The random delays are the fault's timing (where in a sync the kill lands), not waits for
    // a state: every wait for a state polls with a deadline.
    switch (mode) {
      case 0:  // killed; objects changed while down; killed again a random time into the restart
        Kill(node);
        ASSERT_NO_FATAL_FAILURE(SetConfig(target));
        world_->StartAgent(node);
        std::this_thread::sleep_for(std::chrono::milliseconds(delay_ms));
        Kill(node);
        world_->StartAgent(node);
        break;
      case 1:  // killed while syncing a change that is undone (or finished) while it is down
        ASSERT_NO_FATAL_FAILURE(Churn(static_cast<int>(round), rng));
        std::this_thread::sleep_for(std::chrono::milliseconds(delay_ms));
        Kill(node);
        ASSERT_NO_FATAL_FAILURE(SetPresent("tmp", false, "", {}));
        ASSERT_NO_FATAL_FAILURE(SetConfig(target));
        world_->StartAgent(node);
        break;
      case 2:  // both killed while down the objects change; one killed again into its restart
        ASSERT_NO_FATAL_FAILURE(Churn(static_cast<int>(round), rng));
        Kill(0);
        Kill(1);
        ASSERT_NO_FATAL_FAILURE(SetPresent("tmp", false, "", {}));
        ASSERT_NO_FATAL_FAILURE(SetConfig(target));
        world_->StartAgent(0);
        world_->StartAgent(1);
        std::this_thread::sleep_for(std::chrono::milliseconds(delay_ms));
        Kill(node);
        world_->StartAgent(node);
        break;
    }
    ASSERT_NO_FATAL_FAILURE(ExpectConverged(fresh[target.b], what));
    world_->Stamp("converged");
    ExpectAnswers(target);
    EXPECT_TRUE(held.Alive(5000ms)) << "the connection opened before round 0 died";
    if (HasFailure()) break;
  }
  world_->Stamp("soak done");
}

// A TCP connection from `source` (bound) to ip:port in the current network namespace; -1 when
// it cannot be made. Non-blocking: the caller polls.
int ConnectFrom(const std::string& source, const std::string& ip, int port) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return -1;
  sockaddr_in from{}, to{};
  from.sin_family = to.sin_family = AF_INET;
  to.sin_port = htons(static_cast<uint16_t>(port));
  inet_pton(AF_INET, source.c_str(), &from.sin_addr);
  inet_pton(AF_INET, ip.c_str(), &to.sin_addr);
  if (bind(fd, reinterpret_cast<sockaddr*>(&from), sizeof(from)) != 0 ||
      (connect(fd, reinterpret_cast<sockaddr*>(&to), sizeof(to)) != 0 && errno != EINPROGRESS)) {
    close(fd);
    return -1;
  }
  return fd;
}

// The status code of one GET /healthz (the only path the servers answer, as kube-router) from
// `source` to ip:port (0 when none came within `timeout`).
int HttpStatus(const std::string& source, const std::string& ip, int port,
               std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  int fd = ConnectFrom(source, ip, port);
  if (fd < 0) return 0;
  const std::string request = "GET /healthz HTTP/1.1\r\nHost: node\r\nConnection: close\r\n\r\n";
  size_t sent = 0;
  std::string answer;
  while (std::chrono::steady_clock::now() < deadline) {
    const int left = static_cast<int>(std::chrono::duration_cast<std::chrono::milliseconds>(
                                          deadline - std::chrono::steady_clock::now())
                                          .count());
    pollfd p{fd, static_cast<short>(sent < request.size() ? POLLOUT : POLLIN), 0};
    if (poll(&p, 1, std::max(left, 1)) <= 0) continue;
    if (sent < request.size()) {
      ssize_t n = send(fd, request.data() + sent, request.size() - sent, MSG_NOSIGNAL);
      if (n <= 0) break;
      sent += static_cast<size_t>(n);
      continue;
    }
    char buf[512];
    ssize_t n = recv(fd, buf, sizeof(buf), 0);
    if (n <= 0) break;
    answer.append(buf, static_cast<size_t>(n));
    if (answer.find("\r\n") != std::string::npos) break;
  }
  close(fd);
  std::smatch m;
  return std::regex_search(answer, m, std::regex("^HTTP/1\\.[01] ([0-9]{3})")) ? std::stoi(m[1])
                                                                               : 0;
}

// VmRSS (KiB) of the agent of `node` of this world (found by its command line); 0 if none.
long AgentRssKiB(const std::string& node) {
  for (const auto& entry : std::filesystem::directory_iterator("/proc")) {
    const std::string args = ReadFile(entry.path() / "cmdline");
    if (args.find("--run-service-proxy") == std::string::npos ||
        args.find(std::string("--hostname-override=") + node + '\0') == std::string::npos) {
      continue;
    }
    std::ifstream status(entry.path() / "status");
    for (std::string line; std::getline(status, line);) {
      if (line.rfind("VmRSS:", 0) == 0) return std::strtol(line.c_str() + 6, nullptr, 10);
    }
  }
  return 0;
}

// Issue 16, resource bounds, with the real agent: the healthCheckNodePort server of a
// LoadBalancer Service with externalTrafficPolicy=Local (on the node address, reachable by
// anyone who reaches the node) keeps answering the load balancer's probe while 400 connections
// from 50 other addresses hold half-sent requests (re-opened as the server closes them), and the
// agent's memory stays bounded. The server's caps themselves: proxy_net_unit_test
// HealthCheckServers.KeepAnsweringUnderHeldIdleConnectionsWithinTheCap.
TEST_F(ProxySoakVmTest, HealthCheckNodePortAnswersWhileManyIdleConnectionsAreHeld) {
  ASSERT_NO_FATAL_FAILURE(SetConfig({false}));  // "local" with healthCheckNodePort 30300
  if (!running_) {
    std::vector<std::string> state;
    ASSERT_NO_FATAL_FAILURE(FreshState(&state, /*first=*/true));
  }
  const std::string node_ip = world_->NodeIp(0);
  ScopedNetns outside(world_->ClientNs());
  // node0 has the local endpoint a0: 200.
  int status = 0;
  ASSERT_TRUE(WaitFor(
      [&] { return (status = HttpStatus(ProxyWorld::kClientIp, node_ip, 30300, 3000ms)) == 200; },
      60s))
      << "status " << status << "\n"
      << KernelState(0);
  std::vector<std::string> sources;
  std::string add;
  for (int i = 100; i < 150; ++i) {
    sources.push_back("192.0.2." + std::to_string(i));
    add += "addr add " + sources.back() + "/24 dev eth0\n";
  }
  auto added = Exec({"ip", "-batch", "-"}, add);
  ASSERT_TRUE(added.ok() && added->exit_code == 0) << "client addresses";
  const long rss_before = AgentRssKiB(world_->NodeName(0));
  ASSERT_GT(rss_before, 0);
  const std::string head = "GET / HTTP/1.1\r\nHost: x\r\nX-Slow: ";  // never ends
  std::vector<int> crowd(400, -1);
  // Opens every slot that is closed (never opened, refused, or closed by the server).
  auto top_up = [&] {
    for (size_t i = 0; i < crowd.size(); ++i) {
      if (crowd[i] >= 0) {
        pollfd p{crowd[i], POLLIN, 0};
        char c;
        if (poll(&p, 1, 0) == 0 || recv(crowd[i], &c, 1, MSG_DONTWAIT) > 0) continue;
        close(crowd[i]);
      }
      crowd[i] = ConnectFrom(sources[i % sources.size()], node_ip, 30300);
      if (crowd[i] >= 0) {
        pollfd p{crowd[i], POLLOUT, 0};
        if (poll(&p, 1, 200) == 1) (void)send(crowd[i], head.data(), head.size(), MSG_NOSIGNAL);
      }
    }
  };
  int answered = 0;
  for (int probe = 0; probe < 10; ++probe) {
    top_up();
    const auto asked = std::chrono::steady_clock::now();
    const int status = HttpStatus(ProxyWorld::kClientIp, node_ip, 30300, 5000ms);
    const auto took = std::chrono::steady_clock::now() - asked;
    EXPECT_EQ(status, 200) << "probe " << probe;
    EXPECT_LT(took, 3s) << "probe " << probe;
    if (status == 200) ++answered;
  }
  const long rss_after = AgentRssKiB(world_->NodeName(0));
  for (int fd : crowd) {
    if (fd >= 0) close(fd);
  }
  (void)Exec({"ip", "-batch", "-"}, std::regex_replace(add, std::regex("addr add"), "addr del"));
  EXPECT_EQ(answered, 10);
  EXPECT_LT(rss_after - rss_before, 32 * 1024) << "agent RSS grew from " << rss_before << " KiB";
  // The crowd is gone: the server still answers.
  EXPECT_TRUE(WaitFor(
      [&] { return HttpStatus(ProxyWorld::kClientIp, node_ip, 30300, 3000ms) == 200; }, 20s));
}

}  // namespace
}  // namespace kr::testing::soak_vm_test
