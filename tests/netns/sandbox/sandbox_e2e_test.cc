// End to end through the local sandbox (scripts/sandbox.sh, docs/sandbox.md): the real
// kube-router with every controller the kernel allows on three node namespaces over two
// underlay subnets, BIRD on the router namespace, fake-apiserver, pods made by sandbox-node with
// the real CNI plugins. Driven the way a user drives it: `sandbox.sh up`, `kubectl apply` of the
// shipped examples, real traffic between pods, `sandbox.sh agent`, `kubectl delete`, and
// `kube-router --cleanup-config` on every node. Its own namespace prefix and state directory
// keep it apart from a user's sandbox.
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <string>

#include "kube_router/base/exec.h"
#include "lib/answer_server.h"
#include "lib/binaries.h"
#include "lib/files.h"
#include "lib/free_port.h"
#include "lib/netns.h"

namespace kr {
namespace {

using namespace std::chrono_literals;
using nlohmann::json;
using testing::Answer;
using testing::HttpGet;
using testing::TempDir;
using testing::WaitFor;

// Generous: CI runs this beside other tests (and under ASan); a pass takes ~20 s.
// KR_SANDBOX_E2E_SLOW=N multiplies every deadline by N, for a run inside the emulated qemu
// guest (ip_vs, ipip), where processes start 10x slower (docs/sandbox.md).
int Slow() {
  const char* v = std::getenv("KR_SANDBOX_E2E_SLOW");
  int n = v ? std::atoi(v) : 1;
  return n > 0 ? n : 1;
}
const auto kDeadline = std::chrono::milliseconds(60s) * Slow();

class SandboxE2eTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(testing::IsRoot()) << "the netns tier runs as root";
    prefix_ = "kre" + std::to_string(getpid() % 100000);
    state_ = dir_.path() + "/state";
    env_ = {{"KRSB_PREFIX", prefix_},
            {"KRSB_DIR", state_},
            {"KR_BUILD_DIR", KR_BINARY_DIR},
            {"KR_FAKE_APISERVER", testing::kFakeApiServerBinary},
            {"KUBECONFIG", state_ + "/kubeconfig"}};
  }
  void TearDown() override {
    auto down = Sh("scripts/sandbox.sh down --reap", 60s);
    EXPECT_EQ(down.exit_code, 0) << down.out << down.err;
    EXPECT_EQ(OurNetns(""), std::vector<std::string>{}) << "down left namespaces behind";
    EXPECT_FALSE(std::filesystem::exists(state_));
  }

