// Whole-agent memory benchmark (issue 14): the real kube-router, firewall and router on, against
// fake-apiserver holding 10,000 Services, 10,000 EndpointSlices of 10 endpoints (100,000
// endpoints), 5,000 pods (500 on the agent's node), 1,000 NetworkPolicies, 50 namespaces and
// 100 nodes. The service proxy needs the guest kernel's ip_vs and is not run here.
//
// Each run starts fake-apiserver and the agent in a fresh network namespace, waits for every
// controller's first successful sync, then for the RSS to settle, and prints:
//   steady-state RSS (VmRSS), cold-start peak (VmHWM), the agent's own heap gauges from
//   /metrics (in use, free in the arenas, the caches' share at first sync).
// Runs: idle (an empty cluster: only the agent's Node), the large cluster with firewall and
// router, firewall only, router only, the large cluster with a BGP peer (BIRD, in a namespace of
// its own on the node's subnet, announcing the other nodes' pod CIDRs and external routes: the
// RIBs' share) for the per-component breakdown, and with --baseline=PATH the large cluster
// again with another kube-router binary (e.g. main before a change) for ratios.
// Usage (root): agent_memory_bench [--baseline=PATH] [--scale=F] [--wrap="heaptrack -o F"]
//                                  [--only-full] [--bgp-routes=N]
//   --scale shrinks or grows every count (1 = the issue's cluster); --wrap prefixes the agent's
//   command line (a profiler; the RSS figures are then the profiler's); --only-full runs only
//   the full cluster (and the baseline's); --bgp-routes sets the peer's external routes (5000).
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "lib/agent_bench.h"
#include "lib/bench_cluster.h"
#include "lib/binaries.h"
#include "lib/netns.h"

namespace {

using Clock = std::chrono::steady_clock;
using kr::testing::Netns;
using kr::testing::Process;

constexpr char kNode[] = "bench-node";
constexpr int kMetricsPort = 20245;  // inside the run's own namespace: always free

struct Shape {
  int services = 10000;
  int endpoints_per_slice = 10;  // one slice per Service
  int pods = 5000;
  int local_every = 10;  // every 10th pod on the agent's node
  int policies = 1000;
  int namespaces = 50;
  int nodes = 100;
  // The BGP run's peer (a ToR: BIRD in its own namespace on the node's subnet) announces the
  // other nodes' pod CIDRs and this many external /24s (under the agent's limit of 10,000
  // prefixes per peer).
  int external_routes = 5000;
  int PeerRoutes() const { return nodes - 1 + external_routes; }
};

int Fail(const std::string& why) {
  std::fprintf(stderr, "agent_memory_bench: %s\n", why.c_str());
  return 1;
}

std::string Ip(int a, int i) {
  return std::to_string(a) + "." + std::to_string((i >> 16) & 255) + "." +
         std::to_string((i >> 8) & 255) + "." + std::to_string(i & 255);
}

constexpr char kPeerAddress[] = "172.20.255.254";
constexpr int kPeerAsn = 64600;

// BIRD's configuration: static blackhole routes exported to the agent (next hop: BIRD itself);
// no kernel protocol, so BIRD writes nothing to its namespace's routing table.
std::string BirdConfig(const Shape& s) {
  std::string conf = std::string("router id ") + kPeerAddress +
                     ";\nprotocol device { }\nprotocol static announced { ipv4;\n";
  for (int i = 1; i < s.nodes; ++i) {
    conf += "route 10.244." + std::to_string(i) + ".0/24 blackhole;\n";
  }
  for (int i = 0; i < s.external_routes; ++i) {
    conf += "route " + Ip(20, i << 8) + "/24 blackhole;\n";
  }
  return conf + "};\nprotocol bgp agent { local " + kPeerAddress + " as " +
         std::to_string(kPeerAsn) +
         "; neighbor 172.20.0.1 as 64512;\n  ipv4 { import none; export all; }; }\n";
}

std::string NodeName(int i) { return i == 0 ? kNode : "node-" + std::to_string(i); }

// Nodes on 172.20.0.0/16 (the agent's node is 172.20.0.1), pod CIDRs 10.244.<i>.0/24.
std::string NodeJson(int i) {
  return R"({"apiVersion":"v1","kind":"Node","metadata":{"name":")" + NodeName(i) +
         R"(","labels":{"kubernetes.io/hostname":")" + NodeName(i) +
         R"(","kubernetes.io/os":"linux"}},"spec":{"podCIDR":"10.244.)" + std::to_string(i) +
         R"(.0/24","podCIDRs":["10.244.)" + std::to_string(i) +
         R"(.0/24"]},"status":{"addresses":[{"type":"InternalIP","address":"172.20.0.)" +
         std::to_string(i + 1) + R"("},{"type":"Hostname","address":")" + NodeName(i) + R"("}]}})";
}

