// SPDX-License-Identifier: Apache-2.0
// sandbox-node: the stand-in for kubelet, the scheduler and the controller manager in the local
// sandbox (docs/sandbox.md), and nothing more. One process serves every sandbox node: it
// registers the Nodes, gives them pod CIDRs, places Pods, runs each Pod as a network namespace
// wired by the real CNI plugins with answer servers on its container ports (pod_runtime.h),
// writes Pod status back, and keeps the EndpointSlices of Services with selectors current
// (controllers.h). Level-triggered: every period it lists and reconciles, so a missed change or
// a restart of this agent heals on the next pass.
#include <signal.h>

#include <algorithm>
#include <chrono>
#include <ctime>
#include <iostream>
#include <set>
#include <sstream>

#include "api.h"
#include "controllers.h"
#include "lib/flag_parser.h"
#include "lib/timestamp.h"
#include "pod_runtime.h"

namespace sandbox {
namespace {

struct Flags {
  std::string kubeconfig;
  std::vector<NodeHost> nodes;
  std::string cluster_cidr = "10.244.0.0/16";
  std::string netns_prefix = "krsb";
  std::string state_dir;
  std::string cni_bin = "/usr/lib/cni";
  int period_ms = 500;
};

void Usage() {
  std::cerr << "usage: sandbox-node --kubeconfig FILE --state-dir DIR\n"
               "  --node NAME,NETNS,NODE_IP,CNI_CONF_FILE [--node ...]\n"
               "  [--cluster-cidr 10.244.0.0/16] [--netns-prefix krsb] [--cni-bin /usr/lib/cni]\n"
               "  [--period-ms 500]\n";
}

kr::Status ParseFlags(int argc, char** argv, Flags* f) {
  auto node = [f](const std::string& value) {
    std::vector<std::string> parts;
    std::stringstream ss(value);
    std::string part;
    while (std::getline(ss, part, ',')) parts.push_back(part);
    if (parts.size() != 4) return false;
    f->nodes.push_back({parts[0], parts[1], parts[2], parts[3]});
    return true;
  };
  kr::testing::FlagParser parser;
  parser.Text("--kubeconfig", &f->kubeconfig)
      .Custom("--node", "NAME,NETNS,NODE_IP,CNI_CONF_FILE", node)
      .Text("--cluster-cidr", &f->cluster_cidr)
      .Text("--netns-prefix", &f->netns_prefix)
      .Text("--state-dir", &f->state_dir)
      .Text("--cni-bin", &f->cni_bin)
      .Number("--period-ms", &f->period_ms);
  if (auto parsed = parser.Parse(argc, argv); !parsed.ok()) return parsed;
  f->period_ms = std::max(50, f->period_ms);
  if (f->kubeconfig.empty() || f->state_dir.empty() || f->nodes.empty()) {
    return kr::Status::Error("--kubeconfig, --state-dir and at least one --node are required");
  }
  return kr::Status::Ok();
}

std::string Now() { return kr::testing::UtcTimestamp(std::time(nullptr)); }

std::string Name(const json& o) { return o["metadata"].value("name", ""); }
std::string Namespace(const json& o) { return o["metadata"].value("namespace", ""); }

class Agent {
 public:
  Agent(const Flags& flags, std::unique_ptr<Api> api)
      : flags_(flags),
        api_(std::move(api)),
        runtime_(flags.netns_prefix, flags.state_dir, flags.cni_bin) {
    for (const auto& n : flags.nodes) hosts_[n.name] = n;
  }

  // One reconcile pass; errors are logged (once per distinct message) and retried next pass.
  void Pass() {
    RegisterNodes();
    auto nodes = api_->List("/api/v1/nodes");
    if (!nodes.ok()) return Log("nodes", nodes.error());
    AssignCidrs(*nodes);
    std::set<std::string> live_nodes;
    for (const auto& n : *nodes) live_nodes.insert(Name(n));
    auto pods = api_->List("/api/v1/pods");
    if (!pods.ok()) return Log("pods", pods.error());
    CollectOrphans(*pods, live_nodes);
    Schedule(*pods, live_nodes);
    RunPods(*pods, live_nodes);
    SyncEndpointSlices(*pods);
  }

 private:
  void Log(const std::string& what, const std::string& message) {
    auto& last = logged_[what];
    if (last == message) return;
    last = message;
    std::cerr << "sandbox-node: " << what << ": " << message << std::endl;
  }

