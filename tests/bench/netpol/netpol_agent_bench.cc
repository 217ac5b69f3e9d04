// End-to-end network policy benchmark through the real binary: the time from a pod-label change
// on the API server to the changed packet verdict, and the agent's RSS.
//
// fake-apiserver holds 1,000 policies over 5,000 pods (the shapes of netpol_bench), plus two
// real pods, ns0/client and ns0/server, in network namespaces on the agent's node. The
// server is selected by ns0/policy0, which lets role=client pods reach TCP 80. Each round
// PATCHes one label on the API server (the server's app: it leaves or rejoins the policy's
// targets; or the client's role: it joins or leaves the peers) and probes client -> server:80
// until the verdict flips; the latency runs from sending the PATCH to the first probe with the
// new verdict. The baseline, measured in the same run, is the same round in
// a cluster holding only those two pods and that one policy.
// Usage (root): netpol_agent_bench [nft|legacy] [rounds]
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <string>
#include <vector>

#include "kube_router/netpol/naming.h"
#include "lib/agent_bench.h"
#include "lib/bench_cluster.h"
#include "lib/binaries.h"
#include "lib/netns.h"
#include "lib/podnet.h"

namespace {

using Clock = std::chrono::steady_clock;
using kr::testing::Percentile;
using kr::testing::PodNetwork;
using kr::testing::Process;
using kr::testing::Proto;

using kr::testing::kNetpolBenchLocalEvery;
using kr::testing::kNetpolBenchNamespaces;
using kr::testing::kNetpolBenchPodsPerNamespace;
using kr::testing::kNetpolBenchPoliciesPerNamespace;
using kr::testing::NetpolBenchPodIp;
constexpr int kTeams = 5;  // team values over the namespaces
constexpr char kNode[] = "bench-node";

double Ms(Clock::duration d) { return std::chrono::duration<double, std::milli>(d).count(); }

int Fail(const std::string& why) {
  std::fprintf(stderr, "netpol_agent_bench: %s\n", why.c_str());
  return 1;
}

std::string NamespaceJson(int n) {
  return kr::testing::BenchNamespaceJson("ns" + std::to_string(n),
                                         "t" + std::to_string(n % kTeams));
}

std::string PodJson(const std::string& ns, const std::string& name, const std::string& ip,
                    const std::string& node, const std::string& app, const std::string& role) {
  return kr::testing::BenchPodJson(
      {.namespace_ = ns, .name = name, .node = node, .ip = ip, .app = app, .role = role});
}

std::string PolicyJson(int n, int i) { return kr::testing::NetpolBenchPolicyJson(n, i, kTeams); }

// The manifests: the two real pods and policy0 in ns0, and with `big` the whole cluster.
std::string Manifests(bool big, const PodNetwork& net) {
  std::vector<std::string> items = {
      NamespaceJson(0), PodJson("ns0", "server", net.pod("ns0/server").ip, kNode, "app0", "server"),
      PodJson("ns0", "client", net.pod("ns0/client").ip, kNode, "app1", "server"),
      PolicyJson(0, 0)};
  if (big) {
    for (int n = 0; n < kNetpolBenchNamespaces; ++n) {
      if (n > 0) items.push_back(NamespaceJson(n));
      for (int p = 0; p < kNetpolBenchPodsPerNamespace; ++p) {
        items.push_back(PodJson("ns" + std::to_string(n), "pod" + std::to_string(p),
                                NetpolBenchPodIp(n, p),
                                p % kNetpolBenchLocalEvery == 0 ? kNode : "other-node",
                                "app" + std::to_string(p % kNetpolBenchPoliciesPerNamespace),
                                p % 2 ? "client" : "server"));
      }
      for (int i = 0; i < kNetpolBenchPoliciesPerNamespace; ++i) {
        if (n > 0 || i > 0) items.push_back(PolicyJson(n, i));
      }
    }
  }
  return kr::testing::BenchListJson(items);
}

struct Run {
  std::vector<double> target_ms;  // the server entering or leaving the policy's targets
  std::vector<double> peer_ms;    // the client entering or leaving the policy's peers
  double startup_ms = 0;  // agent start -> the server's chain and the first verdict in place
  long rss_kib = 0;
  long peak_rss_kib = 0;
};

// Starts fake-apiserver and the agent for one cluster size and measures `rounds` label flips.
std::string Measure(bool big, const std::string& mode, int rounds, Run& out) {
  kr::testing::TempDir dir;
  PodNetwork net(big ? "nab" : "nas");
  net.AddNode(kNode);
  for (const char* pod : {"ns0/server", "ns0/client"}) net.AddPod(0, pod);
  net.Serve("ns0/server", 80, Proto::kTcp);
  auto& node = net.nodes()[0];

  kr::testing::FakeApiServer api;
  if (auto e = kr::testing::StartFakeApiServer(*node.ns, dir.path(), Manifests(big, net),
                                               kr::testing::kFakeApiServerBinary,
                                               std::chrono::seconds(120), api);
      !e.empty()) {
    return e;
  }
  const std::string& kubeconfig = api.kubeconfig;
  const int port = api.port;

  auto start = Clock::now();
  Process agent(node.ns->Wrap(kr::testing::BenchAgentArgv({.binary = kr::testing::kAgentBinary,
                                                           .kubeconfig = kubeconfig,
                                                           .node = kNode,
                                                           .extra = {"--iptables-mode=" + mode}})),
                dir.path() + "/agent.log");
  const std::string server_chain = kr::netpol::PodChainName("ns0", "server");
  const std::string server_ip = net.pod("ns0/server").ip;
  bool ready = kr::testing::WaitFor(
      [&] {
        auto rules = node.ns->Sh("iptables-" + mode + "-save -t filter");
        return rules.ok() && rules->find(":" + server_chain) != std::string::npos &&
               !net.Probe("ns0/client", server_ip, 80, Proto::kTcp, 300);
      },
      std::chrono::seconds(600));
  if (!ready) return "the agent never programmed the server's chain: " + agent.Log();
  out.startup_ms = Ms(Clock::now() - start);

  // Four changes in turn, each flipping the verdict: the server leaves policy0's targets and
  // comes back (its pod chain and a target set change), then the client joins the policy's
  // peers and leaves them (a peer set changes).
  struct Change {
    const char* pod;
    const char* label;
    const char* value;
    bool target;  // a target (pod chain) change, else a peer change
  };
  const Change kChanges[] = {{"server", "app", "unselected", true},
                             {"server", "app", "app0", true},
                             {"client", "role", "client", false},
                             {"client", "role", "server", false}};
  for (int round = 0; round < rounds; ++round) {
    const Change& change = kChanges[round % 4];
    bool allowed = round % 2 == 0;
    std::string body = std::string(R"({"metadata":{"labels":{")") + change.label + R"(":")" +
                       change.value + "\"}}}";
    auto sent = Clock::now();
    if (!kr::testing::HttpRequest(*node.ns, port, "PATCH",
                                  std::string("/api/v1/namespaces/ns0/pods/") + change.pod,
                                  "application/merge-patch+json", body)) {
      return "PATCH failed";
    }
    bool flipped = kr::testing::WaitFor(
        [&] { return net.Probe("ns0/client", server_ip, 80, Proto::kTcp, 300) == allowed; },
        std::chrono::seconds(30));
    if (!flipped) return "the verdict did not change in round " + std::to_string(round);
    (change.target ? out.target_ms : out.peer_ms).push_back(Ms(Clock::now() - sent));
  }
  out.rss_kib = kr::testing::ProcStatusKib(agent.pid(), "VmRSS:");
  out.peak_rss_kib = kr::testing::ProcStatusKib(agent.pid(), "VmHWM:");
  return "";
}

}  // namespace

