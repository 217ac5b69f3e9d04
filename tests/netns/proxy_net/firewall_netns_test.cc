// The service proxy's VIP firewall against the real iptables (both backends, both families) and
// ipset in a throwaway namespace: the rules load, read back equal to what we render (so a
// verifying sync writes nothing), and real TCP traffic to a VIP is accepted on a service port,
// rejected on any other port and untouched to the node's own address. The -m ipvs masquerade and
// hairpin rules need ip_vs, which the host lacks: they are proven in the vm tier.
#include <arpa/inet.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>

#include "kube_router/netfilter/adapters.h"
#include "kube_router/netlink/sysctl.h"
#include "kube_router/proxy/kernel_settings.h"
#include "kube_router/proxy/proxy_firewall.h"
#include "lib/netns.h"
#include "lib/podnet.h"
#include "netns/proxy_net/counting_adapters.h"

namespace kr::proxy {
namespace {

using kr::testing::Netns;
using kr::testing::ScopedNetns;
using netfilter::IpFamily;
using netfilter::IptablesMode;
using netlink::IpvsProtocol;

IpAddress Ip(const char* text) { return *IpAddress::Parse(text); }

using kr::testing::CountingIpset;
using kr::testing::CountingIptables;

enum class Outcome { kConnected, kRefused, kTimeout };

// One TCP connect from the calling thread's namespace, 2 s deadline, from the node IP (as the
// proxy's local route to a VIP selects it, #376: replies then go to a local address).
Outcome Connect(const char* ip, uint16_t port) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  sockaddr_in source{};
  source.sin_family = AF_INET;
  inet_pton(AF_INET, "192.168.77.10", &source.sin_addr);
  if (bind(fd, reinterpret_cast<sockaddr*>(&source), sizeof(source)) != 0) {
    close(fd);
    return Outcome::kTimeout;
  }
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(port);
  inet_pton(AF_INET, ip, &addr.sin_addr);
  int rc = connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr));
  Outcome outcome = Outcome::kConnected;
  if (rc != 0 && errno == EINPROGRESS) {
    pollfd p{fd, POLLOUT, 0};
    if (poll(&p, 1, 2000) != 1) {
      outcome = Outcome::kTimeout;
    } else {
      int err = 0;
      socklen_t len = sizeof(err);
      getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len);
      outcome = err == 0 ? Outcome::kConnected
                         : (err == ECONNREFUSED ? Outcome::kRefused : Outcome::kTimeout);
    }
  } else if (rc != 0) {
    outcome = errno == ECONNREFUSED ? Outcome::kRefused : Outcome::kTimeout;
  }
  close(fd);
  return outcome;
}

// A listening TCP socket on ip:port in the calling thread's namespace (the kernel completes
// handshakes without accept()).
int Listen(const char* ip, uint16_t port) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  int one = 1;
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(port);
  inet_pton(AF_INET, ip, &addr.sin_addr);
  if (bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0 || listen(fd, 16) != 0) {
    close(fd);
    return -1;
  }
  return fd;
}

FirewallInput NodeInput() {
  FirewallInput in;
  in.local_ips = {Ip("192.168.77.10"), Ip("127.0.0.1"), Ip("fd00:77::10"), Ip("::1")};
  in.services = {
      {Ip("10.96.77.10"), IpvsProtocol::kTcp, 53},
      {Ip("10.96.77.10"), IpvsProtocol::kUdp, 53},
      {Ip("10.96.77.11"), IpvsProtocol::kSctp, 9000},
      {Ip("192.168.77.10"), IpvsProtocol::kTcp, 30080},  // a NodePort puts the node IP in svip
      {Ip("fd00:96::10"), IpvsProtocol::kTcp, 443}};
  return in;
}

class FirewallNetnsTest : public ::testing::TestWithParam<IptablesMode> {
 protected:
  void SetUp() override { ASSERT_TRUE(kr::testing::IsRoot()) << "netns tests need root"; }
};

