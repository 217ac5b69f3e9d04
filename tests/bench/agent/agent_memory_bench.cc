// Whole-agent memory benchmark (issue 14): the real kube-router, firewall and router on (and the
// service proxy with --proxy), against fake-apiserver holding 10,000 Services, 10,000
// EndpointSlices of 10 endpoints (100,000 endpoints), 5,000 pods (500 on the agent's node), 1,000
// NetworkPolicies, 50 namespaces and 100 nodes. The service proxy needs ip_vs, which the host
// kernel lacks: --proxy runs inside the guest kernel (guest_agent_memory_bench.sh, next to this
// file; docs/memory.md).
//
// Each run starts fake-apiserver and the agent in a fresh network namespace, waits for every
// controller's first successful sync, then for the RSS to settle, and prints:
//   steady-state RSS (VmRSS), cold-start peak (VmHWM), the agent's own heap gauges from
//   /metrics (in use, free in the arenas, the caches' share at first sync).
// Runs: idle (an empty cluster: only the agent's Node), the large cluster with firewall and
// router, firewall only, router only, the large cluster with a BGP peer (BIRD, in a namespace of
// its own on the node's subnet, announcing the other nodes' pod CIDRs and external routes: the
// RIBs' share) for the per-component breakdown, and with --baseline=PATH the large cluster
// again with another kube-router binary (e.g. main before a change) for ratios. With --proxy
// every run also has the service proxy on, and a proxy-only run is added.
// Usage (root): agent_memory_bench [--agent=PATH] [--baseline=PATH] [--scale=F] [--wrap="heaptrack
// -o F"]
//                                  [--only-full] [--bgp-routes=N] [--proxy] [--sync-timeout=S]
//   --agent replaces the build's kube-router (a copy: a long guest run is not disturbed by a
//   rebuild); --scale shrinks or grows every count (1 = the issue's cluster); --wrap prefixes the
//   agent's command line (a profiler; the RSS figures are then the profiler's); --only-full runs
//   only the full cluster (and the baseline's); --bgp-routes sets the peer's external routes
//   (5000); --sync-timeout sets the agent's --cache-sync-timeout and the wait for fake-apiserver
//   to S seconds and the wait for every controller's first sync to 2*S (900: under TCG on a loaded
//   host the issue's scale may need more; the RSS figures do not depend on speed).
// The controllers' first syncs are seen in the agent's -v=1 log, not on /metrics: with the proxy
// on, a scrape renders ten series per virtual service (tens of MiB of text at this scale) and
// would add its own peak; /metrics is read once, after the RSS figures (and, in the BGP run,
// every 5 s for the routes' count).
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "lib/agent_bench.h"
#include "lib/bench_cluster.h"
#include "lib/binaries.h"
#include "lib/netns.h"
#include "lib/podnet.h"

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

// The body of GET `path` on 127.0.0.1:`port` in `netns`, over a socket of this process (in the
// guest a process start costs 0.1-0.5 s of the one CPU the agent runs on); "" on any failure.
// Bounded: 256 MiB, 60 s without data.
std::string HttpGet(const Netns& netns, int port, const std::string& path) {
  int fd = -1;
  {
    kr::testing::ScopedNetns inside(netns.name());
    fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  }
  if (fd < 0) return "";
  timeval timeout{.tv_sec = 60, .tv_usec = 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof(timeout));
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  const std::string request =
      "GET " + path + " HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n";
  bool ok = connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0 &&
            send(fd, request.data(), request.size(), MSG_NOSIGNAL) ==
                static_cast<ssize_t>(request.size());
  std::string answer;
  std::vector<char> buf(1 << 16);
  ssize_t n = 0;
  while (ok && answer.size() < (256u << 20) && (n = recv(fd, buf.data(), buf.size(), 0)) > 0) {
    answer.append(buf.data(), static_cast<size_t>(n));
  }
  int error = errno;
  close(fd);
  size_t body = answer.find("\r\n\r\n");
  if (!ok || answer.rfind("HTTP/1.1 200", 0) != 0 || body == std::string::npos) {
    std::fprintf(stderr, "agent_memory_bench: GET %s: %s\n", path.c_str(),
                 answer.empty() ? std::strerror(error) : answer.substr(0, 200).c_str());
    return "";
  }
  return answer.substr(body + 4);
}

