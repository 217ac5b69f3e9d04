// The proxy's netfilter side with real IPVS traffic in the guest kernel (the host cannot load
// -m ipvs rules): the masquerade and hairpin rules load and read back equal to what we render,
// an external client of a remote endpoint gets its reply only with the SNAT (and a local endpoint
// still sees the client), a pod reaches itself through a VIP only with the hairpin rule (and
// sees the VIP), the VIP firewall rejects a host port on a ClusterIP, the IPVS sysctls and
// timeouts apply, and cleanup leaves nothing of ours.
//
// World: nodes n0 and n1 (pod network, pods a on n0 and b on n1), IPVS services on n0 made by
// our adapter, an external client namespace routed to n0.
#include <gtest/gtest.h>

#include "kube_router/netfilter/adapters.h"
#include "kube_router/netlink/libnl.h"
#include "kube_router/netlink/sysctl.h"
#include "kube_router/proxy/kernel_settings.h"
#include "kube_router/proxy/proxy_firewall.h"
#include "lib/answer_server.h"
#include "lib/netns.h"
#include "lib/podnet.h"
#include "netns/netlink/in_netns.h"
#include "netns/proxy_net/counting_adapters.h"
#include "vm/proxy/guest_node.h"

namespace kr::proxy {
namespace {

using netfilter::IpFamily;
using netlink::IpvsDestination;
using netlink::IpvsProtocol;
using netlink::IpvsService;
using testing::Answer;
using testing::AnswerServer;
using testing::CountingIpset;
using testing::CountingIptables;
using testing::InNetns;
using testing::Netns;
using testing::PodNetwork;
using testing::Proto;
using testing::ScopedNetns;

IpAddress A(const std::string& text) { return *IpAddress::Parse(text); }

constexpr char kVip[] = "10.96.0.10";

class ProxyFirewallVmTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(testing::IsRoot());
    ASSERT_TRUE(ext_.Sh("sysctl -qw net.ipv6.conf.all.disable_ipv6=0 "
                        "net.ipv6.conf.default.disable_ipv6=0")
                    .ok());
    net_.AddNode("n0");
    net_.AddNode("n1");
    net_.AddPod(0, "default/a");
    net_.AddPod(1, "default/b");
    Netns& node = Node();
    net_.AttachExternalClient(0, ext_);
    auto vip = testing::AddServiceVip(node, kVip);
    ASSERT_TRUE(vip.ok()) << vip.error();
    ipvs_ = testing::NodeIpvs(node);
    {
      ScopedNetns inside(node.name());
      // kube-router's sysctls (vs.conntrack=1 is what lets -m ipvs see the IPVS connections)
      // and a UDP timeout, through our settings code.
      auto sysctl = netlink::MakeProcSysctl();
      KernelSettings settings(sysctl.get(), ipvs_.get());
      KernelSettingsInput input;
      input.rp_filter_interfaces = {"kube-bridge", "kube-dummy-if", "kr-ext"};
      input.timeouts = {0, 0, 77};
      ASSERT_TRUE(settings.Apply(input).ok());
    }
    // Services: VIP:81 -> a (hairpin), node IP:30081 -> b (remote), node IP:30082 -> a (local).
    AddService(kVip, 81, "a");
    AddService(NodeIp(), 30081, "b");
    AddService(NodeIp(), 30082, "a");
  }

  Netns& Node() { return *net_.nodes()[0].ns; }
  // The node's address towards the external client (where its NodePorts are) and towards n1
  // (the SNAT source: n1 routes back to it).
  std::string NodeIp() { return "192.0.2.1"; }
  std::string InternalIp() { return "10.70.1.1"; }
  std::string PodIp(const std::string& name) { return net_.pod("default/" + name).ip; }
  const std::string& PodNs(const std::string& name) {
    return net_.pod("default/" + name).ns->name();
  }
  void AddService(const std::string& vip, uint16_t port, const std::string& pod) {
    IpvsService svc{A(vip), IpvsProtocol::kTcp, port};
    ASSERT_TRUE(ipvs_->AddService(svc).ok());
    ASSERT_TRUE(ipvs_->AddDestination(svc, IpvsDestination{A(PodIp(pod)), 8080}).ok());
  }