TEST_P(FirewallNetnsTest, RulesReadBackEqualAndFilterRealTraffic) {
  Netns ns("krpf");
  // veth pairs stand in for the node's interface and kube-dummy-if (the host may lack the
  // dummy module); only the addresses matter here.
  ASSERT_TRUE(ns.Sh("ip link set lo up && ip link add eth0 type veth peer name eth0-peer && "
                    "ip link set eth0 up && ip link set eth0-peer up && "
                    "ip addr add 192.168.77.10/24 dev eth0 && "
                    "ip addr add fd00:77::10/64 dev eth0 nodad && "
                    "ip link add kube-dummy-if type veth peer name kube-dummy-peer && "
                    "ip link set kube-dummy-if up && ip link set kube-dummy-peer up && "
                    "ip addr add 10.96.77.10/32 dev kube-dummy-if")
                  .ok());
  ScopedNetns inside(ns.name());
  CountingIptables v4(netfilter::MakeIptables(GetParam(), IpFamily::kV4));
  CountingIptables v6(netfilter::MakeIptables(GetParam(), IpFamily::kV6));
  CountingIpset ipset(netfilter::MakeIpset());
  ProxyFirewall firewall(&v4, &v6, &ipset);

  // Before the firewall: a host listener on a VIP answers on any port (#282).
  int vip_other = Listen("10.96.77.10", 8080);
  int vip_service = Listen("10.96.77.10", 53);
  int node_other = Listen("192.168.77.10", 8080);
  ASSERT_GE(vip_other, 0);
  ASSERT_GE(vip_service, 0);
  ASSERT_GE(node_other, 0);
  EXPECT_EQ(Connect("10.96.77.10", 8080), Outcome::kConnected);

  ASSERT_TRUE(firewall.Sync(NodeInput()).ok());
  auto sets = ns.Sh("ipset save");
  ASSERT_TRUE(sets.ok());
  EXPECT_NE(sets->find("add kube-router-svip-prt 10.96.77.11,sctp:9000"), std::string::npos)
      << *sets;
  EXPECT_NE(sets->find("add inet6:kube-router-svip-prt fd00:96::10,tcp:443"), std::string::npos)
      << *sets;
  auto saved = v4.Save("filter");
  ASSERT_TRUE(saved.ok());
  EXPECT_EQ(saved->chains[kServicesChain], ServicesChainRules(NodeInput(), IpFamily::kV4));
  EXPECT_EQ(saved->chains["INPUT"].at(0), ServicesJumpRule(IpFamily::kV4));
  auto saved6 = v6.Save("filter");
  ASSERT_TRUE(saved6.ok());
  EXPECT_EQ(saved6->chains[kServicesChain], ServicesChainRules(NodeInput(), IpFamily::kV6));

  // What iptables-save prints equals what we render: verifying writes nothing.
  const int writes = v4.writes + v6.writes + ipset.writes;
  ASSERT_TRUE(firewall.Sync(NodeInput(), /*verify=*/true).ok());
  EXPECT_EQ(v4.writes + v6.writes + ipset.writes, writes);

  EXPECT_EQ(Connect("10.96.77.10", 53), Outcome::kConnected);      // a service port
  EXPECT_EQ(Connect("10.96.77.10", 8080), Outcome::kRefused);      // not a service port: REJECT
  EXPECT_EQ(Connect("192.168.77.10", 8080), Outcome::kConnected);  // the node itself (in svip)

  // Without --ipvs-permit-all the VIP answers on every port again.
  FirewallInput open = NodeInput();
  open.permit_all = false;
  ASSERT_TRUE(firewall.Sync(open).ok());
  EXPECT_EQ(Connect("10.96.77.10", 8080), Outcome::kConnected);
  ASSERT_TRUE(firewall.Sync(NodeInput()).ok());
  EXPECT_EQ(Connect("10.96.77.10", 8080), Outcome::kRefused);

  // A service added later is a set delta; its port opens.
  FirewallInput more = NodeInput();
  more.services.push_back({Ip("10.96.77.10"), IpvsProtocol::kTcp, 8080});
  const int table_writes = v4.writes + v6.writes;
  ASSERT_TRUE(firewall.Sync(more).ok());
  EXPECT_EQ(v4.writes + v6.writes, table_writes);
  EXPECT_EQ(Connect("10.96.77.10", 8080), Outcome::kConnected);

  // Cleanup: everything of ours gone, a foreign rule and set stay; a second cleanup is a no-op.
  ASSERT_TRUE(ns.Sh("ipset create foreign hash:ip && iptables-" +
                    std::string(IptablesModeName(GetParam())) +
                    " -A INPUT -m set --match-set foreign src -j ACCEPT")
                  .ok());
  ASSERT_TRUE(firewall.Cleanup().ok());
  auto names = ipset.ListNames();
  ASSERT_TRUE(names.ok());
  EXPECT_EQ(*names, std::vector<std::string>{"foreign"});
  saved = v4.Save("filter");
  ASSERT_TRUE(saved.ok());
  EXPECT_FALSE(saved->chains.contains(kServicesChain));
  EXPECT_EQ(saved->chains["INPUT"].size(), 1u);
  saved6 = v6.Save("filter");
  ASSERT_TRUE(saved6.ok());
  EXPECT_FALSE(saved6->chains.contains(kServicesChain));
  const int after = v4.writes + v6.writes + ipset.writes;
  ASSERT_TRUE(firewall.Cleanup().ok());
  EXPECT_EQ(v4.writes + v6.writes + ipset.writes, after + 1);  // only the (empty) set destroy
  EXPECT_EQ(Connect("10.96.77.10", 8080), Outcome::kConnected);
  for (int fd : {vip_other, vip_service, node_other}) close(fd);
}