std::string NamespaceJson(int n) {
  return kr::testing::BenchNamespaceJson("ns" + std::to_string(n), "t" + std::to_string(n % 7));
}

// Pod i lives in namespace i % namespaces on node i % nodes... except every `local_every`th,
// which is on the agent's node; its IP is in its node's pod CIDR. It carries what a
// Deployment's pod carries (uid, pod-template-hash, an annotation, hostIP).
std::string PodJson(const Shape& s, int i) {
  int node = i % s.local_every == 0 ? 0 : 1 + i % (s.nodes - 1);
  return kr::testing::BenchPodJson(
      {.namespace_ = "ns" + std::to_string(i % s.namespaces),
       .name = "pod-" + std::to_string(i),
       .node = NodeName(node),
       .ip = "10.244." + std::to_string(node) + "." + std::to_string(2 + (i / s.nodes) % 250),
       .app = "app" + std::to_string(i % 20),
       .role = i % 2 ? "client" : "server",
       .full_metadata = true,
       .host_ip = "172.20.0." + std::to_string(node + 1),
       .serial = i});
}

// The shared policy shape (tests/lib/bench_cluster.h): policy i selects app<i % 20> and admits
// team t<i % 7>; every fourth also has egress.
std::string PolicyJson(const Shape& s, int i) {
  return kr::testing::BenchPolicyJson("ns" + std::to_string(i % s.namespaces),
                                      "policy" + std::to_string(i), "app" + std::to_string(i % 20),
                                      "t" + std::to_string(i % 7), i % 4 == 0);
}

// Service i: ClusterIP 10.96.x.y, selector app<i%20>, ports 80 -> http and 443 -> 8443.
std::string ServiceJson(const Shape& s, int i) {
  std::string ns = "ns" + std::to_string(i % s.namespaces);
  return R"({"apiVersion":"v1","kind":"Service","metadata":{"namespace":")" + ns +
         R"(","name":"svc-)" + std::to_string(i) + R"(","labels":{"app":"app)" +
         std::to_string(i % 20) + R"("}},"spec":{"type":"ClusterIP","clusterIP":")" +
         Ip(10, (96 << 16) + i + 1) + R"(","clusterIPs":[")" + Ip(10, (96 << 16) + i + 1) +
         R"("],"ipFamilies":["IPv4"],"ipFamilyPolicy":"SingleStack","selector":{"app":"app)" +
         std::to_string(i % 20) +
         R"("},"ports":[{"name":"http","protocol":"TCP","port":80,"targetPort":"http"},)"
         R"({"name":"https","protocol":"TCP","port":443,"targetPort":8443}],)"
         R"("sessionAffinity":"None","internalTrafficPolicy":"Cluster"}})";
}

