// Conntrack cleanup over the fake: exactly the flows a gone UDP/SCTP backend answered go.
#include "kube_router/proxy/conntrack_cleanup.h"

#include <gtest/gtest.h>

#include "kube_router/netlink/fakes.h"

namespace kr::proxy::conntrack_cleanup_test {
namespace {

using netlink::ConntrackFlow;
using netlink::FakeConntrack;
namespace ipp = netlink::ip_protocol;

IpAddress A(const char* text) { return *IpAddress::Parse(text); }

// client:cport -> dst:dport, answered by `answered_by` (the backend after IPVS masquerading, or
// the destination itself when nobody translated the flow).
ConntrackFlow Flow(uint8_t proto, const char* client, uint16_t cport, const char* dst,
                   uint16_t dport, const char* answered_by, uint16_t backend_port) {
  ConntrackFlow f;
  f.protocol = proto;
  f.original = {A(client), A(dst), cport, dport};
  f.reply = {A(answered_by), A(client), backend_port, cport};
  return f;
}

class ConntrackCleanupTest : public ::testing::Test {
 protected:
  void SetUp() override {
    // DNS-like service 10.96.0.10:53 / fd00:96::10:53, NodePort 30053, backends .1.5 and .2.5.
    ct_.Seed(Flow(ipp::kUdp, "10.244.3.9", 5000, "10.96.0.10", 53, "10.244.1.5", 5353));       // 0
    ct_.Seed(Flow(ipp::kUdp, "10.244.3.9", 5001, "10.96.0.10", 53, "10.244.2.5", 5353));       // 1
    ct_.Seed(Flow(ipp::kUdp, "192.0.2.50", 6000, "192.0.2.1", 30053, "10.244.1.5", 5353));     // 2
    ct_.Seed(Flow(ipp::kUdp, "192.0.2.50", 6001, "198.51.100.1", 30053, "10.244.1.5", 5353));  // 3
    ct_.Seed(Flow(ipp::kUdp, "192.0.2.50", 6002, "192.0.2.1", 30053, "10.244.2.5", 5353));     // 4
    ct_.Seed(Flow(ipp::kTcp, "10.244.3.9", 7000, "10.96.0.10", 53, "10.244.1.5", 5353));       // 5
    ct_.Seed(Flow(ipp::kUdp, "10.244.3.9", 5002, "10.96.0.11", 53, "10.244.1.5", 5353));       // 6
    ct_.Seed(Flow(ipp::kUdp, "fd00::9", 5000, "fd00:96::10", 53, "fd00:244::5", 5353));        // 7
    ct_.Seed(Flow(ipp::kSctp, "10.244.3.9", 5003, "203.0.113.7", 53, "10.244.1.5", 5353));     // 8
  }
  ConntrackCleanupItem DnsPort() const {
    ConntrackCleanupItem item;
    item.service_ips = {A("10.96.0.10"), A("fd00:96::10"), A("203.0.113.7")};
    item.port = 53;
    item.node_port = 30053;
    return item;
  }
  bool Has(const ConntrackFlow& flow) const {
    for (const auto& f : ct_.flows()) {
      if (f == flow) return true;
    }
    return false;
  }
  FakeConntrack ct_;
};

TEST_F(ConntrackCleanupTest, GoneUdpBackendLosesItsServiceAndNodePortFlowsOnly) {
  std::vector<ConntrackFlow> before = ct_.flows();
  ConntrackCleanupItem item = DnsPort();
  item.gone_backends = {A("10.244.1.5")};
  auto deleted = CleanupConntrack(ct_, {item});
  ASSERT_TRUE(deleted.ok()) << deleted.error();
  EXPECT_EQ(*deleted, 3u);
  EXPECT_FALSE(Has(before[0])) << "VIP flow answered by the gone backend";
  EXPECT_FALSE(Has(before[2])) << "NodePort flow on the node IP";
  EXPECT_FALSE(Has(before[3])) << "NodePort flow on another node address (bindon-all-ip)";
  EXPECT_TRUE(Has(before[1])) << "surviving backend";
  EXPECT_TRUE(Has(before[4])) << "NodePort flow to the surviving backend";
  EXPECT_TRUE(Has(before[5])) << "TCP flows are not touched by a UDP port";
  EXPECT_TRUE(Has(before[6])) << "another service";
  EXPECT_TRUE(Has(before[7])) << "other family";
  EXPECT_TRUE(Has(before[8])) << "SCTP flow of the same VIP family but other protocol";
}

TEST_F(ConntrackCleanupTest, SctpAndIpv6BackendsAndTcpIgnored) {
  std::vector<ConntrackFlow> before = ct_.flows();
  ConntrackCleanupItem sctp = DnsPort();
  sctp.protocol = ipp::kSctp;
  sctp.gone_backends = {A("10.244.1.5")};
  ConntrackCleanupItem v6 = DnsPort();
  v6.gone_backends = {A("fd00:244::5")};
  ConntrackCleanupItem tcp = DnsPort();
  tcp.protocol = ipp::kTcp;
  tcp.gone_backends = {A("10.244.1.5")};
  auto deleted = CleanupConntrack(ct_, {sctp, v6, tcp});
  ASSERT_TRUE(deleted.ok()) << deleted.error();
  EXPECT_EQ(*deleted, 2u);
  EXPECT_FALSE(Has(before[7]));
  EXPECT_FALSE(Has(before[8])) << "SCTP flow to the external IP";
  EXPECT_TRUE(Has(before[5])) << "TCP item ignored";
  for (const auto& filter : ct_.delete_filters()) {
    EXPECT_NE(filter.protocol, ipp::kTcp) << filter.ToString();
    EXPECT_TRUE(filter.reply_source.has_value()) << filter.ToString();
    // A v6 backend is never paired with a v4 VIP.
    if (filter.original_destination) {
      EXPECT_EQ(filter.original_destination->family(), filter.family) << filter.ToString();
    }
  }
}

TEST_F(ConntrackCleanupTest, FirstBackendClearsUntranslatedFlowsOnly) {
  ConntrackFlow stuck = Flow(ipp::kUdp, "10.244.3.9", 5009, "10.96.0.10", 53, "10.96.0.10", 53);
  ConntrackFlow stuck_np =
      Flow(ipp::kUdp, "192.0.2.50", 6009, "192.0.2.1", 30053, "192.0.2.1", 30053);
  ct_.Seed(stuck);
  ct_.Seed(stuck_np);
  std::vector<ConntrackFlow> before = ct_.flows();
  ConntrackCleanupItem item = DnsPort();
  item.first_backend_arrived = true;
  auto deleted = CleanupConntrack(ct_, {item});
  ASSERT_TRUE(deleted.ok()) << deleted.error();
  EXPECT_EQ(*deleted, 2u);
  EXPECT_FALSE(Has(stuck));
  EXPECT_FALSE(Has(stuck_np));
  EXPECT_EQ(ct_.flows().size(), before.size() - 2) << "translated flows stay";
}

TEST_F(ConntrackCleanupTest, NothingToDoMeansNoKernelCallAndErrorsAreReturned) {
  ConntrackCleanupItem item = DnsPort();  // no gone backend, no arrival
  auto none = CleanupConntrack(ct_, {item});
  ASSERT_TRUE(none.ok());
  EXPECT_EQ(*none, 0u);
  EXPECT_TRUE(ct_.delete_filters().empty()) << "no kernel call for an unchanged port";

  item.gone_backends = {A("10.244.1.5")};
  item.service_ips.clear();
  item.node_port = 0;
  EXPECT_TRUE(ConntrackCleanupFilters({item}).empty()) << "never a filter without a service IP";

  item = DnsPort();
  item.gone_backends = {A("10.244.1.5")};
  ct_.failures().FailNext(FakeConntrack::Op::kDelete, "netlink down");
  auto failed = CleanupConntrack(ct_, {item});
  ASSERT_FALSE(failed.ok());
  EXPECT_NE(failed.error().find("netlink down"), std::string::npos);
  EXPECT_EQ(ct_.flows().size(), 9u) << "a failed delete removes nothing";
}

TEST(ConntrackCleanupFiltersTest, OneFilterPerVipAndNodePortWithoutDuplicates) {
  ConntrackCleanupItem item;
  item.service_ips = {A("10.96.0.10"), A("10.96.0.10"), A("fd00:96::10")};
  item.port = 53;
  item.node_port = 30053;
  item.gone_backends = {A("10.244.1.5"), A("fd00:244::5")};
  auto filters = ConntrackCleanupFilters({item, item});
  std::vector<std::string> text;
  for (const auto& f : filters) text.push_back(f.ToString());
  EXPECT_EQ(text, (std::vector<std::string>{
                      "udp v4 dst 10.96.0.10 dport 53 reply-src 10.244.1.5",
                      "udp v4 dport 30053 reply-src 10.244.1.5",
                      "udp v6 dst fd00:96::10 dport 53 reply-src fd00:244::5",
                      "udp v6 dport 30053 reply-src fd00:244::5",
                  }));
}

}  // namespace
}  // namespace kr::proxy::conntrack_cleanup_test
