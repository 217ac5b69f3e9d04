// The sandbox's Service traffic, in the guest kernel (ip_vs, ipip; the host has neither):
// `scripts/sandbox.sh up` with all three controllers on three nodes over two underlay subnets,
// the shipped examples applied with kubectl, then real traffic: a pod reaches the ClusterIP and
// is answered by every backend, the one on the other subnet through the IPIP overlay; the
// NodePort answers from the router namespace (outside the cluster); a default-deny policy
// blocks the ClusterIP and the allow rule lets only role=client pods through it, the backends
// seeing the client pod's own address. The host tier's SandboxE2eTest covers the rest of the
// sandbox. Every process start costs 0.1-0.5 s in the emulated guest, so this test runs kubectl
// only where kubectl is the point (the three applies) and reads the API and makes traffic from
// its own process (docs/sandbox.md).
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <ifaddrs.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <iostream>
#include <map>
#include <nlohmann/json.hpp>
#include <set>
#include <string>

#include "kube_router/base/exec.h"
#include "lib/answer_server.h"
#include "lib/free_port.h"
#include "lib/netns.h"
#include "lib/podnet.h"

namespace kr {
namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;
using nlohmann::json;
using testing::Answer;
using testing::HttpGet;
using testing::WaitFor;

// Generous: TCG on a shared, loaded machine (a pass takes about 3 minutes with the boot).
constexpr auto kDeadline = 240s;
constexpr int kApiPort = 6443;  // fake-apiserver inside the router namespace (sandbox.sh)

class SandboxServicesVmTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(testing::IsRoot());
    prefix_ = "krv" + std::to_string(getpid() % 100000);
    state_ = dir_.path() + "/state";
    env_ = {{"KRSB_PREFIX", prefix_},
            {"KRSB_DIR", state_},
            {"KR_BUILD_DIR", KR_BINARY_DIR},
            {"KUBECONFIG", state_ + "/kubeconfig"}};
    start_ = Clock::now();
  }
  void TearDown() override {
    auto down = Sh("scripts/sandbox.sh down --reap", 120s);
    EXPECT_EQ(down.exit_code, 0) << down.out << down.err;
    Mark("down");
  }

  // Where the time goes (printed, for docs/sandbox.md).
  void Mark(const std::string& what) {
    auto s = std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - start_);
    std::cout << "[ TIME ] " << what << " at " << s.count() / 1000.0 << " s" << std::endl;
  }

  ExecResult Sh(const std::string& command, std::chrono::milliseconds timeout = 300s) {
    ExecOptions options;
    options.env = env_;
    options.timeout = timeout;
    auto r = Exec({"bash", "-c", "cd " KR_SOURCE_DIR " && " + command}, "", options);
    if (!r.ok()) return ExecResult{-1, "", r.error()};
    return *r;
  }
  void Kubectl(const std::string& args) {
    auto r = Sh("kubectl " + args, 180s);
    ASSERT_EQ(r.exit_code, 0) << "kubectl " << args << ": " << r.out << r.err;
  }

  // GET from fake-apiserver over a socket made in the router namespace: no process start.
  json ApiGet(const std::string& path) {
    int fd;
    {
      testing::ScopedNetns inside(prefix_ + "-router");
      fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    }
    if (fd < 0) return json();
    timeval tv{10, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(kApiPort);
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    std::string response;
    if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0) {
      // HTTP/1.0: the whole body, then the server closes (no chunked encoding).
      std::string request = "GET " + path + " HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n";
      if (send(fd, request.data(), request.size(), MSG_NOSIGNAL) ==
          static_cast<ssize_t>(request.size())) {
        char buf[65536];
        ssize_t n;
        while (response.size() < (16u << 20) && (n = recv(fd, buf, sizeof buf, 0)) > 0)
          response.append(buf, static_cast<size_t>(n));
      }
    }
    close(fd);
    auto body = response.find("\r\n\r\n");
    if (response.rfind("HTTP/1.1 200", 0) != 0 && response.rfind("HTTP/1.0 200", 0) != 0)
      return json();
    if (body == std::string::npos) return json();
    return json::parse(response.substr(body + 4), nullptr, false);
  }

  struct Pod {
    std::string ip, node, netns;
  };
  // Every pod of `names` Running with an address, and the namespace that holds it.
  bool PodsRunning(const std::set<std::string>& names) {
    json pods = ApiGet("/api/v1/namespaces/default/pods");
    if (!pods.is_object()) return false;
    pods_.clear();
    for (const auto& p : pods.value("items", json::array())) {
      json status = p.value("status", json::object());
      std::string name = p["metadata"].value("name", "");
      if (!names.count(name) || status.value("phase", "") != "Running") continue;
      Pod pod{status.value("podIP", ""), p.value("spec", json::object()).value("nodeName", ""), ""};
      if (!pod.ip.empty()) pods_[name] = pod;
    }
    if (pods_.size() != names.size()) return false;
    for (auto& [name, pod] : pods_) {
      pod.netns = NetnsHolding(pod.ip);
      if (pod.netns.empty()) return false;
    }
    return true;
  }
  // The pod namespace whose eth0 has `ip` (read in-process, as `sandbox.sh exec` does with ip).
  std::string NetnsHolding(const std::string& ip) {
    for (const auto& e : std::filesystem::directory_iterator("/run/netns")) {
      std::string ns = e.path().filename();
      if (ns.rfind(prefix_ + "-p-", 0) != 0) continue;
      testing::ScopedNetns inside(ns);
      ifaddrs* list = nullptr;
      if (getifaddrs(&list) != 0) continue;
      bool found = false;
      for (ifaddrs* a = list; a && !found; a = a->ifa_next) {
        if (!a->ifa_addr || a->ifa_addr->sa_family != AF_INET) continue;
        char text[INET_ADDRSTRLEN];
        inet_ntop(AF_INET, &reinterpret_cast<sockaddr_in*>(a->ifa_addr)->sin_addr, text,
                  sizeof text);
        found = ip == text;
      }
      freeifaddrs(list);
      if (found) return ns;
    }
    return "";
  }

  // Which backends answer `from`'s requests to the ClusterIP (one new connection each; the
  // scheduler is round robin). Only answers that saw `from`'s own address count.
  std::set<std::string> Backends(const Pod& from, const std::string& vip, int tries = 9) {
    std::set<std::string> seen;
    for (int i = 0; i < tries && seen.size() < 3; ++i) {
      Answer a = HttpGet(from.netns, vip, 80, 2000ms);
      if (a.ok() && a.client_ip == from.ip) seen.insert(a.name);
    }
    return seen;
  }
  // No connection to the ClusterIP gets an answer (three tries: one per backend).
  bool VipBlocked(const Pod& from, const std::string& vip) {
    for (int i = 0; i < 3; ++i) {
      if (HttpGet(from.netns, vip, 80, 1500ms).outcome == Answer::Outcome::kAnswered) return false;
    }
    return true;
  }

  testing::TempDir dir_;
  std::string prefix_, state_;
  std::vector<std::pair<std::string, std::string>> env_;
  std::map<std::string, Pod> pods_;
  Clock::time_point start_;
};

