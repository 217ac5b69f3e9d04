// kube_router_service_* series collected on scrape from the IPVS fake.
#include "kube_router/proxy/service_metrics.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <regex>
#include <sstream>
#include <thread>

#include "kube_router/base/exec.h"
#include "kube_router/netlink/fakes.h"

namespace kr::proxy::service_metrics_test {
namespace {

using netlink::FakeIpvs;
using netlink::IpvsProtocol;
using netlink::IpvsService;

IpAddress Ip(const char* text) { return *IpAddress::Parse(text); }

// What the code before the compact form rendered for the fixture (Ours()).
const char kGolden[] = R"golden(# HELP kube_router_service_bps_in Incoming bytes per second
# TYPE kube_router_service_bps_in gauge
kube_router_service_bps_in{port="53",protocol="udp",service_name="kube-dns",service_vip="10.96.0.10",svc_namespace="kube-system"} 1500
kube_router_service_bps_in{port="30080",protocol="tcp",service_name="web",service_vip="192.168.1.10",svc_namespace="default"} 0
kube_router_service_bps_in{port="443",protocol="tcp",service_name="web6",service_vip="fd00:96::10",svc_namespace="default"} 0
kube_router_service_bps_in{port="80",protocol="tcp",service_name="dsr",service_vip="203.0.113.7",svc_namespace="default"} 1500
# HELP kube_router_service_bps_out Outgoing bytes per second
# TYPE kube_router_service_bps_out gauge
kube_router_service_bps_out{port="53",protocol="udp",service_name="kube-dns",service_vip="10.96.0.10",svc_namespace="kube-system"} 1400
kube_router_service_bps_out{port="30080",protocol="tcp",service_name="web",service_vip="192.168.1.10",svc_namespace="default"} 0
kube_router_service_bps_out{port="443",protocol="tcp",service_name="web6",service_vip="fd00:96::10",svc_namespace="default"} 0
kube_router_service_bps_out{port="80",protocol="tcp",service_name="dsr",service_vip="203.0.113.7",svc_namespace="default"} 1400
# HELP kube_router_service_bytes_in Total incoming bytes
# TYPE kube_router_service_bytes_in counter
kube_router_service_bytes_in{port="53",protocol="udp",service_name="kube-dns",service_vip="10.96.0.10",svc_namespace="kube-system"} 12345678901
kube_router_service_bytes_in{port="30080",protocol="tcp",service_name="web",service_vip="192.168.1.10",svc_namespace="default"} 0
kube_router_service_bytes_in{port="443",protocol="tcp",service_name="web6",service_vip="fd00:96::10",svc_namespace="default"} 0
kube_router_service_bytes_in{port="80",protocol="tcp",service_name="dsr",service_vip="203.0.113.7",svc_namespace="default"} 12345678901
# HELP kube_router_service_bytes_out Total outgoing bytes
# TYPE kube_router_service_bytes_out counter
kube_router_service_bytes_out{port="53",protocol="udp",service_name="kube-dns",service_vip="10.96.0.10",svc_namespace="kube-system"} 5000
kube_router_service_bytes_out{port="30080",protocol="tcp",service_name="web",service_vip="192.168.1.10",svc_namespace="default"} 0
kube_router_service_bytes_out{port="443",protocol="tcp",service_name="web6",service_vip="fd00:96::10",svc_namespace="default"} 0
kube_router_service_bytes_out{port="80",protocol="tcp",service_name="dsr",service_vip="203.0.113.7",svc_namespace="default"} 5000
# HELP kube_router_service_cps Service connections per second
# TYPE kube_router_service_cps gauge
kube_router_service_cps{port="53",protocol="udp",service_name="kube-dns",service_vip="10.96.0.10",svc_namespace="kube-system"} 2
kube_router_service_cps{port="30080",protocol="tcp",service_name="web",service_vip="192.168.1.10",svc_namespace="default"} 0
kube_router_service_cps{port="443",protocol="tcp",service_name="web6",service_vip="fd00:96::10",svc_namespace="default"} 0
kube_router_service_cps{port="80",protocol="tcp",service_name="dsr",service_vip="203.0.113.7",svc_namespace="default"} 2
# HELP kube_router_service_packets_in Total incoming packets
# TYPE kube_router_service_packets_in counter
kube_router_service_packets_in{port="53",protocol="udp",service_name="kube-dns",service_vip="10.96.0.10",svc_namespace="kube-system"} 100
kube_router_service_packets_in{port="30080",protocol="tcp",service_name="web",service_vip="192.168.1.10",svc_namespace="default"} 0
kube_router_service_packets_in{port="443",protocol="tcp",service_name="web6",service_vip="fd00:96::10",svc_namespace="default"} 0
kube_router_service_packets_in{port="80",protocol="tcp",service_name="dsr",service_vip="203.0.113.7",svc_namespace="default"} 100
# HELP kube_router_service_packets_out Total outgoing packets
# TYPE kube_router_service_packets_out counter
kube_router_service_packets_out{port="53",protocol="udp",service_name="kube-dns",service_vip="10.96.0.10",svc_namespace="kube-system"} 90
kube_router_service_packets_out{port="30080",protocol="tcp",service_name="web",service_vip="192.168.1.10",svc_namespace="default"} 0
kube_router_service_packets_out{port="443",protocol="tcp",service_name="web6",service_vip="fd00:96::10",svc_namespace="default"} 0
kube_router_service_packets_out{port="80",protocol="tcp",service_name="dsr",service_vip="203.0.113.7",svc_namespace="default"} 90
# HELP kube_router_service_pps_in Incoming packets per second
# TYPE kube_router_service_pps_in gauge
kube_router_service_pps_in{port="53",protocol="udp",service_name="kube-dns",service_vip="10.96.0.10",svc_namespace="kube-system"} 11
kube_router_service_pps_in{port="30080",protocol="tcp",service_name="web",service_vip="192.168.1.10",svc_namespace="default"} 0
kube_router_service_pps_in{port="443",protocol="tcp",service_name="web6",service_vip="fd00:96::10",svc_namespace="default"} 0
kube_router_service_pps_in{port="80",protocol="tcp",service_name="dsr",service_vip="203.0.113.7",svc_namespace="default"} 11
# HELP kube_router_service_pps_out Outgoing packets per second
# TYPE kube_router_service_pps_out gauge
kube_router_service_pps_out{port="53",protocol="udp",service_name="kube-dns",service_vip="10.96.0.10",svc_namespace="kube-system"} 10
kube_router_service_pps_out{port="30080",protocol="tcp",service_name="web",service_vip="192.168.1.10",svc_namespace="default"} 0
kube_router_service_pps_out{port="443",protocol="tcp",service_name="web6",service_vip="fd00:96::10",svc_namespace="default"} 0
kube_router_service_pps_out{port="80",protocol="tcp",service_name="dsr",service_vip="203.0.113.7",svc_namespace="default"} 10
# HELP kube_router_service_total_connections Total incoming connections made
# TYPE kube_router_service_total_connections counter
kube_router_service_total_connections{port="53",protocol="udp",service_name="kube-dns",service_vip="10.96.0.10",svc_namespace="kube-system"} 7
kube_router_service_total_connections{port="30080",protocol="tcp",service_name="web",service_vip="192.168.1.10",svc_namespace="default"} 0
kube_router_service_total_connections{port="443",protocol="tcp",service_name="web6",service_vip="fd00:96::10",svc_namespace="default"} 0
kube_router_service_total_connections{port="80",protocol="tcp",service_name="dsr",service_vip="203.0.113.7",svc_namespace="default"} 3
)golden";

class ServiceMetricsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    cluster_ = {Ip("10.96.0.10"), IpvsProtocol::kUdp, 53};
    node_port_ = {Ip("192.168.1.10"), IpvsProtocol::kTcp, 30080};
    v6_ = {Ip("fd00:96::10"), IpvsProtocol::kTcp, 443};
    dsr_ = {Ip("0.0.0.0"), IpvsProtocol::kTcp, 0, /*fwmark=*/0x1234};
    foreign_ = {Ip("10.0.0.99"), IpvsProtocol::kTcp, 80};
    for (const auto* svc : {&cluster_, &node_port_, &v6_, &dsr_, &foreign_}) {
      ASSERT_TRUE(ipvs_.AddService(*svc).ok());
    }
    netlink::IpvsStats stats;
    stats.connections = 7;
    stats.packets_in = 100;
    stats.packets_out = 90;
    stats.bytes_in = 12345678901ull;  // beyond 32 bits
    stats.bytes_out = 5000;
    stats.connections_per_second = 2;
    stats.packets_in_per_second = 11;
    stats.packets_out_per_second = 10;
    stats.bytes_in_per_second = 1500;
    stats.bytes_out_per_second = 1400;
    ASSERT_TRUE(ipvs_.SetStats(cluster_, stats).ok());
    stats.connections = 3;
    ASSERT_TRUE(ipvs_.SetStats(dsr_, stats).ok());
    ASSERT_TRUE(ipvs_.SetStats(foreign_, stats).ok());
  }

  // The DSR service's labels are its VIP's, not the mark's.
  std::map<ServiceName, std::vector<MetricTarget>> Ours() {
    return {{{"kube-system", "kube-dns"}, {MetricTargetOf(cluster_)}},
            {{"default", "web"}, {MetricTargetOf(node_port_)}},
            {{"default", "web6"}, {MetricTargetOf(v6_)}},
            {{"default", "dsr"}, {{Ip("203.0.113.7"), IpvsProtocol::kTcp, 80, dsr_.fwmark}}}};
  }

  // The kube_router_service_total_connections lines, "labels value" each, sorted.
  std::vector<std::string> Connections() {
    std::vector<std::string> out;
    std::istringstream in(registry_.Render());
    const std::string prefix = "kube_router_service_total_connections{";
    for (std::string line; std::getline(in, line);) {
      if (line.starts_with(prefix)) out.push_back(line.substr(prefix.size() - 1));
    }
    std::sort(out.begin(), out.end());
    return out;
  }
  static std::string Series(const std::string& ns, const std::string& name, const std::string& vip,
                            const std::string& value) {
    return "{port=\"53\",protocol=\"udp\",service_name=\"" + name + "\",service_vip=\"" + vip +
           "\",svc_namespace=\"" + ns + "\"} " + value;
  }

  metrics::Registry registry_;
  FakeIpvs ipvs_;
  IpvsService cluster_, node_port_, v6_, dsr_, foreign_;
};

