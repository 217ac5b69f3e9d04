// The real kube-router binary (--run-router only) on three "nodes": network namespaces joined
// by one underlay bridge (192.0.2.0/24), with fake-apiserver on the bridge holding three Nodes.
// Checks what a cluster operator would: routes with protocol 17 in each node's kernel, pod to
// pod TCP across nodes, withdrawal when a Node is deleted, external BGP peers (GoBGP with TCP
// MD5, BIRD) receiving the pod CIDRs and service VIPs, a route-reflector topology, and the CNI
// config driving the real bridge + host-local plugins. Everything lives in namespaces the test
// creates; nothing leaves them.
#include <gtest/gtest.h>
#include <signal.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>

#include "lib/binaries.h"
#include "lib/netns.h"

namespace kr {
namespace {

using namespace std::chrono_literals;
using testing::kAgentBinary;
using testing::kFakeApiServerBinary;
using testing::Netns;
using testing::Process;
using testing::TempDir;
using testing::WaitFor;

const std::string kCniBin = "/usr/lib/cni";
constexpr auto kDeadline = 60s;

std::string Slurp(const std::string& path) {
  std::ifstream in(path);
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

void WriteFile(const std::string& path, const std::string& text) { std::ofstream(path) << text; }

// stdout of a shell command in `ns`, or "" when it failed.
std::string ShOut(const Netns& ns, const std::string& command) {
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

std::string NodeIp6(int index) { return "2001:db8::" + std::to_string(index); }
std::string PodCidr6(int index) { return "fd00:201:" + std::to_string(index) + "::/64"; }

std::string NodeJson(const NodeSpec& node) {
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
    std::string config = Slurp(kubeconfig_);
    auto at = config.find("http://");
    ASSERT_NE(at, std::string::npos) << config;
    api_url_ = config.substr(at, config.find_first_of("\n\"' ", at) - at);
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

const std::vector<NodeSpec> kThreeNodes = {{"n1", 1, {}}, {"n2", 2, {}}, {"n3", 3, {}}};

TEST_F(RoutingCluster, FullMeshRoutesPodTrafficAndNodeDeletion) {
  StartApiServer(kThreeNodes);
  StartNodes(kThreeNodes);
  ExpectRoutes("n1", {"10.201.2.0/24 via 192.0.2.2", "10.201.3.0/24 via 192.0.2.3"});
  ExpectRoutes("n2", {"10.201.1.0/24 via 192.0.2.1", "10.201.3.0/24 via 192.0.2.3"});
  ExpectRoutes("n3", {"10.201.1.0/24 via 192.0.2.1", "10.201.2.0/24 via 192.0.2.2"});

  // A pod on node 1 reaches a pod on node 3 by TCP (and the answer finds its way back).
  Netns& p1 = AddPod("n1", 1, 5);
  Netns& p3 = AddPod("n3", 3, 5);
  ServePong(p3, 8080);
  EXPECT_TRUE(WaitFor([&] { return TcpPong(p1, "10.201.3.5", 8080); }, 20s));

  // The status view answers on the node's loopback only.
  auto status = nodes_.at("n1")->Run({"curl", "-s", "http://127.0.0.1:50051/status"});
  ASSERT_TRUE(status.ok());
  auto view = nlohmann::json::parse(status->out, nullptr, false);
  ASSERT_FALSE(view.is_discarded()) << status->out;
  EXPECT_EQ(view["peers"].size(), 2u);
  auto from_outside = underlay_->Run({"curl", "-s", "-m", "2", "http://192.0.2.1:50051/status"});
  ASSERT_TRUE(from_outside.ok());
  EXPECT_NE(from_outside->exit_code, 0);

  // Peers and advertisements in /metrics.
  auto metrics = nodes_.at("n1")->Run({"curl", "-s", "http://127.0.0.1:20241/metrics"});
  ASSERT_TRUE(metrics.ok());
  EXPECT_NE(metrics->out.find("kube_router_bgp_peer_info{address=\"192.0.2.3\",asn=\"64512\","
                              "state=\"Established\",type=\"internal\"} 1"),
            std::string::npos)
      << metrics->out;
  EXPECT_NE(metrics->out.find("kube_router_controller_bgp_advertisements_sent{type=\"pod-route\"}"),
            std::string::npos);

  // Deleting Node n3 withdraws its routes everywhere.
  auto deleted = Api("DELETE", "/api/v1/nodes/n3");
  ASSERT_TRUE(deleted.ok() && deleted->exit_code == 0);
  ExpectRoutes("n1", {"10.201.2.0/24 via 192.0.2.2"});
  ExpectRoutes("n2", {"10.201.1.0/24 via 192.0.2.1"});
}

TEST_F(RoutingCluster, PeriodicSyncRestoresADeletedRoute) {
  StartApiServer(kThreeNodes);
  StartNodes(kThreeNodes, {"--routes-sync-period=2s"});
  ExpectRoutes("n1", {"10.201.2.0/24 via 192.0.2.2", "10.201.3.0/24 via 192.0.2.3"});
  ASSERT_TRUE(nodes_.at("n1")->Sh("ip route del 10.201.2.0/24 proto 17").ok());
  ExpectRoutes("n1", {"10.201.2.0/24 via 192.0.2.2", "10.201.3.0/24 via 192.0.2.3"});
}

TEST_F(RoutingCluster, AFlappingPeerDoesNotDisturbTheOthers) {
  StartApiServer(kThreeNodes);
  StartNodes(kThreeNodes);
  ExpectRoutes("n1", {"10.201.2.0/24 via 192.0.2.2", "10.201.3.0/24 via 192.0.2.3"});
  // n3's agent dies: its sessions close, its pod CIDR is withdrawn, n2's stays.
  agents_.at("n3")->Signal(SIGKILL);
  ExpectRoutes("n1", {"10.201.2.0/24 via 192.0.2.2"});
  ExpectRoutes("n2", {"10.201.1.0/24 via 192.0.2.1"});
  // It comes back and everything converges again.
  agents_.erase("n3");
  StartAgent("n3", {});
  ExpectRoutes("n1", {"10.201.2.0/24 via 192.0.2.2", "10.201.3.0/24 via 192.0.2.3"});
  ExpectRoutes("n3", {"10.201.1.0/24 via 192.0.2.1", "10.201.2.0/24 via 192.0.2.2"});
}

TEST_F(RoutingCluster, RouteReflectorTopology) {
  const std::vector<NodeSpec> nodes = {{"n1", 1, {{"kube-router.io/rr.server", "42"}}},
                                       {"n2", 2, {{"kube-router.io/rr.client", "42"}}},
                                       {"n3", 3, {{"kube-router.io/rr.client", "42"}}}};
  StartApiServer(nodes);
  StartNodes(nodes);
  // Clients peer only with the reflector, yet learn each other's pod CIDR through it, with the
  // original next hop.
  ExpectRoutes("n2", {"10.201.1.0/24 via 192.0.2.1", "10.201.3.0/24 via 192.0.2.3"});
  ExpectRoutes("n3", {"10.201.1.0/24 via 192.0.2.1", "10.201.2.0/24 via 192.0.2.2"});
  ExpectRoutes("n1", {"10.201.2.0/24 via 192.0.2.2", "10.201.3.0/24 via 192.0.2.3"});
  auto status = nodes_.at("n2")->Run({"curl", "-s", "http://127.0.0.1:50051/status"});
  ASSERT_TRUE(status.ok());
  EXPECT_EQ(nlohmann::json::parse(status->out)["peers"].size(), 1u);
}

const char kService[] = R"(
apiVersion: v1
kind: Service
metadata: {name: web, namespace: default}
spec:
  type: ClusterIP
  clusterIP: 10.96.0.10
  clusterIPs: [10.96.0.10]
  ports: [{port: 80, protocol: TCP}]
)";

std::string Base64(const std::string& text) {
  static const char kChars[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  for (size_t i = 0; i < text.size(); i += 3) {
    uint32_t n = static_cast<uint8_t>(text[i]) << 16;
    if (i + 1 < text.size()) n |= static_cast<uint8_t>(text[i + 1]) << 8;
    if (i + 2 < text.size()) n |= static_cast<uint8_t>(text[i + 2]);
    out += kChars[(n >> 18) & 63];
    out += kChars[(n >> 12) & 63];
    out += i + 1 < text.size() ? kChars[(n >> 6) & 63] : '=';
    out += i + 2 < text.size() ? kChars[n & 63] : '=';
  }
  return out;
}

TEST_F(RoutingCluster, GobgpExternalPeerWithMd5GetsPodCidrsAndServiceVip) {
  StartApiServer(kThreeNodes, kService);
  auto router = Attach("krrt-ext", 100);
  std::string toml =
      "[global.config]\n  as = 65000\n  router-id = \"192.0.2.100\"\n"
      "  local-address-list = [\"192.0.2.100\"]\n";
  for (int i = 1; i <= 3; ++i) {
    toml += "[[neighbors]]\n  [neighbors.config]\n    neighbor-address = \"192.0.2." +
            std::to_string(i) +
            "\"\n    peer-as = 64512\n    auth-password = \"s3cret\"\n"
            "  [neighbors.timers.config]\n    connect-retry = 1\n";
  }
  WriteFile(dir_.path() + "/gobgpd.toml", toml);
  extra_.push_back(
      std::make_unique<Process>(router->Wrap({"gobgpd", "-p", "-f", dir_.path() + "/gobgpd.toml",
                                              "--api-hosts", "127.0.0.1:50051", "--pprof-disable"}),
                                dir_.path() + "/gobgpd.log"));
  StartNodes(kThreeNodes,
             {"--peer-router-ips=192.0.2.100", "--peer-router-asns=65000",
              "--peer-router-passwords=" + Base64("s3cret"), "--advertise-cluster-ip=true"});
  auto rib = [&] {
    auto r = router->Run({"gobgp", "-u", "127.0.0.1", "-p", "50051", "global", "rib"});
    return r.ok() ? r->out : std::string();
  };
  EXPECT_TRUE(WaitFor(
      [&] {
        std::string table = rib();
        return table.find("10.201.1.0/24") != std::string::npos &&
               table.find("10.201.2.0/24") != std::string::npos &&
               table.find("10.201.3.0/24") != std::string::npos &&
               table.find("10.96.0.10/32") != std::string::npos;
      },
      kDeadline))
      << rib() << "\n"
      << extra_.back()->Log() << "\n"
      << agents_.at("n1")->Log();
  // Nodes never import the router's view of each other's VIPs or a default route, and the
  // router's routes are not pushed back as pod routes: only the two node routes remain.
  ExpectRoutes("n1", {"10.201.2.0/24 via 192.0.2.2", "10.201.3.0/24 via 192.0.2.3"});

  // Deleting the service withdraws the VIP from the router.
  auto deleted = Api("DELETE", "/api/v1/namespaces/default/services/web");
  ASSERT_TRUE(deleted.ok() && deleted->exit_code == 0);
  EXPECT_TRUE(WaitFor([&] { return rib().find("10.96.0.10/32") == std::string::npos; }, kDeadline))
      << rib();
}

// Issue 16 item 9: a configured external router announces prefixes over the node subnet, a
// node address, the metadata address, loopback, multicast, the service range and a VIP, and
// two ordinary ones. Only the ordinary ones reach the kernel; the rest is refused and logged.
TEST_F(RoutingCluster, ExternalPeerCannotRouteNodeServiceOrSpecialSpace) {
  StartApiServer(kThreeNodes, kService);
  auto router = Attach("krrt-bad", 100);
  std::string toml =
      "[global.config]\n  as = 65000\n  router-id = \"192.0.2.100\"\n"
      "  local-address-list = [\"192.0.2.100\"]\n"
      "[[neighbors]]\n  [neighbors.config]\n    neighbor-address = \"192.0.2.1\"\n"
      "    peer-as = 64512\n  [neighbors.timers.config]\n    connect-retry = 1\n";
  WriteFile(dir_.path() + "/gobgpd.toml", toml);
  extra_.push_back(
      std::make_unique<Process>(router->Wrap({"gobgpd", "-p", "-f", dir_.path() + "/gobgpd.toml",
                                              "--api-hosts", "127.0.0.1:50051", "--pprof-disable"}),
                                dir_.path() + "/gobgpd.log"));
  auto gobgp = [&](const std::string& args) {
    return router->Sh("gobgp -u 127.0.0.1 -p 50051 " + args);
  };
  ASSERT_TRUE(WaitFor([&] { return gobgp("global").ok(); }, 20s)) << extra_.back()->Log();
  for (const char* prefix : {"192.0.2.0/24", "192.0.2.2/32", "192.0.0.0/16", "169.254.169.254/32",
                             "127.0.0.0/8", "224.0.0.0/4", "10.96.0.0/12", "10.96.0.10/32",
                             "0.0.0.0/1", "172.31.0.0/16", "198.18.0.0/15"}) {
    auto r = gobgp(std::string("global rib add -a ipv4 ") + prefix + " nexthop 192.0.2.100");
    ASSERT_TRUE(r.ok()) << prefix << ": " << r.error();
  }
  const std::vector<NodeSpec> one = {kThreeNodes[0]};
  StartNodes(one, {"--peer-router-ips=192.0.2.100", "--peer-router-asns=65000"});
  ExpectRoutes("n1", {"172.31.0.0/16 via 192.0.2.100", "198.18.0.0/15 via 192.0.2.100"});
  const std::string log = agents_.at("n1")->Log();
  for (const char* reason : {"covers a node address", "unspecified address space", "link-local",
                             "loopback", "multicast", "service range", "service VIP"}) {
    EXPECT_NE(
        log.find(std::string("refusing routes from BGP peer 192.0.2.100 (external): ") + reason),
        std::string::npos)
        << reason << "\n"
        << log;
  }
}

TEST_F(RoutingCluster, BirdExternalPeerFromNodeAnnotationGetsPodCidr) {
  const std::vector<NodeSpec> nodes = {
      {"n1",
       1,
       {{"kube-router.io/peer.ips", "192.0.2.100"}, {"kube-router.io/peer.asns", "65001"}}},
      {"n2", 2, {}}};
  StartApiServer(nodes);
  auto router = Attach("krrt-ext", 100);
  const std::string sock = dir_.path() + "/bird.ctl";
  WriteFile(dir_.path() + "/bird.conf",
            "router id 192.0.2.100;\nprotocol device { }\n"
            "protocol bgp n1 { local 192.0.2.100 as 65001; neighbor 192.0.2.1 as 64512;\n"
            "  ipv4 { import all; export none; }; connect retry time 1; }\n");
  extra_.push_back(
      std::make_unique<Process>(router->Wrap({"bird", "-f", "-c", dir_.path() + "/bird.conf", "-s",
                                              sock, "-P", dir_.path() + "/bird.pid"}),
                                dir_.path() + "/bird.log"));
  StartNodes(nodes);
  auto routes = [&] {
    auto r = Exec({"birdc", "-s", sock, "show route"});
    return r.ok() ? r->out : std::string();
  };
  // n1 announces its own pod CIDR to its external peer, not the one it learned from n2.
  EXPECT_TRUE(
      WaitFor([&] { return routes().find("10.201.1.0/24") != std::string::npos; }, kDeadline))
      << routes() << "\n"
      << agents_.at("n1")->Log();
  ExpectRoutes("n1", {"10.201.2.0/24 via 192.0.2.2"});
  EXPECT_EQ(routes().find("10.201.2.0/24"), std::string::npos) << routes();
}

TEST_F(RoutingCluster, CniPluginsUseTheWrittenConfig) {
  ASSERT_TRUE(std::filesystem::exists(kCniBin + "/bridge")) << "containernetworking-plugins";
  const std::vector<NodeSpec> nodes = {{"n1", 1, {}}, {"n2", 2, {}}};
  StartApiServer(nodes);
  StartNodes(nodes);
  ExpectRoutes("n1", {"10.201.2.0/24 via 192.0.2.2"});
  ASSERT_TRUE(WaitFor([&] { return std::filesystem::exists(CniFile("n1")); }, kDeadline));
  auto conflist = nlohmann::json::parse(Slurp(CniFile("n1")));
  nlohmann::json bridge = conflist["plugins"][0];
  ASSERT_EQ(bridge["type"], "bridge");
  EXPECT_EQ(bridge["ipam"]["ranges"][0][0]["subnet"], "10.201.1.0/24");
  // The plugins take one network config on stdin; keep host-local's state in our temp dir.
  bridge["cniVersion"] = conflist["cniVersion"];
  bridge["name"] = conflist["name"];
  bridge["ipam"]["dataDir"] = dir_.path() + "/ipam";
  const std::string conf = bridge.dump();

  auto pod = std::make_unique<Netns>("krrt-cni");
  auto add = nodes_.at("n1")->Run({"env", "CNI_COMMAND=ADD", "CNI_CONTAINERID=krrt-test",
                                   "CNI_NETNS=/var/run/netns/" + pod->name(), "CNI_IFNAME=eth0",
                                   "CNI_PATH=" + kCniBin, kCniBin + "/bridge"},
                                  conf);
  ASSERT_TRUE(add.ok());
  ASSERT_EQ(add->exit_code, 0) << add->out << add->err;
  auto result = nlohmann::json::parse(add->out);
  std::string address = result["ips"][0]["address"];
  EXPECT_EQ(address.rfind("10.201.1.", 0), 0u) << address;

  // The CNI-made pod on node 1 reaches a pod on node 2.
  Netns& p2 = AddPod("n2", 2, 7);
  ServePong(p2, 8080);
  EXPECT_TRUE(WaitFor([&] { return TcpPong(*pod, "10.201.2.7", 8080); }, 20s));

  auto del = nodes_.at("n1")->Run({"env", "CNI_COMMAND=DEL", "CNI_CONTAINERID=krrt-test",
                                   "CNI_NETNS=/var/run/netns/" + pod->name(), "CNI_IFNAME=eth0",
                                   "CNI_PATH=" + kCniBin, kCniBin + "/bridge"},
                                  conf);
  ASSERT_TRUE(del.ok());
  EXPECT_EQ(del->exit_code, 0) << del->err;
  pods_.push_back(std::move(pod));
}

// Issue 15: with --enable-ipv6 the written config hands the real host-local plugin both pod
// CIDRs, so a pod gets an IPv4 and an IPv6 address.
TEST_F(RoutingCluster, CniPluginsAssignBothFamilies) {
  ASSERT_TRUE(std::filesystem::exists(kCniBin + "/bridge")) << "containernetworking-plugins";
  const std::vector<NodeSpec> one = {{"n1", 1, {}, true}};
  StartApiServer(one);
  StartNodes(one, {"--enable-ipv6=true"});
  ASSERT_TRUE(WaitFor([&] { return std::filesystem::exists(CniFile("n1")); }, kDeadline))
      << agents_.at("n1")->Log();
  auto conflist = nlohmann::json::parse(Slurp(CniFile("n1")));
  nlohmann::json bridge = conflist["plugins"][0];
  ASSERT_EQ(bridge["ipam"]["ranges"].size(), 2u) << conflist.dump();
  bridge["cniVersion"] = conflist["cniVersion"];
  bridge["name"] = conflist["name"];
  bridge["ipam"]["dataDir"] = dir_.path() + "/ipam";
  // The agent puts both gateways on kube-bridge (before any plugin run could add them).
  auto bridge_addresses = [&] { return ShOut(*nodes_.at("n1"), "ip addr show dev kube-bridge"); };
  EXPECT_TRUE(WaitFor(
      [&] {
        std::string have = bridge_addresses();
        return have.find("10.201.1.1/24") != std::string::npos &&
               have.find("fd00:201:1::1/64") != std::string::npos;
      },
      kDeadline))
      << bridge_addresses();
  auto pod = std::make_unique<Netns>("krrt-cni6");
  auto add = nodes_.at("n1")->Run({"env", "CNI_COMMAND=ADD", "CNI_CONTAINERID=krrt-test6",
                                   "CNI_NETNS=/var/run/netns/" + pod->name(), "CNI_IFNAME=eth0",
                                   "CNI_PATH=" + kCniBin, kCniBin + "/bridge"},
                                  bridge.dump());
  ASSERT_TRUE(add.ok());
  ASSERT_EQ(add->exit_code, 0) << add->out << add->err;
  auto ips = nlohmann::json::parse(add->out)["ips"];
  ASSERT_EQ(ips.size(), 2u) << add->out;
  EXPECT_EQ(ips[0]["address"].get<std::string>().rfind("10.201.1.", 0), 0u) << add->out;
  EXPECT_EQ(ips[1]["address"].get<std::string>().rfind("fd00:201:1::", 0), 0u) << add->out;
  auto del = nodes_.at("n1")->Run({"env", "CNI_COMMAND=DEL", "CNI_CONTAINERID=krrt-test6",
                                   "CNI_NETNS=/var/run/netns/" + pod->name(), "CNI_IFNAME=eth0",
                                   "CNI_PATH=" + kCniBin, kCniBin + "/bridge"},
                                  bridge.dump());
  ASSERT_TRUE(del.ok());
  EXPECT_EQ(del->exit_code, 0) << del->err;
  pods_.push_back(std::move(pod));
}

TEST_F(RoutingCluster, CleanupConfigRemovesOnlyOurs) {
  const std::vector<NodeSpec> nodes = {{"n1", 1, {}}, {"n2", 2, {}}};
  StartApiServer(nodes);
  StartNodes(nodes);
  ExpectRoutes("n1", {"10.201.2.0/24 via 192.0.2.2"});
  Netns& n1 = *nodes_.at("n1");
  ASSERT_TRUE(WaitFor(
      [&] { return ShOut(n1, "ipset list -n").find("kube-router-node-ips") != std::string::npos; },
      kDeadline));
  agents_.erase("n1");  // stops it
  ASSERT_TRUE(n1.Sh("ipset create foreign-set hash:ip && ip route add 10.9.0.0/24 via "
                    "192.0.2.254 && iptables -t nat -N FOREIGN")
                  .ok());
  auto cleanup = n1.Run(
      {kAgentBinary, "--cleanup-config", "--run-firewall=false", "--run-service-proxy=false"});
  ASSERT_TRUE(cleanup.ok());
  EXPECT_EQ(cleanup->exit_code, 0) << cleanup->err;
  EXPECT_EQ(RoutesOf("n1"), "");
  std::string sets = ShOut(n1, "ipset list -n");
  EXPECT_NE(sets.find("foreign-set"), std::string::npos);
  EXPECT_EQ(sets.find("kube-router"), std::string::npos);
  std::string nat = ShOut(n1, "iptables -t nat -S");
  EXPECT_EQ(nat.find("KUBE-ROUTER"), std::string::npos) << nat;
  EXPECT_NE(nat.find("FOREIGN"), std::string::npos);
  EXPECT_NE(ShOut(n1, "ip route show 10.9.0.0/24").find("192.0.2.254"), std::string::npos);
}

// Issue 15: three dual-stack nodes on one subnet with --enable-ipv6. IPv6 pod CIDRs travel over
// the (IPv4) node sessions with IPv6 next hops and become proto 17 IPv6 routes; pods on different
// nodes talk TCP over IPv6; a pod reaching an outside IPv6 host leaves with its node's IPv6
// address; a deleted learned route comes back within --injected-routes-sync-period; and
// --cleanup-config removes the IPv6 state as well.
TEST_F(RoutingCluster, DualStackPodsTalkOverIpv6AndEgressIsMasqueraded) {
  const std::vector<NodeSpec> nodes = {
      {"n1", 1, {}, true}, {"n2", 2, {}, true}, {"n3", 3, {}, true}};
  StartApiServer(nodes);
  StartNodes(nodes,
             {"--enable-ipv6=true", "--injected-routes-sync-period=2s", "--routes-sync-period=5m"});
  ExpectRoutes("n1", {"fd00:201:2::/64 via 2001:db8::2", "fd00:201:3::/64 via 2001:db8::3"}, "-6");
  ExpectRoutes("n3", {"fd00:201:1::/64 via 2001:db8::1", "fd00:201:2::/64 via 2001:db8::2"}, "-6");
  ExpectRoutes("n1", {"10.201.2.0/24 via 192.0.2.2", "10.201.3.0/24 via 192.0.2.3"});
  // One (IPv4) session per node pair carries both families.
  auto status = nodes_.at("n1")->Run({"curl", "-s", "http://127.0.0.1:50051/status"});
  ASSERT_TRUE(status.ok());
  EXPECT_EQ(nlohmann::json::parse(status->out)["peers"].size(), 2u) << status->out;

  Netns& p1 = AddPod("n1", 1, 5, true);
  Netns& p3 = AddPod("n3", 3, 5, true);
  ServePong6(p3, 8080);
  EXPECT_TRUE(WaitFor([&] { return TcpPong6(p1, "fd00:201:3::5", 8080); }, 30s))
      << ShOut(*nodes_.at("n1"), "ip -6 route; ip -6 addr show kube-bridge");

  // Egress: an outside host (not a node, no route to the pods) sees n1's IPv6 address.
  auto outside = Attach("krrt-out", 100);
  ASSERT_TRUE(outside->Sh("ip addr add 2001:db8::100/64 dev eth0 nodad").ok());
  extra_.push_back(
      std::make_unique<Process>(outside->Wrap({"socat", "TCP6-LISTEN:9090,reuseaddr,fork",
                                               "SYSTEM:echo from=$SOCAT_PEERADDR"}),
                                dir_.path() + "/socat-outside.log"));
  std::string seen;
  EXPECT_TRUE(WaitFor(
      [&] {
        auto r = p1.Run({"socat", "-T2", "-", "TCP6:[2001:db8::100]:9090,connect-timeout=2"});
        seen = r.ok() ? r->out : "";
        return seen.find("from=") != std::string::npos;
      },
      30s))
      << ShOut(*nodes_.at("n1"), "ip6tables -t nat -S; ipset list -n");
  // socat prints the peer address in full: n1's 2001:db8::1, not the pod's fd00:201:1::5.
  EXPECT_NE(seen.find("from=[2001:0db8:0000:0000:0000:0000:0000:0001]"), std::string::npos) << seen;
  std::string nat6 = ShOut(*nodes_.at("n1"), "ip6tables -t nat -S KUBE-ROUTER-POD-EGRESS");
  EXPECT_NE(nat6.find("inet6:kube-router-pod-subnets"), std::string::npos) << nat6;

  // A deleted learned IPv6 route is back within --injected-routes-sync-period (the full sync
  // is minutes away).
  Netns& n1 = *nodes_.at("n1");
  ASSERT_TRUE(n1.Sh("ip -6 route del fd00:201:2::/64 proto 17").ok());
  ExpectRoutes("n1", {"fd00:201:2::/64 via 2001:db8::2", "fd00:201:3::/64 via 2001:db8::3"}, "-6");

  // --cleanup-config removes the IPv6 routes, chain, sets and gateway too (no IPv6 flag needed).
  agents_.erase("n1");  // stops it
  auto cleanup = n1.Run(
      {kAgentBinary, "--cleanup-config", "--run-firewall=false", "--run-service-proxy=false"});
  ASSERT_TRUE(cleanup.ok());
  EXPECT_EQ(cleanup->exit_code, 0) << cleanup->err;
  EXPECT_EQ(RoutesOf("n1", "-6"), "");
  EXPECT_EQ(ShOut(n1, "ipset list -n").find("kube-router"), std::string::npos);
  EXPECT_EQ(ShOut(n1, "ip6tables -t nat -S").find("KUBE-ROUTER"), std::string::npos);
  EXPECT_EQ(ShOut(n1, "ip -6 addr show dev kube-bridge scope global"), "");
}

const char kDualStackService[] = R"(
apiVersion: v1
kind: Service
metadata: {name: web6, namespace: default}
spec:
  type: ClusterIP
  clusterIP: 10.96.0.10
  clusterIPs: [10.96.0.10, "fd00:96::10"]
  ipFamilies: [IPv4, IPv6]
  ports: [{port: 80, protocol: TCP}]
)";

// Issue 15: GoBGP as an external router over an IPv6 session (--peer-router-ips with an IPv6
// address) receives the node's IPv6 pod CIDR and IPv6 cluster IP with the node's IPv6 next hop,
// and its own IPv6 route is installed with protocol 17.
TEST_F(RoutingCluster, GobgpIpv6PeerExchangesIpv6Routes) {
  const std::vector<NodeSpec> one = {{"n1", 1, {}, true}};
  // Bad input beside it: n4 (no agent) has an IPv6 pod CIDR but no IPv6 address.
  nlohmann::json n4 = nlohmann::json::parse(NodeJson({"n4", 4, {}}));
  n4["spec"]["podCIDRs"].push_back(PodCidr6(4));
  StartApiServer(one, kDualStackService + std::string("\n---\n") + n4.dump() + "\n");
  auto router = Attach("krrt-ext6", 100);
  ASSERT_TRUE(router->Sh("ip addr add 2001:db8::100/64 dev eth0 nodad").ok());
  WriteFile(dir_.path() + "/gobgpd6.toml",
            "[global.config]\n  as = 65000\n  router-id = \"192.0.2.100\"\n"
            "  local-address-list = [\"2001:db8::100\"]\n"
            "[[neighbors]]\n  [neighbors.config]\n    neighbor-address = \"2001:db8::1\"\n"
            "    peer-as = 64512\n  [neighbors.timers.config]\n    connect-retry = 1\n"
            "  [[neighbors.afi-safis]]\n    [neighbors.afi-safis.config]\n"
            "      afi-safi-name = \"ipv6-unicast\"\n");
  extra_.push_back(
      std::make_unique<Process>(router->Wrap({"gobgpd", "-p", "-f", dir_.path() + "/gobgpd6.toml",
                                              "--api-hosts", "127.0.0.1:50051", "--pprof-disable"}),
                                dir_.path() + "/gobgpd6.log"));
  auto gobgp = [&](const std::string& args) {
    return ShOut(*router, "gobgp -u 127.0.0.1 -p 50051 " + args);
  };
  ASSERT_TRUE(WaitFor([&] { return router->Sh("gobgp -u 127.0.0.1 -p 50051 global").ok(); }, 20s))
      << extra_.back()->Log();
  ASSERT_TRUE(router
                  ->Sh("gobgp -u 127.0.0.1 -p 50051 global rib add -a ipv6 fd00:99::/64 nexthop "
                       "2001:db8::100")
                  .ok());
  StartNodes(one, {"--enable-ipv6=true", "--peer-router-ips=2001:db8::100",
                   "--peer-router-asns=65000", "--advertise-cluster-ip=true"});
  auto has = [](const std::string& table, const std::string& prefix, const std::string& hop) {
    for (size_t at = table.find(prefix); at != std::string::npos; at = table.find(prefix, at + 1)) {
      auto eol = table.find('\n', at);
      if (table.substr(at, eol - at).find(hop) != std::string::npos) return true;
    }
    return false;
  };
  EXPECT_TRUE(WaitFor(
      [&] {
        std::string table = gobgp("global rib -a ipv6");
        return has(table, "fd00:201:1::/64", "2001:db8::1") &&
               has(table, "fd00:96::10/128", "2001:db8::1");
      },
      kDeadline))
      << gobgp("global rib -a ipv6") << "\n"
      << gobgp("neighbor") << "\n"
      << agents_.at("n1")->Log();
  ExpectRoutes("n1", {"fd00:99::/64 via 2001:db8::100"}, "-6");
  // n4's IPv6 CIDR is reported once, naming the node; everything else above went on.
  const std::string log = agents_.at("n1")->Log();
  const std::string problem = "node n4: pod CIDR fd00:201:4::/64 is IPv6 but the node has no IPv6";
  const size_t first = log.find(problem);
  EXPECT_NE(first, std::string::npos) << log;
  EXPECT_EQ(log.find(problem, first + 1), std::string::npos) << log;
}

}  // namespace
}  // namespace kr
