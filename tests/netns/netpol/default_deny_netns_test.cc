// --netpol-default-deny with real traffic: the startup race it closes. A pod whose namespace and
// address exist before the controller has seen it (its Pod object is not in the cache yet, so
// it has no chain) is unreachable and cannot send, same node and across nodes; once the pod is
// known and synced it is open like any pod without a policy, and after its deletion its
// address is closed again. Without the flag the same unknown pod is open (the race itself).
// The node's own address inside the pod CIDR (the kube-bridge gateway) stays reachable from
// pods. Both iptables backends; dual-stack cases repeat it with IPv6 traffic.
#include <gtest/gtest.h>

#include "lib/netns.h"
#include "lib/podnet.h"
#include "node_firewalls.h"

namespace kr::netpol::default_deny_netns_test {
namespace {

using namespace std::chrono_literals;
using kr::testing::PodNetwork;
using kr::testing::Process;
using kr::testing::Proto;
using kr::testing::TempDir;
using namespace kr::netpol::testing;  // NOLINT: builders and the xyz world

// A pod that exists in the network but not (yet) in the API.
constexpr char kLatePod[] = "x/late";
constexpr int kGatewayPort = 8080;

struct Case {
  const char* mode;
  bool default_deny;
  bool dual_stack = false;  // pods and nodes with IPv4 and IPv6, controllers with both families
};
void PrintTo(const Case& c, std::ostream* os) {
  *os << c.mode << (c.default_deny ? " with" : " without") << " --netpol-default-deny"
      << (c.dual_stack ? ", dual-stack" : "");
}

class DefaultDenyE2E : public XyzFirewallTest<Case> {
 protected:
  void SetUp() override {
    ASSERT_TRUE(kr::testing::IsRoot()) << "netns tests need root";
    world_ = std::make_unique<PodNetwork>("dd", GetParam().dual_stack);
    BuildXyz(*world_, {Proto::kTcp});
    world_->AddPod(0, kLatePod);
    world_->Serve(kLatePod, 80, Proto::kTcp);
    auto nodes = [this](k8s::Cluster& cluster) {
      for (const auto& node : world_->nodes()) {
        k8s::Node object;
        object.meta.name = node.name;
        object.pod_cidr = node.pod_cidr;
        object.pod_cidrs = {node.pod_cidr};
        if (!node.pod_cidr6.empty()) object.pod_cidrs.push_back(node.pod_cidr6);
        cluster.nodes.Upsert(node.name, std::make_shared<const k8s::Node>(object));
      }
    };
    StartFirewalls(
        *world_, nullptr,
        [](NetpolConfig& config) {
          config.iptables_mode = GetParam().mode;
          config.default_deny = GetParam().default_deny;
          config.enable_ipv6 = GetParam().dual_stack;
        },
        nodes);
  }

  void TearDown() override {
    XyzFirewallTest::TearDown();
    gateway_server_.reset();
  }

  // A pod without a chain gets no ICMP error for its own rejected packets (the error, addressed
  // to it, is rejected as well), so its denied probes end by timeout: keep that short.
  bool Probe(const std::string& from, const std::string& to) {
    return net_->Probe(from, net_->pod(to).ip, 80, Proto::kTcp, from == kLatePod ? 500 : 2000);
  }

  // A connection from a node itself (as kubelet's probes come).
  bool ProbeFromNode(int node, const std::string& to) {
    auto r = net_->nodes()[node].ns->Run({"nc", "-w", "1", net_->pod(to).ip, "80"});
    return r.ok() && r->out.find("pong") != std::string::npos;
  }

  void PutLatePod() {
    auto pod = Pod("x", "late", net_->pod(kLatePod).ip, net_->nodes()[0].name);
    if (!net_->pod(kLatePod).ip6.empty()) {
      pod.pod_ips = {net_->pod(kLatePod).ip, net_->pod(kLatePod).ip6};
    }
    Put(*cluster_, pod);
    Sync(SyncReason::kRequested);
  }