// The slice of Service i: endpoints on pod CIDRs of every node (addresses need not be pods).
std::string SliceJson(const Shape& s, int i) {
  std::string ns = "ns" + std::to_string(i % s.namespaces);
  std::string out = R"({"apiVersion":"discovery.k8s.io/v1","kind":"EndpointSlice","metadata":)"
                    R"({"namespace":")" +
                    ns + R"(","name":"svc-)" + std::to_string(i) +
                    R"(-x7k2p","labels":{"kubernetes.io/service-name":"svc-)" + std::to_string(i) +
                    R"(","endpointslice.kubernetes.io/managed-by":)"
                    R"("endpointslice-controller.k8s.io"}},"addressType":"IPv4","endpoints":[)";
  for (int e = 0; e < s.endpoints_per_slice; ++e) {
    int n = i * s.endpoints_per_slice + e;
    int node = n % s.nodes;
    out += std::string(e ? "," : "") + R"({"addresses":[")" + Ip(10, (128 << 16) + n % (1 << 20)) +
           R"("],"conditions":{"ready":true,"serving":true,"terminating":false},"nodeName":")" +
           NodeName(node) + R"(","zone":"zone-)" + std::to_string(node % 3) +
           R"(","targetRef":{"kind":"Pod","namespace":")" + ns + R"(","name":"pod-)" +
           std::to_string(n) + R"("}})";
  }
  return out + R"(],"ports":[{"name":"http","protocol":"TCP","port":8080},)"
               R"({"name":"https","protocol":"TCP","port":8443}]})";
}

std::string Manifests(const Shape& s, bool empty) {
  std::vector<std::string> items = {NodeJson(0)};
  if (!empty) {
    for (int i = 1; i < s.nodes; ++i) items.push_back(NodeJson(i));
    for (int n = 0; n < s.namespaces; ++n) items.push_back(NamespaceJson(n));
    for (int i = 0; i < s.pods; ++i) items.push_back(PodJson(s, i));
    for (int i = 0; i < s.policies; ++i) items.push_back(PolicyJson(s, i));
    for (int i = 0; i < s.services; ++i) items.push_back(ServiceJson(s, i));
    for (int i = 0; i < s.services; ++i) items.push_back(SliceJson(s, i));
  }
  return kr::testing::BenchListJson(items);
}

// One sample of `name` (with its labels, e.g. `x{a="b"}`) from a Prometheus text exposition.
double Sample(const std::string& text, const std::string& name) {
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) {
    if (line.rfind(name + " ", 0) == 0) return std::atof(line.c_str() + name.size() + 1);
  }
  return -1;
}

struct Figures {
  double synced_s = 0;  // agent start -> every controller synced once
  long rss_kib = 0;     // steady state
  long peak_kib = 0;    // VmHWM: the cold start's peak
  double heap_in_use = 0, heap_free = 0, caches_heap = 0;  // bytes, from /metrics
  double learned_routes = 0;  // BGP routes installed in the kernel (kube_router_host_routes_synced)
};

struct RunSpec {
  std::string label;
  std::string binary;
  bool firewall = true;
  bool router = true;
  bool empty = false;
  bool bgp_peer = false;  // a BIRD peer announcing Shape::PeerRoutes() routes
};

