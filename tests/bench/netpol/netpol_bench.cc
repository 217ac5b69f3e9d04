// Network policy benchmark: 1,000 policies over 5,000 pods (500 on this node).
//
// Prints: the controller's full sync time and, as the baseline measured in the same run, one
// iptables-restore of the same chains plus one ipset restore of the same sets (each in a fresh
// namespace, as the sync was); rule and set counts; the latency from a pod label change in the
// caches to the kernel holding the new verdict (incremental sync), p50/p99; process RSS.
// Usage (root): netpol_bench [nft|legacy]
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <string>
#include <vector>

#include "kube_router/base/exec.h"
#include "kube_router/k8s/store.h"
#include "kube_router/netfilter/ipset.h"
#include "kube_router/netfilter/iptables.h"
#include "kube_router/netpol/network_policy_controller.h"
#include "lib/netns.h"
#include "lib/podnet.h"

namespace {

using Clock = std::chrono::steady_clock;
using kr::netfilter::IpFamily;

constexpr int kNamespaces = 50;
constexpr int kPodsPerNamespace = 100;     // 5,000 pods
constexpr int kPoliciesPerNamespace = 20;  // 1,000 policies
constexpr int kLocalEvery = 10;            // every 10th pod is on this node: 500
constexpr char kNode[] = "bench-node";

double Ms(Clock::duration d) { return std::chrono::duration<double, std::milli>(d).count(); }

std::string PodIp(int ns, int pod) {
  int n = ns * kPodsPerNamespace + pod;
  return "10.80." + std::to_string(n / 250) + "." + std::to_string(n % 250 + 1);
}

std::shared_ptr<const kr::k8s::Pod> MakePod(int ns, int pod, const std::string& app) {
  auto p = std::make_shared<kr::k8s::Pod>();
  p->meta.namespace_ = "ns" + std::to_string(ns);
  p->meta.name = "pod" + std::to_string(pod);
  p->meta.labels = {{"app", app}, {"role", pod % 2 ? "client" : "server"}};
  p->node_name = pod % kLocalEvery == 0 ? kNode : "other-node";
  p->pod_ip = PodIp(ns, pod);
  p->pod_ips = {p->pod_ip};
  p->phase = "Running";
  p->container_ports = {{"http", 8080, "TCP"}, {"dns", 53, "UDP"}};
  return p;
}

void FillCluster(kr::k8s::Cluster& cluster) {
  for (int n = 0; n < kNamespaces; ++n) {
    auto ns = std::make_shared<kr::k8s::Namespace>();
    ns->meta.name = "ns" + std::to_string(n);
    ns->meta.labels = {{"team", "t" + std::to_string(n % 5)}};
    cluster.namespaces.Upsert(ns->meta.Key(), ns);
    for (int p = 0; p < kPodsPerNamespace; ++p) {
      auto pod = MakePod(n, p, "app" + std::to_string(p % kPoliciesPerNamespace));
      cluster.pods.Upsert(pod->meta.Key(), pod);
    }
    for (int i = 0; i < kPoliciesPerNamespace; ++i) {
      auto policy = std::make_shared<kr::k8s::NetworkPolicy>();
      policy->meta.namespace_ = ns->meta.name;
      policy->meta.name = "policy" + std::to_string(i);
      policy->pod_selector.match_labels = {{"app", "app" + std::to_string(i)}};
      // A mix of the shapes seen in clusters: pod peers on a port, namespace peers on a
      // named port, CIDRs with except, and egress.
      kr::k8s::NetworkPolicyRule from_clients;
      kr::k8s::NetworkPolicyPeer clients;
      clients.pod_selector = kr::k8s::LabelSelector{{{"role", "client"}}, {}};
      from_clients.peers = {clients};
      from_clients.ports = {{"TCP", kr::k8s::IntOrString{false, 80, ""}, std::nullopt}};
      kr::k8s::NetworkPolicyRule from_team;
      kr::k8s::NetworkPolicyPeer team;
      team.namespace_selector = kr::k8s::LabelSelector{{{"team", "t" + std::to_string(i % 5)}}, {}};
      from_team.peers = {team};
      from_team.ports = {{"TCP", kr::k8s::IntOrString{true, 0, "http"}, std::nullopt}};
      policy->ingress = {from_clients, from_team};
      if (i % 4 == 0) {
        kr::k8s::NetworkPolicyRule to_block;
        kr::k8s::NetworkPolicyPeer block;
        block.ip_block = kr::k8s::IpBlock{"192.0.2.0/24", {"192.0.2.128/25"}};
        to_block.peers = {block};
        policy->egress = {to_block};
        policy->policy_egress = true;
      }
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

}  // namespace

int main(int argc, char** argv) {
  std::string mode = argc > 1 ? argv[1] : "nft";
  if (!kr::testing::IsRoot()) {
    std::fprintf(stderr, "netpol_bench needs root (it uses network namespaces)\n");
    return 1;
  }
  auto cluster = kr::k8s::MakeCluster();
  FillCluster(*cluster);
  kr::netpol::NetpolConfig config;
  config.node_name = kNode;
  config.iptables_mode = mode;
  config.service_cluster_ip_ranges = {*kr::IpPrefix::Parse("10.96.0.0/12")};

  kr::testing::Netns agent_ns("krbench");
  auto made = kr::netpol::MakeNetworkPolicyController(config, cluster.get());
  if (!made.ok()) {
    std::fprintf(stderr, "%s\n", made.error().c_str());
    return 1;
  }
  auto* controller = static_cast<kr::netpol::NetworkPolicyController*>(made->get());

  Clock::duration sync_time{};
  {
    kr::testing::ScopedNetns inside(agent_ns.name());
    auto start = Clock::now();
    auto status = controller->Sync(kr::SyncReason::kStartup);
    sync_time = Clock::now() - start;
    if (!status.ok()) {
      std::fprintf(stderr, "sync failed: %s\n", status.message().c_str());
      return 1;
    }
  }
  const auto* applied = controller->applied(IpFamily::kV4);

  // Compile alone (pure, no kernel).
  kr::netpol::ClusterView view{cluster->pods.List(), cluster->namespaces.List(),
                               cluster->network_policies.List()};
  auto compile_start = Clock::now();
  auto compiled = kr::netpol::Compile(view, config, IpFamily::kV4);
  auto compile_time = Clock::now() - compile_start;

  // Baseline: the same rules and sets loaded by the tools directly into a fresh namespace.
  kr::netfilter::TableUpdate update;
  for (const auto& [name, chain] : applied->chains) update.replace_chains.push_back(chain);
  for (const char* builtin : {"INPUT", "FORWARD", "OUTPUT"}) {
    update.insert_rules.push_back({builtin, 1, std::string("-j KUBE-ROUTER-") + builtin});
  }
  kr::netfilter::IpsetUpdate sets;
  for (const auto& [name, set] : applied->sets) sets.replace.push_back(set);
  std::string rules_text = kr::netfilter::RenderRestore(update);
  std::string sets_text = kr::netfilter::RenderIpsetRestore(sets, {});
  kr::testing::Netns baseline_ns("krbase");
  Clock::duration baseline_ipt{}, baseline_ipset{};
  {
    kr::testing::ScopedNetns inside(baseline_ns.name());
    auto start = Clock::now();
    auto r1 = kr::ExecChecked({"ipset", "restore"}, sets_text);
    baseline_ipset = Clock::now() - start;
    start = Clock::now();
    auto r2 = kr::ExecChecked({"iptables-" + mode + "-restore", "--noflush"}, rules_text);
    baseline_ipt = Clock::now() - start;
    if (!r1.ok() || !r2.ok()) {
      std::fprintf(stderr, "baseline failed: %s %s\n", r1.error().c_str(), r2.error().c_str());
      return 1;
    }
  }

  // Label change → verdict programmed: flip a local pod between two apps (so it moves between
  // target sets) and a remote pod's role (so it moves between peer sets).
  std::vector<double> latencies;
  {
    kr::testing::ScopedNetns inside(agent_ns.name());
    for (int i = 0; i < 100; ++i) {
      int ns = i % kNamespaces;
      int pod = (i % 10) * kLocalEvery;  // local
      auto key = "ns" + std::to_string(ns) + "/pod" + std::to_string(pod);
      auto old_pod = cluster->pods.Get(key);
      auto new_pod = std::make_shared<kr::k8s::Pod>(*old_pod);
      new_pod->meta.labels["app"] = "app" + std::to_string((pod + 1 + i) % kPoliciesPerNamespace);
      new_pod->meta.labels["role"] = i % 2 ? "client" : "server";
      auto start = Clock::now();
      cluster->pods.Upsert(key, new_pod);
      kr::k8s::Event event{kr::k8s::ResourceKind::kPod, kr::k8s::EventType::kUpdated, key, old_pod,
                           std::shared_ptr<const kr::k8s::Pod>(new_pod)};
      if (controller->OnUpdate(event)) {
        auto status = controller->Sync(kr::SyncReason::kRequested);
        if (!status.ok()) {
          std::fprintf(stderr, "incremental sync failed: %s\n", status.message().c_str());
          return 1;
        }
      }
      latencies.push_back(Ms(Clock::now() - start));
    }
  }
  std::sort(latencies.begin(), latencies.end());
  auto pct = [&](double p) {
    return latencies[std::min(latencies.size() - 1, static_cast<size_t>(p * latencies.size()))];
  };

  double baseline = Ms(baseline_ipt) + Ms(baseline_ipset);
  std::printf("netpol benchmark (iptables %s): %d policies, %d pods (%d local)\n", mode.c_str(),
              kNamespaces * kPoliciesPerNamespace, kNamespaces * kPodsPerNamespace,
              kNamespaces * kPodsPerNamespace / kLocalEvery);
  std::printf("  rules: %zu in %zu chains; ipsets: %zu\n", applied->RuleCount(),
              applied->chains.size(), applied->sets.size());
  std::printf("  full sync (controller, fresh netns):         %8.1f ms\n", Ms(sync_time));
  std::printf("    of which compile (pure):                  %8.1f ms\n", Ms(compile_time));
  std::printf("  baseline: one iptables-restore of the rules: %8.1f ms\n", Ms(baseline_ipt));
  std::printf("            one ipset restore of the sets:     %8.1f ms\n", Ms(baseline_ipset));
  std::printf("  ratio full sync / baseline:                  %8.2f x (target <= 1.3)\n",
              Ms(sync_time) / baseline);
  std::printf(
      "  label change -> kernel updated (incremental, in-process, n=%zu): p50 %.1f ms, "
      "p99 %.1f ms, max %.1f ms (target p99 <= 100 ms)\n",
      latencies.size(), pct(0.5), pct(0.99), latencies.back());
  std::printf("  RSS: %ld kB (peak %ld kB), whole benchmark process\n", RssKb("VmRSS:"),
              RssKb("VmHWM:"));
  std::printf("  compiled problems: %zu\n", compiled.problems.size());
  return 0;
}