// True once the agent's log shows a successful sync of every controller in `names` (the
// runner's -v=1 line "<name>: <reason> sync done in <n>ms").
bool AllSynced(const std::string& log, const std::vector<std::string>& names) {
  for (const auto& name : names) {
    bool seen = false;
    for (size_t at = log.find(name + ": "); at != std::string::npos && !seen;
         at = log.find(name + ": ", at + 1)) {
      size_t eol = log.find('\n', at);
      seen = log.substr(at, eol == std::string::npos ? std::string::npos : eol - at)
                 .find(" sync done in ") != std::string::npos;
    }
    if (!seen) return false;
  }
  return true;
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
  kr::testing::ResidentByMapping resident;  // the steady state's RSS by mapping
};

struct RunSpec {
  std::string label;
  std::string binary;
  bool firewall = true;
  bool router = true;
  bool empty = false;
  bool bgp_peer = false;  // a BIRD peer announcing Shape::PeerRoutes() routes
  bool proxy = false;     // the service proxy (needs ip_vs: the guest)
};

std::string fake_apiserver = kr::testing::kFakeApiServerBinary;  // --fake-apiserver
std::chrono::seconds sync_timeout{900};                          // --sync-timeout

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
                                               fake_apiserver, sync_timeout, api);
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
      .service_proxy = spec.proxy,
      .extra = {"--metrics-port=" + std::to_string(kMetricsPort), "--enable-cni=false",
                "--gobgp-admin-port=0", "--routes-sync-period=60m", "--ipvs-sync-period=60m",
                "--cache-sync-timeout=" + std::to_string(sync_timeout.count()) + "s", "-v=1"}};
  if (spec.bgp_peer) {
    flags.extra.push_back(std::string("--peer-router-ips=") + kPeerAddress);
    flags.extra.push_back("--peer-router-asns=" + std::to_string(kPeerAsn));
  }
  for (const std::string& a : kr::testing::BenchAgentArgv(flags)) argv.push_back(a);
  auto start = Clock::now();
  Process agent(ns.Wrap(argv), dir.path() + "/agent.log");
  auto metrics = [&] { return HttpGet(ns, kMetricsPort, "/metrics"); };
  std::vector<std::string> controllers;
  if (spec.firewall) controllers.push_back("NetworkPolicy");
  if (spec.router) controllers.push_back("NetworkRoutes");
  if (spec.proxy) controllers.push_back("NetworkServices");
  auto next_look = Clock::now();
  bool synced = kr::testing::WaitFor(
      [&] {
        if (!agent.Running() || (bird && !bird->Running())) return true;
        if (Clock::now() < next_look) return false;
        next_look = Clock::now() + std::chrono::seconds(1);
        if (!AllSynced(agent.Log(), controllers)) return false;
        // The BGP run measures the RIBs full: every announced route learned and installed.
        if (spec.bgp_peer) {
          next_look = Clock::now() + std::chrono::seconds(5);
          return Sample(metrics(), "kube_router_host_routes_synced") >= shape.PeerRoutes();
        }
        return true;
      },
      2 * sync_timeout);
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
  out.rss_kib = kr::testing::ProcStatusKib(pid, "VmRSS:");
  out.peak_kib = kr::testing::ProcStatusKib(pid, "VmHWM:");
  out.resident = kr::testing::ReadResidentByMapping(pid);
  // After the RSS figures: the scrape allocates. In the guest a scrape can wait behind a long
  // sync, hence a few attempts.
  std::string text;
  for (int attempt = 0; attempt < 3 && text.empty(); ++attempt) text = metrics();
  if (text.empty()) {
    // Seen in the guest with the proxy on: the scrape (an IPVS dump, ten series per virtual
    // service) outlasted the metrics server's 5 s serve deadline and the answer was cut. The RSS
    // figures stand; the caches' heap comes from the agent's log line, the rest is unknown.
    std::fprintf(stderr, "agent_memory_bench: %s: /metrics did not answer; heap gauges n/a\n",
                 spec.label.c_str());
    out.heap_in_use = out.heap_free = -1;
    const std::string log = agent.Log();
    const std::string mark = "API caches synced (heap +";
    size_t at = log.find(mark);
    out.caches_heap =
        at == std::string::npos ? -1 : std::atof(log.c_str() + at + mark.size()) * (1 << 20);
    return "";
  }
  out.heap_in_use = Sample(text, "kube_router_heap_in_use_bytes");
  out.heap_free = Sample(text, "kube_router_heap_free_bytes");
  out.caches_heap = Sample(text, "kube_router_k8s_caches_heap_bytes");
  out.learned_routes = Sample(text, "kube_router_host_routes_synced");
  return "";
}

