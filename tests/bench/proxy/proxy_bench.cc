// The service proxy benchmark, run inside the guest kernel (the host has no ip_vs):
//
//   tests/vm/vm.sh --cache build/vm-cache --timeout 1500 --memory 2048 --
//       build/tests/bench/proxy/proxy_bench [--services N] [--rounds R]   (one line)
//
// Every figure is measured in the same boot and printed with its ratio:
//   1. cold start: the real agent (proxy only) against fake-apiserver holding N Services x 10
//      endpoints, from process start to the whole table in the kernel, vs `ipvsadm --restore` of
//      the same IPVS table in a fresh namespace;
//   2. one endpoint change (an EndpointSlice PATCH on the API server -> the new destination in
//      the kernel, polled through our IPVS adapter), p50/p99 over R rounds, at N Services and at 1,
//      with --ipvs-sync-period=1h (after a restart that must adopt the table writing nothing),
//      and per stage: fake-apiserver answered, the agent's sync (its -v=1 log) started and
//      ended, the destination seen in the kernel;
//   3. a no-op periodic sync: kernel writes counted by kprobes on the IPVS genetlink set command
//      and on rtnetlink address/route changes over three --ipvs-sync-period windows (target 0);
//   4. the agent's RSS at N Services.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <fstream>
#include <map>
#include <optional>
#include <sstream>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "kube_router/netlink/libnl.h"
#include "lib/agent_bench.h"
#include "lib/binaries.h"
#include "lib/netns.h"
#include "lib/podnet.h"
#include "proxy_bench_cluster.h"

namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;
using kr::testing::Netns;
using kr::testing::Percentile;
using kr::testing::Process;
using kr::testing::ScopedNetns;
using kr::testing::TempDir;
using kr::testing::WaitFor;
using kr::testing::proxy_bench::ClusterManifest;
using kr::testing::proxy_bench::Endpoints;
using kr::testing::proxy_bench::EndpointsJson;
using kr::testing::proxy_bench::kEndpointsPerService;
using kr::testing::proxy_bench::kPort;
using kr::testing::proxy_bench::kTargetPort;
using kr::testing::proxy_bench::ReplacementIp;
using kr::testing::proxy_bench::Vip;

constexpr const char* kNode = "node0";
constexpr int kHealthPort = 20244;  // inside the node namespace

double Ms(Clock::duration d) { return std::chrono::duration<double, std::milli>(d).count(); }

std::string IpvsadmRestoreText(int services) {
  std::string out;
  for (int i = 0; i < services; ++i) {
    const std::string vs = Vip(i) + ":" + std::to_string(kPort);
    out += "-A -t " + vs + " -s rr\n";
    for (const std::string& ip : Endpoints(i)) {
      out += "-a -t " + vs + " -r " + ip + ":" + std::to_string(kTargetPort) + " -m -w 1\n";
    }
  }
  return out;
}

// IPVS services and destinations of the namespace `netns`, from one read of /proc/net/ip_vs.
std::pair<long, long> IpvsCounts(const Netns& netns) {
  ScopedNetns inside(netns.name());
  std::ifstream in("/proc/thread-self/net/ip_vs");
  long services = 0, dests = 0;
  for (std::string line; std::getline(in, line);) {
    if (line.rfind("TCP ", 0) == 0 || line.rfind("UDP ", 0) == 0) ++services;
    if (line.rfind("  -> ", 0) == 0 && line.find("RemoteAddress") == std::string::npos) ++dests;
  }
  return {services, dests};
}

// kprobe hit counters for kernel writes (all namespaces; the guest is otherwise quiet).
class KernelWriteCounter {
 public:
  KernelWriteCounter() {
    std::string script =
        "mountpoint -q /sys/kernel/tracing || "
        "mount -t tracefs nodev /sys/kernel/tracing; cd /sys/kernel/tracing";
    for (const char* fn : kFunctions) {  // one write per probe: a bad one fails alone
      script += std::string(" && echo 'p:krbench/") + fn + " " + fn + "' >> kprobe_events";
    }
    auto r = kr::Exec({"sh", "-c", script});
    if (!r.ok() || r->exit_code != 0) error_ = r.ok() ? r->err : r.error();
  }
  ~KernelWriteCounter() {
    std::string script = "cd /sys/kernel/tracing";
    for (const char* fn : kFunctions) {
      script += std::string("; echo '-:krbench/") + fn + "' >> kprobe_events";
    }
    (void)kr::Exec({"sh", "-c", script});
  }
  const std::string& error() const { return error_; }
  // Hits per probed function; empty when kprobes are unavailable.
  std::map<std::string, long> Read() const {
    std::map<std::string, long> out;
    auto r = kr::Exec({"cat", "/sys/kernel/tracing/kprobe_profile"});
    if (!r.ok()) return out;
    std::istringstream in(r->out);
    std::string name;
    long hits = 0, misses = 0;
    while (in >> name >> hits >> misses) out[name] = hits;
    return out;
  }