  ExecResult Sh(const std::string& command, std::chrono::milliseconds timeout = 60s) {
    ExecOptions options;
    options.env = env_;
    options.timeout = timeout * Slow();
    auto r = Exec({"bash", "-c", "cd " KR_SOURCE_DIR " && " + command}, "", options);
    if (!r.ok()) return ExecResult{-1, "", r.error()};
    return *r;
  }
  std::string Kubectl(const std::string& args) {
    auto r = Sh("kubectl " + args);
    EXPECT_EQ(r.exit_code, 0) << "kubectl " << args << ": " << r.err;
    return r.out;
  }
  json Get(const std::string& what) {
    return json::parse(Kubectl("get " + what + " -o json"), nullptr, false);
  }
  std::vector<std::string> OurNetns(const std::string& kind) {
    std::vector<std::string> out;
    for (const auto& e : std::filesystem::directory_iterator("/run/netns")) {
      std::string name = e.path().filename();
      if (name.rfind(prefix_ + "-" + kind, 0) == 0) out.push_back(name);
    }
    return out;
  }
  // The namespace of the pod holding `ip` (how `sandbox.sh exec` finds it, too).
  std::string PodNetns(const std::string& ip) {
    for (const auto& ns : OurNetns("p-")) {
      auto r = Exec({"ip", "-n", ns, "-o", "addr", "show", "dev", "eth0"});
      if (r.ok() && r->out.find(" " + ip + "/") != std::string::npos) return ns;
    }
    ADD_FAILURE() << "no pod namespace holds " << ip;
    return "";
  }
  struct PodInfo {
    std::string ip, node, netns;
  };
  PodInfo Pod(const std::string& name) {
    json pod = Get("pod " + name);
    PodInfo info{pod.value("status", json::object()).value("podIP", ""),
                 pod.value("spec", json::object()).value("nodeName", ""), ""};
    info.netns = PodNetns(info.ip);
    return info;
  }
  bool Reaches(const PodInfo& from, const PodInfo& to, const std::string& name) {
    Answer a = HttpGet(from.netns, to.ip, 8080, 1500ms);
    // The server saw the client pod's own address: no SNAT between pods.
    return a.ok() && a.name == name && a.client_ip == from.ip;
  }
  bool Blocked(const PodInfo& from, const PodInfo& to) {
    // The firewall rejects (ICMP port unreachable); a drop would time out.
    auto outcome = HttpGet(from.netns, to.ip, 8080, 1000ms).outcome;
    return outcome == Answer::Outcome::kRefused || outcome == Answer::Outcome::kTimeout;
  }
  // The file the sandbox's process `name` (its pid file under $KRSB_DIR/pids) runs.
  std::string Executable(const std::string& name) {
    std::string pid = testing::ReadFile(state_ + "/pids/" + name);
    std::error_code error;
    auto exe =
        std::filesystem::read_symlink("/proc/" + pid.substr(0, pid.find('\n')) + "/exe", error);
    return error ? "(" + name + ": " + error.message() + ")" : exe.string();
  }
  // This build's agent and sandbox-node run, and the fake-apiserver it names: sandbox.sh never
  // takes them from another build (an ASan run must not test the release agent).
  void ExpectThisBuildsPrograms(const std::vector<std::string>& agents) {
    auto canonical = [](const std::string& path) {
      return std::filesystem::weakly_canonical(path).string();
    };
    for (const auto& agent : agents)
      EXPECT_EQ(Executable(agent), canonical(testing::kAgentBinary)) << agent;
    EXPECT_EQ(Executable("sandbox-node"), canonical(KR_BINARY_DIR "/sandbox-node"));
    EXPECT_EQ(Executable("apiserver"), canonical(testing::kFakeApiServerBinary));
  }
  std::string Routes(const std::string& node) {
    auto r = Exec({"ip", "-n", prefix_ + "-" + node, "route", "show", "proto", "17"});
    return r.ok() ? r->out : "";
  }

  TempDir dir_;
  std::string prefix_, state_;
  std::vector<std::pair<std::string, std::string>> env_;
};

