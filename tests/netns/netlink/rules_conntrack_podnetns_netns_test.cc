// RuleTable, Conntrack and the /proc pod-netns finder against the real host kernel in throwaway
// namespaces, checked with iproute2 and conntrack-tools.
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>

#include "in_netns.h"
#include "kube_router/netlink/libnl.h"
#include "kube_router/netlink/pod_netns.h"
#include "lib/netns.h"

namespace kr::netlink::rules_conntrack_podnetns_netns_test {
namespace {

using kr::testing::InNetns;
using kr::testing::Netns;

IpAddress A(const char* text) { return *IpAddress::Parse(text); }

std::string Sh(const Netns& ns, const std::string& command) {
  auto out = ns.Sh(command);
  EXPECT_TRUE(out.ok()) << command << ": " << out.error();
  return out.ok() ? *out : "";
}

TEST(RuleTableNetnsTest, DsrRulesBothFamiliesListedDeletedAndForeignRulesKept) {
  ASSERT_TRUE(kr::testing::IsRoot());
  Netns ns("krrule");
  // A foreign rule at the same priority and table, without protocol 17.
  Sh(ns,
     "ip rule add fwmark 0x2a lookup 78 pref 32764 && ip -6 rule add from fd00:1::/64 lookup 100");
  auto rules = InNetns(ns.name(), [] { return MakeNetlinkRuleTable(); });
  ASSERT_TRUE(rules.ok()) << rules.error();

  Rule dsr;
  dsr.priority = 32764;
  dsr.table = kKubeRouterDsrTable;
  dsr.fwmark = 0x3fff;
  Rule from_v4;
  from_v4.priority = 32765;
  from_v4.table = 79;
  from_v4.from = *IpPrefix::Parse("10.244.1.0/24");
  Rule v6 = dsr;
  v6.family = IpAddress::Family::kV6;
  v6.fwmark = 0x1234;
  v6.fwmask = 0xffff;
  Rule from_v6 = from_v4;
  from_v6.family = IpAddress::Family::kV6;
  from_v6.from = *IpPrefix::Parse("fd00:244::/64");
  for (const Rule& r : {dsr, from_v4, v6, from_v6}) {
    ASSERT_TRUE((*rules)->Add(r).ok()) << r.ToString();
  }
  EXPECT_FALSE((*rules)->Add(dsr).ok()) << "an identical rule exists";
  Rule bad = dsr;
  bad.from = *IpPrefix::Parse("fd00::/64");
  EXPECT_FALSE((*rules)->Add(bad).ok()) << "from-prefix of the other family";

  const std::string v4_text = Sh(ns, "ip rule show");
  EXPECT_NE(v4_text.find("32764:\tfrom all fwmark 0x3fff lookup 78 proto 17"), std::string::npos)
      << v4_text;
  EXPECT_NE(v4_text.find("32765:\tfrom 10.244.1.0/24 lookup 79 proto 17"), std::string::npos)
      << v4_text;
  const std::string v6_text = Sh(ns, "ip -6 rule show");
  EXPECT_NE(v6_text.find("from all fwmark 0x1234/0xffff lookup 78 proto 17"), std::string::npos)
      << v6_text;
  EXPECT_NE(v6_text.find("from fd00:244::/64 lookup 79 proto 17"), std::string::npos) << v6_text;

  auto ours4 = (*rules)->List(IpAddress::Family::kV4, kKubeRouterRouteProtocol);
  ASSERT_TRUE(ours4.ok()) << ours4.error();
  EXPECT_EQ(*ours4, (std::vector<Rule>{dsr, from_v4}));
  auto ours6 = (*rules)->List(IpAddress::Family::kV6, kKubeRouterRouteProtocol);
  ASSERT_TRUE(ours6.ok()) << ours6.error();
  EXPECT_EQ(*ours6, (std::vector<Rule>{v6, from_v6}));
  auto all4 = (*rules)->List(IpAddress::Family::kV4, std::nullopt);
  ASSERT_TRUE(all4.ok());
  EXPECT_GE(all4->size(), 5u) << "local, main, default, the foreign rule and ours";

  for (const Rule& r : {dsr, from_v4, v6, from_v6}) {
    ASSERT_TRUE((*rules)->Delete(r).ok()) << r.ToString();
  }
  EXPECT_FALSE((*rules)->Delete(dsr).ok()) << "already gone";
  EXPECT_TRUE((*rules)->List(IpAddress::Family::kV4, kKubeRouterRouteProtocol)->empty());
  EXPECT_TRUE((*rules)->List(IpAddress::Family::kV6, kKubeRouterRouteProtocol)->empty());
  EXPECT_NE(Sh(ns, "ip rule show").find("fwmark 0x2a lookup 78"), std::string::npos)
      << "the foreign rule survives";
  EXPECT_NE(Sh(ns, "ip -6 rule show").find("from fd00:1::/64 lookup 100"), std::string::npos);
}

// conntrack -I makes the flows an IPVS-masqueraded UDP service leaves behind: client -> VIP,
// answered by the backend.
void InsertUdp(const Netns& ns, const std::string& client, int sport, const std::string& vip,
               int dport, const std::string& backend) {
  Sh(ns, "conntrack -I -p udp -s " + client + " -d " + vip + " --sport " + std::to_string(sport) +
             " --dport " + std::to_string(dport) + " -r " + backend + " -q " + client +
             " --reply-port-src " + std::to_string(dport) + " --reply-port-dst " +
             std::to_string(sport) + " -t 300 2>/dev/null");
}

TEST(ConntrackNetnsTest, ListsBothFamiliesAndDeletesOnlyTheGoneBackendsFlows) {
  ASSERT_TRUE(kr::testing::IsRoot());
  Netns ns("krct");
  InsertUdp(ns, "192.0.2.9", 5000, "10.96.0.10", 53, "10.244.1.5");    // gone backend
  InsertUdp(ns, "192.0.2.9", 5001, "10.96.0.10", 53, "10.244.2.5");    // surviving backend
  InsertUdp(ns, "192.0.2.9", 5002, "10.96.0.11", 53, "10.244.1.5");    // gone backend, other VIP
  InsertUdp(ns, "192.0.2.9", 5003, "192.0.2.1", 30053, "10.244.1.5");  // NodePort, gone backend
  InsertUdp(ns, "fd00::9", 5000, "fd00:96::10", 53, "fd00:244::5");
  InsertUdp(ns, "fd00::9", 5001, "fd00:96::10", 53, "fd00:244::6");
  // A TCP flow to the same VIP and backend must never be touched by a UDP filter.
  Sh(ns,
     "conntrack -I -p tcp -s 192.0.2.9 -d 10.96.0.10 --sport 6000 --dport 53 -r 10.244.1.5 "
     "-q 192.0.2.9 --reply-port-src 53 --reply-port-dst 6000 --state ESTABLISHED -t 300 "
     "2>/dev/null");
  auto ct = InNetns(ns.name(), [] { return MakeNetlinkConntrack(); });
  ASSERT_TRUE(ct.ok()) << ct.error();

  auto v4 = (*ct)->List(IpAddress::Family::kV4);
  ASSERT_TRUE(v4.ok()) << v4.error();
  ASSERT_EQ(v4->size(), 5u);
  bool seen = false;
  for (const ConntrackFlow& f : *v4) {
    if (f.original.source_port == 5001) {
      seen = true;
      EXPECT_EQ(f.ToString(),
                "udp 192.0.2.9:5001->10.96.0.10:53 reply 10.244.2.5:53->192.0.2.9:5001");
    }
  }
  EXPECT_TRUE(seen);
  auto v6 = (*ct)->List(IpAddress::Family::kV6);
  ASSERT_TRUE(v6.ok()) << v6.error();
  EXPECT_EQ(v6->size(), 2u);

  ConntrackFilter wide;
  EXPECT_FALSE((*ct)->Delete({wide}).ok());
  EXPECT_EQ((*ct)->List(IpAddress::Family::kV4)->size(), 5u) << "a refused filter deletes nothing";

  ConntrackFilter cluster_ip;  // VIP:53 answered by the gone backend
  cluster_ip.original_destination = A("10.96.0.10");
  cluster_ip.original_destination_port = 53;
  cluster_ip.reply_source = A("10.244.1.5");
  ConntrackFilter node_port;  // any node address, NodePort 30053, gone backend
  node_port.original_destination_port = 30053;
  node_port.reply_source = A("10.244.1.5");
  ConntrackFilter v6_filter;
  v6_filter.family = IpAddress::Family::kV6;
  v6_filter.original_destination = A("fd00:96::10");
  v6_filter.original_destination_port = 53;
  v6_filter.reply_source = A("fd00:244::5");
  auto deleted = (*ct)->Delete({cluster_ip, node_port, v6_filter});
  ASSERT_TRUE(deleted.ok()) << deleted.error();
  EXPECT_EQ(*deleted, 3u);

  const std::string left = Sh(ns, "conntrack -L 2>/dev/null; conntrack -L -f ipv6 2>/dev/null");
  EXPECT_EQ(left.find("sport=5000 dport=53 "), std::string::npos) << left;
  EXPECT_EQ(left.find("dport=30053"), std::string::npos) << left;
  EXPECT_NE(left.find("sport=5001 dport=53 "), std::string::npos) << "surviving backend\n" << left;
  EXPECT_NE(left.find("dst=10.96.0.11"), std::string::npos) << "other VIP\n" << left;
  EXPECT_NE(left.find("tcp "), std::string::npos) << "TCP untouched\n" << left;
  EXPECT_NE(left.find("src=fd00:244::6"), std::string::npos) << left;
  EXPECT_EQ(left.find("src=fd00:244::5"), std::string::npos) << left;

  auto again = (*ct)->Delete({cluster_ip});
  ASSERT_TRUE(again.ok()) << again.error();
  EXPECT_EQ(*again, 0u) << "nothing left to delete is not an error";
}

ino_t NetnsInode(const std::string& path) {
  struct stat st {};
  return stat(path.c_str(), &st) == 0 ? st.st_ino : 0;
}

TEST(PodNetnsTest, FindsPodsByIpInNamedAndProcessOnlyNamespacesAndRunsWorkThere) {
  ASSERT_TRUE(kr::testing::IsRoot());
  Netns named("krpodns");
  // The pod IP on a link that is not eth0; a decoy namespace with another address.
  Sh(named,
     "ip link add podif0 type veth peer name podif1 && ip link set podif0 up && "
     "ip addr add 10.99.0.5/24 dev podif0 && ip addr add fd00:99::5/64 dev podif0 nodad");
  Netns decoy("krpoddecoy");
  Sh(decoy, "ip addr add 10.99.0.6/32 dev lo");
  // A namespace held only by a process (what a container runtime leaves: no /run/netns entry).
  kr::testing::TempDir dir;
  kr::testing::Process holder({"unshare", "-n", "sleep", "120"}, dir.path() + "/holder.log");
  const std::string holder_ns = "/proc/" + std::to_string(holder.pid()) + "/ns/net";
  ASSERT_TRUE(
      kr::testing::WaitFor([&] { return NetnsInode(holder_ns) != NetnsInode("/proc/self/ns/net"); },
                           std::chrono::seconds(5)));
  auto added = kr::Exec({"nsenter", "-t", std::to_string(holder.pid()), "-n", "sh", "-c",
                         "ip link add ctr0 type veth peer name ctr1 && ip link set ctr0 up && "
                         "ip addr add 10.99.1.7/24 dev ctr0"});
  ASSERT_TRUE(added.ok() && added->exit_code == 0);

  auto finder = MakeProcPodNetns();
  PodNetnsContext got;
  ino_t inode_inside = 0;
  ASSERT_TRUE(finder
                  ->RunInPodNetns(A("10.99.0.5"),
                                  [&](const PodNetnsContext& c) {
                                    got = c;
                                    inode_inside = NetnsInode("/proc/thread-self/ns/net");
                                    return Status::Ok();
                                  })
                  .ok());
  EXPECT_EQ(got.device, "podif0");
  EXPECT_EQ(inode_inside, NetnsInode("/run/netns/" + named.name()));
  EXPECT_EQ(NetnsInode("/proc/thread-self/ns/net"), NetnsInode("/proc/self/ns/net"))
      << "the caller's thread never changes namespace";

  // IPv6, and real work inside: an address added through a netlink adapter made in the pod.
  Status work = finder->RunInPodNetns(A("fd00:99::5"), [&](const PodNetnsContext& c) {
    auto links = MakeNetlinkLinks();
    if (!links.ok()) return links.status();
    Address vip;
    vip.device = c.device;
    vip.address = A("203.0.113.10");
    return (*links)->AddAddress(vip);
  });
  ASSERT_TRUE(work.ok()) << work.message();
  EXPECT_NE(Sh(named, "ip addr show dev podif0").find("203.0.113.10/32"), std::string::npos);

  std::string holder_device;
  ASSERT_TRUE(finder
                  ->RunInPodNetns(A("10.99.1.7"),
                                  [&](const PodNetnsContext& c) {
                                    holder_device = c.device;
                                    inode_inside = NetnsInode("/proc/thread-self/ns/net");
                                    return Status::Ok();
                                  })
                  .ok());
  EXPECT_EQ(holder_device, "ctr0");
  EXPECT_EQ(inode_inside, NetnsInode(holder_ns));

  Status failing = finder->RunInPodNetns(
      A("10.99.0.5"), [](const PodNetnsContext&) { return Status::Error("work failed"); });
  EXPECT_FALSE(failing.ok());
  EXPECT_NE(failing.message().find("work failed"), std::string::npos);
  Status missing = finder->RunInPodNetns(A("10.99.2.9"), [](const PodNetnsContext&) {
    ADD_FAILURE() << "no namespace holds this IP";
    return Status::Ok();
  });
  EXPECT_FALSE(missing.ok());
  EXPECT_NE(missing.message().find("10.99.2.9"), std::string::npos) << missing.message();
}

}  // namespace
}  // namespace kr::netlink::rules_conntrack_podnetns_netns_test