 private:
  static constexpr const char* kFunctions[] = {"ip_vs_genl_set_cmd", "inet_rtm_newaddr",
                                               "inet_rtm_deladdr", "inet_rtm_newroute",
                                               "inet_rtm_delroute"};
  std::string error_;
};

struct World {
  TempDir dir;
  std::unique_ptr<Netns> node;
  kr::testing::FakeApiServer api;
  std::unique_ptr<Process> agent;
  int agent_starts = 0;
  int port = 0;
};

// (Re)starts the agent of `w` (proxy only) with this --ipvs-sync-period.
void StartAgent(World& w, const std::string& sync_period) {
  w.agent.reset();
  const char* other = std::getenv("KR_PROXY_TEST_AGENT");  // another build of the agent
  w.agent = std::make_unique<Process>(
      w.node->Wrap({other != nullptr ? std::string(other) : kr::testing::kAgentBinary,
                    "--run-service-proxy=true", "--run-router=false", "--run-firewall=false",
                    "--kubeconfig=" + w.api.kubeconfig, "--hostname-override=" + std::string(kNode),
                    "--health-port=" + std::to_string(kHealthPort),
                    "--service-cluster-ip-range=10.96.0.0/12", "--ipvs-sync-period=" + sync_period,
                    "-v=1"}),                                                 // -v=1: sync times
      w.dir.path() + "/agent-" + std::to_string(++w.agent_starts) + ".log");  // fresh per start
}

// `agent_started`: set just before the agent process starts (the cold start's zero).
std::string StartWorld(World& w, const std::string& prefix, int services,
                       const std::string& sync_period, Clock::time_point* agent_started = nullptr) {
  w.node = std::make_unique<Netns>(prefix);
  auto up = w.node->Sh(
      "ip link add kr-up type veth peer name kr-up1 && ip link set kr-up up && "
      "ip link set kr-up1 up && ip addr add 192.0.2.1/24 dev kr-up && "
      "ip route add default via 192.0.2.2");
  if (!up.ok()) return "node setup: " + up.error();
  if (auto e =
          kr::testing::StartFakeApiServer(*w.node, w.dir.path(), ClusterManifest(services, true),
                                          kr::testing::kFakeApiServerBinary, 1200s, w.api);
      !e.empty()) {
    return e;
  }
  w.port = w.api.port;
  if (agent_started != nullptr) *agent_started = Clock::now();
  StartAgent(w, sync_period);
  return "";
}

// True once the agent's /healthz answers 200 after its controllers started (its first sync is
// done). Seen in the guest: /healthz answered 200 while the API caches were still loading, so
// first wait for the log line that follows the caches' sync.
bool WaitHealthy(World& w, std::chrono::seconds timeout) {
  auto running = [&] { return w.agent->Log().find("kube-router is running") != std::string::npos; };
  if (!WaitFor(running, timeout)) return false;
  return WaitFor(
      [&] {
        return kr::testing::HttpRequest(*w.node, kHealthPort, "GET", "/healthz", "text/plain", "");
      },
      timeout);
}

// The IPVS adapter of a namespace (made inside it; used from outside afterwards).
std::unique_ptr<kr::netlink::Ipvs> IpvsIn(const std::string& netns) {
  ScopedNetns inside(netns);
  auto ipvs = kr::netlink::MakeNetlinkIpvs();
  return ipvs.ok() ? std::move(*ipvs) : nullptr;
}

