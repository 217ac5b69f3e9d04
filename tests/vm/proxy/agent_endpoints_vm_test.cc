// proxy_agent_vm_test (fixture and world: agent_vm_fixture.h): endpoints that go: terminating
// endpoints (KEP-1669), graceful termination on node1, and the conntrack cleanup that moves a
// fixed-source-port UDP client to the surviving backend.
#include <gtest/gtest.h>

#include <chrono>
#include <sstream>
#include <string>
#include <vector>

#include "vm/proxy/agent_vm_fixture.h"

namespace kr::testing::agent_vm {
namespace {

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
  EXPECT_TRUE(WaitRefused(client, "10.96.1.16", 80, Proto::kTcp, &refused))
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
  std::string shown;  // node1's table of the Service at the last look
  auto wait_g1_weight = [&](int want) {
    return WaitFor(
        [&] {
          shown = world_->Ipvsadm(1, "-Ln -t 10.96.1.15:80");
          return weight_of_g1(shown) == want;
        },
        kProgrammed);
  };
  ASSERT_TRUE(wait_g1_weight(0)) << "g1 at weight 0: " << shown;
  EXPECT_TRUE(held.Alive(kAskTimeout)) << "the open connection keeps working while g1 drains";
  auto fresh = Spread(client, "10.96.1.15", 80, Proto::kTcp, 4);
  EXPECT_EQ(fresh["c1"], 4) << "new connections avoid the draining backend";
  EXPECT_TRUE(held.Alive(kAskTimeout));
  // g1 comes back while it drains: weight 1 again and its drain cancelled (the deadline below
  // counts from the second removal), then it goes for good.
  ASSERT_OK(slice({Ep(kG1), Ep(kC1)}));
  ASSERT_TRUE(wait_g1_weight(1)) << "g1 back at weight 1: " << shown;
  const auto removed_at = std::chrono::steady_clock::now();
  ASSERT_OK(slice({Ep(kC1)}));
  ASSERT_TRUE(wait_g1_weight(0)) << "g1 at weight 0 again: " << shown;
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

}  // namespace
}  // namespace kr::testing::agent_vm
