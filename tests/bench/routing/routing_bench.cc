// Routing benchmarks (not a ctest test; run as root):
//   routing_bench install [--routes N] [--reps R]
//     N learned paths (default 10,000) -> one controller Sync through the real rtnetlink
//     RouteTable in a throwaway namespace, then the Sync that removes them after withdrawal;
//     baseline: `ip -batch` adding/deleting the same routes in the same namespace and run.
//   routing_bench converge [--nodes N]
//     N node namespaces (default 30) on one bridge with fake-apiserver and the real agent in
//     each: time until every node has the N-1 other pod CIDRs as proto 17 routes, and each
//     agent's resident memory; baseline: the same measurement for 2 nodes in the same run.
#include <sys/resource.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "kube_router/netlink/libnl.h"
#include "kube_router/routing/network_routes_controller.h"
#include "lib/netns.h"
#include "netns/netlink/in_netns.h"
#include "unit/routing/fake_speaker.h"

namespace {

using Clock = std::chrono::steady_clock;
using kr::IpAddress;
using kr::IpPrefix;
using kr::testing::Netns;
using kr::testing::Process;
using kr::testing::TempDir;

double Ms(Clock::duration d) { return std::chrono::duration<double, std::milli>(d).count(); }

double Median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

int Fail(const std::string& what) {
  std::fprintf(stderr, "routing_bench: %s\n", what.c_str());
  return 1;
}

// Learned path i: 10.128.0.0/9 split into /24s, next hops spread over 192.0.2.2-201.
IpPrefix PathPrefix(int i) {
  return IpPrefix(IpAddress::V4((10u << 24) | (128u << 16) | (static_cast<uint32_t>(i) << 8)), 24);
}
IpAddress PathNextHop(int i) { return IpAddress::V4((192u << 24) | (2u << 8) | (2 + i % 200)); }

int Install(int routes, int reps) {
  Netns ns("krrtb");
  if (auto r = ns.Sh("ip link set lo up && ip link add kr-v0 type veth peer name kr-v1 && "
                     "ip link set kr-v0 up && ip link set kr-v1 up && "
                     "ip addr add 192.0.2.1/24 dev kr-v0");
      !r.ok()) {
    return Fail(r.error());
  }
  auto table = kr::testing::InNetns(ns.name(), [] { return kr::netlink::MakeNetlinkRouteTable(); });
  auto links = kr::testing::InNetns(ns.name(), [] { return kr::netlink::MakeNetlinkLinks(); });
  if (!table || !links) return Fail("cannot open rtnetlink in the namespace");

  auto cluster = kr::k8s::MakeCluster();
  auto self = std::make_shared<kr::k8s::Node>();
  self->meta.name = "bench";
  self->pod_cidr = "10.250.0.0/24";
  self->addresses = {{"InternalIP", "192.0.2.1"}};
  cluster->nodes.Upsert("bench", self);
  kr::routing::RoutingConfig config;
  config.node_name = "bench";
  config.enable_cni = false;
  kr::routing::testing::FakeSpeaker* speaker = nullptr;
  kr::routing::NetworkRoutesController controller(
      config, cluster.get(), {table->get(), links->get(), nullptr, nullptr, nullptr},
      [&](const kr::bgp::GlobalConfig& global) {
        auto s = std::make_unique<kr::routing::testing::FakeSpeaker>(global);
        speaker = s.get();
        return s;
      },
      nullptr);
  if (auto s = controller.Sync(kr::SyncReason::kStartup); !s.ok()) return Fail(s.message());

  std::string add_batch, del_batch;
  for (int i = 0; i < routes; ++i) {
    const std::string route =
        PathPrefix(i).ToString() + " via " + PathNextHop(i).ToString() + " proto 17";
    add_batch += "route add " + route + "\n";
    del_batch += "route del " + route + "\n";
  }
  std::vector<double> sync_add, sync_del, ip_add, ip_del;
  for (int rep = 0; rep < reps; ++rep) {
    for (int i = 0; i < routes; ++i)
      speaker->Announce(PathNextHop(i), PathPrefix(i), PathNextHop(i));
    auto t0 = Clock::now();
    if (auto s = controller.Sync(kr::SyncReason::kRequested); !s.ok()) return Fail(s.message());
    sync_add.push_back(Ms(Clock::now() - t0));
    auto count = ns.Sh("ip route show proto 17 | wc -l");
    if (!count.ok() || std::atoi(count->c_str()) != routes) return Fail("not all routes installed");
    for (int i = 0; i < routes; ++i) speaker->Withdraw(PathPrefix(i));
    t0 = Clock::now();
    if (auto s = controller.Sync(kr::SyncReason::kRequested); !s.ok()) return Fail(s.message());
    sync_del.push_back(Ms(Clock::now() - t0));

    t0 = Clock::now();
    auto added = ns.Run({"ip", "-batch", "-"}, add_batch);
    ip_add.push_back(Ms(Clock::now() - t0));
    t0 = Clock::now();
    auto deleted = ns.Run({"ip", "-batch", "-"}, del_batch);
    ip_del.push_back(Ms(Clock::now() - t0));
    if (!added.ok() || added->exit_code != 0 || !deleted.ok() || deleted->exit_code != 0) {
      return Fail("ip -batch failed");
    }
  }
  std::printf("learned-route install, %d routes, median of %d (ms):\n", routes, reps);
  std::printf("  controller Sync (plan + dump + rtnetlink batch) add: %8.1f  (%.0f routes/s)\n",
              Median(sync_add), routes / Median(sync_add) * 1000);
  std::printf("  controller Sync remove after withdraw:             %8.1f\n", Median(sync_del));
  std::printf("  baseline ip -batch add:                            %8.1f\n", Median(ip_add));
  std::printf("  baseline ip -batch del:                            %8.1f\n", Median(ip_del));
  std::printf("  ratio Sync/ip-batch: add %.2f, remove %.2f\n", Median(sync_add) / Median(ip_add),
              Median(sync_del) / Median(ip_del));
  struct rusage usage {};
  getrusage(RUSAGE_SELF, &usage);
  std::printf("  peak RSS of this process: %ld KiB\n", usage.ru_maxrss);
  return 0;
}

long RssKib(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/status");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("VmRSS:", 0) == 0) return std::atol(line.c_str() + 6);
  }
  return -1;
}