TEST_F(ServiceMetricsTest, OurServicesGetKubeRoutersSeriesOnScrape) {
  ServiceMetrics metrics(registry_, ipvs_);
  metrics.SetAll(Ours());
  metrics.ObserveSync(0.02, 4);
  std::string text = registry_.Render();
  const std::string dns =
      "{port=\"53\",protocol=\"udp\",service_name=\"kube-dns\",service_vip=\"10.96.0.10\","
      "svc_namespace=\"kube-system\"}";
  for (const char* line :
       {"kube_router_service_total_connections", "kube_router_service_bytes_in"}) {
    EXPECT_NE(text.find(std::string("# TYPE ") + line + " counter"), std::string::npos) << line;
  }
  EXPECT_NE(text.find("kube_router_service_total_connections" + dns + " 7\n"), std::string::npos)
      << text;
  EXPECT_NE(text.find("kube_router_service_bytes_in" + dns + " 12345678901\n"), std::string::npos);
  EXPECT_NE(text.find("kube_router_service_packets_out" + dns + " 90\n"), std::string::npos);
  EXPECT_NE(text.find("# TYPE kube_router_service_pps_in gauge"), std::string::npos);
  EXPECT_NE(text.find("kube_router_service_cps" + dns + " 2\n"), std::string::npos);
  EXPECT_NE(text.find("kube_router_service_bps_out" + dns + " 1400\n"), std::string::npos);
  // DSR (fwmark) services by their VIP, IPv6 and NodePorts too; foreign services not at all.
  EXPECT_NE(text.find("kube_router_service_total_connections{port=\"80\",protocol=\"tcp\","
                      "service_name=\"dsr\",service_vip=\"203.0.113.7\",svc_namespace="
                      "\"default\"} 3\n"),
            std::string::npos)
      << text;
  EXPECT_NE(text.find("service_vip=\"fd00:96::10\""), std::string::npos);
  EXPECT_NE(text.find("service_vip=\"192.168.1.10\""), std::string::npos);
  EXPECT_EQ(text.find("10.0.0.99"), std::string::npos);
  EXPECT_NE(text.find("kube_router_controller_ipvs_services 4\n"), std::string::npos);
  EXPECT_NE(text.find("kube_router_controller_ipvs_services_sync_time_count 1\n"),
            std::string::npos);
  EXPECT_NE(text.find("kube_router_controller_ipvs_metrics_export_time_count"), std::string::npos);

  // A Service that goes away loses its series with the next SetAll, or its own SetService.
  auto fewer = Ours();
  fewer.erase({"kube-system", "kube-dns"});
  metrics.SetAll(fewer);
  EXPECT_EQ(registry_.Render().find("kube-dns"), std::string::npos);
  metrics.SetAll(Ours());
  EXPECT_NE(registry_.Render().find("kube-dns"), std::string::npos);
  metrics.SetService({"kube-system", "kube-dns"}, {});
  EXPECT_EQ(registry_.Render().find("kube-dns"), std::string::npos);
  EXPECT_NE(registry_.Render().find("service_name=\"web6\""), std::string::npos);
}