int main(int argc, char** argv) {
  if (!kr::testing::IsRoot()) return Fail("needs root (creates network namespaces)");
  std::string mode = argc > 1 ? argv[1] : "nft";
  int rounds = argc > 2 ? std::atoi(argv[2]) : 100;
  if (mode != "nft" && mode != "legacy") return Fail("mode must be nft or legacy");
  if (rounds < 4) return Fail("rounds must be at least 4");

  Run small, big;
  if (auto why = Measure(false, mode, rounds, small); !why.empty()) return Fail("baseline: " + why);
  if (auto why = Measure(true, mode, rounds, big); !why.empty()) return Fail(why);

  std::printf("netpol agent benchmark (real kube-router + fake-apiserver, iptables %s)\n",
              mode.c_str());
  std::printf("  cluster: %d policies, %d pods (%d on the agent's node) + 2 real pods\n",
              kNetpolBenchNamespaces * kNetpolBenchPoliciesPerNamespace,
              kNetpolBenchNamespaces * kNetpolBenchPodsPerNamespace,
              kNetpolBenchNamespaces * kNetpolBenchPodsPerNamespace / kNetpolBenchLocalEvery);
  std::printf("  pod label PATCH on the API server -> changed packet verdict (n=%d):\n", rounds);
  auto report = [](const char* what, const std::vector<double>& big_ms,
                   const std::vector<double>& small_ms) {
    std::printf("    %s: p50 %6.1f ms  p99 %6.1f ms  max %6.1f ms (target p99 <= 100)\n", what,
                Percentile(big_ms, 0.5), Percentile(big_ms, 0.99), Percentile(big_ms, 1.0));
    std::printf(
        "      baseline (2 pods, 1 policy, same run): p50 %6.1f ms  p99 %6.1f ms"
        "  -> ratio p50 %.2f x, p99 %.2f x\n",
        Percentile(small_ms, 0.5), Percentile(small_ms, 0.99),
        Percentile(big_ms, 0.5) / Percentile(small_ms, 0.5),
        Percentile(big_ms, 0.99) / Percentile(small_ms, 0.99));
  };
  report("target change (pod chain + target set)", big.target_ms, small.target_ms);
  report("peer change (peer set)                ", big.peer_ms, small.peer_ms);
  std::vector<double> big_all = big.target_ms, small_all = small.target_ms;
  big_all.insert(big_all.end(), big.peer_ms.begin(), big.peer_ms.end());
  small_all.insert(small_all.end(), small.peer_ms.begin(), small.peer_ms.end());
  report("all rounds                            ", big_all, small_all);
  std::printf("  agent start -> first verdict in place: big %.0f ms, baseline %.0f ms\n",
              big.startup_ms, small.startup_ms);
  std::printf("  agent RSS: big %ld KiB (peak %ld KiB), baseline %ld KiB (peak %ld KiB)\n",
              big.rss_kib, big.peak_rss_kib, small.rss_kib, small.peak_rss_kib);
  return 0;
}
