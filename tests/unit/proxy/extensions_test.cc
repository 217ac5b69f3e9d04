#include "kube_router/proxy/extensions.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <sstream>

#include "kube_router/netfilter/fakes.h"
#include "kube_router/netlink/fakes.h"
#include "unit/proxy/proxy_test_util.h"

namespace kr::proxy::extensions_test {
namespace {

using namespace testing;  // NOLINT
using ::testing::Contains;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::Not;

std::set<std::string> Entries(netfilter::FakeIpset& ipset, const std::string& set) {
  std::set<std::string> out;
  auto it = ipset.sets().find(set);
  if (it == ipset.sets().end()) return out;
  for (const auto& e : it->second.entries) out.insert(e.address);
  return out;
}

class ProxyExtensionsTest : public ::testing::Test {
 protected:
  ProxyExtensionsTest() {
    links.Seed({.name = "eth0", .kind = "", .mtu = 1500, .up = true});
    (void)links.AddAddress({"eth0", Ip("192.0.2.10"), 24, netlink::Scope::kUniverse});
    auto node = NodeObj("node-a", {"192.0.2.10"});
    node.pod_cidr = "10.244.1.0/24";
    node.pod_cidrs = {"10.244.1.0/24"};
    cluster->nodes.Upsert("node-a", std::make_shared<k8s::Node>(node));
    config = Config("node-a");
    config.hairpin_mode = true;
  }

  void Build() {
    controller = std::make_unique<NetworkServicesController>(
        config, cluster.get(), ProxyDataplane{&ipvs, &links, &routes}, nullptr);
    FirewallDeps deps{cluster.get(), &links, &iptables, nullptr, &ipset, &sysctl};
    controller->AddExtension(MakeFirewallExtension(config, deps));
    controller->AddExtension(MakeConntrackExtension(&conntrack));
  }

  void Put(const k8s::Service& s) {
    auto old = cluster->services.Upsert(s.meta.Key(), std::make_shared<k8s::Service>(s));
    Event(k8s::ResourceKind::kService, s.meta.Key(), nullptr);
  }
  void Put(const k8s::EndpointSlice& s) {
    std::shared_ptr<const k8s::EndpointSlice> p = std::make_shared<k8s::EndpointSlice>(s);
    cluster->endpoint_slices.Upsert(s.meta.Key(), p);
    Event(k8s::ResourceKind::kEndpointSlice, s.meta.Key(), p);
  }
  void Event(k8s::ResourceKind kind, const std::string& key,
             std::shared_ptr<const k8s::EndpointSlice> slice) {
    if (!controller) return;
    k8s::Event e;
    e.kind = kind;
    e.key = key;
    e.type = k8s::EventType::kUpdated;
    if (slice) e.new_object = slice;
    controller->OnUpdate(e);
  }