// The kube_router_service_* text, byte for byte as rendered before the scrape kept one label
// text per service instead of a label map per sample (checked against that code).
TEST_F(ServiceMetricsTest, TheServiceSeriesTextIsUnchangedByteForByte) {
  ServiceMetrics metrics(registry_, ipvs_);
  metrics.SetAll(Ours());
  std::string ours;
  std::istringstream in(registry_.Render());
  for (std::string line; std::getline(in, line);) {
    if (line.find("kube_router_service_") != std::string::npos) ours += line + "\n";
  }
  EXPECT_EQ(ours, kGolden) << ours;
}

TEST_F(ServiceMetricsTest, AFailedDumpRendersNoServiceSeriesAndNoError) {
  ServiceMetrics metrics(registry_, ipvs_);
  metrics.SetAll(Ours());
  ipvs_.failures().FailNext(FakeIpvs::Op::kListServiceStats);
  std::string text = registry_.Render();
  EXPECT_EQ(text.find("kube_router_service_"), std::string::npos) << text;
  EXPECT_NE(registry_.Render().find("kube_router_service_"), std::string::npos);
}

TEST_F(ServiceMetricsTest, TheCollectorGoesWithTheObject) {
  {
    ServiceMetrics metrics(registry_, ipvs_);
    metrics.SetAll(Ours());
    EXPECT_NE(registry_.Render().find("kube_router_service_cps"), std::string::npos);
  }
  EXPECT_EQ(registry_.Render().find("kube_router_service_cps"), std::string::npos);
}