  FirewallInput Input(bool hairpin) {
    FirewallInput in;
    in.local_ips = {A(NodeIp()), A(InternalIp()), A("127.0.0.1")};
    in.services = {{A(kVip), IpvsProtocol::kTcp, 81},
                   {A(NodeIp()), IpvsProtocol::kTcp, 30081},
                   {A(NodeIp()), IpvsProtocol::kTcp, 30082}};
    in.node_ips = {A(InternalIp())};
    in.pod_cidrs = {*IpPrefix::Parse(net_.nodes()[0].pod_cidr)};
    if (hairpin) {
      HairpinServicePort port;
      port.cluster_ips = {A(kVip)};
      port.port = 81;
      port.local_endpoints = {A(PodIp("a"))};
      in.hairpin = ExpandHairpin(port, /*hairpin_mode=*/true);
    }
    return in;
  }

  std::string Diagnose() {
    std::string out;
    for (auto* ns : {&Node(), net_.nodes()[1].ns.get(), &ext_}) {
      auto r = ns->Sh(
          "ip -4 addr; ip route; iptables-save -c; ipvsadm -Ln --stats; "
          "cat /proc/net/ip_vs_conn; sysctl net.ipv4.ip_forward "
          "net.ipv4.conf.all.rp_filter 2>&1; conntrack -L 2>&1 | head -20");
      out += "== " + ns->name() + "\n" + (r.ok() ? *r : r.error());
    }
    return out;
  }

  PodNetwork net_{"kpf", /*dual_stack=*/true};
  Netns ext_{"kpfext"};
  std::unique_ptr<netlink::Ipvs> ipvs_;
};

