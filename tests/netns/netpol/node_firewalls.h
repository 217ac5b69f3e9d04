// The in-process side of the netpol traffic tests: the xyz world's Namespaces and Pods in a
// cluster cache, and one NetworkPolicyController per node of a PodNetwork, each running inside
// its node's namespace and reading that cache (the agent tests run the real binary instead).
#pragma once

#include <gtest/gtest.h>

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "kube_router/netpol/network_policy_controller.h"
#include "lib/netns.h"
#include "lib/podnet.h"
#include "unit/netpol/objects.h"
#include "xyz_world.h"

namespace kr::netpol::testing {

// Container ports of one pod of the world.
using PodPortsFn = std::function<std::vector<k8s::ContainerPort>(const std::string& key)>;

// Namespaces x/y/z (labelled ns=<name>) and their pods (labelled pod=<name>) as `net` placed
// them; a dual-stack network's pods list both addresses in status.podIPs.
inline void PutXyz(k8s::Cluster& cluster, kr::testing::PodNetwork& net, const PodPortsFn& ports) {
  for (const auto& ns : kXyzNamespaces) Put(cluster, Namespace(ns, {{"ns", ns}}));
  for (const auto& key : XyzPodKeys()) {
    const auto& pod = net.pod(key);
    k8s::Pod object = Pod(NsOf(key), NameOf(key), pod.ip, net.nodes()[XyzNode(key)].name,
                          {{"pod", NameOf(key)}}, ports ? ports(key) : k8s::Pod{}.container_ports);
    if (!pod.ip6.empty()) object.pod_ips = {pod.ip, pod.ip6};
    Put(cluster, object);
  }
}

class NodeFirewalls {
 public:
  // Adjusts one node's configuration (backend, families, default deny) before its start.
  using Configure = std::function<void(NetpolConfig&)>;

  // One controller per node of `net`, Init() inside the node's namespace. Empty on success,
  // else what failed.
  std::string Start(kr::testing::PodNetwork& net, const k8s::Cluster* cluster,
                    const Configure& configure) {
    net_ = &net;
    for (auto& node : net.nodes()) {
      NetpolConfig config;
      config.node_name = node.name;
      if (configure) configure(config);
      auto controller = MakeNetworkPolicyController(config, cluster);
      if (!controller.ok()) return node.name + ": " + controller.error();
      kr::testing::ScopedNetns inside(node.ns->name());
      if (auto s = (*controller)->Init(); !s.ok()) return node.name + ": " + s.message();
      controllers_.push_back(std::move(*controller));
    }
    return "";
  }

  // Syncs every node; empty on success, else the first failure.
  std::string Sync(SyncReason reason) {
    for (size_t i = 0; i < controllers_.size(); ++i) {
      kr::testing::ScopedNetns inside(net_->nodes()[i].ns->name());
      if (auto s = controllers_[i]->Sync(reason); !s.ok()) {
        return net_->nodes()[i].name + ": " + s.message();
      }
    }
    return "";
  }

  // Every node's Cleanup(); empty on success.
  std::string Cleanup() {
    for (size_t i = 0; i < controllers_.size(); ++i) {
      kr::testing::ScopedNetns inside(net_->nodes()[i].ns->name());
      auto removed = controllers_[i]->Cleanup();
      if (!removed.ok()) return net_->nodes()[i].name + ": " + removed.error();
    }
    return "";
  }

  void Stop() { controllers_.clear(); }
  Controller& controller(size_t node) { return *controllers_.at(node); }

 private:
  kr::testing::PodNetwork* net_ = nullptr;
  std::vector<std::unique_ptr<Controller>> controllers_;
};

// The fixture the traffic tests share: `net_` (owned by the test or by its suite), the cluster
// cache, the node firewalls, and the edits the scenarios make (each followed by an incremental
// sync on every node, as an informer event would cause).
template <typename Param>
class XyzFirewallTest : public ::testing::TestWithParam<Param> {
 protected:
  // Fills the cache from `net` (and `more`) and starts and syncs (kStartup) one controller per
  // node.
  void StartFirewalls(kr::testing::PodNetwork& net, const PodPortsFn& ports,
                      const NodeFirewalls::Configure& configure,
                      const std::function<void(k8s::Cluster&)>& more = nullptr) {
    net_ = &net;
    cluster_ = k8s::MakeCluster();
    PutXyz(*cluster_, net, ports);
    if (more) more(*cluster_);
    ASSERT_EQ(firewalls_.Start(net, cluster_.get(), configure), "");
    Sync(SyncReason::kStartup);
  }

  void TearDown() override { firewalls_.Stop(); }

  void Sync(SyncReason reason) { ASSERT_EQ(firewalls_.Sync(reason), ""); }

  void Apply(const k8s::NetworkPolicy& policy) {
    Put(*cluster_, policy);
    Sync(SyncReason::kRequested);
  }

  void Remove(const std::string& policy_key) {
    cluster_->network_policies.Remove(policy_key);
    Sync(SyncReason::kRequested);
  }

  void Relabel(const std::string& pod_key, k8s::Labels labels) {
    auto pod = *cluster_->pods.Get(pod_key);
    pod.meta.labels = std::move(labels);
    Put(*cluster_, pod);
    Sync(SyncReason::kRequested);
  }

  void ExpectMatrix(int port, kr::testing::Proto proto, const Reachability& allowed) {
    std::string mismatches = MatrixMismatches(*net_, port, proto, allowed);
    EXPECT_TRUE(mismatches.empty()) << "mismatches:\n" << mismatches;
  }

  void ExpectProbe(const std::string& from, const std::string& to, int port,
                   kr::testing::Proto proto, bool expected) {
    EXPECT_EQ(net_->Probe(from, net_->pod(to).ip, port, proto), expected)
        << from << " -> " << to << ":" << port << "/" << kr::testing::ProtoName(proto);
  }

  kr::testing::PodNetwork* net_ = nullptr;
  std::unique_ptr<k8s::Cluster> cluster_;
  NodeFirewalls firewalls_;
};

}  // namespace kr::netpol::testing
