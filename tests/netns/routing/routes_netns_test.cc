// The real kube-router binary (--run-router only) on three "nodes" (routing_cluster.h). Checks
// what a cluster operator would: routes with protocol 17 in each node's kernel, pod to pod TCP
// across nodes, withdrawal when a Node is deleted, periodic repair, a flapping peer, a
// route-reflector topology, the CNI config driving the real bridge + host-local plugins and
// --cleanup-config. Everything lives in namespaces the test creates; nothing leaves them.
#include <gtest/gtest.h>
#include <signal.h>

#include <filesystem>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "lib/binaries.h"
#include "lib/netns.h"
#include "netns/routing/routing_cluster.h"

namespace kr::routing_netns {
namespace {

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

TEST_F(RoutingCluster, CniPluginsUseTheWrittenConfig) {
  ASSERT_TRUE(std::filesystem::exists(kCniBin + "/bridge")) << "containernetworking-plugins";
  const std::vector<NodeSpec> nodes = {{"n1", 1, {}}, {"n2", 2, {}}};
  StartApiServer(nodes);
  StartNodes(nodes);
  ExpectRoutes("n1", {"10.201.2.0/24 via 192.0.2.2"});
  ASSERT_TRUE(WaitFor([&] { return std::filesystem::exists(CniFile("n1")); }, kDeadline));
  auto conflist = nlohmann::json::parse(ReadFile(CniFile("n1")));
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

}  // namespace
}  // namespace kr::routing_netns
