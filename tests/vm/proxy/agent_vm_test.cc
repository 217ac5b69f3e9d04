// The service proxy end to end: the REAL kube-router binary (proxy only) in two node namespaces
// inside the guest kernel, Services and EndpointSlices served by fake-apiserver and changed with
// the real kubectl, checked with real TCP/UDP/SCTP/HTTP traffic from pods, nodes and an external
// client, and with ipvsadm. One world for the whole binary (one boot); every test uses its own
// Services, VIPs and NodePorts, and leaves the agents running.
#include <gtest/gtest.h>
#include <signal.h>

#include <chrono>
#include <map>
#include <set>
#include <sstream>

#include "lib/answer_server.h"
#include "vm/proxy/proxy_world.h"

namespace kr::testing {
namespace {

using namespace std::chrono_literals;

constexpr auto kProgrammed = 20s;  // API write -> answered, with a wide margin for the TCG guest

// Backends: a0 on node0, b1 and c1 on node1; clients: client0 on node0, client1 on node1.
const char* const kA0 = "default/a0";
const char* const kB1 = "default/b1";
const char* const kC1 = "default/c1";
const char* const kClient0 = "default/client0";
const char* const kClient1 = "default/client1";

std::string Q(const std::string& s) { return "\"" + s + "\""; }

// Put() prints why it failed; the assertion only stops the test.
inline bool OkOf(bool ok) { return ok; }
inline bool OkOf(const Status& status) { return status.ok(); }
#define ASSERT_OK(expr) ASSERT_TRUE(OkOf(expr))

// A Service's JSON; `ports` and `extra_spec` are JSON fragments.
std::string ServiceJson(const std::string& name, const std::string& spec,
                        const std::string& annotations = "{}", const std::string& status = "{}") {
  return R"({"apiVersion":"v1","kind":"Service","metadata":{"namespace":"default","name":)" +
         Q(name) + R"(,"annotations":)" + annotations + R"(},"spec":)" + spec + R"(,"status":)" +
         status + "}";
}

class ProxyAgentVmTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    ProxyWorldOptions options;
    options.dual_stack = true;
    options.agent_flags = {"--service-external-ip-range=203.0.113.0/24",
                           "--loadbalancer-ip-range=198.51.100.0/24", "--metrics-port=9100",
                           "--ipvs-sync-period=30s"};
    world_ = new ProxyWorld(options);
    for (const char* pod : {kA0, kClient0}) world_->AddPod(0, pod);
    for (const char* pod : {kB1, kC1, kClient1}) world_->AddPod(1, pod);
    for (const char* pod : {kA0, kB1, kC1}) {
      const std::string name = std::string(pod).substr(8);
      const std::string& ns = world_->PodNs(pod);
      servers_->push_back(std::make_unique<AnswerServer>(ns, name, 8080, AnswerServer::Kind::kTcp));
      servers_->push_back(std::make_unique<AnswerServer>(ns, name, 5353, AnswerServer::Kind::kUdp));
      servers_->push_back(
          std::make_unique<AnswerServer>(ns, name, 7777, AnswerServer::Kind::kSctp));
      servers_->push_back(
          std::make_unique<AnswerServer>(ns, name, 8081, AnswerServer::Kind::kHttp));
    }
    // A second number for the named port "web" on b1 (named targetPorts differ per pod).
    servers_->push_back(std::make_unique<AnswerServer>(world_->PodNs(kB1), "b1-alt", 8090,
                                                       AnswerServer::Kind::kTcp));
    world_->Start();
  }
  static void TearDownTestSuite() {
    servers_->clear();
    delete world_;
    world_ = nullptr;
  }
  void TearDown() override {
    if (HasFailure()) {
      for (int i = 0; i < 2; ++i) {
        std::cerr << "--- agent node" << i << " log:\n" << world_->AgentLog(i) << "\n";
        std::cerr << "--- ipvsadm node" << i << ":\n" << world_->Ipvsadm(i) << "\n";
      }
    }
  }

  static SliceEndpoint Ep(const char* pod, bool ready = true, bool terminating = false) {
    const auto& p = world_->net().pod(pod);
    return {p.ip, world_->NodeName(p.node), ready, ready || terminating, terminating};
  }
  static SliceEndpoint Ep6(const char* pod) {
    const auto& p = world_->net().pod(pod);
    return {p.ip6, world_->NodeName(p.node), true, true, false};
  }
  static std::string Name(const char* pod) { return std::string(pod).substr(8); }

