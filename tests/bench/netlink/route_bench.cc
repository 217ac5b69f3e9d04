// Installs N routes (default 10,000 /32s via a veth neighbour, protocol 17) into a fresh
// network namespace three ways and prints the median wall-clock time of each:
//   RouteTable::Apply (in-process rtnetlink, 256 requests per sendmsg),
//   RouteTable::Apply with one request per sendmsg (to show what batching is worth),
//   `ip -batch -` with the same routes (the baseline: one iproute2 process, as measured in
//   kernel-limits.md),
// and the deletes of the same routes. Every variant runs in the same process and namespace,
// alternating, so the ratios compare like with like.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "kube_router/netlink/libnl.h"
#include "lib/netns.h"
#include "netns/netlink/in_netns.h"

namespace {

using kr::netlink::Route;
using kr::netlink::RouteChange;
using kr::netlink::RouteTable;
using Clock = std::chrono::steady_clock;

double Median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

std::string Dotted(uint32_t host) {
  return std::to_string(host >> 24) + "." + std::to_string((host >> 16) & 255) + "." +
         std::to_string((host >> 8) & 255) + "." + std::to_string(host & 255);
}

int Fail(const std::string& what) {
  std::fprintf(stderr, "netlink_route_bench: %s\n", what.c_str());
  return 1;
}

}  // namespace

int main(int argc, char** argv) {
  int routes = 10000, reps = 5;
  for (int i = 1; i + 1 < argc; i += 2) {
    if (std::strcmp(argv[i], "--routes") == 0) routes = std::atoi(argv[i + 1]);
    if (std::strcmp(argv[i], "--reps") == 0) reps = std::atoi(argv[i + 1]);
  }
  if (!kr::testing::IsRoot()) return Fail("needs root (creates a network namespace)");
  if (routes <= 0 || reps <= 0) return Fail("usage: [--routes N] [--reps R]");

  kr::testing::Netns ns("krbench");
  if (auto r = ns.Sh("ip link add kr-v0 type veth peer name kr-v1 && ip link set kr-v0 up && "
                     "ip link set kr-v1 up && ip addr add 192.0.2.1/24 dev kr-v0");
      !r.ok()) {
    return Fail(r.error());
  }
  auto batched =
      kr::testing::InNetns(ns.name(), [] { return kr::netlink::MakeNetlinkRouteTable(256); });
  auto single =
      kr::testing::InNetns(ns.name(), [] { return kr::netlink::MakeNetlinkRouteTable(1); });
  if (!batched.ok() || !single.ok()) return Fail("cannot open rtnetlink");

  std::vector<RouteChange> adds, deletes;
  std::string ip_adds, ip_deletes;
  const uint32_t base = (10u << 24) | (64u << 16);  // 10.64.0.0 onwards
  for (int i = 0; i < routes; ++i) {
    Route r;
    r.destination = kr::IpPrefix(kr::IpAddress::V4(base + static_cast<uint32_t>(i)), 32);
    r.gateway = *kr::IpAddress::Parse("192.0.2.2");
    r.device = "kr-v0";
    adds.push_back({RouteChange::Op::kAdd, r});
    deletes.push_back({RouteChange::Op::kDelete, r});
    const std::string dst = Dotted(base + static_cast<uint32_t>(i)) + "/32";
    ip_adds += "route add " + dst + " via 192.0.2.2 dev kr-v0 proto 17\n";
    ip_deletes += "route del " + dst + " via 192.0.2.2 dev kr-v0 proto 17\n";
  }

  auto time_apply = [&](RouteTable& table, const std::vector<RouteChange>& changes,
                        double* ms) -> bool {
    auto start = Clock::now();
    auto errors = table.Apply(changes);
    *ms = std::chrono::duration<double, std::milli>(Clock::now() - start).count();
    if (!errors.ok() || !errors->empty()) {
      std::fprintf(stderr, "apply failed: %s\n",
                   errors.ok() ? errors->front().message.c_str() : errors.error().c_str());
      return false;
    }
    return true;
  };
  auto time_ip = [&](const std::string& script, double* ms) -> bool {
    auto start = Clock::now();
    auto r = kr::ExecChecked({"ip", "-n", ns.name(), "-batch", "-"}, script);
    *ms = std::chrono::duration<double, std::milli>(Clock::now() - start).count();
    if (!r.ok()) std::fprintf(stderr, "ip -batch failed: %s\n", r.error().c_str());
    return r.ok();
  };

  std::vector<double> nl_add, nl_del, one_add, one_del, ip_add, ip_del;
  for (int rep = 0; rep < reps; ++rep) {
    double ms = 0;
    if (!time_apply(**batched, adds, &ms)) return 1;
    nl_add.push_back(ms);
    if (!time_apply(**batched, deletes, &ms)) return 1;
    nl_del.push_back(ms);
    if (!time_ip(ip_adds, &ms)) return 1;
    ip_add.push_back(ms);
    if (!time_ip(ip_deletes, &ms)) return 1;
    ip_del.push_back(ms);
    if (!time_apply(**single, adds, &ms)) return 1;
    one_add.push_back(ms);
    if (!time_apply(**single, deletes, &ms)) return 1;
    one_del.push_back(ms);
  }

  auto line = [&](const char* what, const std::vector<double>& v, const std::vector<double>& base) {
    const double m = Median(v);
    std::printf("%-44s %9.1f ms  %6.2f us/route  %5.2fx of ip -batch\n", what, m,
                1000.0 * m / routes, m / Median(base));
  };
  std::printf("%d routes (/32 via a veth neighbour, proto 17), median of %d runs\n", routes, reps);
  line("ip -batch add (baseline)", ip_add, ip_add);
  line("RouteTable add, 256 requests per sendmsg", nl_add, ip_add);
  line("RouteTable add, 1 request per sendmsg", one_add, ip_add);
  line("ip -batch delete (baseline)", ip_del, ip_del);
  line("RouteTable delete, 256 requests per sendmsg", nl_del, ip_del);
  line("RouteTable delete, 1 request per sendmsg", one_del, ip_del);
  std::printf("speed-up of RouteTable (256/sendmsg) over ip -batch: add %.2fx, delete %.2fx\n",
              Median(ip_add) / Median(nl_add), Median(ip_del) / Median(nl_del));
  return 0;
}
