// NetworkPolicy enforcement for SCTP, proven with real SCTP associations between pod
// namespaces. The host kernel cannot open SCTP sockets (the netns tier only checks the rendered
// `-m sctp` rule), so this runs in the Debian guest kernel of the vm tier.
//
// The world is the netns tier's (namespaces x/y/z, pods a/b/c; x and y on node 0, z on node 1),
// every pod serving TCP and SCTP on ports 80 and 81 over IPv4 and IPv6 (dual-stack, both
// families enabled), with one controller per node running
// in-process inside that node's namespace. Every process start in the emulated guest is slow, so
// the namespaces are built once for the whole binary: each test starts fresh controllers and
// ends with their Cleanup(), checked to have left no chain and no set for the next test.
// Probes are in-process sockets (no process start); a rejected SCTP probe fails within ~0.1 s
// (the REJECT's ICMP error reaches the socket, see podnet.cc), so the matrices stay cheap.
#include <gtest/gtest.h>

#include <iterator>
#include <memory>
#include <string>
#include <vector>

#include "kube_router/netpol/network_policy_controller.h"
#include "lib/files.h"
#include "lib/netns.h"
#include "lib/podnet.h"
#include "netns/netpol/node_firewalls.h"

namespace kr::netpol {
namespace {

using kr::testing::PodNetwork;
using kr::testing::Proto;
using kr::testing::ProtoName;
using kr::testing::ReadFile;
using kr::testing::ScopedNetns;
using namespace kr::netpol::testing;  // NOLINT: builders and the xyz world

k8s::NetworkPolicyRule Rule(std::vector<k8s::NetworkPolicyPeer> peers,
                            std::vector<k8s::NetworkPolicyPort> ports = {}) {
  return {std::move(peers), std::move(ports)};
}

// Container ports of every pod. The SCTP names map to different numbers on node 1's pods (z), so
// a named port resolved per pod is told apart from one resolved once.
std::vector<k8s::ContainerPort> PodPorts(const std::string& key) {
  bool z = NsOf(key) == "z";
  return {{"serve-80-tcp", 80, "TCP"},
          {"serve-81-tcp", 81, "TCP"},
          {"sctp-main", z ? 81 : 80, "SCTP"},
          {"sctp-alt", z ? 80 : 81, "SCTP"}};
}

class SctpNetpolVm : public XyzFirewallTest<const char*> {
 protected:
  static void SetUpTestSuite() {
    // Dual-stack, so that SCTP over IPv6 (ip6tables, inet6 sets) is proven too.
    auto net = std::make_unique<PodNetwork>("sc", /*dual_stack=*/true);
    BuildXyz(*net, {Proto::kTcp, Proto::kSctp});
    suite_net_ = std::move(net);
  }
  static void TearDownTestSuite() { suite_net_.reset(); }

  void SetUp() override {
    ASSERT_TRUE(kr::testing::IsRoot()) << "vm tests run as root inside the guest";
    ASSERT_TRUE(suite_net_) << "the pod network could not be built (see the suite's error)";
    StartFirewalls(*suite_net_, PodPorts, [this](NetpolConfig& config) {
      config.iptables_mode = GetParam();
      config.enable_ipv6 = true;
    });
    // br_netfilter is preloaded (MODULES in CMakeLists.txt): without it same-node traffic
    // would bypass iptables and every verdict below would be "allowed".
    for (auto& node : suite_net_->nodes()) {
      ScopedNetns inside(node.ns->name());
      ASSERT_EQ(ReadFile("/proc/sys/net/bridge/bridge-nf-call-iptables"), "1\n") << node.name;
    }
  }

  void TearDown() override {
    if (!suite_net_) return;
    EXPECT_EQ(firewalls_.Cleanup(), "");
    XyzFirewallTest::TearDown();
    // The next test (maybe the other backend) starts from an empty ruleset in every node.
    std::string save = std::string("iptables-") + GetParam() + "-save -t filter; ip6tables-" +
                       GetParam() + "-save -t filter";
    for (auto& node : suite_net_->nodes()) {
      auto left =
          node.ns->Sh("(" + save + ") | grep -E 'KUBE-(ROUTER|POD-FW|NWPLCY)' ; ipset list -n");
      ASSERT_TRUE(left.ok()) << left.error();
      EXPECT_EQ(*left, "") << node.name << " kept rules or sets after Cleanup";
    }
  }