  // Waits until `from` gets an answer from one of `names`.
  static bool WaitAnswer(const std::string& from, const std::string& ip, int port, Proto proto,
                         const std::set<std::string>& names, Answer* last = nullptr) {
    Answer a;
    bool ok = WaitFor(
        [&] {
          a = Ask(from, ip, port, proto, 1000ms);
          return a.ok() && names.count(a.name) > 0;
        },
        kProgrammed);
    if (last) *last = a;
    return ok;
  }
  // Names of the backends answering `count` fresh connections.
  static std::map<std::string, int> Spread(const std::string& from, const std::string& ip, int port,
                                           Proto proto, int count) {
    std::map<std::string, int> seen;
    for (int i = 0; i < count; ++i) {
      Answer a = Ask(from, ip, port, proto, 2000ms);
      seen[a.ok() ? a.name : a.ToString()]++;
    }
    return seen;
  }

  static ProxyWorld* world_;
  static std::vector<std::unique_ptr<AnswerServer>>* servers_;
};

ProxyWorld* ProxyAgentVmTest::world_ = nullptr;
std::vector<std::unique_ptr<AnswerServer>>* ProxyAgentVmTest::servers_ =
    new std::vector<std::unique_ptr<AnswerServer>>();

TEST_F(ProxyAgentVmTest, ClusterIpServesPodsAndNodesWithTheNodeIpAsSource) {
  ASSERT_OK(world_
                ->Put(ServiceJson("basic", R"({"clusterIP":"10.96.1.1","clusterIPs":["10.96.1.1"],
      "ports":[{"name":"http","port":80,"protocol":"TCP","targetPort":8080}]})"))
                .ok());
  ASSERT_OK(world_
                ->Put(SliceJson("default", "basic-1", "basic", "IPv4", {Ep(kA0), Ep(kB1)},
                                {{"http", 8080, "TCP"}}))
                .ok());
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
  ASSERT_OK(world_
                ->Put(ServiceJson("multi", R"({"clusterIP":"10.96.1.2","clusterIPs":["10.96.1.2"],
      "ports":[{"name":"web","port":80,"protocol":"TCP","targetPort":"web"},
               {"name":"dns","port":53,"protocol":"UDP","targetPort":5353},
               {"name":"dns-tcp","port":53,"protocol":"TCP","targetPort":8080},
               {"name":"assoc","port":77,"protocol":"SCTP","targetPort":7777},
               {"name":"http","port":81,"protocol":"TCP","targetPort":8081}]})"))
                .ok());
  // The named port "web" is 8080 on a0 and 8090 on b1: one slice each.
  ASSERT_OK(world_
                ->Put(SliceJson("default", "multi-a", "multi", "IPv4", {Ep(kA0)},
                                {{"web", 8080, "TCP"},
                                 {"dns", 5353, "UDP"},
                                 {"dns-tcp", 8080, "TCP"},
                                 {"assoc", 7777, "SCTP"},
                                 {"http", 8081, "TCP"}}))
                .ok());
  ASSERT_OK(world_
                ->Put(SliceJson("default", "multi-b", "multi", "IPv4", {Ep(kB1)},
                                {{"web", 8090, "TCP"},
                                 {"dns", 5353, "UDP"},
                                 {"dns-tcp", 8080, "TCP"},
                                 {"assoc", 7777, "SCTP"},
                                 {"http", 8081, "TCP"}}))
                .ok());
  const std::string client = world_->PodNs(kClient1);
  ASSERT_TRUE(WaitAnswer(client, "10.96.1.2", 80, Proto::kTcp, {"a0", "b1-alt"}));
  auto web = Spread(client, "10.96.1.2", 80, Proto::kTcp, 10);
  EXPECT_GE(web["a0"], 2);
  EXPECT_GE(web["b1-alt"], 2) << "b1's own number for the named port";
  EXPECT_EQ(web["b1"], 0) << "never b1's 8080 through the named port";
  auto udp = Spread(client, "10.96.1.2", 53, Proto::kUdp, 6);
  auto tcp = Spread(client, "10.96.1.2", 53, Proto::kTcp, 6);
  EXPECT_EQ(udp["a0"] + udp["b1"], 6) << "same port number, UDP";
  EXPECT_EQ(tcp["a0"] + tcp["b1"], 6) << "same port number, TCP";
  auto sctp = Spread(client, "10.96.1.2", 77, Proto::kSctp, 6);
  EXPECT_EQ(sctp["a0"] + sctp["b1"], 6) << "SCTP";
  Answer http = HttpGet(client, "10.96.1.2", 81);
  ASSERT_TRUE(http.ok()) << http.ToString();
  EXPECT_EQ(http.client_ip, world_->PodIp(kClient1)) << "pod sources are not masqueraded";
}