TEST_F(ProxyFirewallVmTest, MasqueradeHairpinAndVipFirewallWithRealTraffic) {
  AnswerServer a(PodNs("a"), "a", 8080, AnswerServer::Kind::kTcp);
  AnswerServer b(PodNs("b"), "b", 8080, AnswerServer::Kind::kTcp);
  AnswerServer host(Node().name(), "node", 9999, AnswerServer::Kind::kTcp);

  // Before our rules: the remote endpoint answers the external client's address directly, which
  // never comes back through n0's IPVS; a pod cannot reach itself through the VIP; a host port
  // answers on the ClusterIP.
  Answer before = testing::Ask(ext_.name(), NodeIp(), 30081, Proto::kTcp);
  EXPECT_FALSE(before.ok()) << before.ToString();
  EXPECT_FALSE(testing::Ask(PodNs("a"), kVip, 81, Proto::kTcp).ok());
  EXPECT_TRUE(testing::Ask(ext_.name(), kVip, 9999, Proto::kTcp).ok());

  CountingIptables v4(netfilter::MakeIptables(netfilter::IptablesMode::kNft, IpFamily::kV4));
  CountingIpset ipset(netfilter::MakeIpset());
  ProxyFirewall firewall(&v4, nullptr, &ipset);
  {
    ScopedNetns inside(Node().name());
    ASSERT_TRUE(firewall.Sync(Input(/*hairpin=*/false)).ok());
    // -m ipvs rules as iptables-save prints them equal what we render: verifying writes nothing.
    const int writes = v4.writes + ipset.writes;
    ASSERT_TRUE(firewall.Sync(Input(false), /*verify=*/true).ok());
    EXPECT_EQ(v4.writes + ipset.writes, writes);
  }
  auto nat = Node().Sh("iptables-save -t nat");
  ASSERT_TRUE(nat.ok());
  EXPECT_NE(nat->find("-m ipvs --vdir ORIGINAL --vmethod MASQ"), std::string::npos) << *nat;

  // Masquerade: the remote endpoint sees n0's node IP, the local one the client's address.
  Answer remote = testing::Ask(ext_.name(), NodeIp(), 30081, Proto::kTcp);
  ASSERT_TRUE(remote.ok()) << remote.ToString() << "\n" << Diagnose();
  EXPECT_EQ(remote.name, "b");
  EXPECT_EQ(remote.client_ip, InternalIp());
  Answer local = testing::Ask(ext_.name(), NodeIp(), 30082, Proto::kTcp);
  ASSERT_TRUE(local.ok()) << local.ToString();
  EXPECT_EQ(local.client_ip, "192.0.2.9");

  // Hairpin: still no way back to itself without the rule; with it the pod sees the VIP.
  EXPECT_FALSE(testing::Ask(PodNs("a"), kVip, 81, Proto::kTcp).ok());
  {
    ScopedNetns inside(Node().name());
    ASSERT_TRUE(firewall.Sync(Input(/*hairpin=*/true)).ok());
    const int writes = v4.writes + ipset.writes;
    ASSERT_TRUE(firewall.Sync(Input(true), /*verify=*/true).ok());
    EXPECT_EQ(v4.writes + ipset.writes, writes) << "hairpin rule text differs from iptables-save";
  }
  Answer self = testing::Ask(PodNs("a"), kVip, 81, Proto::kTcp);
  ASSERT_TRUE(self.ok()) << self.ToString();
  EXPECT_EQ(self.name, "a");
  EXPECT_EQ(self.client_ip, kVip);

  // VIP firewall: a service port answers, a host port on the ClusterIP is refused, the node's own
  // address (in svip for its NodePorts) is untouched.
  EXPECT_TRUE(testing::Ask(ext_.name(), kVip, 81, Proto::kTcp).ok());
  Answer rejected = testing::Ask(ext_.name(), kVip, 9999, Proto::kTcp);
  EXPECT_EQ(rejected.outcome, Answer::Outcome::kRefused) << rejected.ToString();
  EXPECT_TRUE(testing::Ask(ext_.name(), NodeIp(), 9999, Proto::kTcp).ok());
  // ICMP echo to the VIP is accepted by its rule (it would meet the REJECT otherwise). The
  // image has no ping: one echo request from a raw socket, waiting 2 s for the reply.
  auto echo = ext_.Sh(
      "python3 -c '\n"
      "import socket, struct, sys\n"
      "s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)\n"
      "s.settimeout(2)\n"
      "h = struct.pack(\"!BBHHH\", 8, 0, 0, 7, 1) + b\"kr\"\n"
      "c = sum(struct.unpack(\"!5H\", h)) \n"
      "c = (c >> 16) + (c & 0xffff); c = ~(c + (c >> 16)) & 0xffff\n"
      "s.sendto(struct.pack(\"!BBHHH\", 8, 0, c, 7, 1) + b\"kr\", (sys.argv[1], 0))\n"
      "while True:\n"
      "  d, a = s.recvfrom(1500)\n"
      "  if a[0] == sys.argv[1] and d[20] == 0: print(\"reply\"); break\n"
      "' " +
      std::string(kVip));
  EXPECT_TRUE(echo.ok() && echo->find("reply") != std::string::npos)
      << (echo.ok() ? *echo : echo.error());

  // Kernel settings took effect in the node's namespace.
  auto vs = Node().Sh(
      "cat /proc/sys/net/ipv4/vs/conntrack /proc/sys/net/ipv4/vs/expire_nodest_conn"
      " /proc/sys/net/ipv4/conf/all/arp_ignore; ipvsadm -L --timeout");
  ASSERT_TRUE(vs.ok());
  EXPECT_NE(vs->find("1\n1\n1\n"), std::string::npos) << *vs;
  EXPECT_NE(vs->find("Timeout (tcp tcpfin udp): 900 120 77"), std::string::npos) << *vs;

  // Cleanup: nothing of ours left, twice; the remote NodePort loses its SNAT again.
  {
    ScopedNetns inside(Node().name());
    ASSERT_TRUE(firewall.Cleanup().ok());
    ASSERT_TRUE(firewall.Cleanup().ok());
  }
  auto after = Node().Sh("iptables-save; ipset list -n");
  ASSERT_TRUE(after.ok());
  EXPECT_EQ(after->find("ipvs"), std::string::npos) << *after;
  EXPECT_EQ(after->find("KUBE-ROUTER"), std::string::npos) << *after;
  EXPECT_EQ(after->find("kube-router"), std::string::npos) << *after;
  EXPECT_FALSE(testing::Ask(ext_.name(), NodeIp(), 30081, Proto::kTcp).ok());
}

