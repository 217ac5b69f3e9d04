// DSR: the pure plan and the applier over the fakes (IPVS, rules, routes, iptables, pods).
#include "kube_router/proxy/dsr.h"

#include <gtest/gtest.h>

#include <algorithm>

#include "kube_router/netfilter/fakes.h"
#include "kube_router/netlink/fakes.h"

namespace kr::proxy::dsr_test {
namespace {

using netlink::FakeIpvs;
using netlink::FakeLinks;
using netlink::FakePodNetns;
using netlink::FakeRouteTable;
using netlink::FakeRuleTable;
using netlink::FakeSysctl;

IpAddress A(const char* text) { return *IpAddress::Parse(text); }

DsrServiceInput Web(const char* vip = "203.0.113.10", uint16_t port = 80) {
  DsrServiceInput s;
  s.owner = "default/web";
  s.vip = A(vip);
  s.port = port;
  s.endpoints = {A("10.71.0.2"), A("10.71.1.2")};
  s.local_endpoints = {A("10.71.0.2")};
  return s;
}

TEST(DsrPlanTest, MarksAreDeterministicAndCollisionFree) {
  EXPECT_EQ(DsrFwmarkHash("203.0.113.10-tcp-80"), DsrFwmarkHash("203.0.113.10-tcp-80"));
  EXPECT_NE(DsrFwmarkHash("203.0.113.10-tcp-80"), 0u);
  EXPECT_LE(DsrFwmarkHash("x"), kDsrFwmarkMask);
  std::vector<DsrServiceInput> many;
  for (int i = 0; i < 600; ++i) {
    many.push_back(
        Web(("203.0.113." + std::to_string(i % 250)).c_str(), static_cast<uint16_t>(80 + i / 250)));
  }
  DsrPlan plan = BuildDsrPlan(many, 1500);
  std::set<uint32_t> marks;
  for (const auto& v : plan.services) marks.insert(v.service.fwmark);
  EXPECT_EQ(marks.size(), plan.services.size()) << "every VIP:proto:port its own mark";
  EXPECT_EQ(plan.services.size(), 600u);
  std::reverse(many.begin(), many.end());
  DsrPlan reversed = BuildDsrPlan(many, 1500);
  for (size_t i = 0; i < plan.services.size(); ++i) {
    EXPECT_EQ(plan.services[i].service, reversed.services[i].service) << "order-independent";
  }
}

TEST(DsrPlanTest, RendersServicesRulesRoutesMangleAndPodVips) {
  DsrServiceInput udp = Web("203.0.113.11", 53);
  udp.protocol = netlink::ip_protocol::kUdp;
  DsrServiceInput v6 = Web("2001:db8::10", 80);
  v6.endpoints = {A("fd00:10::200"), A("10.71.0.9")};  // one of the wrong family
  v6.local_endpoints = {A("fd00:10::200")};
  DsrServiceInput bad = Web();
  bad.protocol = 99;
  DsrPlan plan = BuildDsrPlan({Web(), udp, v6, bad, Web()}, 1500);
  ASSERT_EQ(plan.services.size(), 3u);
  EXPECT_EQ(plan.problems.size(), 3u) << "bad protocol, duplicate, wrong-family endpoint";
  const uint32_t mark = DsrFwmarkHash("203.0.113.10-tcp-80");
  auto web = std::find_if(plan.services.begin(), plan.services.end(),
                          [&](const auto& v) { return v.service.fwmark == mark; });
  ASSERT_NE(web, plan.services.end());
  ASSERT_EQ(web->destinations.size(), 2u);
  EXPECT_EQ(web->destinations[0].forward, netlink::IpvsForward::kTunnel);
  EXPECT_EQ(web->destinations[0].port, 80);
  char text[64];
  std::snprintf(text, sizeof(text), "0x%x/0xffffffff", mark);
  EXPECT_NE(
      std::find(
          plan.mark_rules_v4.begin(), plan.mark_rules_v4.end(),
          std::string("-d 203.0.113.10/32 -p tcp -m tcp --dport 80 -j MARK --set-xmark ") + text),
      plan.mark_rules_v4.end());
  EXPECT_EQ(plan.mss_rules_v4,
            (std::vector<std::string>{"-s 203.0.113.10/32 -i kube-bridge -p tcp -m tcp --sport 80 "
                                      "--tcp-flags SYN,RST SYN -j TCPMSS --set-mss 1440"}))
      << "TCP only";
  EXPECT_EQ(plan.mss_rules_v6.size(), 1u);
  EXPECT_NE(plan.mss_rules_v6[0].find("--set-mss 1400"), std::string::npos);
  EXPECT_EQ(plan.rules.size(), 3u);
  EXPECT_EQ(plan.routes.size(), 2u) << "table 78 per family in use";
  EXPECT_EQ(plan.pod_vips.at(A("10.71.0.2")),
            (std::set<IpAddress>{A("203.0.113.10"), A("203.0.113.11")}));
  EXPECT_EQ(plan.pod_vips.at(A("fd00:10::200")), (std::set<IpAddress>{A("2001:db8::10")}));
  EXPECT_EQ(plan.pod_vips.count(A("10.71.1.2")), 0u) << "remote endpoints get nothing";
  EXPECT_TRUE(BuildDsrPlan({}, 1500).routes.empty()) << "no table 78 without DSR";
}

// Links of the pod whose namespace the fake "entered" (by the context's netns text).
class PodLinks : public netlink::Links {
 public:
  explicit PodLinks(FakeLinks* links) : l_(links) {}
  Result<std::vector<netlink::Link>> List() override { return l_->List(); }
  Result<std::optional<netlink::Link>> Get(const std::string& n) override { return l_->Get(n); }
  Status CreateTunnel(const netlink::TunnelSpec& s) override { return l_->CreateTunnel(s); }
  Status CreateBridge(const std::string& n, uint32_t m) override { return l_->CreateBridge(n, m); }
  Status CreateDummy(const std::string& n) override { return l_->CreateDummy(n); }
  Status Delete(const std::string& n) override { return l_->Delete(n); }
  Status SetUp(const std::string& n, bool up) override { return l_->SetUp(n, up); }
  Status SetMtu(const std::string& n, uint32_t m) override { return l_->SetMtu(n, m); }
  Result<std::vector<netlink::Address>> ListAddresses(const std::string& d) override {
    return l_->ListAddresses(d);
  }
  Status AddAddress(const netlink::Address& a) override { return l_->AddAddress(a); }
  Status DeleteAddress(const netlink::Address& a) override { return l_->DeleteAddress(a); }