// promtool accepts the exposition; the only finding allowed is the lint about kube-router's
// historical counter names without "_total" (kept for dashboards), as in the app test.
TEST_F(ServiceMetricsTest, PromtoolAcceptsTheSeries) {
  ServiceMetrics metrics(registry_, ipvs_);
  metrics.SetAll(Ours());
  metrics.ObserveSync(0.5, 4);
  std::string text = registry_.Render();
  auto r = Exec({"promtool", "check", "metrics"}, text);
  ASSERT_TRUE(r.ok()) << r.error();
  std::istringstream in(r->out + r->err);
  const std::regex legacy_counter(
      "^kube_router_[a-z_]+ counter metrics should have \"_total\" suffix$");
  std::string line;
  int findings = 0;
  while (std::getline(in, line)) {
    if (line.empty()) continue;
    ++findings;
    EXPECT_TRUE(std::regex_match(line, legacy_counter)) << line << "\n" << text;
  }
  EXPECT_TRUE(r->exit_code == 0 || (r->exit_code == 3 && findings > 0)) << r->exit_code;
}

// The labels are not stored per key but derived from the owning Service and its target: a key
// two Services want is labelled by the first by name, the other takes over when it lets go, and
// changing one Service never changes another's series.
TEST_F(ServiceMetricsTest, AKeyTwoServicesWantIsLabelledByTheFirstByName) {
  ServiceMetrics metrics(registry_, ipvs_);
  const MetricTarget dns = MetricTargetOf(cluster_);
  metrics.SetService({"ns-b", "second"}, {dns});
  EXPECT_THAT(Connections(), ::testing::ElementsAre(Series("ns-b", "second", "10.96.0.10", "7")));
  // A Service that sorts first takes the key over; the one it displaced keeps wanting it.
  metrics.SetService({"ns-a", "first"}, {dns});
  EXPECT_THAT(Connections(), ::testing::ElementsAre(Series("ns-a", "first", "10.96.0.10", "7")));
  // A third that sorts last changes nothing.
  metrics.SetService({"ns-c", "third"}, {dns});
  EXPECT_THAT(Connections(), ::testing::ElementsAre(Series("ns-a", "first", "10.96.0.10", "7")));
  // The owner lets go: the next by name takes over, then the last.
  metrics.SetService({"ns-a", "first"}, {MetricTargetOf(v6_)});
  EXPECT_THAT(Connections(), ::testing::Contains(Series("ns-b", "second", "10.96.0.10", "7")));
  metrics.SetService({"ns-b", "second"}, {});
  EXPECT_THAT(Connections(), ::testing::Contains(Series("ns-c", "third", "10.96.0.10", "7")));
  // A full sync starts over with the same rule.
  metrics.SetAll({{{"ns-z", "z"}, {dns}}, {{"ns-y", "y"}, {dns}}});
  EXPECT_THAT(Connections(), ::testing::ElementsAre(Series("ns-y", "y", "10.96.0.10", "7")));
  metrics.SetService({"ns-y", "y"}, {});
  EXPECT_THAT(Connections(), ::testing::ElementsAre(Series("ns-z", "z", "10.96.0.10", "7")));
  metrics.SetService({"ns-z", "z"}, {});
  EXPECT_THAT(Connections(), ::testing::IsEmpty());
}