// The agent's event syncs, from its -v=1 log lines "NetworkServices: requested sync done in
// Nms" (klog format, "D1206 18:51:01.123456 ..."): when each ended on this process's steady
// clock (the stamp is local wall time, the year is this one) and how long it took.
struct AgentSync {
  Clock::time_point end;
  double ms = 0;
};
std::vector<AgentSync> AgentSyncs(const std::string& log) {
  static constexpr std::string_view kDone = "NetworkServices: requested sync done in ";
  const auto wall_now = std::chrono::system_clock::now();
  const auto wall_minus_steady =
      wall_now.time_since_epoch() - std::chrono::duration_cast<std::chrono::system_clock::duration>(
                                        Clock::now().time_since_epoch());
  const std::time_t now_t = std::chrono::system_clock::to_time_t(wall_now);
  std::tm today{};
  localtime_r(&now_t, &today);
  std::vector<AgentSync> out;
  std::istringstream in(log);
  for (std::string line; std::getline(in, line);) {
    const size_t at = line.find(kDone);
    std::tm tm{};
    int us = 0;
    if (at == std::string::npos ||
        std::sscanf(line.c_str(), "%*c%2d%2d %d:%d:%d.%d", &tm.tm_mon, &tm.tm_mday, &tm.tm_hour,
                    &tm.tm_min, &tm.tm_sec, &us) != 6) {
      continue;
    }
    tm.tm_year = today.tm_year;
    tm.tm_mon -= 1;
    tm.tm_isdst = -1;
    const auto wall =
        std::chrono::system_clock::from_time_t(std::mktime(&tm)) + std::chrono::microseconds(us);
    out.push_back({Clock::time_point(std::chrono::duration_cast<Clock::duration>(
                       wall.time_since_epoch() - wall_minus_steady)),
                   std::atof(line.c_str() + at + kDone.size())});
  }
  return out;
}

// One change round's stages, in ms after the PATCH was sent: fake-apiserver answered it, the
// agent's sync that followed started and ended (its log: 1 ms steps), the bench's 1 ms poll
// saw the destination in the kernel.
struct RoundStages {
  double answered = 0, sync_start = 0, sync_end = 0, seen = 0;
};

void PrintStages(const char* what, const std::vector<RoundStages>& rounds) {
  auto column = [&](double RoundStages::*field) {
    std::vector<double> v;
    for (const auto& r : rounds) v.push_back(r.*field);
    return v;
  };
  std::printf(
      "    %s: p50 / max ms after PATCH sent: answered %.1f / %.1f, agent sync start "
      "%.1f / %.1f, sync end %.1f / %.1f, in the kernel %.1f / %.1f\n",
      what, Percentile(column(&RoundStages::answered), 0.5),
      Percentile(column(&RoundStages::answered), 1.0),
      Percentile(column(&RoundStages::sync_start), 0.5),
      Percentile(column(&RoundStages::sync_start), 1.0),
      Percentile(column(&RoundStages::sync_end), 0.5),
      Percentile(column(&RoundStages::sync_end), 1.0), Percentile(column(&RoundStages::seen), 0.5),
      Percentile(column(&RoundStages::seen), 1.0));
  std::vector<double> sync_ms;
  for (const auto& r : rounds) sync_ms.push_back(r.sync_end - r.sync_start);
  std::printf("      the agent's sync alone: p50 %.1f ms, max %.1f ms\n", Percentile(sync_ms, 0.5),
              Percentile(sync_ms, 1.0));
}

