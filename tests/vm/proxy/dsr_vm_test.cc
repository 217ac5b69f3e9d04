// DSR's kernel pieces with real traffic in the guest: the applier (real IPVS, rules, routes,
// iptables and the /proc pod-netns finder) programs a fwmark service with a tunnel real server,
// the mangle MARK, the fwmark rule and table 78, and the VIP on a tunnel link inside the pod; an
// external client's TCP connection to the VIP is answered by the pod from the VIP itself, with
// the client's own address seen. A restarted applier with the annotation gone removes all of it.
#include <gtest/gtest.h>

#include "kube_router/netfilter/adapters.h"
#include "kube_router/netlink/libnl.h"
#include "kube_router/netlink/pod_netns.h"
#include "kube_router/netlink/sysctl.h"
#include "kube_router/proxy/dsr.h"
#include "lib/answer_server.h"
#include "lib/netns.h"
#include "lib/podnet.h"
#include "netns/netlink/in_netns.h"

namespace kr::dsr_vm_test {
namespace {

using namespace std::chrono_literals;
using testing::Answer;
using testing::AnswerServer;
using testing::InNetns;
using testing::Netns;
using testing::PodNetwork;
using testing::Proto;

IpAddress A(const std::string& text) { return *IpAddress::Parse(text); }

constexpr char kVip[] = "203.0.113.20";

struct NodeAdapters {
  std::unique_ptr<netlink::Ipvs> ipvs;
  std::unique_ptr<netlink::RuleTable> rules;
  std::unique_ptr<netlink::RouteTable> routes;
  std::unique_ptr<netfilter::Iptables> iptables;
  std::unique_ptr<netlink::PodNetns> pods = netlink::MakeProcPodNetns();

