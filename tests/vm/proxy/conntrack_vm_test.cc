// The proxy's kernel pieces with real IPVS traffic in the guest kernel, before and without the
// controller: conntrack flows IPVS leaves behind (read through our ctnetlink adapter), the UDP and
// SCTP cleanup after a backend leaves, with a client that keeps its source port.
//
// World: one node namespace (kube-bridge, pods "a" and "b"), a service VIP on kube-dummy-if with
// an IPVS service per test, and an external client namespace routed to the node.
#include <gtest/gtest.h>

#include <chrono>
#include <set>

#include "kube_router/netlink/libnl.h"
#include "kube_router/proxy/conntrack_cleanup.h"
#include "lib/answer_server.h"
#include "lib/netns.h"
#include "lib/podnet.h"
#include "netns/netlink/in_netns.h"
#include "vm/proxy/guest_node.h"

namespace kr {
namespace {

using namespace std::chrono_literals;
using netlink::IpvsDestination;
using netlink::IpvsProtocol;
using netlink::IpvsService;
using testing::Answer;
using testing::AnswerServer;
using testing::FixedPortUdpClient;
using testing::InNetns;
using testing::Netns;
using testing::PodNetwork;
using testing::Proto;

IpAddress A(const std::string& text) { return *IpAddress::Parse(text); }

constexpr char kVip[] = "10.96.0.10";

class ProxyConntrackVmTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(testing::IsRoot());
    net_.AddNode("n0");
    net_.AddPod(0, "default/a");
    net_.AddPod(0, "default/b");
    Netns& node = *net_.nodes()[0].ns;
    net_.AttachExternalClient(0, ext_);
    auto vip = testing::AddServiceVip(node, kVip);
    ASSERT_TRUE(vip.ok()) << vip.error();
    // kube-router's IPVS sysctls and a conntrack rule so the node tracks flows.
    auto setup = node.Sh(
        "sysctl -qw net.ipv4.vs.conntrack=1 net.ipv4.vs.expire_nodest_conn=1 && "
        "iptables -A INPUT -m conntrack --ctstate NEW -j ACCEPT");
    ASSERT_TRUE(setup.ok()) << setup.error();
    ipvs_ = testing::NodeIpvs(node);
    auto ct = InNetns(node.name(), [] { return netlink::MakeNetlinkConntrack(); });
    ASSERT_TRUE(ct.ok()) << ct.error();
    conntrack_ = std::move(*ct);
  }
  std::string PodIp(const std::string& name) { return net_.pod("default/" + name).ip; }
  const std::string& PodNs(const std::string& name) {
    return net_.pod("default/" + name).ns->name();
  }
  // The IPVS service kVip:port over pods a and b on `target`.
  IpvsService AddService(IpvsProtocol protocol, uint16_t port, uint16_t target) {
    IpvsService svc{A(kVip), protocol, port};
    EXPECT_TRUE(ipvs_->AddService(svc).ok());
    for (const char* pod : {"a", "b"}) {
      EXPECT_TRUE(ipvs_->AddDestination(svc, IpvsDestination{A(PodIp(pod)), target}).ok());
    }
    return svc;
  }
  // Flows of `protocol` from the client's `source_port`, as our adapter lists them.
  std::vector<netlink::ConntrackFlow> ClientFlows(uint8_t protocol, uint16_t source_port) {
    std::vector<netlink::ConntrackFlow> out;
    auto flows = conntrack_->List(IpAddress::Family::kV4);
    EXPECT_TRUE(flows.ok()) << flows.error();
    if (!flows.ok()) return out;
    for (const auto& f : *flows) {
      if (f.protocol == protocol && f.original.source == A("192.0.2.9") &&
          f.original.source_port == source_port) {
        out.push_back(f);
      }
    }
    return out;
  }

  PodNetwork net_{"kpc"};
  Netns ext_{"kpcext"};
  std::unique_ptr<netlink::Ipvs> ipvs_;
  std::unique_ptr<netlink::Conntrack> conntrack_;
};