  static std::unique_ptr<PodNetwork> suite_net_;
};

std::unique_ptr<PodNetwork> SctpNetpolVm::suite_net_;

const auto kAll = [](const std::string&, const std::string&) { return true; };

TEST_P(SctpNetpolVm, NoPolicySctpReachesEveryPod) {
  ExpectMatrix(80, Proto::kSctp, kAll);
  // A port nobody serves is refused: a probe is only "allowed" when the server answers.
  ExpectProbe("x/a", "z/a", 82, Proto::kSctp, false);
}

TEST_P(SctpNetpolVm, DefaultDenyIngressInXDeniesSctpToX) {
  Apply(Policy("x", "deny-ingress", {}, true, false));
  ExpectMatrix(80, Proto::kSctp, [](auto&, auto& to) { return NsOf(to) != "x"; });
  Remove("x/deny-ingress");
  ExpectProbe("z/b", "x/a", 80, Proto::kSctp, true);
  ExpectProbe("x/b", "x/a", 80, Proto::kSctp, true);
}

TEST_P(SctpNetpolVm, SctpOverIpv6FollowsTheSamePolicies) {
  auto probe6 = [&](const std::string& from, const std::string& to, int port) {
    return net_->Probe(from, net_->pod(to).ip6, port, Proto::kSctp);
  };
  EXPECT_TRUE(probe6("x/b", "x/a", 80));
  EXPECT_TRUE(probe6("z/c", "x/a", 80));
  // x/a accepts SCTP 80 only from pods b (any namespace), over both families.
  k8s::NetworkPolicyPeer pods_b = NamespacePeer(k8s::LabelSelector{});
  pods_b.pod_selector = Labels({{"pod", "b"}});
  Apply(Policy("x", "sctp6", Labels({{"pod", "a"}}), true, false,
               {Rule({pods_b}, {Port(80, "SCTP")})}));
  for (const auto& from : XyzPodKeys()) {
    if (from == "x/a") continue;
    EXPECT_EQ(probe6(from, "x/a", 80), NameOf(from) == "b") << from << " -> x/a over IPv6";
  }
  EXPECT_FALSE(probe6("z/b", "x/a", 81));
  EXPECT_TRUE(probe6("x/a", "z/c", 80));  // x/a's egress is not isolated
}

TEST_P(SctpNetpolVm, IngressSctpPort80FromSelectedPodsOnly) {
  // x/a accepts SCTP on port 80 from pods b of every namespace (z/b is on the other node).
  k8s::NetworkPolicyPeer pods_b = NamespacePeer(k8s::LabelSelector{});
  pods_b.pod_selector = Labels({{"pod", "b"}});
  Apply(Policy("x", "sctp-80-from-b", Labels({{"pod", "a"}}), true, false,
               {Rule({pods_b}, {Port(80, "SCTP")})}));
  // The iptables sctp match was loaded on demand by the kernel (vm.sh does not preload it).
  EXPECT_NE(ReadFile("/proc/modules").find("xt_sctp "), std::string::npos);
  ExpectMatrix(80, Proto::kSctp,
               [](auto& from, auto& to) { return to != "x/a" || NameOf(from) == "b"; });
  // Another port and another protocol on the same port are not allowed by it.
  ExpectMatrix(81, Proto::kSctp, [](auto&, auto& to) { return to != "x/a"; });
  ExpectMatrix(80, Proto::kTcp, [](auto&, auto& to) { return to != "x/a"; });
}

TEST_P(SctpNetpolVm, IngressNamedSctpPort) {
  // On x/a, "sctp-alt" is SCTP port 81.
  Apply(Policy("x", "named", Labels({{"pod", "a"}}), true, false,
               {Rule({}, {NamedPort("sctp-alt", "SCTP")})}));
  ExpectProbe("y/b", "x/a", 81, Proto::kSctp, true);
  ExpectProbe("z/c", "x/a", 81, Proto::kSctp, true);
  ExpectProbe("x/c", "x/a", 81, Proto::kSctp, true);
  ExpectProbe("y/b", "x/a", 80, Proto::kSctp, false);
  ExpectProbe("z/c", "x/a", 80, Proto::kSctp, false);
  ExpectProbe("y/b", "x/a", 81, Proto::kTcp, false);
  ExpectProbe("y/b", "x/b", 80, Proto::kSctp, true);

  // The same name with protocol TCP names no port of x/a (sctp-alt is SCTP): nothing allowed.
  Apply(Policy("x", "named", Labels({{"pod", "a"}}), true, false,
               {Rule({}, {NamedPort("sctp-alt", "TCP")})}));
  ExpectProbe("y/b", "x/a", 81, Proto::kSctp, false);
  ExpectProbe("y/b", "x/a", 81, Proto::kTcp, false);
}

TEST_P(SctpNetpolVm, EgressAllowsSctpOnly) {
  // Pods of x may only open SCTP associations to port 80 of pods in z.
  Apply(Policy("x", "egress-sctp", {}, false, true, {},
               {Rule({NamespacePeer(Labels({{"ns", "z"}}))}, {Port(80, "SCTP")})}));
  ExpectMatrix(80, Proto::kSctp,
               [](auto& from, auto& to) { return NsOf(from) != "x" || NsOf(to) == "z"; });
  ExpectMatrix(81, Proto::kSctp, [](auto& from, auto&) { return NsOf(from) != "x"; });
  ExpectMatrix(80, Proto::kTcp, [](auto& from, auto&) { return NsOf(from) != "x"; });

  // A named egress port is resolved on each peer pod: "sctp-main" is 80 on x and y, 81 on z.
  Apply(Policy("x", "egress-sctp", {}, false, true, {},
               {Rule({}, {NamedPort("sctp-main", "SCTP")})}));
  ExpectProbe("x/a", "y/a", 80, Proto::kSctp, true);
  ExpectProbe("x/a", "y/a", 81, Proto::kSctp, false);
  ExpectProbe("x/a", "z/a", 81, Proto::kSctp, true);
  ExpectProbe("x/a", "z/a", 80, Proto::kSctp, false);
  ExpectProbe("x/b", "x/c", 80, Proto::kSctp, true);
  ExpectProbe("x/a", "y/a", 80, Proto::kTcp, false);
  ExpectProbe("y/a", "z/a", 80, Proto::kSctp, true);
}

INSTANTIATE_TEST_SUITE_P(Backends, SctpNetpolVm, ::testing::Values("nft", "legacy"),
                         [](const auto& info) { return std::string(info.param); });

}  // namespace
}  // namespace kr::netpol
