// The fixture of proxy_agent_vm_test: the service proxy end to end, the REAL kube-router binary
// (proxy only) in two node namespaces inside the guest kernel, Services and EndpointSlices served
// by fake-apiserver and changed with the real kubectl (the main scenarios) or straight over HTTP
// (where kubectl is not the point: a kubectl run costs seconds of emulated CPU), checked with
// real TCP/UDP/SCTP/HTTP traffic from pods, nodes and an external client, and with ipvsadm.
//
// One world for the whole executable (one boot): the agent_*_vm_test.cc files all add tests to
// the ProxyAgentVmTest suite, whose SetUpTestSuite builds the world once. Every test uses its
// own Services, VIPs and NodePorts (10.96.1.N: see each file), and leaves the agents as it found
// them.
//
// The two agents differ on purpose: node0 runs with --ipvs-permit-all=false (the VIP firewall),
// node1 with --ipvs-graceful-termination. A test that needs other flags restarts node0's agent
// with them and back.
#pragma once

#include <gtest/gtest.h>

#include <chrono>
#include <cstdlib>
#include <iostream>
#include <map>
#include <memory>
#include <set>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "lib/answer_server.h"
#include "vm/proxy/proxy_world.h"

// The suite is shared by several files, so its fixture lives in a named namespace (a fixture in
// an anonymous namespace would be another class in each file), one of its own so that its
// helpers never meet soak_vm_test.cc's in one scope.
namespace kr::testing::agent_vm {

using namespace std::chrono_literals;

inline constexpr auto kProgrammed =
    20s;  // API write -> answered, with a wide margin for the TCG guest
inline constexpr auto kAskTimeout = 5000ms;  // one request that must be answered

// Backends: a0 on node0, b1, c1 and g1 on node1; clients: client0 on node0, client1 on node1.
// g1 has a short termination grace period (the graceful-termination deadline).
inline const char* const kA0 = "default/a0";
inline const char* const kB1 = "default/b1";
inline const char* const kC1 = "default/c1";
inline const char* const kG1 = "default/g1";
inline const char* const kClient0 = "default/client0";
inline const char* const kClient1 = "default/client1";
inline constexpr int kG1GraceSeconds = 8;
// A port nothing but the nodes' own listeners serves (the VIP firewall's probe).
inline constexpr int kHostPort = 9999;
inline constexpr int kMetricsPort = 9100;

inline std::string Q(const std::string& s) { return "\"" + s + "\""; }

// Put() prints why it failed; the assertion only stops the test.
inline bool OkOf(bool ok) { return ok; }
inline bool OkOf(const Status& status) { return status.ok(); }
#define ASSERT_OK(expr) ASSERT_TRUE(OkOf(expr))

// A Service's JSON; `ports` and `extra_spec` are JSON fragments.
inline std::string ServiceJson(const std::string& name, const std::string& spec,
                               const std::string& annotations = "{}",
                               const std::string& status = "{}") {
  return R"({"apiVersion":"v1","kind":"Service","metadata":{"namespace":"default","name":)" +
         Q(name) + R"(,"annotations":)" + annotations + R"(},"spec":)" + spec + R"(,"status":)" +
         status + "}";
}

// A ClusterIP Service with one TCP port 80 -> 8080 named "t".
inline std::string SimpleService(const std::string& name, const std::string& vip,
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
  // Waits until a connection from `from` is refused (not answered, not timed out).
  static bool WaitRefused(const std::string& from, const std::string& ip, int port, Proto proto,
                          Answer* last = nullptr) {
    Answer a;
    bool ok = WaitFor(
        [&] {
          a = Ask(from, ip, port, proto, 1000ms);
          return a.outcome == Answer::Outcome::kRefused;
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

  static inline ProxyWorld* world_ = nullptr;
  // Never destroyed: TearDownTestSuite empties it; the servers go before the world.
  static inline std::vector<std::unique_ptr<AnswerServer>>* servers_ =
      new std::vector<std::unique_ptr<AnswerServer>>();
};

}  // namespace kr::testing::agent_vm