TEST_F(SandboxServicesVmTest, ClusterIpAcrossTheOverlayNodePortAndPolicyOnServiceTraffic) {
  auto up = Sh(
      "scripts/sandbox.sh up --nodes 3 --api-port " + std::to_string(testing::FreeLoopbackPort()),
      420s);
  Mark("up");
  std::cout << up.out << std::endl;
  ASSERT_EQ(up.exit_code, 0) << up.out << up.err;
  ASSERT_NE(up.out.find("router=true firewall=true service-proxy=true overlay=true"),
            std::string::npos)
      << up.out;

  Kubectl("apply --validate=false -f examples/");
  Mark("kubectl apply examples");
  const std::set<std::string> names = {"web-0", "web-1", "web-2", "client", "stranger"};
  ASSERT_TRUE(WaitFor([&] { return PodsRunning(names); }, kDeadline))
      << ApiGet("/api/v1/namespaces/default/pods").dump()
      << Sh("tail -20 " + state_ + "/logs/sandbox-node.log").out;
  Mark("pods running");
  const Pod client = pods_["client"], stranger = pods_["stranger"];
  ASSERT_EQ(client.node, "n1");
  ASSERT_EQ(pods_["web-2"].node, "n3");
  std::string vip = ApiGet("/api/v1/namespaces/default/services/web")
                        .value("spec", json::object())
                        .value("clusterIP", "");
  ASSERT_EQ(vip.rfind("10.96.", 0), 0u) << vip;
  json np = ApiGet("/api/v1/namespaces/default/services/web-nodeport");
  json np_ports = np.value("spec", json::object()).value("ports", json::array());
  ASSERT_FALSE(np_ports.empty()) << np.dump();
  const int node_port = np_ports[0].value("nodePort", 0);
  ASSERT_GE(node_port, 30000);

  // n1 reaches n3's pods (the other subnet) through an IPIP tunnel, not via the router.
  std::string n3_cidr =
      ApiGet("/api/v1/nodes/n3").value("spec", json::object()).value("podCIDR", "");
  ASSERT_FALSE(n3_cidr.empty());
  EXPECT_TRUE(WaitFor(
      [&] {
        auto r = Exec({"ip", "-n", prefix_ + "-n1", "route", "show", n3_cidr});
        return r.ok() && r->out.find(" dev tun-") != std::string::npos;
      },
      kDeadline))
      << Exec({"ip", "-n", prefix_ + "-n1", "route"})->out;

  // Pod -> ClusterIP: every backend answers, web-2 across the subnets through the overlay, and
  // each saw the client pod's own address.
  const std::set<std::string> all = {"web-0", "web-1", "web-2"};
  EXPECT_TRUE(WaitFor([&] { return Backends(client, vip) == all; }, kDeadline))
      << HttpGet(client.netns, vip, 80).ToString();
  Mark("clusterip");

  // NodePort from outside the cluster (the router namespace) on a node of each subnet.
  for (const char* node_ip : {"10.250.1.11", "10.250.2.13"}) {
    EXPECT_TRUE(WaitFor(
        [&] { return HttpGet(prefix_ + "-router", node_ip, node_port, 2000ms).ok(); }, kDeadline))
        << node_ip << ":" << node_port;
  }
  Mark("nodeport");

  // NetworkPolicy on Service traffic: default deny blocks the ClusterIP for every pod; the allow
  // rule (from role=client pods) lets the client in through the ClusterIP, so the firewall saw
  // its pod address after IPVS, and keeps the stranger out.
  Kubectl("apply --validate=false -f examples/policy/default-deny.yaml");
  EXPECT_TRUE(WaitFor([&] { return VipBlocked(client, vip); }, kDeadline));
  EXPECT_TRUE(WaitFor([&] { return VipBlocked(stranger, vip); }, kDeadline));
  Mark("default deny");
  Kubectl("apply --validate=false -f examples/policy/allow-client.yaml");
  EXPECT_TRUE(WaitFor([&] { return Backends(client, vip) == all; }, kDeadline))
      << HttpGet(client.netns, vip, 80).ToString();
  EXPECT_TRUE(VipBlocked(stranger, vip));
  Mark("allow client");

  // Terminating endpoints (fake-apiserver deletes Pods gracefully; sandbox-node reports a
  // terminating pod's endpoint as not ready, serving, terminating): web-2 terminating for a
  // long grace period still runs, but the proxy sends nothing to it while ready backends
  // exist; once web-0 and web-1 are gone (force-deleted), it is the only, serving-terminating
  // endpoint and answers.
  Kubectl("delete pod web-2 --grace-period=600 --wait=false");
  const std::set<std::string> ready = {"web-0", "web-1"};
  EXPECT_TRUE(WaitFor([&] { return Backends(client, vip) == ready; }, kDeadline))
      << HttpGet(client.netns, vip, 80).ToString();
  Kubectl("delete pod web-0 web-1 --grace-period=0 --force");
  const std::set<std::string> terminating = {"web-2"};
  EXPECT_TRUE(WaitFor([&] { return Backends(client, vip) == terminating; }, kDeadline))
      << HttpGet(client.netns, vip, 80).ToString();
  Mark("terminating endpoint");
}

}  // namespace
}  // namespace kr