double MiB(double bytes) { return bytes / (1 << 20); }
double KibToMiB(long kib) { return static_cast<double>(kib) / 1024; }

// A heap gauge in MiB, or "n/a" when it was not read (negative: /metrics did not answer).
std::string GaugeMiB(double bytes) {
  if (bytes < 0) return "n/a";
  char text[32];
  std::snprintf(text, sizeof(text), "%.1f", MiB(bytes));
  return text;
}

void Print(const RunSpec& spec, const Figures& f) {
  std::printf(
      "  %-34s RSS %6.1f MiB  peak %6.1f MiB (%.2fx)  heap in use %6s MiB, free %5s MiB,"
      " caches at sync %6s MiB  synced in %5.1f s\n",
      spec.label.c_str(), KibToMiB(f.rss_kib), KibToMiB(f.peak_kib),
      static_cast<double>(f.peak_kib) / static_cast<double>(f.rss_kib),
      GaugeMiB(f.heap_in_use).c_str(), GaugeMiB(f.heap_free).c_str(),
      GaugeMiB(f.caches_heap).c_str(), f.synced_s);
  // Where the steady state's RSS lives: the heap the allocator keeps resident (arenas) against
  // the binary and the threads' stacks, which no heap gauge sees.
  const auto& r = f.resident;
  std::printf(
      "    RSS by mapping: binary %.1f, main arena %.1f, other arenas %.1f, thread stacks %.1f "
      "(%d),"
      " other anonymous %.1f, other %.1f MiB\n",
      KibToMiB(r.binary_kib), KibToMiB(r.brk_heap_kib), KibToMiB(r.arenas_kib),
      KibToMiB(r.stacks_kib), r.thread_stacks, KibToMiB(r.other_anon_kib), KibToMiB(r.other_kib));
}

}  // namespace

