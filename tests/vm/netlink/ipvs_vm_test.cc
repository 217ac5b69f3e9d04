// Ipvs (generic netlink, our own messages) against the Debian guest kernel, checked with
// ipvsadm. Each test works in a fresh namespace inside the guest (IPVS state is per netns).
#include <gtest/gtest.h>

#include <algorithm>
#include <sstream>

#include "kube_router/netlink/libnl.h"
#include "lib/netns.h"
#include "netns/netlink/in_netns.h"
#include "vm/netlink/tcp.h"

namespace kr::netlink {
namespace {

using kr::testing::InNetns;
using kr::testing::Netns;

IpAddress A(const char* text) { return *IpAddress::Parse(text); }

class IpvsVmTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(kr::testing::IsRoot());
    auto ipvs = InNetns(ns_.name(), [] { return MakeNetlinkIpvs(); });
    ASSERT_TRUE(ipvs.ok()) << ipvs.error() << " (the vm tier loads ip_vs)";
    ipvs_ = std::move(*ipvs);
  }
  std::string Ipvsadm(const std::string& args) {
    auto out = ns_.Sh("ipvsadm " + args);
    EXPECT_TRUE(out.ok()) << out.error();
    return out.ok() ? *out : "";
  }
  static bool Has(const std::string& text, const std::string& what) {
    return text.find(what) != std::string::npos;
  }
  // "Masq 3" for the line "  -> 10.244.2.7:8080  Masq  3  0  0" of `ipvsadm -Ln` output.
  static std::string ForwardAndWeight(const std::string& shown, const std::string& dest) {
    std::istringstream lines(shown);
    for (std::string line; std::getline(lines, line);) {
      std::istringstream words(line);
      std::string arrow, address, forward, weight;
      words >> arrow >> address >> forward >> weight;
      if (arrow == "->" && address == dest) return forward + " " + weight;
    }
    return "(no line for " + dest + ")";
  }

  Netns ns_{"krvs"};
  std::unique_ptr<Ipvs> ipvs_;
};

TEST_F(IpvsVmTest, ServicesAndDestinationsAppearInIpvsadm) {
  IpvsService web{A("10.96.0.1"), IpvsProtocol::kTcp, 80};
  IpvsService dns{A("10.96.0.10"), IpvsProtocol::kUdp, 53, 0, "sh", ipvs_flags::kPersistent, 300};
  IpvsService dsr;
  dsr.address = A("0.0.0.0");
  dsr.fwmark = 0x1234;
  dsr.scheduler = "lc";
  for (const IpvsService& s : {web, dns, dsr}) {
    Status added = ipvs_->AddService(s);
    ASSERT_TRUE(added.ok()) << added.message();
  }
  EXPECT_FALSE(ipvs_->AddService(web).ok()) << "the kernel refuses a duplicate";

  ASSERT_TRUE(ipvs_->AddDestination(web, {A("10.244.1.5"), 8080}).ok());
  ASSERT_TRUE(
      ipvs_->AddDestination(web, {A("10.244.2.7"), 8080, IpvsForward::kMasquerade, 3}).ok());
  ASSERT_TRUE(ipvs_->AddDestination(dns, {A("10.244.1.9"), 53, IpvsForward::kRoute}).ok());
  ASSERT_TRUE(ipvs_->AddDestination(dsr, {A("10.244.3.3"), 0, IpvsForward::kTunnel}).ok());

  const std::string shown = Ipvsadm("-Ln");
  EXPECT_TRUE(Has(shown, "TCP  10.96.0.1:80 rr")) << shown;
  EXPECT_EQ(ForwardAndWeight(shown, "10.244.1.5:8080"), "Masq 1") << shown;
  EXPECT_EQ(ForwardAndWeight(shown, "10.244.2.7:8080"), "Masq 3") << shown;
  EXPECT_TRUE(Has(shown, "UDP  10.96.0.10:53 sh persistent 300")) << shown;
  EXPECT_EQ(ForwardAndWeight(shown, "10.244.1.9:53"), "Route 1") << shown;
  EXPECT_TRUE(Has(shown, "FWM  4660 lc")) << shown;
  EXPECT_EQ(ForwardAndWeight(shown, "10.244.3.3:0"), "Tunnel 1") << shown;

  auto services = ipvs_->ListServices();
  ASSERT_TRUE(services.ok()) << services.error();
  ASSERT_EQ(services->size(), 3u);
  for (const IpvsService& want : {web, dns, dsr}) {
    EXPECT_NE(std::find(services->begin(), services->end(), want), services->end())
        << "not listed as added: " << want.ToString();
  }
  auto dests = ipvs_->ListDestinations(web);
  ASSERT_TRUE(dests.ok()) << dests.error();
  ASSERT_EQ(dests->size(), 2u);
}

