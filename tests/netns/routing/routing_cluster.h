// The routing netns tests' cluster: the real kube-router binary (--run-router only) on "nodes"
// that are network namespaces joined by one underlay bridge (192.0.2.0/24, optionally
// 2001:db8::/64), with fake-apiserver on the bridge holding the Nodes. Shared by
// routes_netns_test.cc, external_peers_netns_test.cc and dual_stack_netns_test.cc.
#pragma once

#include <gtest/gtest.h>
#include <signal.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "lib/binaries.h"
#include "lib/files.h"
#include "lib/kubeconfig.h"
#include "lib/netns.h"

namespace kr::routing_netns {

using namespace std::chrono_literals;
using testing::kAgentBinary;
using testing::kFakeApiServerBinary;
using testing::Netns;
using testing::Process;
using testing::ReadFile;
using testing::TempDir;
using testing::WaitFor;

inline const std::string kCniBin = "/usr/lib/cni";
inline constexpr auto kDeadline = 60s;

inline void WriteFile(const std::string& path, const std::string& text) {
  std::ofstream(path) << text;
}

// stdout of a shell command in `ns`, or "" when it failed.
inline std::string ShOut(const Netns& ns, const std::string& command) {
  auto r = ns.Sh(command);
  return r.ok() ? *r : std::string();
}

struct NodeSpec {
  std::string name;
  int index;  // node IP 192.0.2.<index>, pod CIDR 10.201.<index>.0/24
  std::map<std::string, std::string> annotations;
  // Also node IP 2001:db8::<index>, pod CIDR fd00:201:<index>::/64 (issue 15).
  bool dual_stack = false;
};

inline std::string NodeIp6(int index) { return "2001:db8::" + std::to_string(index); }
inline std::string PodCidr6(int index) { return "fd00:201:" + std::to_string(index) + "::/64"; }

inline std::string NodeJson(const NodeSpec& node) {
  nlohmann::json j = {
      {"apiVersion", "v1"},
      {"kind", "Node"},
      {"metadata", {{"name", node.name}, {"annotations", node.annotations}}},
      {"spec",
       {{"podCIDR", "10.201." + std::to_string(node.index) + ".0/24"},
        {"podCIDRs", {"10.201." + std::to_string(node.index) + ".0/24"}}}},
      {"status",
       {{"addresses",
         {{{"type", "InternalIP"}, {"address", "192.0.2." + std::to_string(node.index)}}}}}}};
  if (node.annotations.empty()) j["metadata"].erase("annotations");
  if (node.dual_stack) {
    j["spec"]["podCIDRs"].push_back(PodCidr6(node.index));
    j["status"]["addresses"].push_back({{"type", "InternalIP"}, {"address", NodeIp6(node.index)}});
  }
  return j.dump();
}

class RoutingCluster : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(testing::IsRoot()) << "the netns tier runs as root";
    underlay_ = std::make_unique<Netns>("krrt-u");
    auto r = underlay_->Sh(
        "ip link set lo up && ip link add br0 type bridge && "
        "ip addr add 192.0.2.254/24 dev br0 && ip link set br0 up");
    ASSERT_TRUE(r.ok()) << r.error();
  }

  void TearDown() override {
    agents_.clear();
    extra_.clear();
    api_.reset();
    pods_.clear();
    nodes_.clear();
    underlay_.reset();
  }

  // A namespace joined to the underlay bridge with address 192.0.2.<index>.
  std::unique_ptr<Netns> Attach(const std::string& prefix, int index) {
    auto ns = std::make_unique<Netns>(prefix);
    const std::string port = "u" + std::to_string(index);
    auto r = ns->Sh("ip link set lo up && ip link add eth0 type veth peer name " + port +
                    " netns " + underlay_->name() + " && ip addr add 192.0.2." +
                    std::to_string(index) + "/24 dev eth0 && ip link set eth0 up");
    EXPECT_TRUE(r.ok()) << r.error();
    r = underlay_->Sh("ip link set " + port + " master br0 up");
    EXPECT_TRUE(r.ok()) << r.error();
    return ns;
  }

  void StartApiServer(const std::vector<NodeSpec>& nodes, const std::string& extra_yaml = "") {
    std::string manifests;
    for (const auto& node : nodes) manifests += NodeJson(node) + "\n---\n";
    manifests += extra_yaml;
    WriteFile(dir_.path() + "/objects.yaml", manifests);
    kubeconfig_ = dir_.path() + "/kubeconfig";
    api_ = std::make_unique<Process>(
        underlay_->Wrap({kFakeApiServerBinary, "--listen", "192.0.2.254:0", "--manifests",
                         dir_.path() + "/objects.yaml", "--kubeconfig-out", kubeconfig_}),
        dir_.path() + "/apiserver.log");
    ASSERT_TRUE(WaitFor([&] { return std::filesystem::exists(kubeconfig_); }, 20s)) << api_->Log();
    auto server = testing::ParseKubeconfigServer(ReadFile(kubeconfig_));
    ASSERT_TRUE(server.has_value()) << ReadFile(kubeconfig_);
    api_url_ = server->url;
  }

  // Node namespaces n1..nN and one agent in each, with `flags` added to the command line.
  void StartNodes(const std::vector<NodeSpec>& nodes, const std::vector<std::string>& flags = {}) {
    for (const auto& node : nodes) {
      nodes_[node.name] = Attach("krrt-" + node.name, node.index);
      if (node.dual_stack) AddIpv6(*nodes_[node.name], node.index);
      StartAgent(node.name, flags);
    }
  }

  // 2001:db8::<index>/64 on the namespace's eth0 (the underlay bridge gets 2001:db8::fe).
  // Duplicate address detection is off in our namespaces (kube-bridge included, through the
  // default), so addresses are usable at once.
  void AddIpv6(Netns& ns, int index) {
    auto r = ns.Sh(
        "sysctl -qw net.ipv6.conf.default.accept_dad=0 net.ipv6.conf.all.accept_dad=0 && "
        "ip addr add " +
        NodeIp6(index) + "/64 dev eth0 nodad");
    EXPECT_TRUE(r.ok()) << r.error();
    if (!underlay_has_ipv6_) {
      r = underlay_->Sh("ip addr add 2001:db8::fe/64 dev br0 nodad");
      EXPECT_TRUE(r.ok()) << r.error();
      underlay_has_ipv6_ = true;
    }
  }

  void StartAgent(const std::string& node, const std::vector<std::string>& flags) {
    std::vector<std::string> argv = {"env",
                                     "KUBE_ROUTER_CNI_CONF_FILE=" + CniFile(node),
                                     kAgentBinary,
                                     "--kubeconfig",
                                     kubeconfig_,
                                     "--hostname-override",
                                     node,
                                     "--run-router=true",
                                     "--run-firewall=false",
                                     "--run-service-proxy=false",
                                     "--health-port=0",
                                     "--metrics-port=20241",
                                     "--routes-sync-period=10s",
                                     "-v",
                                     "1"};
    argv.insert(argv.end(), flags.begin(), flags.end());
    agents_[node] = std::make_unique<Process>(nodes_.at(node)->Wrap(argv),
                                              dir_.path() + "/agent-" + node + ".log");
  }

  std::string CniFile(const std::string& node) {
    return dir_.path() + "/cni-" + node + "/10-kuberouter.conflist";
  }

  std::string RoutesOf(const std::string& node, const std::string& family = "-4") {
    auto r = nodes_.at(node)->Sh("ip " + family + " route show proto 17");
    return r.ok() ? *r : "error: " + r.error();
  }

  // Waits until `node` has exactly the routes of `wanted` ("10.201.2.0/24 via 192.0.2.2" ...)
  // in `family` ("-4" or "-6").
  void ExpectRoutes(const std::string& node, const std::vector<std::string>& wanted,
                    const std::string& family = "-4") {
    auto matches = [&] {
      std::string routes = RoutesOf(node, family);
      size_t lines = std::count(routes.begin(), routes.end(), '\n');
      if (lines != wanted.size()) return false;
      for (const auto& w : wanted) {
        if (routes.find(w) == std::string::npos) return false;
      }
      return true;
    };
    EXPECT_TRUE(WaitFor(matches, kDeadline)) << node << " has:\n"
                                             << RoutesOf(node, family) << "\nagent log:\n"
                                             << agents_.at(node)->Log();
  }

  // A pod namespace on `node` with 10.201.<index>.<host>/24 behind kube-bridge (which the
  // agent creates with the gateway address).
  Netns& AddPod(const std::string& node, int index, int host, bool dual_stack = false) {
    Netns& node_ns = *nodes_.at(node);
    EXPECT_TRUE(WaitFor([&] { return node_ns.Sh("ip link show kube-bridge").ok(); }, kDeadline))
        << agents_.at(node)->Log();
    auto pod = std::make_unique<Netns>("krrt-p" + std::to_string(index));
    const std::string veth = "vp" + std::to_string(host);
    const std::string ip = "10.201." + std::to_string(index) + "." + std::to_string(host);
    auto r = node_ns.Sh("ip link add " + veth + " type veth peer name eth0 netns " + pod->name() +
                        " && ip link set " + veth + " master kube-bridge up");
    EXPECT_TRUE(r.ok()) << r.error();
    r = pod->Sh("ip link set lo up && ip addr add " + ip + "/24 dev eth0 && ip link set eth0 up" +
                " && ip route add default via 10.201." + std::to_string(index) + ".1");
    EXPECT_TRUE(r.ok()) << r.error();
    if (dual_stack) {
      // fd00:201:<index>::<host>, default route via the bridge's IPv6 gateway (::1).
      const std::string prefix = "fd00:201:" + std::to_string(index) + "::";
      r = pod->Sh("ip addr add " + prefix + std::to_string(host) + "/64 dev eth0 nodad && " +
                  "ip -6 route add default via " + prefix + "1");
      EXPECT_TRUE(r.ok()) << r.error();
    }
    pods_.push_back(std::move(pod));
    return *pods_.back();
  }

  // Serves "pong" on TCP `port` inside `pod` (one connection at a time, forever).
  void ServePong(Netns& pod, int port) {
    extra_.push_back(std::make_unique<Process>(
        pod.Wrap({"socat", "TCP-LISTEN:" + std::to_string(port) + ",reuseaddr,fork",
                  "SYSTEM:echo pong"}),
        dir_.path() + "/socat-" + pod.name() + ".log"));
  }

  bool TcpPong(Netns& from, const std::string& ip, int port) {
    auto r = from.Run(
        {"socat", "-T2", "-", "TCP:" + ip + ":" + std::to_string(port) + ",connect-timeout=2"});
    return r.ok() && r->exit_code == 0 && r->out.find("pong") != std::string::npos;
  }

  // Serves "pong" on TCP6 `port` inside `pod`.
  void ServePong6(Netns& pod, int port) {
    extra_.push_back(std::make_unique<Process>(
        pod.Wrap({"socat", "TCP6-LISTEN:" + std::to_string(port) + ",reuseaddr,fork",
                  "SYSTEM:echo pong"}),
        dir_.path() + "/socat6-" + pod.name() + ".log"));
  }

  bool TcpPong6(Netns& from, const std::string& ip, int port) {
    auto r = from.Run(
        {"socat", "-T2", "-", "TCP6:[" + ip + "]:" + std::to_string(port) + ",connect-timeout=2"});
    return r.ok() && r->exit_code == 0 && r->out.find("pong") != std::string::npos;
  }

  Result<ExecResult> Api(const std::string& method, const std::string& path) {
    return underlay_->Run({"curl", "-s", "-X", method, api_url_ + path});
  }

  TempDir dir_;
  std::unique_ptr<Netns> underlay_;
  std::map<std::string, std::unique_ptr<Netns>> nodes_;
  std::vector<std::unique_ptr<Netns>> pods_;
  std::unique_ptr<Process> api_;
  std::map<std::string, std::unique_ptr<Process>> agents_;
  std::vector<std::unique_ptr<Process>> extra_;
  std::string kubeconfig_;
  std::string api_url_;
  bool underlay_has_ipv6_ = false;
};

inline const std::vector<NodeSpec> kThreeNodes = {{"n1", 1, {}}, {"n2", 2, {}}, {"n3", 3, {}}};

}  // namespace kr::routing_netns