TEST_F(ProxyAgentVmTest, EndpointChurnToZeroIsRefusedAtOnceAndComesBack) {
  ASSERT_OK(world_
                ->Put(ServiceJson("churn", R"({"clusterIP":"10.96.1.3","clusterIPs":["10.96.1.3"],
      "ports":[{"name":"t","port":80,"protocol":"TCP","targetPort":8080},
               {"name":"u","port":53,"protocol":"UDP","targetPort":5353}]})"))
                .ok());
  auto slice = [&](std::vector<SliceEndpoint> eps) {
    return world_->Put(SliceJson("default", "churn-1", "churn", "IPv4", eps,
                                 {{"t", 8080, "TCP"}, {"u", 5353, "UDP"}}));
  };
  ASSERT_TRUE(slice({Ep(kA0), Ep(kB1)}).ok());
  const std::string client = world_->PodNs(kClient0);
  ASSERT_TRUE(WaitAnswer(client, "10.96.1.3", 80, Proto::kTcp, {"a0", "b1"}));
  ASSERT_TRUE(slice({Ep(kB1), Ep(kC1)}).ok());
  ASSERT_TRUE(
      WaitFor([&] { return Spread(client, "10.96.1.3", 80, Proto::kTcp, 4).count("a0") == 0; },
              kProgrammed))
      << "a0 left";
  ASSERT_TRUE(slice({}).ok());
  Answer refused;
  ASSERT_TRUE(WaitFor(
      [&] {
        refused = Ask(client, "10.96.1.3", 80, Proto::kTcp, 1000ms);
        return refused.outcome == Answer::Outcome::kRefused;
      },
      kProgrammed))
      << refused.ToString();
  auto start = std::chrono::steady_clock::now();
  Answer tcp = Ask(client, "10.96.1.3", 80, Proto::kTcp, 3000ms);
  Answer udp = Ask(client, "10.96.1.3", 53, Proto::kUdp, 3000ms);
  EXPECT_EQ(tcp.outcome, Answer::Outcome::kRefused) << tcp.ToString();
  EXPECT_EQ(udp.outcome, Answer::Outcome::kRefused) << udp.ToString();
  EXPECT_LT(std::chrono::steady_clock::now() - start, 2000ms) << "refused, not timed out";
  EXPECT_NE(world_->Ipvsadm(1).find("TCP  10.96.1.3:80"), std::string::npos)
      << "the service stays, without destinations";
  ASSERT_TRUE(slice({Ep(kA0)}).ok());
  EXPECT_TRUE(WaitAnswer(client, "10.96.1.3", 80, Proto::kTcp, {"a0"}));
  EXPECT_TRUE(WaitAnswer(client, "10.96.1.3", 53, Proto::kUdp, {"a0"}));
  // Deleted and re-created.
  ASSERT_TRUE(world_->Delete("service", "default", "churn").ok());
  ASSERT_TRUE(world_->WaitIpvs(0, "10.96.1.3:80", false));
  ASSERT_OK(world_
                ->Put(ServiceJson("churn", R"({"clusterIP":"10.96.1.3","clusterIPs":["10.96.1.3"],
      "ports":[{"name":"t","port":80,"protocol":"TCP","targetPort":8080}]})"))
                .ok());
  EXPECT_TRUE(WaitAnswer(client, "10.96.1.3", 80, Proto::kTcp, {"a0"}));
}