struct Convergence {
  double ms = 0;
  std::vector<long> rss_kib;
};

// N nodes, each with an agent; the time from starting the agents until every kernel has all
// N-1 routes.
bool Converge(int nodes, Convergence& out) {
  TempDir dir;
  Netns underlay("krrtbu");
  if (!underlay
           .Sh("ip link set lo up && ip link add br0 type bridge && "
               "ip addr add 172.31.255.254/16 dev br0 && ip link set br0 up")
           .ok()) {
    return false;
  }
  std::string manifests;
  auto node_ip = [](int i) {
    return "172.31." + std::to_string(i / 250) + "." + std::to_string(1 + i % 250);
  };
  for (int i = 0; i < nodes; ++i) {
    manifests += "{\"apiVersion\":\"v1\",\"kind\":\"Node\",\"metadata\":{\"name\":\"n" +
                 std::to_string(i) + "\"},\"spec\":{\"podCIDR\":\"10.128." + std::to_string(i) +
                 ".0/24\"},\"status\":{\"addresses\":[{\"type\":\"InternalIP\",\"address\":\"" +
                 node_ip(i) + "\"}]}}\n---\n";
  }
  std::ofstream(dir.path() + "/nodes.yaml") << manifests;
  const std::string kubeconfig = dir.path() + "/kubeconfig";
  Process api(
      underlay.Wrap({KR_BINARY_DIR "/fake-apiserver", "--listen", "172.31.255.254:0", "--manifests",
                     dir.path() + "/nodes.yaml", "--kubeconfig-out", kubeconfig}),
      dir.path() + "/api.log");
  if (!kr::testing::WaitFor([&] { return std::filesystem::exists(kubeconfig); },
                            std::chrono::seconds(30))) {
    return false;
  }
  std::vector<std::unique_ptr<Netns>> namespaces;
  for (int i = 0; i < nodes; ++i) {
    auto ns = std::make_unique<Netns>("krrtb" + std::to_string(i));
    const std::string port = "u" + std::to_string(i);
    if (!ns->Sh("ip link set lo up && ip link add eth0 type veth peer name " + port + " netns " +
                underlay.name() + " && ip addr add " + node_ip(i) +
                "/16 dev eth0 && ip link set eth0 up")
             .ok() ||
        !underlay.Sh("ip link set " + port + " master br0 up").ok()) {
      return false;
    }
    namespaces.push_back(std::move(ns));
  }
  std::vector<std::unique_ptr<Process>> agents;
  auto start = Clock::now();
  for (int i = 0; i < nodes; ++i) {
    agents.push_back(std::make_unique<Process>(
        namespaces[i]->Wrap({KR_BINARY_DIR "/kube-router", "--kubeconfig", kubeconfig,
                             "--hostname-override", "n" + std::to_string(i), "--run-firewall=false",
                             "--run-service-proxy=false", "--health-port=0", "--enable-cni=false",
                             "--gobgp-admin-port=0"}),
        dir.path() + "/agent" + std::to_string(i) + ".log"));
  }
  std::vector<bool> done(nodes, false);
  bool all = kr::testing::WaitFor(
      [&] {
        for (int i = 0; i < nodes; ++i) {
          if (done[i]) continue;
          auto r = namespaces[i]->Sh("ip route show proto 17 | wc -l");
          if (!r.ok() || std::atoi(r->c_str()) != nodes - 1) return false;
          done[i] = true;
        }
        return true;
      },
      std::chrono::seconds(300));
  out.ms = Ms(Clock::now() - start);
  for (auto& agent : agents) out.rss_kib.push_back(RssKib(agent->pid()));
  return all;
}

