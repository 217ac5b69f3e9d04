// proxy_agent_vm_test (fixture and world: agent_vm_fixture.h): what a Service is, end to end:
// ClusterIP from pods and nodes, named multi-port Services over TCP/UDP/SCTP, endpoint churn,
// NodePorts from outside, traffic policies, external and load-balancer IPs, session affinity and
// schedulers, dual stack, and the per-VIP traffic metrics.
#include <gtest/gtest.h>

#include <chrono>
#include <sstream>
#include <string>
#include <vector>

#include "vm/proxy/agent_vm_fixture.h"

namespace kr::testing::agent_vm {
namespace {

TEST_F(ProxyAgentVmTest, ClusterIpServesPodsAndNodesWithTheNodeIpAsSource) {
  ASSERT_OK(world_->Put(ServiceJson("basic", R"({"clusterIP":"10.96.1.1","clusterIPs":["10.96.1.1"],
      "ports":[{"name":"http","port":80,"protocol":"TCP","targetPort":8080}]})")));
  ASSERT_OK(world_->Put(SliceJson("default", "basic-1", "basic", "IPv4", {Ep(kA0), Ep(kB1)},
                                  {{"http", 8080, "TCP"}})));
  ASSERT_TRUE(WaitAnswer(world_->PodNs(kClient0), "10.96.1.1", 80, Proto::kTcp, {"a0", "b1"}));
  for (const char* client : {kClient0, kClient1}) {
    auto seen = Spread(world_->PodNs(client), "10.96.1.1", 80, Proto::kTcp, 12);
    EXPECT_GE(seen["a0"], 4) << client;
    EXPECT_GE(seen["b1"], 4) << client;
    EXPECT_EQ(seen["a0"] + seen["b1"], 12) << client;
  }
  // From the node itself: the VIP's local route carries the node IP as source (#376).
  for (int node = 0; node < 2; ++node) {
    Answer a;
    ASSERT_TRUE(
        WaitAnswer(world_->NodeNs(node).name(), "10.96.1.1", 80, Proto::kTcp, {"a0", "b1"}, &a))
        << a.ToString();
    EXPECT_EQ(a.client_ip, world_->NodeIp(node)) << a.ToString();
  }
  Answer http = HttpGet(world_->PodNs(kClient1), "10.96.1.1", 80);
  EXPECT_FALSE(http.ok()) << "port 80 maps to the raw TCP server, not HTTP: " << http.ToString();
  const std::string shown = world_->Ipvsadm(0);
  EXPECT_NE(shown.find("TCP  10.96.1.1:80 rr"), std::string::npos) << shown;
  EXPECT_NE(shown.find("-> " + world_->PodIp(kB1) + ":8080"), std::string::npos) << shown;
}

TEST_F(ProxyAgentVmTest, MultiPortNamedPortsAndAllThreeProtocols) {
  ASSERT_OK(
      world_->Apply(ServiceJson("multi", R"({"clusterIP":"10.96.1.2","clusterIPs":["10.96.1.2"],
      "ports":[{"name":"web","port":80,"protocol":"TCP","targetPort":"web"},
               {"name":"dns","port":53,"protocol":"UDP","targetPort":5353},
               {"name":"dns-tcp","port":53,"protocol":"TCP","targetPort":8080},
               {"name":"assoc","port":77,"protocol":"SCTP","targetPort":7777},
               {"name":"http","port":81,"protocol":"TCP","targetPort":8081}]})")));
  // The named port "web" is 8080 on a0 and 8090 on b1: one slice each.
  ASSERT_OK(world_->Apply(SliceJson("default", "multi-a", "multi", "IPv4", {Ep(kA0)},
                                    {{"web", 8080, "TCP"},
                                     {"dns", 5353, "UDP"},
                                     {"dns-tcp", 8080, "TCP"},
                                     {"assoc", 7777, "SCTP"},
                                     {"http", 8081, "TCP"}})));
  ASSERT_OK(world_->Apply(SliceJson("default", "multi-b", "multi", "IPv4", {Ep(kB1)},
                                    {{"web", 8090, "TCP"},
                                     {"dns", 5353, "UDP"},
                                     {"dns-tcp", 8080, "TCP"},
                                     {"assoc", 7777, "SCTP"},
                                     {"http", 8081, "TCP"}})));
  const std::string client = world_->PodNs(kClient1);
  ASSERT_TRUE(WaitAnswer(client, "10.96.1.2", 80, Proto::kTcp, {"a0", "b1-alt"}));
  auto web = Spread(client, "10.96.1.2", 80, Proto::kTcp, 10);
  EXPECT_GE(web["a0"], 2);
  EXPECT_GE(web["b1-alt"], 2) << "b1's own number for the named port: "
                              << ::testing::PrintToString(web);
  EXPECT_EQ(web["b1"], 0) << "never b1's 8080 through the named port";
  auto udp = Spread(client, "10.96.1.2", 53, Proto::kUdp, 6);
  auto tcp = Spread(client, "10.96.1.2", 53, Proto::kTcp, 6);
  EXPECT_EQ(udp["a0"] + udp["b1"], 6) << "same port number, UDP: " << ::testing::PrintToString(udp);
  EXPECT_EQ(tcp["a0"] + tcp["b1"], 6) << "same port number, TCP: " << ::testing::PrintToString(tcp);
  auto sctp = Spread(client, "10.96.1.2", 77, Proto::kSctp, 6);
  EXPECT_EQ(sctp["a0"] + sctp["b1"], 6) << "SCTP: " << ::testing::PrintToString(sctp);
  Answer http = HttpGet(client, "10.96.1.2", 81);
  ASSERT_TRUE(http.ok()) << http.ToString();
  EXPECT_EQ(http.client_ip, world_->PodIp(kClient1)) << "pod sources are not masqueraded";
}

TEST_F(ProxyAgentVmTest, EndpointChurnToZeroIsRefusedAtOnceAndComesBack) {
  ASSERT_OK(world_->Put(ServiceJson("churn", R"({"clusterIP":"10.96.1.3","clusterIPs":["10.96.1.3"],
      "ports":[{"name":"t","port":80,"protocol":"TCP","targetPort":8080},
               {"name":"u","port":53,"protocol":"UDP","targetPort":5353}]})")));
  // kubectl for the first slice, the change to zero and the deletion; the rest over HTTP.
  auto slice = [&](std::vector<SliceEndpoint> eps, bool with_kubectl = false) {
    const std::string json = SliceJson("default", "churn-1", "churn", "IPv4", eps,
                                       {{"t", 8080, "TCP"}, {"u", 5353, "UDP"}});
    return with_kubectl ? world_->Put(json) : world_->Apply(json);
  };
  ASSERT_OK(slice({Ep(kA0), Ep(kB1)}, true));
  const std::string client = world_->PodNs(kClient0);
  ASSERT_TRUE(WaitAnswer(client, "10.96.1.3", 80, Proto::kTcp, {"a0", "b1"}));
  ASSERT_OK(slice({Ep(kB1), Ep(kC1)}));
  ASSERT_TRUE(
      WaitFor([&] { return Spread(client, "10.96.1.3", 80, Proto::kTcp, 4).count("a0") == 0; },
              kProgrammed))
      << "a0 left";
  ASSERT_OK(slice({}, true));
  Answer refused;
  ASSERT_TRUE(WaitRefused(client, "10.96.1.3", 80, Proto::kTcp, &refused)) << refused.ToString();
  auto start = std::chrono::steady_clock::now();
  Answer tcp = Ask(client, "10.96.1.3", 80, Proto::kTcp, 3000ms);
  Answer udp = Ask(client, "10.96.1.3", 53, Proto::kUdp, 3000ms);
  EXPECT_EQ(tcp.outcome, Answer::Outcome::kRefused) << tcp.ToString();
  EXPECT_EQ(udp.outcome, Answer::Outcome::kRefused) << udp.ToString();
  EXPECT_LT(std::chrono::steady_clock::now() - start, 2000ms) << "refused, not timed out";
  EXPECT_NE(world_->Ipvsadm(1).find("TCP  10.96.1.3:80"), std::string::npos)
      << "the service stays, without destinations";
  ASSERT_OK(slice({Ep(kA0)}));
  EXPECT_TRUE(WaitAnswer(client, "10.96.1.3", 80, Proto::kTcp, {"a0"}));
  EXPECT_TRUE(WaitAnswer(client, "10.96.1.3", 53, Proto::kUdp, {"a0"}));
  // Deleted and re-created.
  ASSERT_OK(world_->Delete("service", "default", "churn"));
  ASSERT_TRUE(world_->WaitIpvs(0, "10.96.1.3:80", false));
  ASSERT_OK(world_->Apply(SimpleService("churn", "10.96.1.3")));
  EXPECT_TRUE(WaitAnswer(client, "10.96.1.3", 80, Proto::kTcp, {"a0"}));
}

TEST_F(ProxyAgentVmTest, NodePortFromOutsideWithAndWithoutALocalPod) {
  ASSERT_OK(world_->Put(ServiceJson("np", R"({"type":"NodePort","clusterIP":"10.96.1.4",
      "clusterIPs":["10.96.1.4"],"externalTrafficPolicy":"Cluster",
      "ports":[{"name":"t","port":80,"protocol":"TCP","targetPort":8080,"nodePort":30080},
               {"name":"u","port":53,"protocol":"UDP","targetPort":5353,"nodePort":30053}]})")));
  ASSERT_OK(world_->Put(SliceJson("default", "np-1", "np", "IPv4", {Ep(kB1)},
                                  {{"t", 8080, "TCP"}, {"u", 5353, "UDP"}})));
  const std::string client = world_->ClientNs();
  Answer local, remote;
  // node1 has the pod: the pod sees the client's own address.
  ASSERT_TRUE(WaitAnswer(client, world_->NodeIp(1), 30080, Proto::kTcp, {"b1"}, &local))
      << local.ToString();
  EXPECT_EQ(local.client_ip, ProxyWorld::kClientIp) << local.ToString();
  // node0 has none: b1 answers through node0, which masquerades to its own address.
  ASSERT_TRUE(WaitAnswer(client, world_->NodeIp(0), 30080, Proto::kTcp, {"b1"}, &remote))
      << remote.ToString();
  EXPECT_EQ(remote.client_ip, world_->NodeIp(0)) << remote.ToString();
  EXPECT_TRUE(WaitAnswer(client, world_->NodeIp(0), 30053, Proto::kUdp, {"b1"}));
}

TEST_F(ProxyAgentVmTest, TrafficPoliciesLocalServeOnlyOnNodesWithALocalEndpoint) {
  ASSERT_OK(world_->Apply(ServiceJson("etp", R"({"type":"NodePort","clusterIP":"10.96.1.5",
      "clusterIPs":["10.96.1.5"],"externalTrafficPolicy":"Local",
      "ports":[{"name":"t","port":80,"protocol":"TCP","targetPort":8080,"nodePort":30081}]})")));
  ASSERT_OK(world_->Apply(SliceJson("default", "etp-1", "etp", "IPv4", {Ep(kB1), Ep(kA0, false)},
                                    {{"t", 8080, "TCP"}})));
  ASSERT_OK(world_->Apply(ServiceJson("itp", R"({"clusterIP":"10.96.1.6","clusterIPs":["10.96.1.6"],
      "internalTrafficPolicy":"Local",
      "ports":[{"name":"t","port":80,"protocol":"TCP","targetPort":8080}]})")));
  ASSERT_OK(
      world_->Apply(SliceJson("default", "itp-1", "itp", "IPv4", {Ep(kB1)}, {{"t", 8080, "TCP"}})));
  Answer local;
  ASSERT_TRUE(
      WaitAnswer(world_->ClientNs(), world_->NodeIp(1), 30081, Proto::kTcp, {"b1"}, &local));
  EXPECT_EQ(local.client_ip, ProxyWorld::kClientIp) << "ETP=Local keeps the client address";
  // node0 has no local endpoint: the packet never reaches b1 (refused or dropped on node0).
  ASSERT_TRUE(world_->WaitIpvs(0, "10.96.1.5:80"));
  for (int i = 0; i < 3; ++i) {
    Answer none = Ask(world_->ClientNs(), world_->NodeIp(0), 30081, Proto::kTcp, 1000ms);
    EXPECT_FALSE(none.ok()) << none.ToString();
  }
  ASSERT_TRUE(WaitAnswer(world_->PodNs(kClient1), "10.96.1.6", 80, Proto::kTcp, {"b1"}));
  for (int i = 0; i < 3; ++i) {
    Answer none = Ask(world_->PodNs(kClient0), "10.96.1.6", 80, Proto::kTcp, 1000ms);
    EXPECT_FALSE(none.ok()) << "ITP=Local on a node without an endpoint: " << none.ToString();
  }
}

TEST_F(ProxyAgentVmTest, ExternalAndLoadBalancerIpsOnlyInsideTheirRanges) {
  ASSERT_OK(world_->Put(
      ServiceJson("ext",
                  R"({"type":"LoadBalancer","clusterIP":"10.96.1.7","clusterIPs":["10.96.1.7"],
      "externalIPs":["203.0.113.10","192.0.2.200","10.96.1.99"],
      "ports":[{"name":"t","port":80,"protocol":"TCP","targetPort":8080,"nodePort":30082}]})",
                  "{}",
                  R"({"loadBalancer":{"ingress":[{"ip":"198.51.100.10"},{"ip":"203.0.113.77"},
      {"ip":"198.51.100.11","ipMode":"Proxy"}]}})")));
  ASSERT_OK(
      world_->Apply(SliceJson("default", "ext-1", "ext", "IPv4", {Ep(kA0)}, {{"t", 8080, "TCP"}})));
  ASSERT_TRUE(world_->WaitIpvs(0, "TCP  198.51.100.10:80")) << world_->Ipvsadm(0);
  const std::string shown = world_->Ipvsadm(0);
  EXPECT_NE(shown.find("TCP  203.0.113.10:80"), std::string::npos) << shown;
  EXPECT_EQ(shown.find("192.0.2.200:80"), std::string::npos)
      << "outside --service-external-ip-range";
  EXPECT_EQ(shown.find("10.96.1.99:80"), std::string::npos) << "inside the cluster range";
  EXPECT_EQ(shown.find("203.0.113.77:80"), std::string::npos) << "outside --loadbalancer-ip-range";
  EXPECT_EQ(shown.find("198.51.100.11:80"), std::string::npos) << "ipMode Proxy";
  // The client routes both ranges to node0.
  auto routes = Exec({"ip", "netns", "exec", world_->ClientNs(), "sh", "-c",
                      "ip route replace 203.0.113.0/24 via 192.0.2.1 && "
                      "ip route replace 198.51.100.0/24 via 192.0.2.1"});
  ASSERT_TRUE(routes.ok() && routes->exit_code == 0);
  EXPECT_TRUE(WaitAnswer(world_->ClientNs(), "203.0.113.10", 80, Proto::kTcp, {"a0"}));
  EXPECT_TRUE(WaitAnswer(world_->ClientNs(), "198.51.100.10", 80, Proto::kTcp, {"a0"}));
  // skiplbips drops the LoadBalancer IPs, the external IP stays.
  ASSERT_TRUE(
      world_->Kubectl("annotate service -n default ext kube-router.io/service.skiplbips=true")
          .ok());
  EXPECT_TRUE(world_->WaitIpvs(0, "198.51.100.10:80", false));
  EXPECT_NE(world_->Ipvsadm(0).find("203.0.113.10:80"), std::string::npos);
}

TEST_F(ProxyAgentVmTest, SessionAffinityAndSchedulerChangeKeepAnOpenConnection) {
  ASSERT_OK(
      world_->Put(ServiceJson("sticky", R"({"clusterIP":"10.96.1.8","clusterIPs":["10.96.1.8"],
      "sessionAffinity":"ClientIP","sessionAffinityConfig":{"clientIP":{"timeoutSeconds":60}},
      "ports":[{"name":"t","port":80,"protocol":"TCP","targetPort":8080}]})")));
  ASSERT_OK(world_->Apply(SliceJson("default", "sticky-1", "sticky", "IPv4",
                                    {Ep(kA0), Ep(kB1), Ep(kC1)}, {{"t", 8080, "TCP"}})));
  const std::string client = world_->PodNs(kClient1);
  ASSERT_TRUE(WaitAnswer(client, "10.96.1.8", 80, Proto::kTcp, {"a0", "b1", "c1"}));
  auto seen = Spread(client, "10.96.1.8", 80, Proto::kTcp, 10);
  EXPECT_EQ(seen.size(), 1u) << "one backend for one client";
  EXPECT_NE(world_->Ipvsadm(1).find("10.96.1.8:80 rr persistent 60"), std::string::npos)
      << world_->Ipvsadm(1);

  // Switch affinity off and the scheduler to lc while a connection is open.
  TcpHolder held(client, "10.96.1.8", 80, kAskTimeout);
  ASSERT_TRUE(held.greeting().ok()) << held.greeting().ToString();
  ASSERT_OK(
      world_->Put(ServiceJson("sticky", R"({"clusterIP":"10.96.1.8","clusterIPs":["10.96.1.8"],
      "sessionAffinity":"None",
      "ports":[{"name":"t","port":80,"protocol":"TCP","targetPort":8080}]})",
                              R"({"kube-router.io/service.scheduler":"lc"})")));
  ASSERT_TRUE(world_->WaitIpvs(1, "TCP  10.96.1.8:80 lc\n", true)) << world_->Ipvsadm(1);
  EXPECT_TRUE(held.Alive(kAskTimeout)) << "the open connection survives the in-place update";
  auto spread = Spread(client, "10.96.1.8", 80, Proto::kTcp, 9);
  EXPECT_GE(spread.size(), 2u) << "affinity off: more than one backend";
}

TEST_F(ProxyAgentVmTest, DualStackClusterIpAndNodePortBothFamilies) {
  ASSERT_OK(
      world_->Apply(ServiceJson("ds", R"({"type":"NodePort","ipFamilyPolicy":"RequireDualStack",
      "ipFamilies":["IPv4","IPv6"],"clusterIP":"10.96.1.9","clusterIPs":["10.96.1.9","fd00:96::9"],
      "ports":[{"name":"t","port":80,"protocol":"TCP","targetPort":8080,"nodePort":30083}]})")));
  ASSERT_OK(
      world_->Apply(SliceJson("default", "ds-4", "ds", "IPv4", {Ep(kB1)}, {{"t", 8080, "TCP"}})));
  ASSERT_OK(
      world_->Apply(SliceJson("default", "ds-6", "ds", "IPv6", {Ep6(kB1)}, {{"t", 8080, "TCP"}})));
  EXPECT_TRUE(WaitAnswer(world_->PodNs(kClient0), "fd00:96::9", 80, Proto::kTcp, {"b1"}));
  EXPECT_TRUE(WaitAnswer(world_->PodNs(kClient0), "10.96.1.9", 80, Proto::kTcp, {"b1"}));
  Answer from_node;
  EXPECT_TRUE(
      WaitAnswer(world_->NodeNs(0).name(), "fd00:96::9", 80, Proto::kTcp, {"b1"}, &from_node))
      << "IPv6 VIP from the node itself (#1698): " << from_node.ToString();
  EXPECT_TRUE(WaitAnswer(world_->ClientNs(), world_->NodeIp6(1), 30083, Proto::kTcp, {"b1"}));
}

TEST_F(ProxyAgentVmTest, MetricsCountTrafficPerServiceVip) {
  ASSERT_OK(world_->Apply(SimpleService("metered", "10.96.1.10")));
  ASSERT_OK(world_->Apply(
      SliceJson("default", "metered-1", "metered", "IPv4", {Ep(kA0)}, {{"t", 8080, "TCP"}})));
  ASSERT_TRUE(WaitAnswer(world_->PodNs(kClient0), "10.96.1.10", 80, Proto::kTcp, {"a0"}));
  for (int i = 0; i < 3; ++i) (void)Ask(world_->PodNs(kClient0), "10.96.1.10", 80, Proto::kTcp);
  std::string metrics;
  EXPECT_TRUE(WaitFor(
      [&] {
        auto out = world_->Metrics(0, kMetricsPort);
        metrics = out.ok() ? *out : out.error();
        // A total_connections series of this VIP with a non-zero count.
        std::istringstream lines(metrics);
        for (std::string line; std::getline(lines, line);) {
          if (line.rfind("kube_router_service_total_connections{", 0) == 0 &&
              line.find("service_vip=\"10.96.1.10\"") != std::string::npos &&
              line.substr(line.rfind(' ') + 1) != "0") {
            return true;
          }
        }
        return false;
      },
      30s))
      << metrics.substr(0, 4000);
  // promtool exits 1 on a parse error and 3 on naming lint only (kube-router's counter names lack
  // "_total" by parity): the format must parse.
  auto check = Exec({"promtool", "check", "metrics"}, metrics);
  ASSERT_TRUE(check.ok()) << check.error();
  EXPECT_TRUE(check->exit_code == 0 || check->exit_code == 3) << check->out << check->err;
}

}  // namespace
}  // namespace kr::testing::agent_vm
