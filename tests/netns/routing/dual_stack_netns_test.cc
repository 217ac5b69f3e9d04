// Issue 15, --enable-ipv6 with the real kube-router (routing_cluster.h): IPv6 pod CIDRs, routes,
// pod traffic, egress masquerade, the CNI plugins assigning both families, GoBGP over IPv6.
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

// Issue 15: with --enable-ipv6 the written config hands the real host-local plugin both pod
// CIDRs, so a pod gets an IPv4 and an IPv6 address.
TEST_F(RoutingCluster, CniPluginsAssignBothFamilies) {
  ASSERT_TRUE(std::filesystem::exists(kCniBin + "/bridge")) << "containernetworking-plugins";
  const std::vector<NodeSpec> one = {{"n1", 1, {}, true}};
  StartApiServer(one);
  StartNodes(one, {"--enable-ipv6=true"});
  ASSERT_TRUE(WaitFor([&] { return std::filesystem::exists(CniFile("n1")); }, kDeadline))
      << agents_.at("n1")->Log();
  auto conflist = nlohmann::json::parse(ReadFile(CniFile("n1")));
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
}  // namespace kr::routing_netns