 private:
  FakeLinks* l_;
};

class DsrApplierTest : public ::testing::Test {
 protected:
  void SetUp() override {
    for (const char* pod : {"10.71.0.2", "10.71.0.3"}) {
      pods_.AddPod(A(pod), "net0");
      pod_links_[std::string("fake:") + pod];
      auto& sysctl = pod_sysctl_[std::string("fake:") + pod];
      for (const char* dev : {"all", "kube-tunnel-if", "net0"}) {
        sysctl.Seed(std::string("net.ipv4.conf.") + dev + ".rp_filter", "1");
      }
    }
    // Foreign state that must survive: a fwmark service and a rule of somebody else.
    netlink::IpvsService foreign;
    foreign.fwmark = DsrFwmarkHash("203.0.113.10-tcp-80");  // even the same mark
    EXPECT_TRUE(ipvs_.AddService(foreign).ok());
    netlink::Rule rule;
    rule.priority = 100;
    rule.table = 50;
    rule.protocol = 4;
    rules_.Seed(rule);
  }
  DsrDataplane Dataplane() {
    DsrDataplane dp;
    dp.ipvs = &ipvs_;
    dp.rules = &rules_;
    dp.routes = &routes_;
    dp.iptables_v4 = &ipt4_;
    dp.iptables_v6 = &ipt6_;
    dp.pods = &pods_;
    dp.make_pod_links =
        [this](const netlink::PodNetnsContext& c) -> Result<std::unique_ptr<netlink::Links>> {
      return std::unique_ptr<netlink::Links>(new PodLinks(&pod_links_[c.netns]));
    };
    dp.make_pod_sysctl = [this](const netlink::PodNetnsContext& c) {
      struct Fwd : netlink::Sysctl {
        FakeSysctl* s;
        Result<std::string> Get(const std::string& k) override { return s->Get(k); }
        Status Set(const std::string& k, const std::string& v) override { return s->Set(k, v); }
      };
      auto f = std::make_unique<Fwd>();
      f->s = &pod_sysctl_[c.netns];
      return std::unique_ptr<netlink::Sysctl>(std::move(f));
    };
    return dp;
  }
  std::vector<IpAddress> PodVips(const char* pod) {
    std::vector<IpAddress> out;
    for (const auto& a : pod_links_[std::string("fake:") + pod].addresses())
      out.push_back(a.address);
    return out;
  }
  // The DSR mark, made different from the foreign service's by a second key.
  FakeIpvs ipvs_;
  FakeRuleTable rules_;
  FakeRouteTable routes_;
  netfilter::FakeIptables ipt4_{netfilter::IpFamily::kV4};
  netfilter::FakeIptables ipt6_{netfilter::IpFamily::kV6};
  FakePodNetns pods_;
  std::map<std::string, FakeLinks> pod_links_;
  std::map<std::string, FakeSysctl> pod_sysctl_;
};

TEST_F(DsrApplierTest, ProgramsEverythingThenNothingMoreThenRemovesItAlsoAfterARestart) {
  DsrServiceInput web = Web("203.0.113.20", 80);
  DsrPlan plan = BuildDsrPlan({web}, 1500);
  const uint32_t mark = plan.services[0].service.fwmark;
  DsrApplier applier(Dataplane());
  Status first = applier.Apply(plan);
  ASSERT_TRUE(first.ok()) << first.message();

  auto services = *ipvs_.ListServices();
  EXPECT_EQ(services.size(), 2u) << "ours and the foreign one";
  auto dests = *ipvs_.ListDestinations(plan.services[0].service);
  ASSERT_EQ(dests.size(), 2u);
  EXPECT_EQ(dests[0].forward, netlink::IpvsForward::kTunnel);
  EXPECT_EQ(*rules_.List(IpAddress::Family::kV4, netlink::kKubeRouterRouteProtocol), plan.rules);
  EXPECT_EQ(routes_.routes().size(), 1u);
  const auto& mangle = ipt4_.table("mangle").chains;
  EXPECT_EQ(mangle.at(kDsrMarkChain), plan.mark_rules_v4);
  EXPECT_EQ(mangle.at(kDsrMssChain), plan.mss_rules_v4);
  EXPECT_EQ(mangle.at("PREROUTING").size(), 2u);
  EXPECT_EQ(mangle.at("OUTPUT"), (std::vector<std::string>{"-j KUBE-ROUTER-DSR"}));
  EXPECT_EQ(PodVips("10.71.0.2"), (std::vector<IpAddress>{A("203.0.113.20")}));
  auto tunnel = *pod_links_["fake:10.71.0.2"].Get(kPodTunnelV4);
  ASSERT_TRUE(tunnel.has_value());
  EXPECT_EQ(tunnel->tunnel_local, A("10.71.0.2"));
  EXPECT_TRUE(tunnel->up);
  EXPECT_EQ(*pod_sysctl_["fake:10.71.0.2"].Get("net.ipv4.conf.net0.rp_filter"), "0")
      << "rp_filter off on the link that holds the pod IP, whatever its name";
  EXPECT_TRUE(PodVips("10.71.0.3").empty()) << "not an endpoint";

  // A second apply of the same plan writes nothing.
  const int applies = ipt4_.apply_calls();
  ASSERT_TRUE(applier.Apply(plan).ok());
  EXPECT_EQ(ipt4_.apply_calls(), applies);
  EXPECT_EQ(*ipvs_.ListServices(), services);

  // A restart: a new applier, the annotation gone, the local pods named.
  DsrApplier restarted(Dataplane());
  ASSERT_TRUE(restarted.Apply(BuildDsrPlan({}, 1500), {A("10.71.0.2"), A("10.71.0.3")}).ok());
  services = *ipvs_.ListServices();
  ASSERT_EQ(services.size(), 1u) << "only the foreign fwmark service is left";
  EXPECT_NE(services[0].fwmark, mark);
  EXPECT_TRUE(rules_.List(IpAddress::Family::kV4, netlink::kKubeRouterRouteProtocol)->empty());
  EXPECT_EQ(rules_.rules().size(), 1u) << "the foreign rule stays";
  EXPECT_TRUE(routes_.routes().empty());
  EXPECT_FALSE(pod_links_["fake:10.71.0.2"].Has(kPodTunnelV4)) << "the VIP leaves the pod (#235)";
  auto cleaned = restarted.Cleanup();
  ASSERT_TRUE(cleaned.ok()) << cleaned.error();
  EXPECT_EQ(ipt4_.table("mangle").chains.count(kDsrMarkChain), 0u);
  EXPECT_TRUE(ipt4_.table("mangle").chains["PREROUTING"].empty());
  // Idempotent: a second cleanup finds nothing of ours and says so.
  auto again = restarted.Cleanup();
  ASSERT_TRUE(again.ok()) << again.error();
  EXPECT_TRUE(again->empty());
}

// --cleanup-config reports DSR state only when it removed some (its second run says nothing).
TEST_F(DsrApplierTest, CleanupReportsOnlyWhatItRemoved) {
  DsrApplier applier(Dataplane());
  ASSERT_TRUE(applier.Apply(BuildDsrPlan({Web("203.0.113.21", 80)}, 1500)).ok());
  auto cleaned = applier.Cleanup();
  ASSERT_TRUE(cleaned.ok()) << cleaned.error();
  EXPECT_EQ(cleaned->size(), 1u);
  EXPECT_TRUE(rules_.List(IpAddress::Family::kV4, netlink::kKubeRouterRouteProtocol)->empty());
  auto again = applier.Cleanup();
  ASSERT_TRUE(again.ok()) << again.error();
  EXPECT_TRUE(again->empty()) << again->front();
}

TEST_F(DsrApplierTest, EndpointChangesUpdateDestinationsAndPodsInPlace) {
  DsrServiceInput web = Web("203.0.113.20", 80);
  DsrApplier applier(Dataplane());
  ASSERT_TRUE(applier.Apply(BuildDsrPlan({web}, 1500)).ok());
  web.endpoints = {A("10.71.0.3"), A("10.71.1.2")};
  web.local_endpoints = {A("10.71.0.3")};
  web.scheduler = "mh";
  DsrPlan plan = BuildDsrPlan({web}, 1500);
  ASSERT_TRUE(applier.Apply(plan).ok());
  auto dests = *ipvs_.ListDestinations(plan.services[0].service);
  std::set<IpAddress> addresses;
  for (const auto& d : dests) addresses.insert(d.address);
  EXPECT_EQ(addresses, (std::set<IpAddress>{A("10.71.0.3"), A("10.71.1.2")}));
  auto svc = *ipvs_.ListServices();
  EXPECT_TRUE(
      std::any_of(svc.begin(), svc.end(), [](const auto& s) { return s.scheduler == "mh"; }));
  EXPECT_TRUE(PodVips("10.71.0.2").empty()) << "the old local endpoint loses the VIP";
  EXPECT_FALSE(pod_links_["fake:10.71.0.2"].Has(kPodTunnelV4));
  EXPECT_EQ(PodVips("10.71.0.3"), (std::vector<IpAddress>{A("203.0.113.20")}));
}

}  // namespace
}  // namespace kr::proxy::dsr_test