std::string Measure(const Shape& shape, const RunSpec& spec, const std::string& wrap,
                    Figures& out) {
  kr::testing::TempDir dir;
  Netns ns("krmem");
  if (auto r =
          ns.Sh("ip link set lo up && ip link add eth0 type veth peer name eth1 && "
                "ip addr add 172.20.0.1/16 dev eth0 && ip link set eth0 up && ip link set eth1 up");
      !r.ok()) {
    return "netns setup: " + r.error();
  }
  // The peer gets the veth's other end; it lives as long as this run (declared after `ns`,
  // so it is stopped before the namespaces go).
  std::unique_ptr<Netns> peer_ns;
  std::unique_ptr<Process> bird;
  if (spec.bgp_peer) {
    peer_ns = std::make_unique<Netns>("krmempeer");
    if (auto r = ns.Sh("ip link set eth1 netns " + peer_ns->name()); !r.ok()) {
      return "moving the peer's link: " + r.error();
    }
    if (auto r = peer_ns->Sh(std::string("ip link set lo up && ip addr add ") + kPeerAddress +
                             "/16 dev eth1 && ip link set eth1 up");
        !r.ok()) {
      return "peer netns setup: " + r.error();
    }
    const std::string conf = dir.path() + "/bird.conf";
    std::ofstream(conf) << BirdConfig(shape);
    bird = std::make_unique<Process>(
        peer_ns->Wrap({"bird", "-f", "-c", conf, "-s", dir.path() + "/bird.ctl"}),
        dir.path() + "/bird.log");
  }
  kr::testing::FakeApiServer api;
  if (auto e = kr::testing::StartFakeApiServer(ns, dir.path(), Manifests(shape, spec.empty),
                                               kr::testing::kFakeApiServerBinary,
                                               std::chrono::seconds(300), api);
      !e.empty()) {
    return e;
  }
  std::vector<std::string> argv;
  std::istringstream words(wrap);
  for (std::string w; words >> w;) argv.push_back(w);
  kr::testing::BenchAgent flags{
      .binary = spec.binary,
      .kubeconfig = api.kubeconfig,
      .node = kNode,
      .firewall = spec.firewall,
      .router = spec.router,
      .extra = {"--metrics-port=" + std::to_string(kMetricsPort), "--enable-cni=false",
                "--gobgp-admin-port=0", "--routes-sync-period=60m", "--cache-sync-timeout=300s"}};
  if (spec.bgp_peer) {
    flags.extra.push_back(std::string("--peer-router-ips=") + kPeerAddress);
    flags.extra.push_back("--peer-router-asns=" + std::to_string(kPeerAsn));
  }
  for (const std::string& a : kr::testing::BenchAgentArgv(flags)) argv.push_back(a);
  auto start = Clock::now();
  Process agent(ns.Wrap(argv), dir.path() + "/agent.log");
  auto metrics = [&]() -> std::string {
    auto r = ns.Sh("curl -s --max-time 10 http://127.0.0.1:" + std::to_string(kMetricsPort) +
                   "/metrics");
    return r.ok() ? *r : "";
  };
  std::vector<std::string> controllers;
  if (spec.firewall) controllers.push_back("NetworkPolicy");
  if (spec.router) controllers.push_back("NetworkRoutes");
  bool synced = kr::testing::WaitFor(
      [&] {
        if (!agent.Running() || (bird && !bird->Running())) return true;
        std::string text = metrics();
        for (const auto& c : controllers) {
          if (Sample(text,
                     "kube_router_controller_last_successful_sync_timestamp_seconds{"
                     "controller=\"" +
                         c + "\"}") <= 0) {
            return false;
          }
        }
        // The BGP run measures the RIBs full: every announced route learned and installed.
        if (spec.bgp_peer && Sample(text, "kube_router_host_routes_synced") < shape.PeerRoutes()) {
          return false;
        }
        return !text.empty();
      },
      std::chrono::seconds(900));
  if (!agent.Running()) return "the agent exited: " + agent.Log();
  if (bird && !bird->Running()) return "BIRD exited: " + bird->Log();
  if (!synced) {
    return "the controllers never synced" +
           std::string(spec.bgp_peer
                           ? " (or the peer's routes never arrived; BIRD: " + bird->Log() + ")"
                           : "") +
           ": " + agent.Log();
  }
  out.synced_s = std::chrono::duration<double>(Clock::now() - start).count();
  // Settled: the RSS moved less than 1% over the last 5 one-second samples (at most 2 min).
  const pid_t pid = agent.pid();
  std::vector<long> samples;
  auto next = Clock::now();
  kr::testing::WaitFor(
      [&] {
        if (Clock::now() < next) return false;
        next += std::chrono::seconds(1);
        samples.push_back(kr::testing::ProcStatusKib(pid, "VmRSS:"));
        if (samples.size() < 5) return false;
        auto [lo, hi] = std::minmax_element(samples.end() - 5, samples.end());
        return *hi - *lo <= *hi / 100;
      },
      std::chrono::seconds(120));
  std::string text = metrics();
  out.rss_kib = kr::testing::ProcStatusKib(pid, "VmRSS:");
  out.peak_kib = kr::testing::ProcStatusKib(pid, "VmHWM:");
  out.heap_in_use = Sample(text, "kube_router_heap_in_use_bytes");
  out.heap_free = Sample(text, "kube_router_heap_free_bytes");
  out.caches_heap = Sample(text, "kube_router_k8s_caches_heap_bytes");
  out.learned_routes = Sample(text, "kube_router_host_routes_synced");
  return "";
}

