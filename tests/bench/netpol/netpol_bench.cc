// Network policy benchmark (issue 14's firewall cold start): 1,000 policies over 5,000 pods (500
// on this node) in 50 namespaces labelled with 7 team values; every policy lets in the pods of
// one team's namespaces (about 700 pods), so most peer sets have the same members.
//
// Two runs in one process, each in fresh network namespaces: the baseline with every set use
// its own set (NetpolConfig::share_sets = false: the content and the writes of the agent before
// content-addressed sets) and the agent as shipped (shared sets). Per run it prints the cold
// start (first full sync of the controller), the raw tools loading the same content (one
// `ipset restore` + one `iptables-restore`), set/entry/rule counts, and the latency from a pod
// label change in the caches to the kernel holding it (incremental sync), p50/p99; then the
// ratios, chiefly: our cold start against the raw restore of the OLD content.
// Usage (root): netpol_bench [nft|legacy] [teams]
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <memory>
#include <string>
#include <variant>
#include <vector>

#include "kube_router/base/exec.h"
#include "kube_router/k8s/decode.h"
#include "kube_router/k8s/store.h"
#include "kube_router/netfilter/ipset.h"
#include "kube_router/netfilter/iptables.h"
#include "kube_router/netpol/network_policy_controller.h"
#include "lib/bench_cluster.h"
#include "lib/netns.h"
#include "lib/podnet.h"

namespace {

using Clock = std::chrono::steady_clock;
using kr::netfilter::IpFamily;

using kr::testing::kNetpolBenchLocalEvery;
using kr::testing::kNetpolBenchNamespaces;
using kr::testing::kNetpolBenchPodsPerNamespace;
using kr::testing::kNetpolBenchPoliciesPerNamespace;
constexpr char kNode[] = "bench-node";
int g_teams = 7;  // team values over the namespaces

double Ms(Clock::duration d) { return std::chrono::duration<double, std::milli>(d).count(); }

// An object of the shared cluster (tests/lib/bench_cluster.h), decoded as the agent's informers
// decode it.
template <typename T>
std::shared_ptr<const T> Decoded(kr::k8s::ResourceKind kind, const std::string& json) {
  auto decoded = kr::k8s::DecodeObjectText(kind, json);
  if (!decoded.ok()) {
    std::fprintf(stderr, "netpol_bench: cannot decode %s: %s\n", json.c_str(),
                 decoded.error().c_str());
    std::exit(1);
  }
  return std::get<std::shared_ptr<const T>>(*decoded);
}

// The netpol benchmarks' cluster, with its policies in the shape the agent benchmarks use.
void FillCluster(kr::k8s::Cluster& cluster) {
  using kr::k8s::ResourceKind;
  for (int n = 0; n < kNetpolBenchNamespaces; ++n) {
    const std::string ns = "ns" + std::to_string(n);
    auto namespace_ = Decoded<kr::k8s::Namespace>(
        ResourceKind::kNamespace,
        kr::testing::BenchNamespaceJson(ns, "t" + std::to_string(n % g_teams)));
    cluster.namespaces.Upsert(namespace_->meta.Key(), namespace_);
    for (int p = 0; p < kNetpolBenchPodsPerNamespace; ++p) {
      auto pod = Decoded<kr::k8s::Pod>(
          ResourceKind::kPod,
          kr::testing::BenchPodJson(
              {.namespace_ = ns,
               .name = "pod" + std::to_string(p),
               .node = p % kNetpolBenchLocalEvery == 0 ? kNode : "other-node",
               .ip = kr::testing::NetpolBenchPodIp(n, p),
               .app = "app" + std::to_string(p % kNetpolBenchPoliciesPerNamespace),
               .role = p % 2 ? "client" : "server"}));
      cluster.pods.Upsert(pod->meta.Key(), pod);
    }
    for (int i = 0; i < kNetpolBenchPoliciesPerNamespace; ++i) {
      auto policy = Decoded<kr::k8s::NetworkPolicy>(
          ResourceKind::kNetworkPolicy, kr::testing::NetpolBenchPolicyJson(n, i, g_teams));
      cluster.network_policies.Upsert(policy->meta.Key(), policy);
    }
  }
}

long RssKb(const char* field) {
  std::ifstream in("/proc/self/status");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind(field, 0) == 0) return std::stol(line.substr(std::string(field).size()));
  }
  return -1;
}

struct RunFigures {
  size_t sets = 0, entries = 0, rules = 0, chains = 0;
  double cold_start_ms = 0;
  double raw_ipset_ms = 0, raw_iptables_ms = 0;
  std::vector<double> label_ms;  // sorted
  double Pct(double p) const {
    return label_ms[std::min(label_ms.size() - 1, static_cast<size_t>(p * label_ms.size()))];
  }
};