TEST_F(IpvsVmTest, UpdatesAndDeletesInPlace) {
  IpvsService svc{A("10.96.0.20"), IpvsProtocol::kTcp, 443};
  IpvsDestination pod{A("10.244.1.5"), 8443};
  ASSERT_TRUE(ipvs_->AddService(svc).ok());
  ASSERT_TRUE(ipvs_->AddDestination(svc, pod).ok());
  EXPECT_FALSE(ipvs_->AddDestination(svc, pod).ok()) << "duplicate destination";

  // Session affinity switched on, as for sessionAffinity: ClientIP.
  svc.scheduler = "wrr";
  svc.flags = ipvs_flags::kPersistent;
  svc.timeout = 10800;
  ASSERT_TRUE(ipvs_->UpdateService(svc).ok());
  pod.weight = 0;  // graceful termination
  ASSERT_TRUE(ipvs_->UpdateDestination(svc, pod).ok());
  const std::string shown = Ipvsadm("-Ln -t 10.96.0.20:443");
  EXPECT_TRUE(Has(shown, "TCP  10.96.0.20:443 wrr persistent 10800")) << shown;
  EXPECT_EQ(ForwardAndWeight(shown, "10.244.1.5:8443"), "Masq 0") << shown;
  auto listed = ipvs_->ListServices();
  ASSERT_TRUE(listed.ok());
  ASSERT_EQ(listed->size(), 1u);
  EXPECT_EQ(listed->front(), svc);

  ASSERT_TRUE(ipvs_->DeleteDestination(svc, pod).ok());
  EXPECT_FALSE(ipvs_->DeleteDestination(svc, pod).ok());
  EXPECT_TRUE(ipvs_->ListDestinations(svc)->empty());
  ASSERT_TRUE(ipvs_->DeleteService(svc).ok());
  EXPECT_FALSE(ipvs_->DeleteService(svc).ok());
  EXPECT_FALSE(Has(Ipvsadm("-Ln"), "10.96.0.20"));
  EXPECT_FALSE(ipvs_->UpdateService(svc).ok()) << "update of a missing service";
}

// Apply packs many writes per sendmsg (more than one batch here) and matches every ack to its
// write: refused writes are reported by index, the others are all in the kernel, in order
// (services before their destinations), and single calls keep working on the same socket.
TEST_F(IpvsVmTest, ABatchOfWritesIsAppliedInOrderAndReportsOnlyTheRefusedOnes) {
  using Op = IpvsWrite::Op;
  std::vector<IpvsWrite> writes;
  constexpr int kServices = 300;  // 300 services + 900 destinations: several batches
  for (int i = 0; i < kServices; ++i) {
    IpvsService svc{IpAddress::V4(0x0a600000u + static_cast<uint32_t>(i) + 1), IpvsProtocol::kTcp,
                    80};
    writes.push_back({Op::kAddService, svc, {}});
    for (int j = 0; j < 3; ++j) {
      IpvsDestination d{IpAddress::V4(0x0af40000u + static_cast<uint32_t>(i * 3 + j) + 1), 8080};
      writes.push_back({Op::kAddDestination, svc, d});
    }
  }
  const IpvsService first = writes[0].service;
  const size_t duplicate = writes.size();
  writes.push_back({Op::kAddService, first, {}});  // refused: exists
  const size_t missing = writes.size();
  writes.push_back({Op::kDeleteDestination, first, {A("10.9.9.9"), 1}});  // refused: no such
  IpvsService changed = first;
  changed.scheduler = "lc";
  writes.push_back({Op::kUpdateService, changed, {}});
  writes.push_back({Op::kDeleteDestination, first, writes[1].destination});

  auto refused = ipvs_->Apply(writes);
  ASSERT_TRUE(refused.ok()) << refused.error();
  ASSERT_EQ(refused->size(), 2u);
  EXPECT_EQ((*refused)[0].index, duplicate);
  EXPECT_NE((*refused)[0].message.find("exists"), std::string::npos) << (*refused)[0].message;
  EXPECT_EQ((*refused)[1].index, missing);
  EXPECT_NE((*refused)[1].message.find("No such"), std::string::npos) << (*refused)[1].message;

  auto listed = ipvs_->ListServices();
  ASSERT_TRUE(listed.ok());
  EXPECT_EQ(listed->size(), static_cast<size_t>(kServices));
  const std::string shown = Ipvsadm("-Ln");
  size_t dests = 0;
  for (size_t at = shown.find("Masq"); at != std::string::npos; at = shown.find("Masq", at + 1)) {
    ++dests;
  }
  EXPECT_EQ(dests, static_cast<size_t>(kServices * 3 - 1));
  EXPECT_TRUE(Has(Ipvsadm("-Ln -t 10.96.0.1:80"), "TCP  10.96.0.1:80 lc")) << shown;
  ASSERT_TRUE(ipvs_->DeleteService(first).ok());  // a single call after the batch
  EXPECT_EQ(ipvs_->ListServices()->size(), static_cast<size_t>(kServices - 1));
}

