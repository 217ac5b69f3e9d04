// The service proxy end to end: the REAL kube-router binary (proxy only) in two node namespaces
// inside the guest kernel, Services and EndpointSlices served by fake-apiserver and changed with
// the real kubectl (the main scenarios) or straight over HTTP (where kubectl is not the point: a
// kubectl run costs seconds of emulated CPU), checked with real TCP/UDP/SCTP/HTTP traffic from
// pods, nodes and an external client, and with ipvsadm. One world for the whole binary (one boot);
// every test uses its own Services, VIPs and NodePorts, and leaves the agents as it found them.
//
// The two agents differ on purpose: node0 runs with --ipvs-permit-all=false (the VIP firewall),
// node1 with --ipvs-graceful-termination. A test that needs other flags restarts node0's agent
// with them and back.
#include <gtest/gtest.h>
#include <signal.h>

#include <chrono>
#include <map>
#include <regex>
#include <set>
#include <sstream>
#include <thread>

#include "lib/answer_server.h"
#include "vm/proxy/proxy_world.h"

namespace kr::testing {
namespace {

using namespace std::chrono_literals;

constexpr auto kProgrammed = 20s;     // API write -> answered, with a wide margin for the TCG guest
constexpr auto kAskTimeout = 5000ms;  // one request that must be answered

// Backends: a0 on node0, b1, c1 and g1 on node1; clients: client0 on node0, client1 on node1.
// g1 has a short termination grace period (the graceful-termination deadline).
const char* const kA0 = "default/a0";
const char* const kB1 = "default/b1";
const char* const kC1 = "default/c1";
const char* const kG1 = "default/g1";
const char* const kClient0 = "default/client0";
const char* const kClient1 = "default/client1";
constexpr int kG1GraceSeconds = 8;
// A port nothing but the nodes' own listeners serves (the VIP firewall's probe).
constexpr int kHostPort = 9999;
constexpr int kMetricsPort = 9100;

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

// A ClusterIP Service with one TCP port 80 -> 8080 named "t".
std::string SimpleService(const std::string& name, const std::string& vip,
                          const std::string& annotations = "{}") {
  return ServiceJson(
      name,
      R"({"clusterIP":)" + Q(vip) + R"(,"clusterIPs":[)" + Q(vip) +
          R"(],"ports":[{"name":"t","port":80,"protocol":"TCP","targetPort":8080}]})",
      annotations);
}

class ProxyAgentVmTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    ProxyWorldOptions options;
    options.dual_stack = true;
    options.agent_flags = {
        "--service-external-ip-range=203.0.113.0/24", "--loadbalancer-ip-range=198.51.100.0/24",
        "--metrics-port=" + std::to_string(kMetricsPort), "--ipvs-sync-period=30s"};
    options.node_flags = {{"--ipvs-permit-all=false"},
                          {"--ipvs-graceful-termination=true", "--ipvs-graceful-period=60s"}};
    options.grace_periods[kG1] = kG1GraceSeconds;
    world_ = new ProxyWorld(options);
    for (const char* pod : {kA0, kClient0}) world_->AddPod(0, pod);
    for (const char* pod : {kB1, kC1, kG1, kClient1}) world_->AddPod(1, pod);
    for (const char* pod : {kA0, kB1, kC1, kG1}) {
      const std::string name = Name(pod);
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
    // The nodes' own listeners on a port no Service has.
    for (int node = 0; node < 2; ++node) {
      servers_->push_back(std::make_unique<AnswerServer>(world_->NodeNs(node).name(),
                                                         world_->NodeName(node), kHostPort,
                                                         AnswerServer::Kind::kTcp));
    }
    world_->Start();
    for (int node = 0; node < 2; ++node) {
      if (!WaitFirstSync(node, std::chrono::system_clock::time_point{})) {
        throw std::runtime_error("agent " + world_->NodeName(node) +
                                 " never synced: " + world_->AgentLog(node));
      }
    }
    world_->Stamp("agents synced");
  }
  static void TearDownTestSuite() {
    servers_->clear();
    delete world_;
    world_ = nullptr;
  }
  void SetUp() override {
    world_->Stamp(std::string("start ") +
                  ::testing::UnitTest::GetInstance()->current_test_info()->name());
  }
  void TearDown() override {
    if (HasFailure()) {
      for (int i = 0; i < 2; ++i) {
        std::cerr << "--- agent node" << i << " log:\n" << world_->AgentLog(i) << "\n";
        std::cerr << "--- ipvsadm node" << i << ":\n" << world_->Ipvsadm(i) << "\n";
        auto nat = world_->NodeNs(i).Sh("iptables-save -c -t nat; ip addr show kube-dummy-if");
        std::cerr << "--- nat node" << i << ":\n" << (nat.ok() ? *nat : nat.error()) << "\n";
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

  // True once the agent of `node` reports a successful sync at or after `since` (the
  // controller's last-successful-sync metric).
  static bool WaitFirstSync(int node, std::chrono::system_clock::time_point since) {
    const std::string series =
        "\nkube_router_controller_last_successful_sync_timestamp_seconds{controller="
        "\"NetworkServices\"} ";
    const double after = std::chrono::duration<double>(since.time_since_epoch()).count() - 1;
    // Read in-process every 100 ms: no process start competing with the agent for the CPU.
    const auto deadline = std::chrono::steady_clock::now() + kProgrammed * 6;
    while (std::chrono::steady_clock::now() < deadline) {
      auto metrics = world_->Metrics(node, kMetricsPort);
      const size_t at = metrics.ok() ? metrics->find(series) : std::string::npos;
      if (at != std::string::npos) {
        const double value = std::strtod(metrics->c_str() + at + series.size(), nullptr);
        if (value > 0 && value >= after) return true;
      }
      std::this_thread::sleep_for(100ms);
    }
    return false;
  }

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
  // Names of the backends answering `count` fresh connections. Each one that should be answered
  // gets kAskTimeout: on the loaded machine an SCTP handshake in the emulated guest took over 2 s.
  static std::map<std::string, int> Spread(const std::string& from, const std::string& ip, int port,
                                           Proto proto, int count) {
    std::map<std::string, int> seen;
    for (int i = 0; i < count; ++i) {
      Answer a = Ask(from, ip, port, proto, kAskTimeout);
      seen[a.ok() ? a.name : a.ToString()]++;
    }
    return seen;
  }
  // The source addresses backends saw for `count` fresh connections.
  static std::map<std::string, int> Sources(const std::string& from, const std::string& ip,
                                            int port, int count) {
    std::map<std::string, int> seen;
    for (int i = 0; i < count; ++i) {
      Answer a = Ask(from, ip, port, Proto::kTcp, kAskTimeout);
      seen[a.ok() ? a.client_ip : a.ToString()]++;
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

// The VIP firewall is kube-router's --ipvs-permit-all (default true; the name reads inverted:
// true installs it). node1 has it: a port of a VIP that no Service has is rejected there, while
// node0 (--ipvs-permit-all=false) lets it through to the node's own listener.
TEST_F(ProxyAgentVmTest, VipFirewallRejectsNonServicePortsOnlyWhereEnabled) {
  ASSERT_OK(world_->Apply(SimpleService("fw", "10.96.1.14")));
  ASSERT_OK(world_->Apply(
      SliceJson("default", "fw-1", "fw", "IPv4", {Ep(kA0), Ep(kB1)}, {{"t", 8080, "TCP"}})));
  ASSERT_TRUE(WaitAnswer(world_->PodNs(kClient0), "10.96.1.14", 80, Proto::kTcp, {"a0", "b1"}));
  ASSERT_TRUE(WaitAnswer(world_->PodNs(kClient1), "10.96.1.14", 80, Proto::kTcp, {"a0", "b1"}));
  Answer rejected;
  EXPECT_TRUE(WaitFor(
      [&] {
        rejected = Ask(world_->PodNs(kClient1), "10.96.1.14", kHostPort, Proto::kTcp, 1000ms);
        return rejected.outcome == Answer::Outcome::kRefused;
      },
      kProgrammed))
      << "node1's own listener behind a VIP: " << rejected.ToString();
  Answer direct =
      Ask(world_->PodNs(kClient1), world_->NodeIp(1), kHostPort, Proto::kTcp, kAskTimeout);
  EXPECT_TRUE(direct.ok() && direct.name == "node1")
      << "the node's address is untouched: " << direct.ToString();
  Answer service = Ask(world_->PodNs(kClient1), "10.96.1.14", 80, Proto::kTcp, kAskTimeout);
  EXPECT_TRUE(service.ok()) << "the service port is accepted: " << service.ToString();
  Answer open = Ask(world_->PodNs(kClient0), "10.96.1.14", kHostPort, Proto::kTcp, kAskTimeout);
  EXPECT_TRUE(open.ok() && open.name == "node0")
      << "--ipvs-permit-all=false (node0) leaves the VIP open: " << open.ToString();
  for (int node = 0; node < 2; ++node) {
    auto rules = world_->NodeNs(node).Sh("iptables-save -t filter");
    ASSERT_TRUE(rules.ok()) << rules.error();
    EXPECT_EQ(rules->find("--match-set kube-router-local-ips dst -j REJECT") != std::string::npos,
              node == 1)
        << world_->NodeName(node) << ":\n"
        << *rules;
  }
}

// The hairpin annotation: a pod reaches itself through its Service and sees the VIP as source;
// without it the reply never finds its way back.
TEST_F(ProxyAgentVmTest, HairpinAnnotationLetsAPodReachItselfThroughItsService) {
  ASSERT_OK(world_->Apply(
      SimpleService("hair", "10.96.1.13", R"({"kube-router.io/service.hairpin":""})")));
  ASSERT_OK(world_->Apply(
      SliceJson("default", "hair-1", "hair", "IPv4", {Ep(kA0)}, {{"t", 8080, "TCP"}})));
  ASSERT_OK(world_->Apply(SimpleService("nohair", "10.96.1.18")));
  ASSERT_OK(world_->Apply(
      SliceJson("default", "nohair-1", "nohair", "IPv4", {Ep(kA0)}, {{"t", 8080, "TCP"}})));
  Answer self;
  ASSERT_TRUE(WaitAnswer(world_->PodNs(kA0), "10.96.1.13", 80, Proto::kTcp, {"a0"}, &self))
      << self.ToString();
  EXPECT_EQ(self.client_ip, "10.96.1.13") << "hairpin SNAT to the VIP";
  ASSERT_TRUE(WaitAnswer(world_->PodNs(kClient0), "10.96.1.18", 80, Proto::kTcp, {"a0"}));
  Answer none = Ask(world_->PodNs(kA0), "10.96.1.18", 80, Proto::kTcp, 1500ms);
  EXPECT_FALSE(none.ok()) << "no hairpin without the annotation: " << none.ToString();
}

// Agent flags that change every Service: --masquerade-all (pods see the node's address) and
// --hairpin-mode (every Service hairpins), on node0's agent restarted with them and back.
TEST_F(ProxyAgentVmTest, MasqueradeAllAndHairpinModeFlags) {
  ASSERT_OK(world_->Apply(SimpleService("masq", "10.96.1.19")));
  ASSERT_OK(world_->Apply(
      SliceJson("default", "masq-1", "masq", "IPv4", {Ep(kA0), Ep(kB1)}, {{"t", 8080, "TCP"}})));
  ASSERT_OK(world_->Apply(SimpleService("self", "10.96.1.20")));
  ASSERT_OK(world_->Apply(
      SliceJson("default", "self-1", "self", "IPv4", {Ep(kA0)}, {{"t", 8080, "TCP"}})));
  const std::string client = world_->PodNs(kClient0);
  ASSERT_TRUE(WaitAnswer(client, "10.96.1.19", 80, Proto::kTcp, {"a0", "b1"}));
  ASSERT_TRUE(WaitAnswer(client, "10.96.1.20", 80, Proto::kTcp, {"a0"}));
  auto before = Sources(client, "10.96.1.19", 80, 6);
  EXPECT_EQ(before[world_->PodIp(kClient0)], 6) << "default: pod sources kept";
  EXPECT_FALSE(Ask(world_->PodNs(kA0), "10.96.1.20", 80, Proto::kTcp, 1500ms).ok())
      << "no hairpin by default";

  // Back to node0's own flags however the test ends.
  struct Restore {
    bool done = false;
    ~Restore() {
      if (done) return;
      const auto at = std::chrono::system_clock::now();
      world_->StopAgent(0, SIGTERM);
      world_->StartAgent(0);
      if (!WaitFirstSync(0, at)) ADD_FAILURE() << "node0 did not come back with its own flags";
    }
  } restore;
  auto restarted_at = std::chrono::system_clock::now();
  world_->StopAgent(0, SIGTERM);
  world_->StartAgent(0, {"--masquerade-all=true", "--hairpin-mode=true"});
  ASSERT_TRUE(WaitFirstSync(0, restarted_at)) << world_->AgentLog(0);
  Answer hairpin;
  EXPECT_TRUE(WaitAnswer(world_->PodNs(kA0), "10.96.1.20", 80, Proto::kTcp, {"a0"}, &hairpin))
      << "--hairpin-mode: " << hairpin.ToString();
  EXPECT_EQ(hairpin.client_ip, "10.96.1.20");
  std::map<std::string, int> masqueraded;
  EXPECT_TRUE(WaitFor(
      [&] {
        masqueraded = Sources(client, "10.96.1.19", 80, 6);
        return masqueraded[world_->NodeIp(0)] == 6;
      },
      kProgrammed))
      << "--masquerade-all: every backend sees node0's address; seen "
      << ::testing::PrintToString(masqueraded);
  // Back to the defaults: the flags' rules are gone again (checked after the restore).
  world_->StopAgent(0, SIGTERM);
  restarted_at = std::chrono::system_clock::now();
  world_->StartAgent(0);
  restore.done = true;
  ASSERT_TRUE(WaitFirstSync(0, restarted_at)) << world_->AgentLog(0);
  std::map<std::string, int> plain;
  EXPECT_TRUE(WaitFor(
      [&] {
        plain = Sources(client, "10.96.1.19", 80, 4);
        return plain[world_->PodIp(kClient0)] == 4;
      },
      kProgrammed))
      << "masquerade rule of the flag removed; seen " << ::testing::PrintToString(plain);
  EXPECT_FALSE(Ask(world_->PodNs(kA0), "10.96.1.20", 80, Proto::kTcp, 1500ms).ok())
      << "hairpin rule of the flag removed";
}

// KEP-1669: a serving-but-terminating endpoint is used only while no ready one exists.
TEST_F(ProxyAgentVmTest, TerminatingEndpointsServeOnlyWhenNoReadyOneExists) {
  ASSERT_OK(world_->Apply(SimpleService("term", "10.96.1.16")));
  auto slice = [&](std::vector<SliceEndpoint> eps) {
    return world_->Apply(SliceJson("default", "term-1", "term", "IPv4", eps, {{"t", 8080, "TCP"}}));
  };
  const std::string client = world_->PodNs(kClient0);
  ASSERT_OK(slice({Ep(kB1), Ep(kA0, false, true)}));
  ASSERT_TRUE(WaitAnswer(client, "10.96.1.16", 80, Proto::kTcp, {"b1"}));
  auto seen = Spread(client, "10.96.1.16", 80, Proto::kTcp, 6);
  EXPECT_EQ(seen["b1"], 6) << "the ready endpoint only: " << ::testing::PrintToString(seen);
  ASSERT_OK(slice({Ep(kA0, false, true)}));
  EXPECT_TRUE(WaitAnswer(client, "10.96.1.16", 80, Proto::kTcp, {"a0"}))
      << "no ready endpoint: the terminating one serves";
  SliceEndpoint gone = Ep(kA0, false, true);
  gone.serving = false;
  ASSERT_OK(slice({gone}));
  Answer refused;
  EXPECT_TRUE(WaitFor(
      [&] {
        refused = Ask(client, "10.96.1.16", 80, Proto::kTcp, 1000ms);
        return refused.outcome == Answer::Outcome::kRefused;
      },
      kProgrammed))
      << "terminating and not serving: none; " << refused.ToString();
}

// Graceful termination on node1: the removed backend keeps weight 0 with its open connection
// working, new connections avoid it, a return cancels the drain, and it goes at the pod's grace
// period.
TEST_F(ProxyAgentVmTest, GracefulTerminationKeepsAnOpenConnectionUntilTheGracePeriod) {
  ASSERT_OK(world_->Apply(SimpleService("grace", "10.96.1.15")));
  auto slice = [&](std::vector<SliceEndpoint> eps) {
    return world_->Apply(
        SliceJson("default", "grace-1", "grace", "IPv4", eps, {{"t", 8080, "TCP"}}));
  };
  ASSERT_OK(slice({Ep(kG1)}));
  const std::string client = world_->PodNs(kClient1);
  ASSERT_TRUE(WaitAnswer(client, "10.96.1.15", 80, Proto::kTcp, {"g1"}));
  TcpHolder held(client, "10.96.1.15", 80, kAskTimeout);
  ASSERT_TRUE(held.greeting().ok() && held.greeting().name == "g1") << held.greeting().ToString();

  ASSERT_OK(slice({Ep(kC1)}));
  const std::string g1 = "-> " + world_->PodIp(kG1) + ":8080";
  // "  -> IP:PORT  Masq  WEIGHT  ACTIVE  INACTIVE": the weight of g1, -1 when absent.
  auto weight_of_g1 = [&](const std::string& shown) {
    const size_t at = shown.find(g1);
    if (at == std::string::npos) return -1;
    std::istringstream line(shown.substr(at + g1.size()));
    std::string method;
    int weight = -1;
    line >> method >> weight;
    return weight;
  };
  std::string shown;
  ASSERT_TRUE(WaitFor(
      [&] {
        shown = world_->Ipvsadm(1, "-Ln -t 10.96.1.15:80");
        return weight_of_g1(shown) == 0;
      },
      kProgrammed))
      << "g1 at weight 0: " << shown;
  EXPECT_TRUE(held.Alive(kAskTimeout)) << "the open connection keeps working while g1 drains";
  auto fresh = Spread(client, "10.96.1.15", 80, Proto::kTcp, 4);
  EXPECT_EQ(fresh["c1"], 4) << "new connections avoid the draining backend";
  EXPECT_TRUE(held.Alive(kAskTimeout));
  // g1 comes back while it drains: weight 1 again and its drain cancelled (the deadline below
  // counts from the second removal), then it goes for good.
  ASSERT_OK(slice({Ep(kG1), Ep(kC1)}));
  ASSERT_TRUE(WaitFor(
      [&] {
        shown = world_->Ipvsadm(1, "-Ln -t 10.96.1.15:80");
        return weight_of_g1(shown) == 1;
      },
      kProgrammed))
      << "g1 back at weight 1: " << shown;
  const auto removed_at = std::chrono::steady_clock::now();
  ASSERT_OK(slice({Ep(kC1)}));
  ASSERT_TRUE(WaitFor(
      [&] {
        shown = world_->Ipvsadm(1, "-Ln -t 10.96.1.15:80");
        return weight_of_g1(shown) == 0;
      },
      kProgrammed))
      << "g1 at weight 0 again: " << shown;
  EXPECT_TRUE(held.Alive(kAskTimeout));
  // The connection stays open, so only the deadline (g1's terminationGracePeriodSeconds, not the
  // 60 s --ipvs-graceful-period) removes it.
  ASSERT_TRUE(world_->WaitIpvs(1, g1, false, std::chrono::seconds(kG1GraceSeconds) + kProgrammed))
      << world_->Ipvsadm(1);
  EXPECT_GE(std::chrono::steady_clock::now() - removed_at,
            std::chrono::seconds(kG1GraceSeconds - 1))
      << "not before the grace period";
  EXPECT_FALSE(held.Alive(kAskTimeout)) << "after removal the kernel expires the connection "
                                           "(expire_nodest_conn)";
}

// A resolver-like UDP client keeps its source port: when its backend goes, the agent's conntrack
// cleanup lets the same flow reach the surviving backend at once.
TEST_F(ProxyAgentVmTest, FixedSourcePortUdpClientMovesToTheSurvivorWhenItsBackendGoes) {
  ASSERT_OK(world_->Apply(ServiceJson("dnsfix", R"({"clusterIP":"10.96.1.17",
      "clusterIPs":["10.96.1.17"],"ports":[{"name":"u","port":53,"protocol":"UDP","targetPort":5353}]})")));
  auto slice = [&](std::vector<SliceEndpoint> eps) {
    return world_->Apply(
        SliceJson("default", "dnsfix-1", "dnsfix", "IPv4", eps, {{"u", 5353, "UDP"}}));
  };
  ASSERT_OK(slice({Ep(kA0), Ep(kB1)}));
  const std::string client = world_->PodNs(kClient0);
  ASSERT_TRUE(WaitAnswer(client, "10.96.1.17", 53, Proto::kUdp, {"a0", "b1"}));
  FixedPortUdpClient resolver(client, 40053);
  Answer first = resolver.Ask("10.96.1.17", 53, kAskTimeout);
  ASSERT_TRUE(first.ok()) << first.ToString();
  for (int i = 0; i < 3; ++i) {
    Answer again = resolver.Ask("10.96.1.17", 53, kAskTimeout);
    ASSERT_TRUE(again.ok()) << again.ToString();
    EXPECT_EQ(again.name, first.name) << "one flow, one backend";
  }
  const bool a0_went = first.name == "a0";
  const std::string survivor = a0_went ? "b1" : "a0";
  ASSERT_OK(slice({Ep(a0_went ? kB1 : kA0)}));
  Answer moved;
  EXPECT_TRUE(WaitFor(
      [&] {
        moved = resolver.Ask("10.96.1.17", 53, 500ms);
        return moved.ok() && moved.name == survivor;
      },
      kProgrammed))
      << "the same source port reaches " << survivor << ": " << moved.ToString();
  for (int i = 0; i < 3; ++i) {
    Answer after = resolver.Ask("10.96.1.17", 53, kAskTimeout);
    EXPECT_EQ(after.name, survivor) << after.ToString();
  }
  auto flows = world_->NodeNs(0).Sh("conntrack -L -p udp --sport 40053 2>/dev/null");
  ASSERT_TRUE(flows.ok()) << flows.error();
  EXPECT_EQ(flows->find("src=" + world_->PodIp(a0_went ? kA0 : kB1) + " "), std::string::npos)
      << "no flow of the gone backend left: " << *flows;
}

// DSR (kube-router.io/service.dsr=tunnel) through the agents. node0 is the director for both
// external IPs: a fwmark service with an IPIP real server and no VIP on the node; the agent of the
// endpoint's node puts the VIP inside the pod; the pod answers the outside client from the VIP
// itself and sees the client's own address. For b1 the reply leaves node1 straight back (node0's
// IPVS never sees it). Without the annotation all of it goes.
TEST_F(ProxyAgentVmTest, DsrPodsAnswerTheOutsideClientFromTheVip) {
  struct Case {
    const char* name;
    const char* vip;
    const char* cluster_ip;
    const char* pod;
  };
  const Case cases[] = {{"dsr-local", "203.0.113.21", "10.96.1.21", kA0},
                        {"dsr-remote", "203.0.113.22", "10.96.1.22", kB1}};
  auto spec = [](const Case& c) {
    return R"({"clusterIP":)" + Q(c.cluster_ip) + R"(,"clusterIPs":[)" + Q(c.cluster_ip) +
           R"(],"externalIPs":[)" + Q(c.vip) +
           R"(],"ports":[{"name":"t","port":8080,"protocol":"TCP","targetPort":8080}]})";
  };
  for (const Case& c : cases) {
    ASSERT_OK(
        world_->Apply(ServiceJson(c.name, spec(c), R"({"kube-router.io/service.dsr":"tunnel"})")));
    ASSERT_OK(world_->Apply(SliceJson("default", std::string(c.name) + "-1", c.name, "IPv4",
                                      {Ep(c.pod)}, {{"t", 8080, "TCP"}})));
  }
  auto routes = Exec({"ip", "-n", world_->ClientNs(), "route", "replace", "203.0.113.0/24", "via",
                      PodNetwork::kExternalNodeIp});
  ASSERT_TRUE(routes.ok() && routes->exit_code == 0);
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    const auto& pod = world_->net().pod(c.pod);
    std::string escaped = pod.ip;
    for (size_t at = escaped.find('.'); at != std::string::npos; at = escaped.find('.', at + 2)) {
      escaped.insert(at, "\\");
    }
    const std::regex tunnel("-> " + escaped + ":8080 +Tunnel");
    ASSERT_TRUE(WaitFor([&] { return std::regex_search(world_->Ipvsadm(0), tunnel); }, kProgrammed))
        << world_->Ipvsadm(0);
    std::string in_pod;
    EXPECT_TRUE(WaitFor(
        [&] {
          auto out = pod.ns->Sh("ip -d addr show kube-tunnel-if 2>&1 || true");
          in_pod = out.ok() ? *out : out.error();
          return in_pod.find(std::string("inet ") + c.vip + "/32") != std::string::npos;
        },
        kProgrammed))
        << "the VIP inside the pod: " << in_pod;
    Answer a;
    EXPECT_TRUE(WaitAnswer(world_->ClientNs(), c.vip, 8080, Proto::kTcp, {Name(c.pod)}, &a))
        << a.ToString();
    EXPECT_EQ(a.client_ip, ProxyWorld::kClientIp) << "no NAT on the way in";
    TcpHolder held(world_->ClientNs(), c.vip, 8080, kAskTimeout);
    EXPECT_TRUE(held.Alive(kAskTimeout)) << "a long-lived DSR connection echoes";
  }
  auto shown = world_->Ipvsadm(0);
  EXPECT_NE(shown.find("FWM"), std::string::npos) << shown;
  // node0's scrape names each fwmark service by its Service and DSR VIP (the mark its plan gave).
  for (const Case& c : cases) {
    const std::string series = std::string(
                                   "kube_router_service_total_connections{port=\"8080\","
                                   "protocol=\"tcp\",service_name=\"") +
                               c.name + "\",service_vip=\"" + c.vip +
                               "\",svc_namespace=\"default\"} ";
    std::string metrics;
    EXPECT_TRUE(WaitFor(
        [&] {
          auto out = world_->Metrics(0, kMetricsPort);
          metrics = out.ok() ? *out : out.error();
          return metrics.find(series) != std::string::npos;
        },
        kProgrammed))
        << series << " not in:\n"
        << metrics.substr(0, 4000);
  }
  auto node_addresses = world_->NodeNs(0).Sh("ip addr show");
  ASSERT_TRUE(node_addresses.ok());
  EXPECT_EQ(node_addresses->find("203.0.113.21"), std::string::npos) << "the director has no VIP";

  // The annotation goes: no fwmark service, no tunnel in the pods, the external IPs served as
  // ordinary (masquerading) services again.
  for (const Case& c : cases) ASSERT_OK(world_->Apply(ServiceJson(c.name, spec(c))));
  EXPECT_TRUE(world_->WaitIpvs(0, "FWM", false)) << world_->Ipvsadm(0);
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    const auto& pod = world_->net().pod(c.pod);
    EXPECT_TRUE(
        WaitFor([&] { return !pod.ns->Sh("ip link show kube-tunnel-if").ok(); }, kProgrammed))
        << "the tunnel link left the pod";
    EXPECT_TRUE(WaitAnswer(world_->ClientNs(), c.vip, 8080, Proto::kTcp, {Name(c.pod)}));
  }
}

TEST_F(ProxyAgentVmTest, KillAndRestartKeepEstablishedConnectionsAndWriteNothingNew) {
  ASSERT_OK(world_->Apply(SimpleService("durable", "10.96.1.11")));
  ASSERT_OK(world_->Apply(SliceJson("default", "durable-1", "durable", "IPv4", {Ep(kA0), Ep(kB1)},
                                    {{"t", 8080, "TCP"}})));
  const std::string client = world_->PodNs(kClient0);
  ASSERT_TRUE(WaitAnswer(client, "10.96.1.11", 80, Proto::kTcp, {"a0", "b1"}));
  // A foreign IPVS service and a foreign address: never ours.
  ASSERT_TRUE(world_->NodeNs(0)
                  .Sh("ipvsadm -A -t 10.99.0.1:80 -s rr && ipvsadm -a -t 10.99.0.1:80 -r "
                      "10.71.0.77:80 -m && ip addr add 10.99.0.2/32 dev kr-client")
                  .ok());
  TcpHolder held(client, "10.96.1.11", 80, kAskTimeout);
  ASSERT_TRUE(held.greeting().ok());
  const std::string before = world_->Ipvsadm(0, "-Sn");
  world_->StopAgent(0, SIGKILL);
  EXPECT_TRUE(held.Alive(kAskTimeout)) << "the kernel keeps forwarding without the agent";
  const auto restarted_at = std::chrono::system_clock::now();
  world_->StartAgent(0);
  // The restarted agent adopts the kernel's state: once its first sync succeeded, nothing
  // changed and no change was logged.
  ASSERT_TRUE(WaitFirstSync(0, restarted_at)) << world_->AgentLog(0);
  EXPECT_EQ(world_->AgentLog(0).find("IPVS change(s)"), std::string::npos) << world_->AgentLog(0);
  EXPECT_EQ(world_->Ipvsadm(0, "-Sn"), before) << "nothing rewritten or flushed";
  EXPECT_TRUE(held.Alive(kAskTimeout)) << "established connection survived kill -9 and restart";
  // And it follows changes again.
  ASSERT_OK(world_->Put(SliceJson("default", "durable-1", "durable", "IPv4",
                                  {Ep(kA0), Ep(kB1), Ep(kC1)}, {{"t", 8080, "TCP"}})));
  ASSERT_TRUE(world_->WaitIpvs(0, "-> " + world_->PodIp(kC1) + ":8080"));
  EXPECT_TRUE(held.Alive(kAskTimeout)) << "established connection survived kill -9 and restart";
  const std::string after = world_->Ipvsadm(0, "-Sn");
  EXPECT_NE(after.find("-A -t 10.99.0.1:80"), std::string::npos) << "foreign service kept";
  EXPECT_NE(after.find("-a -t 10.99.0.1:80 -r 10.71.0.77:80"), std::string::npos);
  EXPECT_NE(world_->NodeNs(0).Sh("ip addr show dev kr-client")->find("10.99.0.2/32"),
            std::string::npos);
}

TEST_F(ProxyAgentVmTest, CleanupConfigRemovesOursOnlyAndIsIdempotent) {
  ASSERT_OK(world_->Apply(SimpleService("gone", "10.96.1.12")));
  ASSERT_OK(world_->Apply(
      SliceJson("default", "gone-1", "gone", "IPv4", {Ep(kB1)}, {{"t", 8080, "TCP"}})));
  ASSERT_TRUE(world_->WaitIpvs(1, "TCP  10.96.1.12:80"));
  // Foreign state of every kind the proxy writes: an IPVS service, a set, a nat rule.
  ASSERT_TRUE(world_->NodeNs(1)
                  .Sh("ipvsadm -A -u 10.99.1.1:53 -s rr && ipset create kr-test-foreign hash:ip && "
                      "iptables -t nat -A POSTROUTING -s 10.99.9.0/24 -j MASQUERADE")
                  .ok());
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
  auto sets = world_->NodeNs(1).Sh("ipset list -n");
  ASSERT_TRUE(sets.ok()) << sets.error();
  EXPECT_NE(sets->find("kr-test-foreign"), std::string::npos) << "foreign set kept: " << *sets;
  EXPECT_EQ(sets->find("kube-router-svip"), std::string::npos) << "our sets removed: " << *sets;
  auto nat = world_->NodeNs(1).Sh("iptables-save -t nat");
  ASSERT_TRUE(nat.ok()) << nat.error();
  EXPECT_NE(nat->find("-s 10.99.9.0/24 -j MASQUERADE"), std::string::npos) << *nat;
  EXPECT_EQ(nat->find("--vmethod MASQ"), std::string::npos) << "our SNAT removed: " << *nat;
  world_->StartAgent(1);
  EXPECT_TRUE(world_->WaitIpvs(1, "TCP  10.96.1.12:80")) << "back after a restart";
}

}  // namespace
}  // namespace kr::testing