TEST_F(ProxyAgentVmTest, NodePortFromOutsideWithAndWithoutALocalPod) {
  ASSERT_OK(world_
                ->Put(ServiceJson("np", R"({"type":"NodePort","clusterIP":"10.96.1.4",
      "clusterIPs":["10.96.1.4"],"externalTrafficPolicy":"Cluster",
      "ports":[{"name":"t","port":80,"protocol":"TCP","targetPort":8080,"nodePort":30080},
               {"name":"u","port":53,"protocol":"UDP","targetPort":5353,"nodePort":30053}]})"))
                .ok());
  ASSERT_OK(world_
                ->Put(SliceJson("default", "np-1", "np", "IPv4", {Ep(kB1)},
                                {{"t", 8080, "TCP"}, {"u", 5353, "UDP"}}))
                .ok());
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
  ASSERT_OK(world_
                ->Put(ServiceJson("etp", R"({"type":"NodePort","clusterIP":"10.96.1.5",
      "clusterIPs":["10.96.1.5"],"externalTrafficPolicy":"Local",
      "ports":[{"name":"t","port":80,"protocol":"TCP","targetPort":8080,"nodePort":30081}]})"))
                .ok());
  ASSERT_OK(world_
                ->Put(SliceJson("default", "etp-1", "etp", "IPv4", {Ep(kB1), Ep(kA0, false)},
                                {{"t", 8080, "TCP"}}))
                .ok());
  ASSERT_OK(world_
                ->Put(ServiceJson("itp", R"({"clusterIP":"10.96.1.6","clusterIPs":["10.96.1.6"],
      "internalTrafficPolicy":"Local",
      "ports":[{"name":"t","port":80,"protocol":"TCP","targetPort":8080}]})"))
                .ok());
  ASSERT_TRUE(
      world_->Put(SliceJson("default", "itp-1", "itp", "IPv4", {Ep(kB1)}, {{"t", 8080, "TCP"}}))
          .ok());
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
  ASSERT_OK(world_
                ->Put(ServiceJson(
                    "ext",
                    R"({"type":"LoadBalancer","clusterIP":"10.96.1.7","clusterIPs":["10.96.1.7"],
      "externalIPs":["203.0.113.10","192.0.2.200","10.96.1.99"],
      "ports":[{"name":"t","port":80,"protocol":"TCP","targetPort":8080,"nodePort":30082}]})",
                    "{}",
                    R"({"loadBalancer":{"ingress":[{"ip":"198.51.100.10"},{"ip":"203.0.113.77"},
      {"ip":"198.51.100.11","ipMode":"Proxy"}]}})"))
                .ok());
  ASSERT_TRUE(
      world_->Put(SliceJson("default", "ext-1", "ext", "IPv4", {Ep(kA0)}, {{"t", 8080, "TCP"}}))
          .ok());
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
  ASSERT_TRUE(
      world_
          ->Put(ServiceJson("sticky", R"({"clusterIP":"10.96.1.8","clusterIPs":["10.96.1.8"],
      "sessionAffinity":"ClientIP","sessionAffinityConfig":{"clientIP":{"timeoutSeconds":60}},
      "ports":[{"name":"t","port":80,"protocol":"TCP","targetPort":8080}]})"))
          .ok());
  ASSERT_OK(world_
                ->Put(SliceJson("default", "sticky-1", "sticky", "IPv4",
                                {Ep(kA0), Ep(kB1), Ep(kC1)}, {{"t", 8080, "TCP"}}))
                .ok());
  const std::string client = world_->PodNs(kClient1);
  ASSERT_TRUE(WaitAnswer(client, "10.96.1.8", 80, Proto::kTcp, {"a0", "b1", "c1"}));
  auto seen = Spread(client, "10.96.1.8", 80, Proto::kTcp, 10);
  EXPECT_EQ(seen.size(), 1u) << "one backend for one client";
  EXPECT_NE(world_->Ipvsadm(1).find("10.96.1.8:80 rr persistent 60"), std::string::npos)
      << world_->Ipvsadm(1);

  // Switch affinity off and the scheduler to lc while a connection is open.
  TcpHolder held(client, "10.96.1.8", 80);
  ASSERT_TRUE(held.greeting().ok()) << held.greeting().ToString();
  ASSERT_TRUE(
      world_
          ->Put(ServiceJson("sticky", R"({"clusterIP":"10.96.1.8","clusterIPs":["10.96.1.8"],
      "sessionAffinity":"None",
      "ports":[{"name":"t","port":80,"protocol":"TCP","targetPort":8080}]})",
                            R"({"kube-router.io/service.scheduler":"lc"})"))
          .ok());
  ASSERT_TRUE(world_->WaitIpvs(1, "TCP  10.96.1.8:80 lc\n", true)) << world_->Ipvsadm(1);
  EXPECT_TRUE(held.Alive()) << "the open connection survives the in-place update";
  auto spread = Spread(client, "10.96.1.8", 80, Proto::kTcp, 9);
  EXPECT_GE(spread.size(), 2u) << "affinity off: more than one backend";
}