int main(int argc, char** argv) {
  if (!kr::testing::IsRoot()) return Fail("needs root (creates network namespaces)");
  std::string agent = kr::testing::kAgentBinary, baseline, wrap;
  double scale = 1;
  // The runs besides the full cluster's (and the baseline's):
  // --runs=idle,firewall,router,proxy,bgp.
  std::string extra_runs = "idle,firewall,router,proxy,bgp";
  bool proxy = false;
  int external_routes = Shape().external_routes;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a.rfind("--agent=", 0) == 0) {
      agent = a.substr(8);
    } else if (a.rfind("--baseline=", 0) == 0) {
      baseline = a.substr(11);
    } else if (a.rfind("--scale=", 0) == 0) {
      scale = std::atof(a.c_str() + 8);
    } else if (a.rfind("--wrap=", 0) == 0) {
      wrap = a.substr(7);
    } else if (a == "--only-full") {
      extra_runs.clear();
    } else if (a.rfind("--runs=", 0) == 0) {
      extra_runs = a.substr(7);
    } else if (a.rfind("--fake-apiserver=", 0) == 0) {
      fake_apiserver = a.substr(17);
    } else if (a.rfind("--sync-timeout=", 0) == 0) {
      sync_timeout = std::chrono::seconds(std::atol(a.c_str() + 15));
    } else if (a == "--proxy") {
      proxy = true;
    } else if (a.rfind("--bgp-routes=", 0) == 0) {
      external_routes = std::atoi(a.c_str() + 13);
    } else {
      return Fail(
          "usage: agent_memory_bench [--agent=PATH] [--baseline=PATH] [--scale=F] [--wrap=CMD] "
          "[--only-full | --runs=idle,firewall,router,proxy,bgp] [--bgp-routes=N] [--proxy] "
          "[--fake-apiserver=PATH] [--sync-timeout=SECONDS]");
    }
  }
  if (!(scale > 0)) return Fail("--scale must be positive");
  if (sync_timeout.count() <= 0) return Fail("--sync-timeout must be a positive number of seconds");
  if (proxy && access("/proc/net/ip_vs", F_OK) != 0) {
    return Fail(
        "--proxy needs the kernel's ip_vs (the host has none): run it in the guest, "
        "tests/bench/agent/guest_agent_memory_bench.sh");
  }
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
  const std::string all = proxy ? "fw + router + proxy" : "fw + router";
  // Each run's index in `runs` (-1: not run).
  int idle_run = -1, fw_run = -1, rt_run = -1, px_run = -1, bgp_run = -1, base_run = -1,
      base_idle_run = -1;
  auto add = [&](const std::string& label, const std::string& binary, bool fw, bool rt, bool px,
                 bool empty, bool peer = false) {
    runs.push_back({.label = label,
                    .binary = binary,
                    .firewall = fw,
                    .router = rt,
                    .empty = empty,
                    .bgp_peer = peer,
                    .proxy = px});
    return static_cast<int>(runs.size()) - 1;
  };
  auto wanted = [&](const std::string& run) {
    return ("," + extra_runs + ",").find("," + run + ",") != std::string::npos;
  };
  const int full_run = add("full cluster, " + all, agent, true, true, proxy, false);
  if (wanted("idle"))
    idle_run = add("idle (empty cluster), " + all, agent, true, true, proxy, true);
  if (wanted("firewall"))
    fw_run = add("full cluster, firewall only", agent, true, false, false, false);
  if (wanted("router")) rt_run = add("full cluster, router only", agent, false, true, false, false);
  if (proxy && wanted("proxy")) {
    px_run = add("full cluster, proxy only", agent, false, false, true, false);
  }
  if (wanted("bgp")) {
    bgp_run = add("full cluster, " + all + ", BGP peer", agent, true, true, proxy, false, true);
  }
  if (!baseline.empty()) {
    base_run = add("baseline binary, full, " + all, baseline, true, true, proxy, false);
    if (idle_run >= 0)
      base_idle_run = add("baseline binary, idle", baseline, true, true, proxy, true);
  }
  std::printf("whole-agent memory benchmark (real kube-router + fake-apiserver, %s)\n",
              agent.c_str());
  std::printf(
      "  cluster: %d Services, %d EndpointSlices x %d endpoints, %d pods (%d on this node), "
      "%d NetworkPolicies, %d namespaces, %d nodes; %s\n",
      shape.services, shape.services, shape.endpoints_per_slice, shape.pods,
      (shape.pods + shape.local_every - 1) / shape.local_every, shape.policies, shape.namespaces,
      shape.nodes,
      proxy ? "service proxy on (2 ports per Service: 2 virtual services, 20 destinations)"
            : "service proxy not run (needs ip_vs: --proxy in the guest)");
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
  if (idle_run >= 0) {
    const Figures& idle = figures[idle_run];
    // RSS above the idle agent's, and the heap: what the run holds in use above the idle agent,
    // split into the caches (the heap growth to the caches' first sync) and the rest (the
    // controllers' own state).
    auto component = [&](const char* name, const Figures& f, const char* state) {
      if (f.heap_in_use < 0 || idle.heap_in_use < 0) {
        // Without the heap gauges (a cut /metrics scrape) only the RSS and the caches' share
        // from the agent's log are known.
        std::printf("    %-9s %6.1f MiB RSS; heap in use n/a (caches at sync %s MiB)\n", name,
                    KibToMiB(f.rss_kib - idle.rss_kib), GaugeMiB(f.caches_heap).c_str());
        return;
      }
      double above = f.heap_in_use - idle.heap_in_use;
      std::printf("    %-9s %6.1f MiB RSS; heap in use +%.1f MiB = caches %.1f + %s %.1f MiB\n",
                  name, KibToMiB(f.rss_kib - idle.rss_kib), MiB(above), MiB(f.caches_heap), state,
                  MiB(above - f.caches_heap));
    };
    std::printf("  breakdown (each run above the idle agent):\n");
    if (fw_run >= 0) component("firewall:", figures[fw_run], "netpol compiler state");
    if (rt_run >= 0) component("router:", figures[rt_run], "routing state");
    if (px_run >= 0) component("proxy:", figures[px_run], "proxy image and extensions");
    component("all:", full, "controllers' state");
  }
  if (bgp_run >= 0) {
    const Figures& bgp = figures[bgp_run];
    // The RIBs: the same agent and cluster with the peer's routes learned and installed.
    const double heap_above =
        bgp.heap_in_use < 0 || full.heap_in_use < 0 ? -1 : bgp.heap_in_use - full.heap_in_use;
    std::printf(
        "    BGP RIBs: %6.1f MiB RSS, %s MiB heap in use (%.0f routes learned and installed: "
        "the BGP run above the full cluster's)\n",
        KibToMiB(bgp.rss_kib - full.rss_kib), GaugeMiB(heap_above).c_str(), bgp.learned_routes);
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