TEST_F(IpvsVmTest, SchedulersLoadOnDemandWithTheirFlags) {
  // ip_vs_mh is not preloaded: the kernel asks for it when the service names it.
  IpvsService dh{A("10.96.0.30"), IpvsProtocol::kTcp, 80, 0, "dh"};
  IpvsService mh{A("10.96.0.31"),
                 IpvsProtocol::kTcp,
                 80,
                 0,
                 "mh",
                 ipvs_flags::kSchedFlag1 | ipvs_flags::kSchedFlag2};
  for (const IpvsService& s : {dh, mh}) {
    Status added = ipvs_->AddService(s);
    ASSERT_TRUE(added.ok()) << added.message();
  }
  const std::string shown = Ipvsadm("-Ln");
  EXPECT_TRUE(Has(shown, "TCP  10.96.0.30:80 dh")) << shown;
  EXPECT_TRUE(Has(shown, "TCP  10.96.0.31:80 mh (mh-fallback,mh-port)")) << shown;
  auto listed = ipvs_->ListServices();
  ASSERT_TRUE(listed.ok());
  EXPECT_NE(std::find(listed->begin(), listed->end(), mh), listed->end());
  EXPECT_FALSE(
      ipvs_->AddService({A("10.96.0.32"), IpvsProtocol::kTcp, 80, 0, "no-such-sched"}).ok());
}

// The data path, not just the tables: a connection from the node to a service VIP reaches a
// pod only because IPVS (as configured through our messages) rewrites it, and the service's
// counters record it.
TEST_F(IpvsVmTest, ForwardsConnectionsToAPodAndCountsThem) {
  Netns pod("krpod");
  ASSERT_TRUE(ns_.Sh("ip link add kube-dummy-if type dummy && ip link set kube-dummy-if up && "
                     "ip addr add 10.96.0.40/32 dev kube-dummy-if && "
                     "ip link add kr-veth type veth peer name eth0 netns " +
                     pod.name() +
                     " && ip addr add 10.244.1.1/24 dev kr-veth && ip link set kr-veth up")
                  .ok());
  ASSERT_TRUE(pod.Sh("ip addr add 10.244.1.5/24 dev eth0 && ip link set eth0 up && "
                     "ip route add default via 10.244.1.1")
                  .ok());
  uint16_t pod_port = 0;
  int listener = InNetns(pod.name(), [&] { return Listen(A("10.244.1.5"), &pod_port); });
  ASSERT_GE(listener, 0);

  IpvsService svc{A("10.96.0.40"), IpvsProtocol::kTcp, 80};
  ASSERT_TRUE(ipvs_->AddService(svc).ok());
  ASSERT_TRUE(ipvs_->AddDestination(svc, {A("10.244.1.5"), pod_port}).ok());

  const bool connected =
      InNetns(ns_.name(), [&] { return Connects(A("0.0.0.0"), A("10.96.0.40"), 80); });
  const bool accepted = AcceptsOne(listener);
  close(listener);
  EXPECT_TRUE(connected) << "connect to the VIP";
  EXPECT_TRUE(accepted) << "the pod got the connection";

  // The kernel folds its per-CPU counters into the totals on a 2 s estimator timer.
  IpvsServiceStats seen;
  ASSERT_TRUE(kr::testing::WaitFor(
      [&] {
        auto stats = ipvs_->ListServiceStats();
        if (!stats.ok() || stats->size() != 1) return false;
        seen = stats->front();
        return seen.stats.connections >= 1;
      },
      std::chrono::seconds(30)))
      << "no connection counted";
  EXPECT_EQ(seen.service, svc);
  EXPECT_GE(seen.stats.packets_in, 2u) << "SYN and ACK at least";
  EXPECT_GT(seen.stats.bytes_in, 0u);
  auto dests = ipvs_->ListDestinations(svc);
  ASSERT_TRUE(dests.ok());
  ASSERT_EQ(dests->size(), 1u);
  EXPECT_GE(dests->front().active_connections + dests->front().inactive_connections, 1u)
      << "the connection is tracked against the pod";
}

TEST_F(IpvsVmTest, Ipv6ServicesTimeoutsAndFlush) {
  IpvsService v6{A("fd00:96::1"), IpvsProtocol::kTcp, 80};
  ASSERT_TRUE(ipvs_->AddService(v6).ok());
  ASSERT_TRUE(ipvs_->AddDestination(v6, {A("fd00:244:1::5"), 8080}).ok());
  const std::string shown = Ipvsadm("-Ln");
  EXPECT_TRUE(Has(shown, "TCP  [fd00:96::1]:80 rr")) << shown;
  EXPECT_TRUE(Has(shown, "-> [fd00:244:1::5]:8080")) << shown;
  auto dests = ipvs_->ListDestinations(v6);
  ASSERT_TRUE(dests.ok());
  ASSERT_EQ(dests->size(), 1u);
  EXPECT_EQ(dests->front().address, A("fd00:244:1::5"));

  ASSERT_TRUE(ipvs_->SetTimeouts({901, 0, 301}).ok());
  const std::string timeouts = Ipvsadm("-L --timeout");
  EXPECT_TRUE(Has(timeouts, "Timeout (tcp tcpfin udp): 901 120 301")) << timeouts;

  ASSERT_TRUE(ipvs_->Flush().ok());
  EXPECT_TRUE(ipvs_->ListServices()->empty());
}

}  // namespace
}  // namespace kr::netlink