TEST_F(ProxyAgentVmTest, DualStackClusterIpAndNodePortBothFamilies) {
  ASSERT_OK(world_
                ->Put(ServiceJson("ds", R"({"type":"NodePort","ipFamilyPolicy":"RequireDualStack",
      "ipFamilies":["IPv4","IPv6"],"clusterIP":"10.96.1.9","clusterIPs":["10.96.1.9","fd00:96::9"],
      "ports":[{"name":"t","port":80,"protocol":"TCP","targetPort":8080,"nodePort":30083}]})"))
                .ok());
  ASSERT_TRUE(
      world_->Put(SliceJson("default", "ds-4", "ds", "IPv4", {Ep(kB1)}, {{"t", 8080, "TCP"}}))
          .ok());
  ASSERT_TRUE(
      world_->Put(SliceJson("default", "ds-6", "ds", "IPv6", {Ep6(kB1)}, {{"t", 8080, "TCP"}}))
          .ok());
  EXPECT_TRUE(WaitAnswer(world_->PodNs(kClient0), "fd00:96::9", 80, Proto::kTcp, {"b1"}));
  EXPECT_TRUE(WaitAnswer(world_->PodNs(kClient0), "10.96.1.9", 80, Proto::kTcp, {"b1"}));
  Answer from_node;
  EXPECT_TRUE(
      WaitAnswer(world_->NodeNs(0).name(), "fd00:96::9", 80, Proto::kTcp, {"b1"}, &from_node))
      << "IPv6 VIP from the node itself (#1698): " << from_node.ToString();
  EXPECT_TRUE(WaitAnswer(world_->ClientNs(), world_->NodeIp6(1), 30083, Proto::kTcp, {"b1"}));
}

