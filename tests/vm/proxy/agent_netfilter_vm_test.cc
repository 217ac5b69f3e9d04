// proxy_agent_vm_test (fixture and world: agent_vm_fixture.h): the netfilter side through the
// agents: the VIP firewall (--ipvs-permit-all), the hairpin annotation, and the flags that change
// every Service (--masquerade-all, --hairpin-mode) on node0's agent restarted with them.
#include <gtest/gtest.h>
#include <signal.h>

#include <chrono>
#include <map>
#include <string>

#include "vm/proxy/agent_vm_fixture.h"

namespace kr::testing::agent_vm {
namespace {

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
  EXPECT_TRUE(WaitRefused(world_->PodNs(kClient1), "10.96.1.14", kHostPort, Proto::kTcp, &rejected))
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

}  // namespace
}  // namespace kr::testing::agent_vm
