// External BGP peers of the real kube-router (routing_cluster.h): GoBGP with TCP MD5 and BIRD
// from node annotations receive the pod CIDRs and service VIPs; what an external router may not
// route here is refused.
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

#include "kube_router/base/base64.h"
#include "lib/binaries.h"
#include "lib/netns.h"
#include "netns/routing/routing_cluster.h"

namespace kr::routing_netns {
namespace {

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

// gobgpd in `router` (AS 65000, 192.0.2.100) peering with the nodes 192.0.2.<i> of `nodes`
// (AS 64512; TCP MD5 with `password` unless empty), its API on 127.0.0.1:50051.
std::unique_ptr<Process> StartGobgpd(const Netns& router, const std::string& dir,
                                     const std::vector<int>& nodes, const std::string& password) {
  std::string toml =
      "[global.config]\n  as = 65000\n  router-id = \"192.0.2.100\"\n"
      "  local-address-list = [\"192.0.2.100\"]\n";
  for (int i : nodes) {
    toml += "[[neighbors]]\n  [neighbors.config]\n    neighbor-address = \"192.0.2." +
            std::to_string(i) + "\"\n    peer-as = 64512\n";
    if (!password.empty()) toml += "    auth-password = \"" + password + "\"\n";
    toml += "  [neighbors.timers.config]\n    connect-retry = 1\n";
  }
  WriteFile(dir + "/gobgpd.toml", toml);
  return std::make_unique<Process>(
      router.Wrap({"gobgpd", "-p", "-f", dir + "/gobgpd.toml", "--api-hosts", "127.0.0.1:50051",
                   "--pprof-disable"}),
      dir + "/gobgpd.log");
}

TEST_F(RoutingCluster, GobgpExternalPeerWithMd5GetsPodCidrsAndServiceVip) {
  StartApiServer(kThreeNodes, kService);
  auto router = Attach("krrt-ext", 100);
  extra_.push_back(StartGobgpd(*router, dir_.path(), {1, 2, 3}, "s3cret"));
  StartNodes(kThreeNodes, {"--peer-router-ips=192.0.2.100", "--peer-router-asns=65000",
                           "--peer-router-passwords=" + kr::Base64Encode("s3cret"),
                           "--advertise-cluster-ip=true"});
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
  extra_.push_back(StartGobgpd(*router, dir_.path(), {1}, ""));
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

}  // namespace
}  // namespace kr::routing_netns