// One run: a fresh cluster and controller in a fresh namespace (cold start), the raw tools on
// the same content in another fresh namespace, then 100 label changes through the controller.
bool RunOnce(const std::string& mode, bool share_sets, RunFigures& out) {
  auto cluster = kr::k8s::MakeCluster();
  FillCluster(*cluster);
  kr::netpol::NetpolConfig config;
  config.node_name = kNode;
  config.iptables_mode = mode;
  config.share_sets = share_sets;
  config.service_cluster_ip_ranges = {*kr::IpPrefix::Parse("10.96.0.0/12")};

  kr::testing::Netns agent_ns(share_sets ? "krbnew" : "krbold");
  auto made = kr::netpol::MakeNetworkPolicyController(config, cluster.get());
  if (!made.ok()) {
    std::fprintf(stderr, "%s\n", made.error().c_str());
    return false;
  }
  auto* controller = static_cast<kr::netpol::NetworkPolicyController*>(made->get());
  {
    kr::testing::ScopedNetns inside(agent_ns.name());
    auto start = Clock::now();
    auto status = controller->Sync(kr::SyncReason::kStartup);
    out.cold_start_ms = Ms(Clock::now() - start);
    if (!status.ok()) {
      std::fprintf(stderr, "sync failed: %s\n", status.message().c_str());
      return false;
    }
  }
  const auto* applied = controller->applied(IpFamily::kV4);
  out.sets = applied->sets.size();
  for (const auto& [name, set] : applied->sets) out.entries += set.entries.size();
  out.rules = applied->RuleCount();
  out.chains = applied->chains.size();

  // The raw tools: the same rules and sets loaded directly into a fresh namespace.
  kr::netfilter::TableUpdate update;
  for (const auto& [name, chain] : applied->chains) update.replace_chains.push_back(chain);
  for (const char* builtin : {"INPUT", "FORWARD", "OUTPUT"}) {
    update.insert_rules.push_back({builtin, 1, std::string("-j KUBE-ROUTER-") + builtin});
  }
  kr::netfilter::IpsetUpdate sets;
  for (const auto& [name, set] : applied->sets) sets.replace.push_back(set);
  std::string rules_text = kr::netfilter::RenderRestore(update);
  std::string sets_text = kr::netfilter::RenderIpsetRestore(sets, {});
  {
    kr::testing::Netns raw_ns(share_sets ? "krbnewraw" : "krboldraw");
    kr::testing::ScopedNetns inside(raw_ns.name());
    auto start = Clock::now();
    auto r1 = kr::ExecChecked({"ipset", "restore"}, sets_text);
    out.raw_ipset_ms = Ms(Clock::now() - start);
    start = Clock::now();
    auto r2 = kr::ExecChecked({"iptables-" + mode + "-restore", "--noflush"}, rules_text);
    out.raw_iptables_ms = Ms(Clock::now() - start);
    if (!r1.ok() || !r2.ok()) {
      std::fprintf(stderr, "raw restore failed: %s %s\n", r1.error().c_str(), r2.error().c_str());
      return false;
    }
  }

  // Label change -> verdict programmed: flip a local pod between two apps (so it moves between
  // target sets) and its role (so it moves between peer sets).
  kr::testing::ScopedNetns inside(agent_ns.name());
  for (int i = 0; i < 100; ++i) {
    int ns = i % kNetpolBenchNamespaces;
    int pod = (i % 10) * kNetpolBenchLocalEvery;  // local
    auto key = "ns" + std::to_string(ns) + "/pod" + std::to_string(pod);
    auto old_pod = cluster->pods.Get(key);
    auto new_pod = std::make_shared<kr::k8s::Pod>(*old_pod);
    new_pod->meta.labels["app"] =
        "app" + std::to_string((pod + 1 + i) % kNetpolBenchPoliciesPerNamespace);
    new_pod->meta.labels["role"] = i % 2 ? "client" : "server";
    auto start = Clock::now();
    cluster->pods.Upsert(key, new_pod);
    kr::k8s::Event event{kr::k8s::ResourceKind::kPod, kr::k8s::EventType::kUpdated, key, old_pod,
                         std::shared_ptr<const kr::k8s::Pod>(new_pod)};
    if (controller->OnUpdate(event)) {
      auto status = controller->Sync(kr::SyncReason::kRequested);
      if (!status.ok()) {
        std::fprintf(stderr, "incremental sync failed: %s\n", status.message().c_str());
        return false;
      }
    }
    out.label_ms.push_back(Ms(Clock::now() - start));
  }
  std::sort(out.label_ms.begin(), out.label_ms.end());
  return true;
}