// The same in IPv6 (ip6tables, inet6: sets, a v6 VIP and NodePorts), in the same boot.
TEST_F(ProxyFirewallVmTest, Ipv6MasqueradeHairpinAndVipFirewall) {
  const std::string vip6 = "fd00:96::10";
  const std::string node6 = "fd00:192::1";       // towards the client: the NodePort address
  const std::string internal6 = "fd00:70:1::1";  // towards n1: the SNAT source
  const std::string a6 = net_.pod("default/a").ip6;
  const std::string b6 = net_.pod("default/b").ip6;
  ASSERT_TRUE(Node()
                  .Sh("ip -6 addr add " + vip6 +
                      "/128 dev kube-dummy-if nodad && "
                      "ip -6 addr add " +
                      node6 + "/64 dev kr-ext nodad")
                  .ok());
  ASSERT_TRUE(ext_.Sh("ip -6 addr add fd00:192::9/64 dev eth0 nodad && "
                      "ip -6 route add default via " +
                      node6)
                  .ok());
  auto add = [&](const std::string& vip, uint16_t port, const std::string& backend) {
    IpvsService svc{A(vip), IpvsProtocol::kTcp, port};
    ASSERT_TRUE(ipvs_->AddService(svc).ok());
    ASSERT_TRUE(ipvs_->AddDestination(svc, IpvsDestination{A(backend), 8080}).ok());
  };
  add(vip6, 81, a6);
  add(node6, 30081, b6);
  add(node6, 30082, a6);
  AnswerServer a(PodNs("a"), "a", 8080, AnswerServer::Kind::kTcp);
  AnswerServer b(PodNs("b"), "b", 8080, AnswerServer::Kind::kTcp);
  AnswerServer host(Node().name(), "node", 9999, AnswerServer::Kind::kTcp);
  EXPECT_FALSE(testing::Ask(ext_.name(), node6, 30081, Proto::kTcp).ok());
  EXPECT_TRUE(testing::Ask(ext_.name(), vip6, 9999, Proto::kTcp).ok());

  FirewallInput in;
  in.local_ips = {A(node6), A(internal6), A("::1"), A(NodeIp())};
  in.services = {{A(vip6), IpvsProtocol::kTcp, 81},
                 {A(node6), IpvsProtocol::kTcp, 30081},
                 {A(node6), IpvsProtocol::kTcp, 30082}};
  in.node_ips = {A(internal6)};
  in.pod_cidrs = {*IpPrefix::Parse(net_.nodes()[0].pod_cidr6)};
  HairpinServicePort port;
  port.cluster_ips = {A(vip6)};
  port.port = 81;
  port.local_endpoints = {A(a6)};
  in.hairpin = ExpandHairpin(port, /*hairpin_mode=*/true);

  CountingIptables v4(netfilter::MakeIptables(netfilter::IptablesMode::kNft, IpFamily::kV4));
  CountingIptables v6(netfilter::MakeIptables(netfilter::IptablesMode::kNft, IpFamily::kV6));
  CountingIpset ipset(netfilter::MakeIpset());
  ProxyFirewall firewall(&v4, &v6, &ipset);
  {
    ScopedNetns inside(Node().name());
    ASSERT_TRUE(firewall.Sync(in).ok());
    const int writes = v4.writes + v6.writes + ipset.writes;
    ASSERT_TRUE(firewall.Sync(in, /*verify=*/true).ok());
    EXPECT_EQ(v4.writes + v6.writes + ipset.writes, writes)
        << "IPv6 rule text differs from ip6tables-save\n"
        << Diagnose();
  }
  Answer remote = testing::Ask(ext_.name(), node6, 30081, Proto::kTcp);
  ASSERT_TRUE(remote.ok()) << remote.ToString() << "\n" << Diagnose();
  EXPECT_EQ(remote.name, "b");
  EXPECT_EQ(remote.client_ip, internal6);
  Answer local = testing::Ask(ext_.name(), node6, 30082, Proto::kTcp);
  ASSERT_TRUE(local.ok()) << local.ToString();
  EXPECT_EQ(local.client_ip, "fd00:192::9");
  Answer self = testing::Ask(PodNs("a"), vip6, 81, Proto::kTcp);
  ASSERT_TRUE(self.ok()) << self.ToString();
  EXPECT_EQ(self.client_ip, vip6);
  EXPECT_TRUE(testing::Ask(ext_.name(), vip6, 81, Proto::kTcp).ok());
  Answer rejected = testing::Ask(ext_.name(), vip6, 9999, Proto::kTcp);
  EXPECT_EQ(rejected.outcome, Answer::Outcome::kRefused) << rejected.ToString();
  EXPECT_TRUE(testing::Ask(ext_.name(), node6, 9999, Proto::kTcp).ok());
  {
    ScopedNetns inside(Node().name());
    ASSERT_TRUE(firewall.Cleanup().ok());
  }
  auto after = Node().Sh("ip6tables-save; ipset list -n");
  ASSERT_TRUE(after.ok());
  EXPECT_EQ(after->find("ipvs"), std::string::npos) << *after;
  EXPECT_EQ(after->find("kube-router"), std::string::npos) << *after;
}

}  // namespace
}  // namespace kr::proxy