  std::unique_ptr<PodNetwork> world_;
  TempDir dir_;
  std::unique_ptr<Process> gateway_server_;
};

TEST_P(DefaultDenyE2E, APodWithoutItsChainIsClosedUntilSyncedAndAfterDeletion) {
  const bool closed = GetParam().default_deny;
  // Known pods talk as with no policy at all, same node and across nodes.
  EXPECT_EQ(MatrixMismatches(*net_, 80, Proto::kTcp, [](auto&, auto&) { return true; }), "");

  // The late pod: in, out, same node and from/to the other node.
  for (const char* peer : {"x/a", "y/b", "z/a"}) {
    EXPECT_EQ(Probe(peer, kLatePod), !closed) << peer << " -> " << kLatePod;
    EXPECT_EQ(Probe(kLatePod, peer), !closed) << kLatePod << " -> " << peer;
  }

  // Nodes do not reach it either (as in kube-router, kubelet's probes wait for the chain).
  EXPECT_EQ(ProbeFromNode(0, kLatePod), !closed);
  EXPECT_EQ(ProbeFromNode(1, kLatePod), !closed);

  PutLatePod();
  for (const char* peer : {"x/a", "y/b", "z/a"}) {
    EXPECT_TRUE(Probe(peer, kLatePod)) << peer << " -> " << kLatePod;
    EXPECT_TRUE(Probe(kLatePod, peer)) << kLatePod << " -> " << peer;
  }

  cluster_->pods.Remove(kLatePod);
  Sync(SyncReason::kRequested);
  EXPECT_EQ(Probe("x/a", kLatePod), !closed);
  EXPECT_EQ(Probe(kLatePod, "z/a"), !closed);
  // A periodic full sync keeps it so.
  Sync(SyncReason::kPeriodic);
  EXPECT_EQ(Probe("z/a", kLatePod), !closed);
}

TEST_P(DefaultDenyE2E, PoliciesStillDecideForKnownPods) {
  // Ingress to x/a only from x/b; everything else as before.
  Apply(Policy("x", "only-b", Labels({{"pod", "a"}}), true, false,
               {{{PodPeer(Labels({{"pod", "b"}}))}, {}}}));
  EXPECT_EQ(MatrixMismatches(*net_, 80, Proto::kTcp,
                             [](auto& from, auto& to) { return to != "x/a" || from == "x/b"; }),
            "");
  // A known pod's allowed egress does not carry traffic to a pod without a chain.
  EXPECT_EQ(Probe("x/b", kLatePod), !GetParam().default_deny);
}

TEST_P(DefaultDenyE2E, PodsReachTheNodesGatewayAddressInsideThePodCidr) {
  auto& node = net_->nodes()[0];
  gateway_server_ =
      std::make_unique<Process>(node.ns->Wrap({"socat",
                                               "TCP-LISTEN:" + std::to_string(kGatewayPort) +
                                                   ",bind=" + node.gateway + ",reuseaddr,fork",
                                               "SYSTEM:echo pong"}),
                                dir_.path() + "/gateway.log");
  ASSERT_TRUE(kr::testing::WaitFor(
      [&] {
        auto listening = node.ns->Sh("ss -Hltn 'sport = :" + std::to_string(kGatewayPort) + "'");
        return listening.ok() && !listening->empty();
      },
      10s))
      << gateway_server_->Log();
  EXPECT_TRUE(net_->Probe("x/a", node.gateway, kGatewayPort, Proto::kTcp));
}

// Only instantiated dual-stack.
class DefaultDenyIpv6E2E : public DefaultDenyE2E {};

TEST_P(DefaultDenyIpv6E2E, TheInet6SetGuardsTheIpv6PodCidr) {
  auto probe6 = [&](const std::string& from, const std::string& to) {
    return net_->Probe(from, net_->pod(to).ip6, 80, Proto::kTcp, from == kLatePod ? 500 : 2000);
  };
  for (const char* peer : {"x/a", "z/a"}) {
    EXPECT_TRUE(probe6(peer, "y/a")) << peer << " -> y/a";
    EXPECT_FALSE(probe6(peer, kLatePod)) << peer << " -> " << kLatePod;
    EXPECT_FALSE(probe6(kLatePod, peer)) << kLatePod << " -> " << peer;
  }
  PutLatePod();
  for (const char* peer : {"x/a", "z/a"}) {
    EXPECT_TRUE(probe6(peer, kLatePod)) << peer << " -> " << kLatePod;
    EXPECT_TRUE(probe6(kLatePod, peer)) << kLatePod << " -> " << peer;
  }
}

auto CaseName = [](const auto& info) {
  return std::string(info.param.mode) + (info.param.default_deny ? "_default_deny" : "_open") +
         (info.param.dual_stack ? "_dual_stack" : "");
};

INSTANTIATE_TEST_SUITE_P(Backends, DefaultDenyIpv6E2E,
                         ::testing::Values(Case{"nft", true, true}, Case{"legacy", true, true}),
                         CaseName);

INSTANTIATE_TEST_SUITE_P(Backends, DefaultDenyE2E,
                         ::testing::Values(Case{"nft", true}, Case{"legacy", true},
                                           Case{"nft", false}, Case{"nft", true, true},
                                           Case{"legacy", true, true}),
                         CaseName);

}  // namespace
}  // namespace kr::netpol::default_deny_netns_test