  std::unique_ptr<k8s::Cluster> cluster = k8s::MakeCluster();
  netlink::FakeIpvs ipvs;
  netlink::FakeLinks links;
  netlink::FakeRouteTable routes{&links};
  netlink::FakeSysctl sysctl;
  netlink::FakeConntrack conntrack;
  netfilter::FakeIptables iptables;
  netfilter::FakeIpset ipset;
  ProxyConfig config;
  std::unique_ptr<NetworkServicesController> controller;
};

TEST_F(ProxyExtensionsTest, FirewallFollowsTheProgrammedServices) {
  Put(Svc("web", "10.96.0.10", {Port("http", 80)}));
  Put(Slice("web", "web-1", {{"10.244.1.5", "node-a"}}, {{"http", 8080}}));
  Build();
  ASSERT_TRUE(controller->Sync(SyncReason::kStartup).ok());
  EXPECT_THAT(Entries(ipset, kServiceIpsSet), ElementsAre("10.96.0.10"));
  EXPECT_THAT(Entries(ipset, kServiceIpPortsSet), ElementsAre("10.96.0.10,tcp:80"));
  EXPECT_THAT(Entries(ipset, kLocalIpsSet), ElementsAre("192.0.2.10"));  // not the dummy's VIPs
  auto& filter = iptables.table("filter");
  EXPECT_FALSE(filter.chains[kServicesChain].empty());
  std::string nat;
  for (const auto& r : iptables.table("nat").chains["POSTROUTING"]) nat += r + "\n";
  EXPECT_THAT(nat, HasSubstr("10.244.1.0/24"));
  EXPECT_THAT(nat, HasSubstr("--to-source 192.0.2.10"));
  std::string hairpin;
  for (const auto& r : iptables.table("nat").chains[kHairpinChain]) hairpin += r + "\n";
  EXPECT_THAT(hairpin, HasSubstr("10.244.1.5"));  // --hairpin-mode, a local endpoint

  // A new Service is one more entry; a deleted one is gone.
  Put(Svc("api", "10.96.0.1", {Port("https", 443)}));
  ASSERT_TRUE(controller->Sync(SyncReason::kRequested).ok());
  EXPECT_THAT(Entries(ipset, kServiceIpPortsSet), Contains("10.96.0.1,tcp:443"));
  cluster->services.Remove("default/web");
  Event(k8s::ResourceKind::kService, "default/web", nullptr);
  ASSERT_TRUE(controller->Sync(SyncReason::kRequested).ok());
  EXPECT_THAT(Entries(ipset, kServiceIpsSet), ElementsAre("10.96.0.1"));

  auto removed = controller->Cleanup();
  ASSERT_TRUE(removed.ok()) << removed.error();
  EXPECT_TRUE(Entries(ipset, kServiceIpsSet).empty());
  EXPECT_FALSE(iptables.table("filter").chains.contains(kServicesChain));
}

// Two Services with one external IP and port share its ipset entry: it stays while either wants
// it, also when one lets go and the other takes it in the same sync, and goes with the last.
// The counts are changed in place for an event of a few entries and merged for many (over 16):
// both ways are taken here.
TEST_F(ProxyExtensionsTest, ASharedExternalIpPortStaysWhileAServiceWantsIt) {
  const std::string shared = "198.51.100.7,tcp:80";
  auto with_external = [](const std::string& name, const std::string& cluster_ip) {
    auto svc = Svc(name, cluster_ip, {Port("http", 80)});
    svc.external_ips = {"198.51.100.7"};
    return svc;
  };
  Put(with_external("a", "10.96.0.11"));
  Put(with_external("b", "10.96.0.12"));
  Build();
  ASSERT_TRUE(controller->Sync(SyncReason::kStartup).ok());
  EXPECT_THAT(Entries(ipset, kServiceIpPortsSet), Contains(shared));

  // A few entries (in place): "a" goes, "b" still wants the entry.
  cluster->services.Remove("default/a");
  Event(k8s::ResourceKind::kService, "default/a", nullptr);
  ASSERT_TRUE(controller->Sync(SyncReason::kRequested).ok());
  EXPECT_THAT(Entries(ipset, kServiceIpPortsSet), Contains(shared));
  EXPECT_THAT(Entries(ipset, kServiceIpPortsSet), Not(Contains("10.96.0.11,tcp:80")));

  // One sync: "a" takes the entry again as "b" drops its external IP.
  Put(with_external("a", "10.96.0.11"));
  Put(Svc("b", "10.96.0.12", {Port("http", 80)}));
  ASSERT_TRUE(controller->Sync(SyncReason::kRequested).ok());
  EXPECT_THAT(Entries(ipset, kServiceIpPortsSet), Contains(shared));

  // Many entries (merged): twenty new Services, one of them wanting the entry too.
  for (int i = 0; i < 20; ++i) {
    if (i == 0) {
      Put(with_external("c0", "10.96.1.0"));
    } else {
      Put(Svc("c" + std::to_string(i), "10.96.1." + std::to_string(i), {Port("http", 80)}));
    }
  }
  ASSERT_TRUE(controller->Sync(SyncReason::kRequested).ok());
  EXPECT_THAT(Entries(ipset, kServiceIpPortsSet), Contains("10.96.1.19,tcp:80"));
  cluster->services.Remove("default/a");
  Event(k8s::ResourceKind::kService, "default/a", nullptr);
  for (int i = 1; i < 20; ++i) {  // (enough entries to merge)
    cluster->services.Remove("default/c" + std::to_string(i));
    Event(k8s::ResourceKind::kService, "default/c" + std::to_string(i), nullptr);
  }
  ASSERT_TRUE(controller->Sync(SyncReason::kRequested).ok());
  EXPECT_THAT(Entries(ipset, kServiceIpPortsSet), Contains(shared));  // "c0" still wants it
  EXPECT_THAT(Entries(ipset, kServiceIpPortsSet), Not(Contains("10.96.1.19,tcp:80")));

  // The last one lets go: the entry goes.
  cluster->services.Remove("default/c0");
  Event(k8s::ResourceKind::kService, "default/c0", nullptr);
  ASSERT_TRUE(controller->Sync(SyncReason::kRequested).ok());
  EXPECT_THAT(Entries(ipset, kServiceIpPortsSet), Not(Contains(shared)));
  EXPECT_THAT(Entries(ipset, kServiceIpPortsSet), ElementsAre("10.96.0.12,tcp:80"));
}

// An endpoint event does not dump the node's addresses (kube-dummy-if holds every VIP: at 10k
// Services one dump per event was most of the event sync); a full sync does, and so does an
// event sync after the node's facts changed. kube-router-local-ips stays right throughout.
TEST_F(ProxyExtensionsTest, AnEndpointEventSyncDoesNotDumpTheNodesAddresses) {
  using LinkOp = netlink::FakeLinks::Op;
  Put(Svc("web", "10.96.0.10", {Port("http", 80)}));
  Put(Slice("web", "web-1", {{"10.244.1.5", "node-a"}}, {{"http", 8080}}));
  Build();
  ASSERT_TRUE(controller->Sync(SyncReason::kStartup).ok());
  const int dumps = links.failures().Calls({LinkOp::kListAddresses});
  EXPECT_GE(dumps, 1);

  Put(Slice("web", "web-1", {{"10.244.1.6", "node-a"}}, {{"http", 8080}}));
  ASSERT_TRUE(controller->Sync(SyncReason::kRequested).ok());
  EXPECT_EQ(links.failures().Calls({LinkOp::kListAddresses}), dumps);
  EXPECT_THAT(ipvs.ListDestinations({Ip("10.96.0.10"), netlink::IpvsProtocol::kTcp, 80}).value(),
              ElementsAre(::testing::Field(&netlink::IpvsDestination::address, Ip("10.244.1.6"))));
  EXPECT_THAT(Entries(ipset, kLocalIpsSet), ElementsAre("192.0.2.10"));

  // The node's address changes in the API: that event sync dumps again.
  auto node = NodeObj("node-a", {"192.0.2.11"});
  node.pod_cidr = "10.244.1.0/24";
  node.pod_cidrs = {"10.244.1.0/24"};
  cluster->nodes.Upsert("node-a", std::make_shared<k8s::Node>(node));
  ASSERT_TRUE(links.AddAddress({"eth0", Ip("192.0.2.11"), 24, netlink::Scope::kUniverse}).ok());
  k8s::Event e;
  e.kind = k8s::ResourceKind::kNode;
  e.key = "node-a";
  e.type = k8s::EventType::kUpdated;
  e.new_object = cluster->nodes.Get("node-a");
  controller->OnUpdate(e);
  ASSERT_TRUE(controller->Sync(SyncReason::kRequested).ok());
  EXPECT_GT(links.failures().Calls({LinkOp::kListAddresses}), dumps);
  EXPECT_THAT(Entries(ipset, kLocalIpsSet), ElementsAre("192.0.2.10", "192.0.2.11"));

  // A periodic (full) sync always dumps.
  const int before_periodic = links.failures().Calls({LinkOp::kListAddresses});
  ASSERT_TRUE(controller->Sync(SyncReason::kPeriodic).ok());
  EXPECT_GT(links.failures().Calls({LinkOp::kListAddresses}), before_periodic);
}

// The first (full) sync's firewall write fails; the next sync is an event that shows one new
// Service only. The firewall must still hold every Service afterwards (it repairs from what it
// was given, not from the event's partial view).
TEST_F(ProxyExtensionsTest, AFailedFirstFirewallWriteIsRepairedByTheNextEventSync) {
  Put(Svc("web", "10.96.0.10", {Port("http", 80)}));
  Put(Svc("api", "10.96.0.1", {Port("https", 443)}));
  Build();
  ipset.FailNext(1);
  EXPECT_FALSE(controller->Sync(SyncReason::kStartup).ok());
  Put(Svc("dns", "10.96.0.53", {Port("dns", 53, "UDP")}));
  ASSERT_TRUE(controller->Sync(SyncReason::kRequested).ok());
  EXPECT_THAT(Entries(ipset, kServiceIpPortsSet),
              ElementsAre("10.96.0.1,tcp:443", "10.96.0.10,tcp:80", "10.96.0.53,udp:53"));
}

TEST_F(ProxyExtensionsTest, ConntrackFlowsOfAGoneUdpBackendAreDeleted) {
  Put(Svc("dns", "10.96.0.53", {Port("dns", 53, "UDP")}));
  Put(Slice("dns", "dns-1", {{"10.244.1.5"}, {"10.244.2.5"}}, {{"dns", 5353}}));
  Build();
  ASSERT_TRUE(controller->Sync(SyncReason::kStartup).ok());
  auto flow = [](const char* backend) {
    netlink::ConntrackFlow f;
    f.protocol = netlink::ip_protocol::kUdp;
    f.original = {Ip("10.244.3.9"), Ip("10.96.0.53"), 5000, 53};
    f.reply = {Ip(backend), Ip("10.244.3.9"), 5353, 5000};
    return f;
  };
  conntrack.Seed(flow("10.244.1.5"));
  conntrack.Seed(flow("10.244.2.5"));
  Put(Slice("dns", "dns-1", {{"10.244.2.5"}}, {{"dns", 5353}}));
  ASSERT_TRUE(controller->Sync(SyncReason::kRequested).ok());
  ASSERT_EQ(conntrack.flows().size(), 1u);
  EXPECT_EQ(conntrack.flows()[0].reply.source, Ip("10.244.2.5"));  // the survivor's flow stays
}

TEST(ProxyExtensionTranslations, HealthChecksMetricsAndConntrackItems) {
  DesiredService svc;
  svc.name = {"default", "lb"};
  ServicePortFacts a, b;
  a.health_check_node_port = 32000;
  a.local_endpoints = {{Ip("10.244.1.5"), 80}, {Ip("10.244.1.6"), 80}};
  b.local_endpoints = {{Ip("10.244.1.5"), 81}};  // same pod, another port: counted once
  svc.ports = {a, b};
  DesiredVirtualService vs;
  vs.vs.service.address = Ip("10.96.0.20");
  vs.vs.service.port = 80;
  svc.virtual_services = {vs};
  std::map<ServiceName, DesiredService> services{{svc.name, svc}};
  ProxyImage programmed;
  programmed.services[vs.vs.id()] = vs.vs;
  NodeFacts node;
  node.ipv4 = Ip("192.0.2.10");
  ProxySnapshot snapshot;
  snapshot.services = &services;
  snapshot.programmed = &programmed;
  snapshot.node = &node;

  auto checks = HealthChecksOf(snapshot);
  ASSERT_EQ(checks.size(), 1u);
  EXPECT_EQ(checks[0].port, 32000);
  EXPECT_EQ(checks[0].local_endpoints, 2u);

  auto targets = MetricTargetsOf(snapshot);
  ASSERT_EQ(targets.size(), 1u);
  EXPECT_EQ(targets.begin()->first, (ServiceName{"default", "lb"}));
  EXPECT_THAT(targets.begin()->second,
              ElementsAre(MetricTarget{Ip("10.96.0.20"), netlink::IpvsProtocol::kTcp, 80, 0}));
  programmed.services.clear();  // not programmed (and not DSR): no series
  EXPECT_THAT(MetricTargetsOf(snapshot), IsEmpty());

  netlink::IpvsService udp;
  udp.address = Ip("192.0.2.10");
  udp.protocol = netlink::IpvsProtocol::kUdp;
  udp.port = 30053;
  netlink::IpvsDestination d;
  d.address = Ip("10.244.1.5");
  auto item = ConntrackItemOf(udp, d, node);
  ASSERT_TRUE(item.has_value());
  EXPECT_EQ(item->node_port, 30053);  // the node IP: a NodePort
  EXPECT_THAT(item->service_ips, IsEmpty());
  udp.address = Ip("10.96.0.53");
  item = ConntrackItemOf(udp, d, node);
  ASSERT_TRUE(item.has_value());
  EXPECT_THAT(item->service_ips, ElementsAre(Ip("10.96.0.53")));
  EXPECT_EQ(item->port, 30053);
  EXPECT_THAT(item->gone_backends, ElementsAre(Ip("10.244.1.5")));
  udp.protocol = netlink::IpvsProtocol::kTcp;
  EXPECT_FALSE(ConntrackItemOf(udp, d, node).has_value());
}

// DSR through the controller: the annotated external IP becomes a fwmark service with tunnel
// real servers (no plain service, no VIP on kube-dummy-if); without the annotation it is a plain
// masquerading service again and the DSR objects are gone.
TEST(ProxyDsrExtension, AnnotatedExternalIpIsServedByTheDsrApplier) {
  auto cluster = k8s::MakeCluster();
  netlink::FakeIpvs ipvs;
  netlink::FakeLinks links;
  netlink::FakeRouteTable routes{&links};
  netlink::FakeRuleTable rules;
  netlink::FakePodNetns pods;
  netfilter::FakeIptables mangle;
  links.Seed({.name = "eth0", .kind = "", .mtu = 1500, .up = true});
  links.Seed({.name = "lo", .kind = "", .mtu = 65536, .up = true});  // table 78's device
  cluster->nodes.Upsert("node-a", std::make_shared<k8s::Node>(NodeObj("node-a", {"192.0.2.10"})));
  auto svc = Svc("dsr", "10.96.0.60", {Port("", 80)});
  svc.external_ips = {"198.51.100.60"};
  svc.meta.annotations[kAnnotationDsr] = "tunnel";
  cluster->services.Upsert("default/dsr", std::make_shared<k8s::Service>(svc));
  cluster->endpoint_slices.Upsert(
      "default/dsr-1",
      std::make_shared<k8s::EndpointSlice>(Slice("dsr", "dsr-1", {{"10.1.0.1"}}, {{"", 80}})));

  DsrDataplane dp;
  dp.ipvs = &ipvs;
  dp.rules = &rules;
  dp.routes = &routes;
  dp.iptables_v4 = &mangle;
  dp.pods = &pods;
  dp.make_pod_links =
      [](const netlink::PodNetnsContext&) -> Result<std::unique_ptr<netlink::Links>> {
    return Status::Error("no pod on this node");
  };
  dp.make_pod_sysctl = [](const netlink::PodNetnsContext&) {
    return std::unique_ptr<netlink::Sysctl>();
  };
  auto config = Config("node-a");
  NetworkServicesController controller(config, cluster.get(),
                                       ProxyDataplane{&ipvs, &links, &routes}, nullptr);
  controller.AddExtension(MakeDsrExtension(dp, &links, cluster.get(), "node-a"));
  auto first = controller.Sync(SyncReason::kStartup);
  ASSERT_TRUE(first.ok()) << first.message();

  auto listed = ipvs.ListServices();
  ASSERT_TRUE(listed.ok());
  std::vector<netlink::IpvsService> fwmark;
  bool plain_external = false, cluster_ip = false;
  for (const auto& s : *listed) {
    if (s.fwmark != 0) fwmark.push_back(s);
    if (s.fwmark == 0 && s.address == Ip("198.51.100.60")) plain_external = true;
    if (s.fwmark == 0 && s.address == Ip("10.96.0.60")) cluster_ip = true;
  }
  ASSERT_EQ(fwmark.size(), 1u);
  EXPECT_FALSE(plain_external);
  EXPECT_TRUE(cluster_ip);
  auto dests = ipvs.ListDestinations(fwmark[0]);
  ASSERT_TRUE(dests.ok());
  ASSERT_EQ(dests->size(), 1u);
  EXPECT_EQ((*dests)[0].forward, netlink::IpvsForward::kTunnel);
  for (const auto& a : links.addresses()) EXPECT_NE(a.address, Ip("198.51.100.60"));
  EXPECT_FALSE(rules.rules().empty());

  // The annotation goes: DSR objects removed, the external IP served the plain way.
  svc.meta.annotations.erase(kAnnotationDsr);
  cluster->services.Upsert("default/dsr", std::make_shared<k8s::Service>(svc));
  k8s::Event e;
  e.kind = k8s::ResourceKind::kService;
  e.type = k8s::EventType::kUpdated;
  e.key = "default/dsr";
  controller.OnUpdate(e);
  ASSERT_TRUE(controller.Sync(SyncReason::kRequested).ok());
  listed = ipvs.ListServices();
  ASSERT_TRUE(listed.ok());
  plain_external = false;
  for (const auto& s : *listed) {
    EXPECT_EQ(s.fwmark, 0u) << s.ToString();
    if (s.address == Ip("198.51.100.60")) plain_external = true;
  }
  EXPECT_TRUE(plain_external);
  EXPECT_TRUE(rules.rules().empty());
}

// The metrics name a DSR virtual service by the mark its DSR plan gave it (the kernel's dump
// reports a fwmark service, not the VIP): its series carry the Service and the DSR VIP.
TEST(ProxyDsrExtension, DsrServiceHasItsMetricSeries) {
  auto cluster = k8s::MakeCluster();
  netlink::FakeIpvs ipvs;
  netlink::FakeLinks links;
  netlink::FakeRouteTable routes{&links};
  netlink::FakeRuleTable rules;
  netlink::FakePodNetns pods;
  netfilter::FakeIptables mangle;
  links.Seed({.name = "eth0", .kind = "", .mtu = 1500, .up = true});
  links.Seed({.name = "lo", .kind = "", .mtu = 65536, .up = true});
  cluster->nodes.Upsert("node-a", std::make_shared<k8s::Node>(NodeObj("node-a", {"192.0.2.10"})));
  auto svc = Svc("dsr", "10.96.0.60", {Port("", 80)});
  svc.external_ips = {"198.51.100.60"};
  svc.meta.annotations[kAnnotationDsr] = "tunnel";
  cluster->services.Upsert("default/dsr", std::make_shared<k8s::Service>(svc));
  cluster->endpoint_slices.Upsert(
      "default/dsr-1",
      std::make_shared<k8s::EndpointSlice>(Slice("dsr", "dsr-1", {{"10.1.0.1"}}, {{"", 80}})));
  DsrDataplane dp;
  dp.ipvs = &ipvs;
  dp.rules = &rules;
  dp.routes = &routes;
  dp.iptables_v4 = &mangle;
  dp.pods = &pods;
  dp.make_pod_links =
      [](const netlink::PodNetnsContext&) -> Result<std::unique_ptr<netlink::Links>> {
    return Status::Error("no pod on this node");
  };
  dp.make_pod_sysctl = [](const netlink::PodNetnsContext&) {
    return std::unique_ptr<netlink::Sysctl>();
  };
  metrics::Registry registry;
  auto config = Config("node-a");
  NetworkServicesController controller(config, cluster.get(),
                                       ProxyDataplane{&ipvs, &links, &routes}, nullptr);
  auto marks = std::make_shared<DsrMarks>();
  controller.AddExtension(MakeDsrExtension(dp, &links, cluster.get(), "node-a", marks));
  controller.AddExtension(MakeMetricsExtension(registry, ipvs, marks));
  auto series = [&] {
    std::vector<std::string> out;
    std::istringstream text(registry.Render());
    for (std::string line; std::getline(text, line);) {
      if (line.starts_with("kube_router_service_total_connections{")) out.push_back(line);
    }
    return out;
  };
  auto dsr_series = AllOf(HasSubstr("svc_namespace=\"default\""), HasSubstr("service_name=\"dsr\""),
                          HasSubstr("service_vip=\"198.51.100.60\""), HasSubstr("protocol=\"tcp\""),
                          HasSubstr("port=\"80\""));
  ASSERT_TRUE(controller.Sync(SyncReason::kStartup).ok());
  EXPECT_THAT(series(), Contains(dsr_series));
  EXPECT_THAT(series(), Contains(HasSubstr("service_vip=\"10.96.0.60\"")));

  // A second DSR Service on the event path whose key sorts first and hashes to the first one's
  // mark: it takes that mark, the first one's is probed anew; both keep their own series.
  auto other = Svc("dsr2", "10.96.0.61", {Port("", 12337)});
  other.external_ips = {"198.51.100.59"};
  ASSERT_EQ(DsrFwmarkHash("198.51.100.59-tcp-12337"), DsrFwmarkHash("198.51.100.60-tcp-80"));
  other.meta.annotations[kAnnotationDsr] = "tunnel";
  cluster->services.Upsert("default/dsr2", std::make_shared<k8s::Service>(other));
  cluster->endpoint_slices.Upsert(
      "default/dsr2-1",
      std::make_shared<k8s::EndpointSlice>(Slice("dsr2", "dsr2-1", {{"10.1.0.2"}}, {{"", 12337}})));
  k8s::Event e;
  e.kind = k8s::ResourceKind::kService;
  e.type = k8s::EventType::kAdded;
  e.key = "default/dsr2";
  controller.OnUpdate(e);
  ASSERT_TRUE(controller.Sync(SyncReason::kRequested).ok());
  EXPECT_THAT(series(), Contains(dsr_series));
  EXPECT_THAT(series(), Contains(AllOf(HasSubstr("service_name=\"dsr2\""),
                                       HasSubstr("service_vip=\"198.51.100.59\""),
                                       HasSubstr("port=\"12337\""))));
}

}  // namespace
}  // namespace kr::proxy::extensions_test