int ConvergeBench(int nodes) {
  Convergence base, full;
  if (!Converge(2, base)) return Fail("2-node baseline did not converge");
  if (!Converge(nodes, full)) return Fail(std::to_string(nodes) + " nodes did not converge");
  std::sort(full.rss_kib.begin(), full.rss_kib.end());
  std::printf("full-mesh convergence (every node has every other pod CIDR as a proto 17 route):\n");
  std::printf("  %3d nodes: %8.0f ms\n", nodes, full.ms);
  std::printf("    2 nodes: %8.0f ms (baseline, same run)\n", base.ms);
  std::printf("  ratio %d/2 nodes: %.2f\n", nodes, full.ms / base.ms);
  std::printf("  agent RSS with %d nodes: median %ld KiB, max %ld KiB\n", nodes,
              full.rss_kib[full.rss_kib.size() / 2], full.rss_kib.back());
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  if (!kr::testing::IsRoot()) return Fail("needs root (creates network namespaces)");
  if (argc < 2)
    return Fail("usage: routing_bench install [--routes N] [--reps R] | converge [--nodes N]");
  int routes = 10000, reps = 3, nodes = 30;
  for (int i = 2; i + 1 < argc; i += 2) {
    if (std::strcmp(argv[i], "--routes") == 0) routes = std::atoi(argv[i + 1]);
    if (std::strcmp(argv[i], "--reps") == 0) reps = std::atoi(argv[i + 1]);
    if (std::strcmp(argv[i], "--nodes") == 0) nodes = std::atoi(argv[i + 1]);
  }
  if (std::strcmp(argv[1], "install") == 0) {
    if (routes <= 0 || routes > 32000 || reps <= 0) return Fail("--routes 1..32000, --reps >= 1");
    return Install(routes, reps);
  }
  if (std::strcmp(argv[1], "converge") == 0) {
    if (nodes < 2 || nodes > 250) return Fail("--nodes 2..250");
    return ConvergeBench(nodes);
  }
  return Fail("unknown benchmark " + std::string(argv[1]));
}