TEST_F(ProxyAgentVmTest, MetricsCountTrafficPerServiceVip) {
  ASSERT_TRUE(
      world_
          ->Put(ServiceJson("metered", R"({"clusterIP":"10.96.1.10","clusterIPs":["10.96.1.10"],
      "ports":[{"name":"t","port":80,"protocol":"TCP","targetPort":8080}]})"))
          .ok());
  ASSERT_OK(world_
                ->Put(SliceJson("default", "metered-1", "metered", "IPv4", {Ep(kA0)},
                                {{"t", 8080, "TCP"}}))
                .ok());
  ASSERT_TRUE(WaitAnswer(world_->PodNs(kClient0), "10.96.1.10", 80, Proto::kTcp, {"a0"}));
  for (int i = 0; i < 3; ++i) (void)Ask(world_->PodNs(kClient0), "10.96.1.10", 80, Proto::kTcp);
  std::string metrics;
  EXPECT_TRUE(WaitFor(
      [&] {
        auto out = world_->NodeNs(0).Sh("curl -s http://127.0.0.1:9100/metrics");
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
  auto check = world_->NodeNs(0).Sh(
      "curl -s http://127.0.0.1:9100/metrics | promtool check metrics; rc=$?; "
      "[ $rc -eq 0 ] || [ $rc -eq 3 ]");
  EXPECT_TRUE(check.ok()) << check.error();
}

TEST_F(ProxyAgentVmTest, KillAndRestartKeepEstablishedConnectionsAndWriteNothingNew) {
  ASSERT_TRUE(
      world_
          ->Put(ServiceJson("durable", R"({"clusterIP":"10.96.1.11","clusterIPs":["10.96.1.11"],
      "ports":[{"name":"t","port":80,"protocol":"TCP","targetPort":8080}]})"))
          .ok());
  ASSERT_OK(world_
                ->Put(SliceJson("default", "durable-1", "durable", "IPv4", {Ep(kA0), Ep(kB1)},
                                {{"t", 8080, "TCP"}}))
                .ok());
  const std::string client = world_->PodNs(kClient0);
  ASSERT_TRUE(WaitAnswer(client, "10.96.1.11", 80, Proto::kTcp, {"a0", "b1"}));
  // A foreign IPVS service and a foreign address: never ours.
  ASSERT_TRUE(world_->NodeNs(0)
                  .Sh("ipvsadm -A -t 10.99.0.1:80 -s rr && ipvsadm -a -t 10.99.0.1:80 -r "
                      "10.71.0.77:80 -m && ip addr add 10.99.0.2/32 dev kr-client")
                  .ok());
  TcpHolder held(client, "10.96.1.11", 80);
  ASSERT_TRUE(held.greeting().ok());
  const std::string before = world_->Ipvsadm(0, "-Sn");
  world_->StopAgent(0, SIGKILL);
  EXPECT_TRUE(held.Alive()) << "the kernel keeps forwarding without the agent";
  const auto restarted_at = std::chrono::system_clock::now();
  world_->StartAgent(0);
  // The restarted agent adopts the kernel's state: once its first sync succeeded (the
  // controller's last-successful-sync metric moves), nothing changed and no change was logged.
  ASSERT_TRUE(WaitFor(
      [&] {
        auto out = world_->NodeNs(0).Sh(
            "curl -s http://127.0.0.1:9100/metrics | grep '^kube_router_controller_last_successful"
            "_sync_timestamp_seconds{controller=\"NetworkServices\"}'");
        if (!out.ok() || out->empty()) return false;
        const double at = std::stod(out->substr(out->rfind(' ') + 1));
        return at >= std::chrono::duration<double>(restarted_at.time_since_epoch()).count() - 1;
      },
      kProgrammed * 3))
      << world_->AgentLog(0);
  EXPECT_EQ(world_->AgentLog(0).find("IPVS change(s)"), std::string::npos) << world_->AgentLog(0);
  EXPECT_EQ(world_->Ipvsadm(0, "-Sn"), before) << "nothing rewritten or flushed";
  EXPECT_TRUE(held.Alive()) << "established connection survived kill -9 and restart";
  // And it follows changes again.
  ASSERT_OK(world_
                ->Put(SliceJson("default", "durable-1", "durable", "IPv4",
                                {Ep(kA0), Ep(kB1), Ep(kC1)}, {{"t", 8080, "TCP"}}))
                .ok());
  ASSERT_TRUE(world_->WaitIpvs(0, "-> " + world_->PodIp(kC1) + ":8080"));
  EXPECT_TRUE(held.Alive()) << "established connection survived kill -9 and restart";
  const std::string after = world_->Ipvsadm(0, "-Sn");
  EXPECT_NE(after.find("-A -t 10.99.0.1:80"), std::string::npos) << "foreign service kept";
  EXPECT_NE(after.find("-a -t 10.99.0.1:80 -r 10.71.0.77:80"), std::string::npos);
  EXPECT_NE(world_->NodeNs(0).Sh("ip addr show dev kr-client")->find("10.99.0.2/32"),
            std::string::npos);
}

TEST_F(ProxyAgentVmTest, CleanupConfigRemovesOursOnlyAndIsIdempotent) {
  ASSERT_TRUE(
      world_
          ->Put(ServiceJson("gone", R"({"clusterIP":"10.96.1.12","clusterIPs":["10.96.1.12"],
      "ports":[{"name":"t","port":80,"protocol":"TCP","targetPort":8080}]})"))
          .ok());
  ASSERT_TRUE(
      world_->Put(SliceJson("default", "gone-1", "gone", "IPv4", {Ep(kB1)}, {{"t", 8080, "TCP"}}))
          .ok());
  ASSERT_TRUE(world_->WaitIpvs(1, "TCP  10.96.1.12:80"));
  ASSERT_TRUE(world_->NodeNs(1).Sh("ipvsadm -A -u 10.99.1.1:53 -s rr").ok());
  world_->StopAgent(1, SIGTERM);
  for (int run = 0; run < 2; ++run) {
    auto out = world_->RunAgentOnce(1, {"--cleanup-config"});
    ASSERT_TRUE(out.ok()) << "run " << run << ": " << out.error();
  }
  const std::string left = world_->Ipvsadm(1, "-Sn");
  EXPECT_EQ(left.find("10.96."), std::string::npos) << left;
  EXPECT_NE(left.find("-A -u 10.99.1.1:53"), std::string::npos) << "foreign service kept\n" << left;
  auto dummy = world_->NodeNs(1).Sh("ip link show kube-dummy-if");
  EXPECT_FALSE(dummy.ok()) << "kube-dummy-if removed";
  world_->StartAgent(1);
  EXPECT_TRUE(world_->WaitIpvs(1, "TCP  10.96.1.12:80")) << "back after a restart";
}

}  // namespace
}  // namespace kr::testing