void Print(const char* what, const RunFigures& f) {
  std::printf("  %s\n", what);
  std::printf("    ipsets %zu holding %zu entries; %zu rules in %zu chains\n", f.sets, f.entries,
              f.rules, f.chains);
  std::printf("    cold start (controller's first full sync, fresh netns): %9.1f ms\n",
              f.cold_start_ms);
  std::printf(
      "    raw tools, same content, fresh netns: ipset restore %9.1f ms + "
      "iptables-restore %7.1f ms = %9.1f ms\n",
      f.raw_ipset_ms, f.raw_iptables_ms, f.raw_ipset_ms + f.raw_iptables_ms);
  std::printf(
      "    label change -> kernel (incremental, n=%zu): p50 %.1f ms, p99 %.1f ms, "
      "max %.1f ms\n",
      f.label_ms.size(), f.Pct(0.5), f.Pct(0.99), f.label_ms.back());
}

}  // namespace

int main(int argc, char** argv) {
  std::string mode = argc > 1 ? argv[1] : "nft";
  if (argc > 2) g_teams = std::max(1, std::atoi(argv[2]));
  if (!kr::testing::IsRoot()) {
    std::fprintf(stderr, "netpol_bench needs root (it uses network namespaces)\n");
    return 1;
  }
  // Compile alone (pure, no kernel), shared sets.
  double compile_ms = 0;
  {
    auto cluster = kr::k8s::MakeCluster();
    FillCluster(*cluster);
    kr::netpol::NetpolConfig config;
    config.node_name = kNode;
    kr::netpol::ClusterView view{cluster->pods.List(), cluster->namespaces.List(),
                                 cluster->network_policies.List()};
    auto start = Clock::now();
    auto compiled = kr::netpol::Compile(view, config, IpFamily::kV4);
    compile_ms = Ms(Clock::now() - start);
    if (!compiled.problems.empty()) {
      std::fprintf(stderr, "unexpected problems: %s\n", compiled.problems[0].c_str());
      return 1;
    }
  }
  RunFigures before, after;
  if (!RunOnce(mode, false, before) || !RunOnce(mode, true, after)) return 1;

  double old_raw = before.raw_ipset_ms + before.raw_iptables_ms;
  std::printf(
      "netpol benchmark (iptables %s): %d policies, %d pods (%d local), %d namespaces, "
      "%d team values\n",
      mode.c_str(), kNetpolBenchNamespaces * kNetpolBenchPoliciesPerNamespace,
      kNetpolBenchNamespaces * kNetpolBenchPodsPerNamespace,
      kNetpolBenchNamespaces * kNetpolBenchPodsPerNamespace / kNetpolBenchLocalEvery,
      kNetpolBenchNamespaces, g_teams);
  Print("baseline: one set per policy use (the content before shared sets)", before);
  Print("shared content-addressed sets (the agent)", after);
  std::printf("  compile alone (pure, whole cluster, shared sets): %.1f ms\n", compile_ms);
  std::printf("  RATIOS\n");
  std::printf(
      "    cold start / raw restore of the OLD content:   %6.3f x  (%.0f ms vs %.0f ms; "
      "target cold start <= 2000 ms)\n",
      after.cold_start_ms / old_raw, after.cold_start_ms, old_raw);
  std::printf("    cold start / baseline's cold start:            %6.3f x\n",
              after.cold_start_ms / before.cold_start_ms);
  std::printf("    cold start / raw restore of the NEW content:   %6.3f x  (controller overhead)\n",
              after.cold_start_ms / (after.raw_ipset_ms + after.raw_iptables_ms));
  std::printf(
      "    set entries before / after:                    %6.1f x fewer (%zu -> %zu; "
      "target >= 10x)\n",
      static_cast<double>(before.entries) / after.entries, before.entries, after.entries);
  std::printf("    sets before / after:                           %6.1f x fewer (%zu -> %zu)\n",
              static_cast<double>(before.sets) / after.sets, before.sets, after.sets);
  std::printf(
      "    label change p99 after / before:               %6.2f x  (%.1f ms vs %.1f ms; "
      "target <= 1)\n",
      after.Pct(0.99) / before.Pct(0.99), after.Pct(0.99), before.Pct(0.99));
  std::printf("  RSS: %ld kB (peak %ld kB), whole benchmark process\n", RssKb("VmRSS:"),
              RssKb("VmHWM:"));
  return 0;
}