// The kernel settings through the real /proc/sys of a fresh namespace (per-namespace keys; the
// host has no ip_vs, so its net.ipv4.vs.* keys are missing and skipped without an error).
TEST(KernelSettingsNetns, WritesArpAndRpFilterInTheNamespace) {
  ASSERT_TRUE(kr::testing::IsRoot());
  Netns ns("krpk");
  ASSERT_TRUE(ns.Sh("ip link add eth0 type veth peer name eth0-peer && "
                    "echo 1 > /proc/sys/net/ipv4/conf/all/rp_filter && "
                    "echo 1 > /proc/sys/net/ipv4/conf/eth0/rp_filter && "
                    "echo 0 > /proc/sys/net/ipv4/conf/eth0-peer/rp_filter")
                  .ok());
  {
    ScopedNetns inside(ns.name());
    auto sysctl = netlink::MakeProcSysctl();
    KernelSettings settings(sysctl.get(), nullptr);
    KernelSettingsInput input;
    input.rp_filter_interfaces = {"eth0", "eth0-peer", "kube-bridge"};
    ASSERT_TRUE(settings.Apply(input).ok());
  }
  auto read = [&](const std::string& path) {
    auto out = ns.Sh("cat /proc/sys/" + path);
    return out.ok() ? out->substr(0, out->find('\n')) : "?";
  };
  EXPECT_EQ(read("net/ipv4/conf/all/arp_ignore"), "1");
  EXPECT_EQ(read("net/ipv4/conf/all/arp_announce"), "2");
  EXPECT_EQ(read("net/ipv4/conf/all/rp_filter"), "2");
  EXPECT_EQ(read("net/ipv4/conf/eth0/rp_filter"), "2");
  EXPECT_EQ(read("net/ipv4/conf/eth0-peer/rp_filter"), "0");
}

INSTANTIATE_TEST_SUITE_P(Backends, FirewallNetnsTest,
                         ::testing::Values(IptablesMode::kNft, IptablesMode::kLegacy),
                         [](const auto& info) {
                           return std::string(netfilter::IptablesModeName(info.param));
                         });

}  // namespace
}  // namespace kr::proxy