TEST_F(SandboxE2eTest, ExamplesPolicyAgentRestartNodeDeletionAndCleanup) {
  auto up =
      Sh("scripts/sandbox.sh up --api-port " + std::to_string(testing::FreeLoopbackPort()), 180s);
  ASSERT_EQ(up.exit_code, 0) << up.out << up.err;
  EXPECT_NE(up.out.find("export KUBECONFIG=" + state_ + "/kubeconfig"), std::string::npos)
      << up.out;
  ExpectThisBuildsPrograms({"kube-router-n1", "kube-router-n2", "kube-router-n3"});
  const bool proxy = up.out.find("service-proxy=true") != std::string::npos;
  if (!proxy) {
    EXPECT_NE(up.out.find("WITHOUT the service proxy: this kernel has no ip_vs"), std::string::npos)
        << up.out;
  }
  // A second `up` refuses to stack on the first.
  auto again =
      Sh("scripts/sandbox.sh up --api-port " + std::to_string(testing::FreeLoopbackPort()));
  EXPECT_NE(again.exit_code, 0);
  EXPECT_NE(again.err.find("down --reap"), std::string::npos) << again.err;

  // Every node peers with the router (eBGP) and the other nodes (iBGP).
  auto bird = Sh("birdc -s " + state_ + "/bird.ctl show protocols");
  for (const char* node : {"n1 ", "n2 ", "n3 "}) {
    EXPECT_TRUE(WaitFor(
        [&] {
          auto r = Sh("birdc -s " + state_ + "/bird.ctl show protocols | grep '^" +
                      std::string(node) + "'");
          return r.out.find("Established") != std::string::npos;
        },
        kDeadline))
        << bird.out;
  }

  Kubectl("apply --validate=false -f examples/");
  const std::vector<std::string> names = {"web-0", "web-1", "web-2", "client", "stranger"};
  ASSERT_TRUE(WaitFor(
      [&] {
        json pods = Get("pods");
        size_t running = 0;
        // A pod just created has no status yet.
        for (const auto& p : pods.value("items", json::array())) {
          json status = p.value("status", json::object());
          if (status.value("phase", "") == "Running" && !status.value("podIP", "").empty())
            ++running;
        }
        return running == names.size();
      },
      kDeadline))
      << Kubectl("get pods -o yaml") << Sh("cat " + state_ + "/logs/sandbox-node.log").out;

  // The API server allocated the Services' addresses and port; the slices follow the pods with
  // the named target port resolved.
  json web = Get("service web");
  std::string vip = web.value("spec", json::object()).value("clusterIP", "");
  EXPECT_EQ(vip.rfind("10.96.", 0), 0u) << web.dump();
  json np_ports = Get("service web-nodeport").value("spec", json::object()).value("ports", json());
  int node_port = np_ports.is_array() && !np_ports.empty() ? np_ports[0].value("nodePort", 0) : 0;
  EXPECT_GE(node_port, 30000);
  auto slice_endpoints = [&] {
    json slices = Get("endpointslices -l kubernetes.io/service-name=web");
    std::set<std::string> ips;
    for (const auto& s : slices.value("items", json::array())) {
      EXPECT_EQ(s.value("ports", json::array()).dump(),
                R"([{"name":"http","port":8080,"protocol":"TCP"}])");
      for (const auto& e : s.value("endpoints", json::array()))
        ips.insert(e.value("addresses", json::array()).dump());
    }
    return ips;
  };
  EXPECT_TRUE(WaitFor([&] { return slice_endpoints().size() == 3; }, kDeadline));

  PodInfo client = Pod("client"), stranger = Pod("stranger");
  PodInfo web0 = Pod("web-0"), web2 = Pod("web-2");
  ASSERT_EQ(client.node, "n1");
  ASSERT_EQ(web2.node, "n3");
  // Across the underlay subnets: n1 (10.250.1.0/24) to n3 (10.250.2.0/24) through the router,
  // which learned the pod CIDRs from the nodes by BGP.
  EXPECT_TRUE(WaitFor([&] { return Reaches(client, web2, "web-2"); }, kDeadline));
  EXPECT_TRUE(WaitFor([&] { return Reaches(stranger, web0, "web-0"); }, kDeadline));
  std::string n3_cidr = Get("node n3").value("spec", json::object()).value("podCIDR", "");
  ASSERT_FALSE(n3_cidr.empty());
  EXPECT_NE(Sh("birdc -s " + state_ + "/bird.ctl show route").out.find(n3_cidr), std::string::npos);

  if (proxy) {
    // Service traffic (only where the kernel has ip_vs): ClusterIP from a pod, NodePort from
    // the router namespace (outside the cluster).
    EXPECT_TRUE(WaitFor([&] { return HttpGet(client.netns, vip, 80, 1500ms).ok(); }, kDeadline));
    EXPECT_TRUE(
        WaitFor([&] { return HttpGet(prefix_ + "-router", "10.250.1.11", node_port, 1500ms).ok(); },
                kDeadline));
  } else {
    std::cout << "[ SKIPPED  ] service traffic: this kernel has no ip_vs, the sandbox runs "
                 "without the service proxy (docs/sandbox.md)"
              << std::endl;
  }

  // A connection held across the policy changes and the agent's crash.
  testing::TcpHolder held(client.netns, web0.ip, 8080);
  ASSERT_TRUE(held.greeting().ok()) << held.greeting().ToString();
  EXPECT_EQ(held.greeting().name, "web-0");

  // NetworkPolicy: default deny blocks, the allow rule lets only role=client in.
  Kubectl("apply --validate=false -f examples/policy/default-deny.yaml");
  EXPECT_TRUE(WaitFor([&] { return Blocked(client, web2); }, kDeadline));
  EXPECT_TRUE(WaitFor([&] { return Blocked(stranger, web0); }, kDeadline));
  Kubectl("apply --validate=false -f examples/policy/allow-client.yaml");
  EXPECT_TRUE(WaitFor([&] { return Reaches(client, web2, "web-2"); }, kDeadline));
  EXPECT_TRUE(Blocked(stranger, web0));
  EXPECT_TRUE(held.Alive());

  // web-0's node loses its agent (SIGKILL) and gets it back: the held connection survives
  // (BGP graceful restart keeps the node's routes at its peers meanwhile), routes and policy are
  // still in force.
  auto killed = Sh("scripts/sandbox.sh agent " + web0.node + " kill");
  ASSERT_EQ(killed.exit_code, 0) << killed.err;
  EXPECT_TRUE(held.Alive());
  auto started = Sh("scripts/sandbox.sh agent " + web0.node + " start", 90s);
  ASSERT_EQ(started.exit_code, 0) << started.out << started.err;
  EXPECT_TRUE(held.Alive());
  EXPECT_TRUE(WaitFor([&] { return Reaches(client, web0, "web-0"); }, kDeadline));
  EXPECT_TRUE(Blocked(stranger, web0));

  // sandbox-node (the kubelet stand-in) crashes and comes back: it adopts the pods' namespaces
  // (same namespace, same address: no second CNI ADD) and serves their ports again.
  auto node_agent_killed = Sh("scripts/sandbox.sh agent sandbox-node kill");
  ASSERT_EQ(node_agent_killed.exit_code, 0) << node_agent_killed.err;
  EXPECT_FALSE(HttpGet(client.netns, web0.ip, 8080, 1000ms).ok()) << "its servers went with it";
  auto node_agent_started = Sh("scripts/sandbox.sh agent sandbox-node start");
  ASSERT_EQ(node_agent_started.exit_code, 0) << node_agent_started.err;
  EXPECT_TRUE(WaitFor([&] { return Reaches(client, web0, "web-0"); }, kDeadline));
  ExpectThisBuildsPrograms({"kube-router-" + web0.node});  // `agent ... start` resolves them again
  PodInfo web0_again = Pod("web-0");
  EXPECT_EQ(web0_again.ip, web0.ip);
  EXPECT_EQ(web0_again.netns, web0.netns);

  // Node n3 deleted: its pod CIDR is withdrawn from the other nodes, its pods are collected
  // and leave the Service's slices.
  ASSERT_NE(Routes("n1").find(n3_cidr), std::string::npos) << Routes("n1");
  Kubectl("delete node n3");
  EXPECT_TRUE(WaitFor([&] { return Routes("n1").find(n3_cidr) == std::string::npos; }, kDeadline))
      << Routes("n1");
  EXPECT_TRUE(WaitFor([&] { return slice_endpoints().size() == 2; }, kDeadline));

  // --cleanup-config on every node, after the pods are gone, returns each node namespace to
  // what it was before its agent started. kube-bridge stays: the CNI bridge plugin (the
  // kubelet's side) made it as much as the agent did.
  // Graceful deletion: a terminating pod keeps running, and its endpoint stays in the slice
  // as not ready, serving, terminating until the grace period ends (or a forced delete).
  PodInfo web1 = Pod("web-1");
  Kubectl("delete pod web-1 --grace-period=300 --wait=false");
  auto conditions_of = [&](const std::string& ip) {
    json slices = Get("endpointslices -l kubernetes.io/service-name=web");
    for (const auto& s : slices.value("items", json::array()))
      for (const auto& e : s.value("endpoints", json::array()))
        if (e.value("addresses", json::array()) == json::array({ip}))
          return e.value("conditions", json()).dump();
    return std::string();
  };
  EXPECT_TRUE(WaitFor(
      [&] {
        return conditions_of(web1.ip) == R"({"ready":false,"serving":true,"terminating":true})";
      },
      kDeadline))
      << conditions_of(web1.ip);
  EXPECT_TRUE(Reaches(client, web1, "web-1"));
  EXPECT_FALSE(
      Get("pod web-1").value("metadata", json::object()).value("deletionTimestamp", "").empty());

  Kubectl("delete pods --all --grace-period=0 --force");
  EXPECT_TRUE(WaitFor([&] { return OurNetns("p-").empty(); }, kDeadline));
  for (const char* node : {"n1", "n2", "n3"}) {
    auto stop = Sh(std::string("scripts/sandbox.sh agent ") + node + " stop");
    ASSERT_EQ(stop.exit_code, 0) << stop.err;
    auto cleanup = Exec({"ip", "netns", "exec", prefix_ + "-" + node, KR_BINARY_DIR "/kube-router",
                         "--cleanup-config"});
    ASSERT_TRUE(cleanup.ok());
    EXPECT_EQ(cleanup->exit_code, 0) << cleanup->err;
    auto now = Sh(std::string("scripts/sandbox.sh snapshot ") + node + " | grep -v -e kube-bridge");
    EXPECT_EQ(now.out, testing::ReadFile(state_ + "/before/" + node)) << node;
  }
}

}  // namespace
}  // namespace kr