// Endpoint-change rounds: PATCH service k's slice to swap endpoint 0 for a new address, then
// poll the kernel (our adapter, in-process) until the new destination is there.
std::vector<double> ChangeRounds(World& w, int services, int rounds, std::string& error,
                                 std::vector<RoundStages>* stages) {
  auto ipvs = IpvsIn(w.node->name());
  std::vector<double> out;
  if (!ipvs) {
    error = "no IPVS adapter";
    return out;
  }
  for (int r = 0; r < rounds; ++r) {
    const int k = static_cast<int>((static_cast<long>(r) * 7919) % services);
    std::vector<std::string> ips = Endpoints(k);
    ips[0] = ReplacementIp(r + (services > 1 ? 0 : 1000));
    const std::string body = R"({"endpoints":)" + EndpointsJson(ips) + "}";
    kr::netlink::IpvsService svc{*kr::IpAddress::Parse(Vip(k)), kr::netlink::IpvsProtocol::kTcp,
                                 kPort};
    const kr::IpAddress wanted = *kr::IpAddress::Parse(ips[0]);
    const size_t syncs_before = AgentSyncs(w.agent->Log()).size();
    auto start = Clock::now();
    if (!kr::testing::HttpRequest(*w.node, w.port, "PATCH",
                                  "/apis/discovery.k8s.io/v1/namespaces/default/endpointslices/s" +
                                      std::to_string(k) + "-1",
                                  "application/merge-patch+json", body)) {
      error = "PATCH failed";
      return out;
    }
    const auto answered = Clock::now();
    bool seen = false;
    while (!seen && Clock::now() - start < 30s) {
      auto dests = ipvs->ListDestinations(svc);
      if (dests.ok()) {
        for (const auto& d : *dests) seen = seen || d.address == wanted;
      }
      if (!seen) std::this_thread::sleep_for(1ms);
    }
    if (!seen) {
      error = "change " + std::to_string(r) + " never programmed";
      return out;
    }
    const auto seen_at = Clock::now();
    out.push_back(Ms(seen_at - start));
    // The sync that programmed it logs when it returns (after the kernel write).
    std::vector<AgentSync> syncs;
    if (WaitFor(
            [&] {
              syncs = AgentSyncs(w.agent->Log());
              return syncs.size() > syncs_before;
            },
            30s)) {
      const AgentSync& sync = syncs[syncs_before];
      stages->push_back({Ms(answered - start), Ms(sync.end - start) - sync.ms, Ms(sync.end - start),
                         Ms(seen_at - start)});
    }
  }
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  setvbuf(stdout, nullptr, _IOLBF, 0);  // figures appear as they are measured
  int services = 10000;
  int rounds = 20;
  for (int i = 1; i + 1 < argc; i += 2) {
    if (std::string(argv[i]) == "--services") services = std::stoi(argv[i + 1]);
    if (std::string(argv[i]) == "--rounds") rounds = std::stoi(argv[i + 1]);
  }
  std::printf("proxy_bench: %d services x %d endpoints, %d change rounds\n", services,
              kEndpointsPerService, rounds);

  // 1a. ipvsadm --restore of the same table.
  double restore_ms = 0;
  {
    Netns ns("kpbr");
    TempDir dir;
    const std::string file = dir.path() + "/table";
    std::ofstream(file) << IpvsadmRestoreText(services);
    (void)ns.Sh("ip link set lo up && ip route add default dev lo");
    std::ifstream in(file);
    std::stringstream table;
    table << in.rdbuf();
    auto start = Clock::now();
    auto r = kr::Exec(ns.Wrap({"ipvsadm", "--restore"}), table.str(),
                      kr::ExecOptions{.timeout = std::chrono::milliseconds(1800'000)});
    restore_ms = Ms(Clock::now() - start);
    if (!r.ok() || r->exit_code != 0) {
      std::printf("ipvsadm --restore failed: %s\n", r.ok() ? r->err.c_str() : r.error().c_str());
      return 1;
    }
    std::printf("  ipvsadm --restore of the same table: %.0f ms\n", restore_ms);
  }

  // 1b. the agent's cold start.
  World big;
  KernelWriteCounter counter;
  Clock::time_point start;
  if (auto e = StartWorld(big, "kpbb", services, "10s", &start); !e.empty()) {
    std::printf("%s\n", e.c_str());
    return 1;
  }
  const long want_dests = static_cast<long>(services) * kEndpointsPerService;
  // Polled every 250 ms: reading /proc/net/ip_vs costs CPU the agent needs on one vCPU.
  bool cold = false;
  std::optional<Clock::time_point> first_service;
  while (!cold && Clock::now() - start < 1800s) {
    auto [s, d] = IpvsCounts(*big.node);
    if (s > 0 && !first_service) first_service = Clock::now();
    cold = s == services && d == want_dests;
    if (!cold) std::this_thread::sleep_for(250ms);
  }
  const double cold_ms = Ms(Clock::now() - start);
  if (!cold) {
    auto [s, d] = IpvsCounts(*big.node);
    std::printf("cold start incomplete: %ld services, %ld destinations\n%s\n", s, d,
                big.agent->Log().c_str());
    return 1;
  }
  std::printf(
      "  cold start: agent %.0f ms (incl. API list, addresses, routes), ipvsadm --restore "
      "%.0f ms, ratio %.2f\n",
      cold_ms, restore_ms, cold_ms / restore_ms);
  // The IPVS part alone (the batch; the VIP addresses and routes are written before it).
  const double window_ms = Ms(Clock::now() - *first_service);
  std::printf(
      "  IPVS programming window (first service in the kernel -> table complete, 250 ms polls): "
      "%.0f ms, ratio to ipvsadm --restore %.2f\n",
      window_ms, window_ms / restore_ms);

  // 3. no-op periodic sync (10 s period): three periods without any change.
  std::this_thread::sleep_for(2s);
  auto before = counter.Read();
  std::this_thread::sleep_for(31s);
  auto after = counter.Read();
  if (before.empty()) {
    std::printf("  no-op sync: kprobes unavailable (%s), kernel writes not counted\n",
                counter.error().c_str());
  } else {
    long total = 0;
    std::string detail;
    for (const auto& [name, hits] : after) {
      long d = hits - before[name];
      total += d;
      detail += " " + name + "=" + std::to_string(d);
    }
    std::printf("  no-op periodic sync (3 x 10 s periods): %ld kernel writes (%s )\n", total,
                detail.c_str());
  }

  // 4. RSS at this size.
  std::printf("  agent RSS at %d services: %ld KiB (peak %ld KiB)\n", services,
              kr::testing::ProcStatusKib(big.agent->pid(), "VmRSS:"),
              kr::testing::ProcStatusKib(big.agent->pid(), "VmHWM:"));

  // A restart over the programmed table adopts it: no kernel writes. The agent then runs with a
  // long sync period, so the change rounds time the event path, not a wait behind a periodic
  // full sync.
  {
    auto writes_before = counter.Read();
    auto restarted = Clock::now();
    StartAgent(big, "1h");
    if (!WaitHealthy(big, 1800s)) {
      std::printf("restarted agent never synced\n%s\n", big.agent->Log().c_str());
      return 1;
    }
    auto writes_after = counter.Read();
    long total = 0;
    for (const auto& [name, hits] : writes_after) total += hits - writes_before[name];
    std::printf("  restart over the programmed table: synced after %.0f ms, %ld kernel writes\n",
                Ms(Clock::now() - restarted), total);
  }

  // 2. endpoint changes at N and at 1.
  std::string error;
  std::vector<RoundStages> big_stages, small_stages;
  auto big_ms = ChangeRounds(big, services, rounds, error, &big_stages);
  if (!error.empty()) {
    std::printf("big change rounds: %s\n%s\n", error.c_str(), big.agent->Log().c_str());
    return 1;
  }
  big.agent.reset();
  big.api.process.reset();
  World small;
  if (auto e = StartWorld(small, "kpbs", 1, "1h"); !e.empty()) {
    std::printf("%s\n", e.c_str());
    return 1;
  }
  if (!WaitFor([&] { return IpvsCounts(*small.node).second == kEndpointsPerService; }, 120s)) {
    std::printf("baseline never programmed\n%s\n", small.agent->Log().c_str());
    return 1;
  }
  auto small_ms = ChangeRounds(small, 1, rounds, error, &small_stages);
  if (!error.empty()) {
    std::printf("baseline change rounds: %s\n", error.c_str());
    return 1;
  }
  std::printf("  one endpoint change, API PATCH -> destination in the kernel (n=%d):\n", rounds);
  std::printf("    at %d services: p50 %.1f ms, p99 %.1f ms\n", services, Percentile(big_ms, 0.5),
              Percentile(big_ms, 0.99));
  std::printf("    at 1 service:   p50 %.1f ms, p99 %.1f ms\n", Percentile(small_ms, 0.5),
              Percentile(small_ms, 0.99));
  std::printf("    ratio p50 %.2f, p99 %.2f\n", Percentile(big_ms, 0.5) / Percentile(small_ms, 0.5),
              Percentile(big_ms, 0.99) / Percentile(small_ms, 0.99));
  std::printf(
      "  the same per stage (the agent's sync from its -v=1 log; durations in 1 ms steps):\n");
  PrintStages(("at " + std::to_string(services) + " services").c_str(), big_stages);
  PrintStages("at 1 service", small_stages);
  return 0;
}
