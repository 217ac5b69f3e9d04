// proxy_agent_vm_test (fixture and world: agent_vm_fixture.h): the agent's own life: kill -9
// and restart adopt the kernel's state and keep established connections; --cleanup-config
// removes only what is ours (the long kill -9 soak: soak_vm_test.cc).
#include <gtest/gtest.h>
#include <signal.h>

#include <chrono>
#include <string>

#include "vm/proxy/agent_vm_fixture.h"

namespace kr::testing::agent_vm {
namespace {

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
}  // namespace kr::testing::agent_vm