  // kubelet registers its Node: addresses and a Ready condition. Only once per run: a Node
  // deleted later stays deleted (that is how the e2e test removes a node).
  void RegisterNodes() {
    for (const auto& [name, host] : hosts_) {
      if (registered_.count(name)) continue;
      json node = {
          {"apiVersion", "v1"},
          {"kind", "Node"},
          {"metadata",
           {{"name", name},
            {"labels", {{"kubernetes.io/hostname", name}, {"kubernetes.io/os", "linux"}}}}},
          {"spec", json::object()},
          {"status",
           {{"addresses",
             {{{"type", "InternalIP"}, {"address", host.node_ip}},
              {{"type", "Hostname"}, {"address", name}}}},
            {"conditions",
             {{{"type", "Ready"},
               {"status", "True"},
               {"reason", "SandboxNodeReady"},
               {"lastTransitionTime", Now()}}}}}}};
      auto r = api_->Call("POST", "/api/v1/nodes", node);
      if (!r.ok()) return Log("node " + name, r.error());
      if (r->status != 201 && r->status != 409)
        return Log("node " + name, "register: HTTP " + std::to_string(r->status));
      registered_.insert(name);
    }
  }

  void AssignCidrs(const json& nodes) {
    auto wanted = AssignPodCidrs(nodes, flags_.cluster_cidr);
    for (const auto& [node, cidr] : wanted) {
      auto r = api_->MergePatch("/api/v1/nodes/" + node,
                                {{"spec", {{"podCIDR", cidr}, {"podCIDRs", {cidr}}}}});
      if (!r.ok() || r->status != 200)
        Log("node " + node,
            "pod CIDR: " + (r.ok() ? "HTTP " + std::to_string(r->status) : r.error()));
      else
        std::cerr << "sandbox-node: node " << node << " gets pod CIDR " << cidr << std::endl;
    }
    size_t without = 0;
    for (const auto& n : nodes)
      if (!n.contains("spec") || n["spec"].value("podCIDR", "").empty()) ++without;
    if (without > wanted.size()) Log("cluster-cidr", flags_.cluster_cidr + " is full");
  }

  // The pod garbage collector: pods bound to one of our nodes whose Node was deleted are
  // deleted at once (grace period 0, as kube-controller-manager's pod GC does: no kubelet is
  // left to run them) and leave `pods`, so nothing else acts on them this pass.
  void CollectOrphans(json& pods, const std::set<std::string>& live_nodes) {
    json kept = json::array();
    for (auto& pod : pods) {
      std::string node = pod.contains("spec") ? pod["spec"].value("nodeName", "") : "";
      if (!hosts_.count(node) || live_nodes.count(node)) {
        kept.push_back(std::move(pod));
        continue;
      }
      auto r = api_->Call("DELETE", "/api/v1/namespaces/" + Namespace(pod) + "/pods/" + Name(pod) +
                                        "?gracePeriodSeconds=0");
      if (r.ok() && (r->status == 200 || r->status == 404))
        std::cerr << "sandbox-node: pod " << Namespace(pod) << "/" << Name(pod)
                  << " deleted: its node " << node << " is gone" << std::endl;
    }
    pods = std::move(kept);
  }

  void Schedule(json& pods, const std::set<std::string>& live_nodes) {
    std::vector<std::string> ours;
    for (const auto& [name, host] : hosts_)
      if (live_nodes.count(name)) ours.push_back(name);
    auto placed = PlacePods(pods, ours);
    for (auto& pod : pods) {
      std::string key = Namespace(pod) + "/" + Name(pod);
      auto it = placed.find(key);
      if (it == placed.end()) continue;
      auto r = api_->MergePatch("/api/v1/namespaces/" + Namespace(pod) + "/pods/" + Name(pod),
                                {{"spec", {{"nodeName", it->second}}}});
      if (r.ok() && r->status == 200) pod["spec"]["nodeName"] = it->second;
    }
  }

  void RunPods(const json& pods, const std::set<std::string>& live_nodes) {
    std::set<std::string> wanted;
    for (const auto& pod : pods) {
      std::string node = pod.contains("spec") ? pod["spec"].value("nodeName", "") : "";
      auto host = hosts_.find(node);
      if (host == hosts_.end() || !live_nodes.count(node)) continue;
      std::string uid = pod["metadata"].value("uid", "");
      std::string key = Namespace(pod) + "/" + Name(pod);
      if (pod["spec"].value("hostNetwork", false)) {
        Log("pod " + key, "hostNetwork pods are not run by the sandbox");
        continue;
      }
      wanted.insert(uid);
      bool was_running = runtime_.running().count(uid) > 0;
      auto started = runtime_.Start(host->second, pod);
      if (!started.ok()) {
        Log("pod " + key, started.error());
        continue;
      }
      if (!was_running || pod.value("status", json::object()).value("podIP", "").empty())
        WriteStatus(pod, host->second, **started);
    }
    // Pods deleted, or whose node is gone.
    std::vector<std::pair<std::string, std::string>> gone;
    for (const auto& [uid, run] : runtime_.running())
      if (!wanted.count(uid)) gone.emplace_back(uid, run.node);
    for (const auto& [uid, node] : gone) {
      std::cerr << "sandbox-node: pod " << runtime_.running().at(uid).key << " removed"
                << std::endl;
      runtime_.Stop(uid, &hosts_.at(node));
    }
  }