double MiB(double bytes) { return bytes / (1 << 20); }
double KibToMiB(long kib) { return static_cast<double>(kib) / 1024; }

void Print(const RunSpec& spec, const Figures& f) {
  std::printf(
      "  %-34s RSS %6.1f MiB  peak %6.1f MiB (%.2fx)  heap in use %6.1f MiB, free %5.1f MiB,"
      " caches at sync %6.1f MiB  synced in %5.1f s\n",
      spec.label.c_str(), KibToMiB(f.rss_kib), KibToMiB(f.peak_kib),
      static_cast<double>(f.peak_kib) / static_cast<double>(f.rss_kib), MiB(f.heap_in_use),
      MiB(f.heap_free), MiB(f.caches_heap), f.synced_s);
}

}  // namespace

int main(int argc, char** argv) {
  if (!kr::testing::IsRoot()) return Fail("needs root (creates network namespaces)");
  std::string baseline, wrap;
  double scale = 1;
  bool only_big = false;
  int external_routes = Shape().external_routes;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a.rfind("--baseline=", 0) == 0) {
      baseline = a.substr(11);
    } else if (a.rfind("--scale=", 0) == 0) {
      scale = std::atof(a.c_str() + 8);
    } else if (a.rfind("--wrap=", 0) == 0) {
      wrap = a.substr(7);
    } else if (a == "--only-full") {
      only_big = true;
    } else if (a.rfind("--bgp-routes=", 0) == 0) {
      external_routes = std::atoi(a.c_str() + 13);
    } else {
      return Fail(
          "usage: agent_memory_bench [--baseline=PATH] [--scale=F] [--wrap=CMD] "
          "[--only-full] [--bgp-routes=N]");
    }
  }
  if (!(scale > 0)) return Fail("--scale must be positive");
  if (external_routes < 0 || external_routes > 9000) {
    return Fail("--bgp-routes must be 0..9000 (the agent takes 10,000 prefixes per peer)");
  }
  Shape shape;
  shape.external_routes = external_routes;
  auto scaled = [&](int n, int min) {
    return std::max(min, static_cast<int>(std::lround(n * scale)));
  };
  shape.services = scaled(shape.services, 1);
  shape.pods = scaled(shape.pods, 10);
  shape.policies = scaled(shape.policies, 1);

  std::vector<RunSpec> runs;
  const std::string agent = kr::testing::kAgentBinary;
  // Each run's index in `runs` (-1: not run).
  int full_run = 0, idle_run = -1, fw_run = -1, rt_run = -1, bgp_run = -1, base_run = -1,
      base_idle_run = -1;
  runs.push_back({"full cluster, firewall + router", agent, true, true, false});
  if (!only_big) {
    idle_run = static_cast<int>(runs.size());
    runs.push_back({"idle (empty cluster), fw + router", agent, true, true, true});
    fw_run = static_cast<int>(runs.size());
    runs.push_back({"full cluster, firewall only", agent, true, false, false});
    rt_run = static_cast<int>(runs.size());
    runs.push_back({"full cluster, router only", agent, false, true, false});
    bgp_run = static_cast<int>(runs.size());
    runs.push_back({"full cluster, fw + router, BGP peer", agent, true, true, false, true});
  }
  if (!baseline.empty()) {
    base_run = static_cast<int>(runs.size());
    runs.push_back({"baseline binary, full, fw + router", baseline, true, true, false});
    if (!only_big) {
      base_idle_run = static_cast<int>(runs.size());
      runs.push_back({"baseline binary, idle", baseline, true, true, true});
    }
  }
  std::printf("whole-agent memory benchmark (real kube-router + fake-apiserver, %s)\n",
              agent.c_str());
  std::printf(
      "  cluster: %d Services, %d EndpointSlices x %d endpoints, %d pods (%d on this node), "
      "%d NetworkPolicies, %d namespaces, %d nodes; service proxy not run (needs ip_vs)\n",
      shape.services, shape.services, shape.endpoints_per_slice, shape.pods,
      (shape.pods + shape.local_every - 1) / shape.local_every, shape.policies, shape.namespaces,
      shape.nodes);
  if (bgp_run >= 0) {
    std::printf(
        "  BGP run: a BIRD peer on the node's subnet announces %d routes (the other nodes' pod "
        "CIDRs and %d external /24s); measured once all are installed in the kernel\n",
        shape.PeerRoutes(), shape.external_routes);
  }
  std::vector<Figures> figures(runs.size());
  for (size_t i = 0; i < runs.size(); ++i) {
    if (auto why = Measure(shape, runs[i], wrap, figures[i]); !why.empty()) {
      return Fail(runs[i].label + ": " + why);
    }
    Print(runs[i], figures[i]);  // as it comes: a long run's figures survive a later failure
    std::fflush(stdout);
  }
  const Figures& full = figures[full_run];
  std::printf("  targets: steady %.1f MiB (<= 80), peak/steady %.2f (<= 1.5)",
              KibToMiB(full.rss_kib),
              static_cast<double>(full.peak_kib) / static_cast<double>(full.rss_kib));
  if (idle_run >= 0) std::printf(", idle %.1f MiB (<= 15)", KibToMiB(figures[idle_run].rss_kib));
  std::printf("\n");
  if (!only_big) {
    const Figures &idle = figures[idle_run], &fw = figures[fw_run], &rt = figures[rt_run],
                  &bgp = figures[bgp_run];
    std::printf("  breakdown (each run's RSS above the idle agent's):\n");
    std::printf("    firewall: %6.1f MiB (its caches: %.1f MiB heap)\n",
                KibToMiB(fw.rss_kib - idle.rss_kib), MiB(fw.caches_heap));
    std::printf("    router:   %6.1f MiB (its caches: %.1f MiB heap)\n",
                KibToMiB(rt.rss_kib - idle.rss_kib), MiB(rt.caches_heap));
    std::printf(
        "    both:     %6.1f MiB (caches: %.1f MiB heap; heap in use %.1f MiB, free %.1f)\n",
        KibToMiB(full.rss_kib - idle.rss_kib), MiB(full.caches_heap), MiB(full.heap_in_use),
        MiB(full.heap_free));
    // The RIBs: the same agent and cluster with the peer's routes learned and installed.
    std::printf(
        "    BGP RIBs: %6.1f MiB RSS, %.1f MiB heap in use (%.0f routes learned and installed: "
        "the BGP run above the full cluster's)\n",
        KibToMiB(bgp.rss_kib - full.rss_kib), MiB(bgp.heap_in_use - full.heap_in_use),
        bgp.learned_routes);
  }
  if (!baseline.empty()) {
    const Figures& base = figures[base_run];
    std::printf("  against the baseline binary %s (same run):\n", baseline.c_str());
    std::printf("    steady RSS %.2fx, peak %.2fx",
                static_cast<double>(full.rss_kib) / base.rss_kib,
                static_cast<double>(full.peak_kib) / base.peak_kib);
    if (base_idle_run >= 0) {
      std::printf(", idle %.2fx", static_cast<double>(figures[idle_run].rss_kib) /
                                      static_cast<double>(figures[base_idle_run].rss_kib));
    }
    std::printf("\n");
  }
  return 0;
}