TEST_F(ProxyConntrackVmTest, FixedPortUdpClientMovesToTheSurvivingBackendAfterCleanup) {
  AnswerServer a(PodNs("a"), "a", 5353, AnswerServer::Kind::kUdp);
  AnswerServer b(PodNs("b"), "b", 5353, AnswerServer::Kind::kUdp);
  IpvsService svc = AddService(IpvsProtocol::kUdp, 53, 5353);

  FixedPortUdpClient moving(ext_.name(), 40000);
  FixedPortUdpClient staying(ext_.name(), 40001);
  Answer first = moving.Ask(kVip, 53);
  ASSERT_TRUE(first.ok()) << first.ToString();
  EXPECT_EQ(first.client_ip, "192.0.2.9") << "a local endpoint sees the client's address";
  for (int i = 0; i < 3; ++i) {
    Answer again = moving.Ask(kVip, 53);
    ASSERT_TRUE(again.ok()) << again.ToString();
    EXPECT_EQ(again.name, first.name) << "one flow, one backend";
  }
  const std::string gone = first.name;
  const std::string survivor = gone == "a" ? "b" : "a";
  Answer other = staying.Ask(kVip, 53);
  ASSERT_TRUE(other.ok()) << other.ToString();
  EXPECT_EQ(other.name, survivor) << "rr gave the second flow the other backend";

  // The adapter reads what IPVS left: original VIP:53, reply from the backend's address.
  auto flows = ClientFlows(netlink::ip_protocol::kUdp, 40000);
  ASSERT_EQ(flows.size(), 1u);
  EXPECT_EQ(flows[0].original.destination, A(kVip));
  EXPECT_EQ(flows[0].original.destination_port, 53);
  EXPECT_EQ(flows[0].reply.source, A(PodIp(gone))) << flows[0].ToString();
  EXPECT_EQ(flows[0].reply.source_port, 5353);
  auto staying_before = ClientFlows(netlink::ip_protocol::kUdp, 40001);
  ASSERT_EQ(staying_before.size(), 1u);

  // The backend leaves: its destination goes, then its flows.
  ASSERT_TRUE(ipvs_->DeleteDestination(svc, IpvsDestination{A(PodIp(gone)), 5353}).ok());
  proxy::ConntrackCleanupItem item;
  item.service_ips = {A(kVip)};
  item.port = 53;
  item.gone_backends = {A(PodIp(gone))};
  // With kube-router's expire_nodest_conn=1 the kernel also drops the connections (and their
  // flows) of a deleted destination, in a delayed work: whoever is first, the flow goes.
  auto deleted = proxy::CleanupConntrack(*conntrack_, {item});
  ASSERT_TRUE(deleted.ok()) << deleted.error();
  EXPECT_LE(*deleted, 1u);
  EXPECT_TRUE(ClientFlows(netlink::ip_protocol::kUdp, 40000).empty());
  EXPECT_EQ(ClientFlows(netlink::ip_protocol::kUdp, 40001), staying_before)
      << "the flow to the surviving backend is untouched";

  Answer moved;
  EXPECT_TRUE(testing::WaitFor(
      [&] {
        moved = moving.Ask(kVip, 53, 500ms);
        return moved.ok() && moved.name == survivor;
      },
      5s))
      << "the same source port reaches the surviving backend: " << moved.ToString();
  Answer still = staying.Ask(kVip, 53);
  EXPECT_EQ(still.name, survivor) << still.ToString();
}

TEST_F(ProxyConntrackVmTest, SctpAssociationsReachBothBackendsAndLoseOnlyTheGoneOnesFlows) {
  // The kernel keeps the flows of a deleted destination here, so only our cleanup removes them.
  ASSERT_TRUE(net_.nodes()[0].ns->Sh("sysctl -qw net.ipv4.vs.expire_nodest_conn=0").ok());
  AnswerServer a(PodNs("a"), "a", 7777, AnswerServer::Kind::kSctp);
  AnswerServer b(PodNs("b"), "b", 7777, AnswerServer::Kind::kSctp);
  IpvsService svc = AddService(IpvsProtocol::kSctp, 77, 7777);

  std::set<std::string> seen;
  for (int port = 42000; port < 42004; ++port) {
    Answer answer = testing::Ask(ext_.name(), kVip, 77, Proto::kSctp, 3s, port);
    ASSERT_TRUE(answer.ok()) << answer.ToString();
    seen.insert(answer.name);
  }
  EXPECT_EQ(seen, (std::set<std::string>{"a", "b"}));
  size_t to_a = 0;
  size_t sctp_flows = 0;
  for (int port = 42000; port < 42004; ++port) {
    for (const auto& f : ClientFlows(netlink::ip_protocol::kSctp, static_cast<uint16_t>(port))) {
      ++sctp_flows;
      if (f.reply.source == A(PodIp("a"))) ++to_a;
    }
  }
  ASSERT_EQ(sctp_flows, 4u) << "one SCTP flow per association";
  ASSERT_GE(to_a, 1u);

  ASSERT_TRUE(ipvs_->DeleteDestination(svc, IpvsDestination{A(PodIp("a")), 7777}).ok());
  proxy::ConntrackCleanupItem item;
  item.protocol = netlink::ip_protocol::kSctp;
  item.service_ips = {A(kVip)};
  item.port = 77;
  item.gone_backends = {A(PodIp("a"))};
  auto deleted = proxy::CleanupConntrack(*conntrack_, {item});
  ASSERT_TRUE(deleted.ok()) << deleted.error();
  EXPECT_EQ(*deleted, to_a);
  size_t left = 0;
  for (int port = 42000; port < 42004; ++port) {
    for (const auto& f : ClientFlows(netlink::ip_protocol::kSctp, static_cast<uint16_t>(port))) {
      EXPECT_EQ(f.reply.source, A(PodIp("b"))) << f.ToString();
      ++left;
    }
  }
  EXPECT_EQ(left, 4u - to_a);
  Answer after = testing::Ask(ext_.name(), kVip, 77, Proto::kSctp, 3s, 42010);
  ASSERT_TRUE(after.ok()) << after.ToString();
  EXPECT_EQ(after.name, "b");
}

}  // namespace
}  // namespace kr