  proxy::DsrDataplane Dataplane() {
    proxy::DsrDataplane dp;
    dp.ipvs = ipvs.get();
    dp.rules = rules.get();
    dp.routes = routes.get();
    dp.iptables_v4 = iptables.get();
    dp.pods = pods.get();
    dp.make_pod_links = [](const netlink::PodNetnsContext&) { return netlink::MakeNetlinkLinks(); };
    dp.make_pod_sysctl = [](const netlink::PodNetnsContext&) { return netlink::MakeProcSysctl(); };
    return dp;
  }
};

TEST(ProxyDsrVmTest, PodAnswersTheClientFromTheVipAndEverythingGoesWithTheAnnotation) {
  ASSERT_TRUE(testing::IsRoot());
  PodNetwork net("kpd");
  net.AddNode("n0");
  net.AddPod(0, "default/a");
  net.AddPod(0, "default/b");
  Netns client("kpdc");
  Netns& node = *net.nodes()[0].ns;
  net.AttachExternalClient(0, client);
  const std::string pod_a = net.pod("default/a").ip;
  const std::string pod_b = net.pod("default/b").ip;
  AnswerServer server(net.pod("default/a").ns->name(), "a", 80, AnswerServer::Kind::kTcp);

  NodeAdapters node_adapters;
  InNetns(node.name(), [&] {
    node_adapters.ipvs = netlink::MakeNetlinkIpvs().value();
    node_adapters.rules = netlink::MakeNetlinkRuleTable().value();
    node_adapters.routes = netlink::MakeNetlinkRouteTable().value();
    node_adapters.iptables =
        netfilter::MakeIptables(netfilter::IptablesMode::kNft, netfilter::IpFamily::kV4);
    return 0;
  });
  proxy::DsrServiceInput web;
  web.owner = "default/web";
  web.vip = A(kVip);
  web.port = 80;
  web.endpoints = {A(pod_a)};
  web.local_endpoints = {A(pod_a)};
  proxy::DsrPlan plan = proxy::BuildDsrPlan({web}, 1500);
  const uint32_t mark = plan.services[0].service.fwmark;
  {
    proxy::DsrApplier applier(node_adapters.Dataplane());
    Status applied = InNetns(node.name(), [&] { return applier.Apply(plan); });
    ASSERT_TRUE(applied.ok()) << applied.message();
  }

  char mark_text[16];
  std::snprintf(mark_text, sizeof(mark_text), "0x%x", mark);
  EXPECT_NE(
      node.Sh("ip rule show")->find(std::string("fwmark ") + mark_text + " lookup 78 proto 17"),
      std::string::npos)
      << *node.Sh("ip rule show");
  EXPECT_NE(node.Sh("ip route show table 78")->find("local default dev lo"), std::string::npos);
  const std::string ipvs = *node.Sh("ipvsadm -Ln");
  EXPECT_NE(ipvs.find("FWM  " + std::to_string(mark) + " rr"), std::string::npos) << ipvs;
  EXPECT_NE(ipvs.find("-> " + pod_a + ":80"), std::string::npos) << ipvs;
  EXPECT_NE(ipvs.find("Tunnel"), std::string::npos) << ipvs;
  const std::string mangle = *node.Sh("iptables-nft-save -t mangle");
  EXPECT_NE(mangle.find("-A KUBE-ROUTER-DSR -d 203.0.113.20/32 -p tcp -m tcp --dport 80 -j MARK"),
            std::string::npos)
      << mangle;
  EXPECT_NE(mangle.find("-A KUBE-ROUTER-DSR-MSS -s 203.0.113.20/32 -i kube-bridge"),
            std::string::npos)
      << mangle;
  const std::string in_pod = *net.pod("default/a").ns->Sh("ip -d addr show kube-tunnel-if");
  EXPECT_NE(in_pod.find("ipip"), std::string::npos) << in_pod;
  EXPECT_NE(in_pod.find("inet 203.0.113.20/32"), std::string::npos) << in_pod;
  EXPECT_EQ(node.Sh("ip addr show")->find(kVip), std::string::npos) << "the director has no VIP";

  // Real traffic: the client's connection is answered by the pod, from the VIP, and the pod sees
  // the client's own address (no masquerading on the way in).
  ASSERT_TRUE(client.Sh("ip route add 203.0.113.0/24 via 192.0.2.1").ok());
  Answer answer;
  ASSERT_TRUE(testing::WaitFor(
      [&] {
        answer = testing::Ask(client.name(), kVip, 80, Proto::kTcp, 1000ms);
        return answer.ok();
      },
      10s))
      << answer.ToString();
  EXPECT_EQ(answer.name, "a");
  EXPECT_EQ(answer.client_ip, "192.0.2.9");
  testing::TcpHolder held(client.name(), kVip, 80);
  EXPECT_TRUE(held.Alive()) << "a long-lived DSR connection echoes";

  // The annotation is gone and the agent restarted: a new applier with an empty plan, told the
  // local pods, removes everything (the VIP inside the pod too).
  {
    proxy::DsrApplier restarted(node_adapters.Dataplane());
    Status removed = InNetns(node.name(), [&] {
      return restarted.Apply(proxy::BuildDsrPlan({}, 1500), {A(pod_a), A(pod_b)});
    });
    ASSERT_TRUE(removed.ok()) << removed.message();
    auto cleaned = InNetns(node.name(), [&] { return restarted.Cleanup({A(pod_a), A(pod_b)}); });
    ASSERT_TRUE(cleaned.ok()) << cleaned.error();
  }
  EXPECT_EQ(node.Sh("ip rule show")->find("lookup 78"), std::string::npos);
  EXPECT_EQ(node.Sh("ip route show table 78 2>/dev/null")->find("local default"),
            std::string::npos);
  EXPECT_EQ(node.Sh("ipvsadm -Ln")->find("FWM"), std::string::npos);
  EXPECT_EQ(node.Sh("iptables-nft-save -t mangle")->find("KUBE-ROUTER-DSR"), std::string::npos);
  EXPECT_FALSE(net.pod("default/a").ns->Sh("ip link show kube-tunnel-if").ok())
      << "the tunnel link and the VIP left the pod";
  Answer after = testing::Ask(client.name(), kVip, 80, Proto::kTcp, 1000ms);
  EXPECT_FALSE(after.ok()) << after.ToString();
}

}  // namespace
}  // namespace kr::dsr_vm_test