// The event path's batches: many Services at once (one merge of the lists) and a few (in place),
// each Service named once or twice (its last targets count), while a scrape runs from another
// thread: every scrape sees the state before or after a batch, never a mix.
TEST_F(ServiceMetricsTest, ABatchOfServicesIsSeenWholeByAConcurrentScrape) {
  ServiceMetrics metrics(registry_, ipvs_);
  const MetricTarget dns = MetricTargetOf(cluster_);
  const MetricTarget v6 = MetricTargetOf(v6_);
  const MetricTarget node_port = MetricTargetOf(node_port_);
  auto name = [](int i) { return ServiceName{"ns", "s" + std::to_string(100 + i)}; };
  // A: 20 Services want the DNS and the IPv6 key (s100 labels both). B: s100 has none, the others
  // the DNS key only (s101 labels it), s105 the NodePort (named twice: its last targets count).
  ServiceMetrics::Batch a, b;
  for (int i = 0; i < 20; ++i) a.emplace_back(name(i), std::vector<MetricTarget>{v6, dns});
  b.emplace_back(name(0), std::vector<MetricTarget>{});
  b.emplace_back(name(5), std::vector<MetricTarget>{v6});
  for (int i = 1; i < 20; ++i) {
    b.emplace_back(name(i),
                   i == 5 ? std::vector<MetricTarget>{node_port} : std::vector<MetricTarget>{dns});
  }
  const std::vector<std::string> seen_a = {Series("ns", "s100", "10.96.0.10", "7"),
                                           "{port=\"443\",protocol=\"tcp\",service_name=\"s100\","
                                           "service_vip=\"fd00:96::10\",svc_namespace=\"ns\"} 0"};
  const std::vector<std::string> seen_b = {
      Series("ns", "s101", "10.96.0.10", "7"),
      "{port=\"30080\",protocol=\"tcp\",service_name=\"s105\",service_vip=\"192.168.1.10\","
      "svc_namespace=\"ns\"} 0"};
  auto sorted = [](std::vector<std::string> v) {
    std::sort(v.begin(), v.end());
    return v;
  };
  metrics.SetServices(a);
  ASSERT_EQ(Connections(), sorted(seen_a));
  metrics.SetServices(b);
  ASSERT_EQ(Connections(), sorted(seen_b));
  // A few Services (in place): s101 lets go of the DNS key, s102 takes it over.
  metrics.SetServices({{name(1), {}}, {name(3), {dns}}});
  EXPECT_THAT(Connections(), ::testing::Contains(Series("ns", "s102", "10.96.0.10", "7")));
  metrics.SetServices({{name(1), {dns}}});
  ASSERT_EQ(Connections(), sorted(seen_b));

  std::atomic<bool> stop = false;
  std::atomic<int> scrapes = 0, mixed = 0;
  std::thread scraper([&] {
    while (!stop) {
      auto now = Connections();
      if (now != sorted(seen_a) && now != sorted(seen_b)) ++mixed;
      ++scrapes;
    }
  });
  for (int round = 0; round < 200 || scrapes < 20; ++round) {
    metrics.SetServices(round % 2 == 0 ? a : b);
  }
  stop = true;
  scraper.join();
  EXPECT_EQ(mixed, 0) << "of " << scrapes << " scrapes";
}