  void WriteStatus(const json& pod, const NodeHost& host, const PodRuntime::Running& run) {
    json ips = json::array();
    for (const auto& ip : run.ips) ips.push_back({{"ip", ip}});
    json conditions = json::array();
    for (const char* type : {"Initialized", "Ready", "ContainersReady", "PodScheduled"})
      conditions.push_back({{"type", type}, {"status", "True"}, {"lastTransitionTime", Now()}});
    json status = {{"phase", "Running"},
                   {"podIP", run.ips[0]},
                   {"podIPs", ips},
                   {"hostIP", host.node_ip},
                   {"hostIPs", {{{"ip", host.node_ip}}}},
                   {"startTime", Now()},
                   {"conditions", conditions}};
    auto r =
        api_->MergePatch("/api/v1/namespaces/" + Namespace(pod) + "/pods/" + Name(pod) + "/status",
                         {{"status", status}});
    if (!r.ok() || r->status != 200)
      Log("pod " + run.key,
          "status: " + (r.ok() ? "HTTP " + std::to_string(r->status) : r.error()));
    else
      std::cerr << "sandbox-node: pod " << run.key << " running on " << host.name << " as "
                << run.ips[0] << " (netns " << run.netns << ")" << std::endl;
  }

  void SyncEndpointSlices(const json& pods) {
    auto services = api_->List("/api/v1/services");
    if (!services.ok()) return Log("services", services.error());
    std::string selector = std::string(kManagedBy) + "%3D" + kManagerName;
    auto existing =
        api_->List("/apis/discovery.k8s.io/v1/endpointslices?labelSelector=" + selector);
    if (!existing.ok()) return Log("endpointslices", existing.error());
    std::map<std::string, json> have;
    for (const auto& s : *existing) have[Namespace(s) + "/" + Name(s)] = s;
    for (auto& want : DesiredSlices(*services, pods)) {
      std::string ns = Namespace(want);
      std::string path = "/apis/discovery.k8s.io/v1/namespaces/" + ns + "/endpointslices";
      auto it = have.find(ns + "/" + Name(want));
      if (it == have.end()) {
        auto r = api_->Call("POST", path, want);
        if (!r.ok() || r->status != 201) Log("slice " + Name(want), "create failed");
        continue;
      }
      json current = it->second;
      have.erase(it);
      if (current.value("endpoints", json::array()) == want["endpoints"] &&
          current.value("ports", json::array()) == want["ports"])
        continue;
      want["metadata"]["resourceVersion"] = current["metadata"]["resourceVersion"];
      auto r = api_->Call("PUT", path + "/" + Name(want), want);
      if (!r.ok() || r->status != 200) Log("slice " + Name(want), "update failed");
    }
    for (const auto& [key, stale] : have) {
      (void)api_->Call("DELETE", "/apis/discovery.k8s.io/v1/namespaces/" + Namespace(stale) +
                                     "/endpointslices/" + Name(stale));
    }
  }

  const Flags& flags_;
  std::unique_ptr<Api> api_;
  PodRuntime runtime_;
  std::map<std::string, NodeHost> hosts_;
  std::set<std::string> registered_;
  std::map<std::string, std::string> logged_;
};

int Main(int argc, char** argv) {
  Flags flags;
  if (auto parsed = ParseFlags(argc, argv, &flags); !parsed.ok()) {
    std::cerr << "sandbox-node: " << parsed.message() << "\n";
    Usage();
    return 2;
  }
  auto api = Api::FromKubeconfig(flags.kubeconfig);
  if (!api.ok()) {
    std::cerr << "sandbox-node: " << api.error() << "\n";
    return 2;
  }
  // SIGTERM/SIGINT end the loop between passes; the period wait is the signal wait.
  sigset_t stop;
  sigemptyset(&stop);
  sigaddset(&stop, SIGTERM);
  sigaddset(&stop, SIGINT);
  pthread_sigmask(SIG_BLOCK, &stop, nullptr);
  Agent agent(flags, std::move(*api));
  std::cerr << "sandbox-node: serving " << flags.nodes.size() << " node(s)" << std::endl;
  while (true) {
    agent.Pass();
    timespec wait{flags.period_ms / 1000, (flags.period_ms % 1000) * 1000000L};
    int sig = sigtimedwait(&stop, nullptr, &wait);
    if (sig == SIGTERM || sig == SIGINT) break;
  }
  std::cerr << "sandbox-node: stopping (pod namespaces stay; sandbox.sh down removes them)"
            << std::endl;
  return 0;
}

}  // namespace
}  // namespace sandbox

int main(int argc, char** argv) { return sandbox::Main(argc, argv); }