TEST_F(ServiceMetricsTest, ChangingOneServiceLeavesTheOthersSeries) {
  ServiceMetrics metrics(registry_, ipvs_);
  metrics.SetAll(Ours());
  const auto before = Connections();
  ASSERT_EQ(before.size(), 4u);
  auto unchanged = [&](const std::vector<std::string>& now) {
    for (const char* name : {"web6", "dsr"}) {
      const std::string label = std::string("service_name=\"") + name + "\"";
      auto was = std::find_if(before.begin(), before.end(),
                              [&](const auto& l) { return l.find(label) != std::string::npos; });
      ASSERT_NE(was, before.end());
      EXPECT_THAT(now, ::testing::Contains(*was)) << name;
    }
  };
  // web (default/web sorts before kube-system/kube-dns) moves from its NodePort to the DNS
  // service's key and labels it; its NodePort series goes; web6 and dsr stay as they were.
  metrics.SetService({"default", "web"}, {MetricTargetOf(cluster_)});
  auto after = Connections();
  EXPECT_EQ(after.size(), 3u);
  EXPECT_THAT(after, ::testing::Contains(Series("default", "web", "10.96.0.10", "7")));
  EXPECT_THAT(after, ::testing::Not(::testing::Contains(::testing::HasSubstr("kube-dns"))));
  EXPECT_THAT(after, ::testing::Not(::testing::Contains(::testing::HasSubstr("30080"))));
  unchanged(after);
  // kube-dns goes: web keeps the key. web goes back to its NodePort: nobody wants the key.
  metrics.SetService({"kube-system", "kube-dns"}, {});
  EXPECT_THAT(Connections(), ::testing::Contains(Series("default", "web", "10.96.0.10", "7")));
  metrics.SetService({"default", "web"}, {MetricTargetOf(node_port_)});
  after = Connections();
  EXPECT_EQ(after.size(), 3u);
  EXPECT_THAT(after, ::testing::Not(::testing::Contains(::testing::HasSubstr("10.96.0.10"))));
  unchanged(after);
  // kube-dns back: exactly the series of the start.
  metrics.SetService({"kube-system", "kube-dns"}, {MetricTargetOf(cluster_)});
  EXPECT_EQ(Connections(), before);
}

}  // namespace
}  // namespace kr::proxy::service_metrics_test
