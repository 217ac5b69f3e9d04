#include "kube_router/proxy/desired_state.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "unit/proxy/proxy_test_util.h"

namespace kr::proxy::desired_state_test {
namespace {

using namespace testing;  // NOLINT
using netlink::IpvsProtocol;
using ::testing::Contains;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;

NodeFacts NodeA() {
  NodeFacts n;
  n.ipv4 = Ip("192.0.2.10");
  n.ipv6 = Ip("2001:db8::10");
  return n;
}

DesiredService Build(const k8s::Service& svc, std::vector<k8s::EndpointSlice> slices,
                     const ProxyConfig& config = Config(), const NodeFacts& node = NodeA()) {
  std::vector<SlicePtr> ptrs;
  for (auto& s : slices) ptrs.push_back(std::make_shared<k8s::EndpointSlice>(s));
  return BuildService(svc, ptrs, node, config);
}

const DesiredVirtualService* Find(const DesiredService& d, const std::string& id) {
  for (const auto& v : d.virtual_services) {
    if (v.vs.id().ToString() == id) return &v;
  }
  return nullptr;
}

std::vector<std::string> Dests(const DesiredVirtualService* v) {
  std::vector<std::string> out;
  if (!v) return {"<no such virtual service>"};
  for (const auto& d : v->vs.destinations) {
    out.push_back(IdOf(d).ToString() + (d.weight == 1 ? "" : " w" + std::to_string(d.weight)));
  }
  return out;
}

std::vector<std::string> Ids(const DesiredService& d) {
  std::vector<std::string> out;
  for (const auto& v : d.virtual_services) out.push_back(v.vs.id().ToString());
  return out;
}

TEST(DesiredStateTest, ClusterIpPerPortAndProtocolWithPortsFromTheSliceOfTheSameName) {
  auto svc = Svc("web", "10.96.0.10",
                 {Port("http", 80), Port("dns", 53, "UDP"), Port("assoc", 9, "SCTP")});
  // The named targetPort resolves to different numbers per pod: each slice says which.
  auto d = Build(
      svc, {Slice("web", "web-1", {{"10.1.0.1"}}, {{"http", 8080}, {"dns", 5353}, {"assoc", 9999}}),
            Slice("web", "web-2", {{"10.1.0.2"}}, {{"http", 8081}})});
  EXPECT_TRUE(d.skipped().empty());
  EXPECT_THAT(d.problems(), IsEmpty());
  EXPECT_THAT(Ids(d), ElementsAre("TCP 10.96.0.10:80", "UDP 10.96.0.10:53", "SCTP 10.96.0.10:9"));
  EXPECT_THAT(Dests(Find(d, "TCP 10.96.0.10:80")), ElementsAre("10.1.0.1:8080", "10.1.0.2:8081"));
  EXPECT_THAT(Dests(Find(d, "UDP 10.96.0.10:53")), ElementsAre("10.1.0.1:5353"));
  EXPECT_THAT(Dests(Find(d, "SCTP 10.96.0.10:9")), ElementsAre("10.1.0.1:9999"));
  EXPECT_THAT(d.vips, ElementsAre(Ip("10.96.0.10")));
  const auto* http = Find(d, "TCP 10.96.0.10:80");
  EXPECT_EQ(http->vs.service.scheduler, "rr");
  EXPECT_EQ(http->vs.service.flags, 0u);
  EXPECT_EQ(http->role, VipRole::kClusterIp);
  EXPECT_EQ(d.ports.at(http->port_index).port_name, "http");
  EXPECT_EQ(d.ports.at(Find(d, "UDP 10.96.0.10:53")->port_index).port_name, "dns");
  EXPECT_EQ(d.ports.at(Find(d, "SCTP 10.96.0.10:9")->port_index).port_name, "assoc");
  for (const auto& dest : http->vs.destinations) {
    EXPECT_EQ(dest.forward, netlink::IpvsForward::kMasquerade);
  }
}

TEST(DesiredStateTest, SkipRules) {
  auto base = Svc("s", "10.96.0.11", {Port("", 80)});
  auto external_name = base;
  external_name.type = "ExternalName";
  auto headless = base;
  headless.cluster_ips = {"None"};
  auto other_proxy = base;
  other_proxy.meta.labels[kLabelServiceProxyName] = "other-proxy";
  auto ours = base;
  ours.meta.labels[kLabelServiceProxyName] = "kube-router";
  auto headless_label = base;
  headless_label.meta.labels[kLabelHeadless] = "";
  for (const auto* svc : {&external_name, &headless, &other_proxy, &headless_label}) {
    auto d = Build(*svc, {Slice("s", "s-1", {{"10.1.0.1"}}, {{"", 80}})});
    EXPECT_FALSE(d.skipped().empty());
    EXPECT_THAT(d.virtual_services, IsEmpty());
    EXPECT_THAT(d.vips, IsEmpty());
  }
  EXPECT_THAT(Build(other_proxy, {}).skipped(), HasSubstr("other-proxy"));
  EXPECT_TRUE(Build(ours, {}).skipped().empty());
  EXPECT_TRUE(Build(base, {}).skipped().empty());
}

TEST(DesiredStateTest, DualStackEachFamilyGetsItsOwnEndpointsAndWrongFamilyIsSkipped) {
  auto svc = Svc("dual", "10.96.0.12", {Port("p", 80)});
  svc.cluster_ips = {"10.96.0.12", "fd00:96::12"};
  auto config = Config();
  config.enable_ipv6 = true;
  std::vector<k8s::EndpointSlice> slices = {
      Slice("dual", "v4", {{"10.1.0.1"}, {"fd00:1::9"}}, {{"p", 8080}}),
      Slice("dual", "v6", {{"fd00:1::1"}}, {{"p", 8080}}, "default", "IPv6"),
      Slice("dual", "fqdn", {{"example.com"}}, {{"p", 8080}}, "default", "FQDN")};
  auto d = Build(svc, slices, config);
  EXPECT_THAT(Dests(Find(d, "TCP 10.96.0.12:80")), ElementsAre("10.1.0.1:8080"));
  EXPECT_THAT(Dests(Find(d, "TCP [fd00:96::12]:80")), ElementsAre("[fd00:1::1]:8080"));
  ASSERT_EQ(d.problems().size(), 1u);
  EXPECT_THAT(d.problems()[0], HasSubstr("service default/dual"));
  EXPECT_THAT(d.problems()[0], HasSubstr("fd00:1::9"));
  EXPECT_THAT(d.problems()[0], HasSubstr("EndpointSlice v4"));
  EXPECT_THAT(d.cluster_ips, ElementsAre(Ip("10.96.0.12"), Ip("fd00:96::12")));
  // IPv6 disabled: the IPv6 cluster IP is not ours to program.
  auto v4_only = Build(svc, slices);
  EXPECT_THAT(Ids(v4_only), ElementsAre("TCP 10.96.0.12:80"));
  EXPECT_THAT(v4_only.cluster_ips, ElementsAre(Ip("10.96.0.12")));
}

TEST(DesiredStateTest, NodePortOnTheNodeIpOfEachFamilyOrOnEveryAddress) {
  auto svc = Svc("np", "10.96.0.13", {Port("p", 80, "TCP", 30080)});
  svc.type = "NodePort";
  auto slices = std::vector<k8s::EndpointSlice>{Slice("np", "np-1", {{"10.1.0.1"}}, {{"p", 8080}})};
  auto d = Build(svc, slices);
  EXPECT_THAT(Ids(d), ElementsAre("TCP 10.96.0.13:80", "TCP 192.0.2.10:30080"));
  EXPECT_EQ(Find(d, "TCP 192.0.2.10:30080")->role, VipRole::kNodePort);
  EXPECT_THAT(Dests(Find(d, "TCP 192.0.2.10:30080")), ElementsAre("10.1.0.1:8080"));
  EXPECT_THAT(d.vips, ElementsAre(Ip("10.96.0.13")));  // NodePorts are not on kube-dummy-if

  NodeFacts all = NodeA();
  all.bind_all = true;
  all.all_addresses = {Ip("192.0.2.10"), Ip("192.0.2.11"), Ip("fe80::1"), Ip("2001:db8::10")};
  auto bound = Build(svc, slices, Config(), all);
  EXPECT_THAT(Ids(bound),
              ElementsAre("TCP 10.96.0.13:80", "TCP 192.0.2.10:30080", "TCP 192.0.2.11:30080"));

  auto cluster_ip_only = svc;
  cluster_ip_only.type = "ClusterIP";  // a stale nodePort field means nothing then
  EXPECT_THAT(Ids(Build(cluster_ip_only, slices)), ElementsAre("TCP 10.96.0.13:80"));
}

TEST(DesiredStateTest, NodeIpChoicePerFamilyAndLinkFilter) {
  k8s::Node node;
  node.meta.name = "n";
  node.addresses = {{"ExternalIP", "203.0.113.1"},
                    {"InternalIP", "2001:db8::5"},
                    {"InternalIP", "10.0.0.5"},
                    {"Hostname", "n"}};
  auto facts = NodeFactsFromNode(node);
  EXPECT_EQ(facts.ipv6, Ip("2001:db8::5"));  // the primary address (first InternalIP)
  EXPECT_EQ(facts.ipv4, Ip("10.0.0.5"));     // first InternalIP of the family
  node.addresses = {{"ExternalIP", "203.0.113.1"}};
  EXPECT_EQ(NodeFactsFromNode(node).ipv4, Ip("203.0.113.1"));
  EXPECT_FALSE(NodeFactsFromNode(node).ipv6.has_value());
  EXPECT_TRUE(NodePortLinkEligible("eth0"));
  EXPECT_TRUE(NodePortLinkEligible("lo"));
  EXPECT_FALSE(NodePortLinkEligible("kube-bridge"));
  EXPECT_FALSE(NodePortLinkEligible("kube-dummy-if"));
  EXPECT_FALSE(NodePortLinkEligible("docker0"));
  EXPECT_FALSE(NodePortLinkEligible("mydummy"));
}

TEST(DesiredStateTest, ExternalAndLoadBalancerIpsAreValidated) {
  auto svc = Svc("lb", "10.96.0.14", {Port("p", 80, "TCP", 30081)});
  svc.type = "LoadBalancer";
  svc.external_ips = {"198.51.100.5", "10.96.0.99", "192.0.2.99", "bogus"};
  // (The third entry stands for a hostname-only ingress: the cache keeps no hostname, 279b68f.)
  svc.load_balancer_ingress = {
      {"203.0.113.7", ""}, {"203.0.113.8", "Proxy"}, {"", ""}, {"198.51.100.200", ""}};
  auto slices = std::vector<k8s::EndpointSlice>{Slice("lb", "lb-1", {{"10.1.0.1"}}, {{"p", 8080}})};
  auto d = Build(svc, slices);
  EXPECT_THAT(Ids(d), ElementsAre("TCP 10.96.0.14:80", "TCP 192.0.2.10:30081",
                                  "TCP 198.51.100.5:80", "TCP 203.0.113.7:80"));
  EXPECT_EQ(Find(d, "TCP 198.51.100.5:80")->role, VipRole::kExternalIp);
  EXPECT_EQ(Find(d, "TCP 203.0.113.7:80")->role, VipRole::kLoadBalancer);
  EXPECT_THAT(d.vips, ElementsAre(Ip("10.96.0.14"), Ip("198.51.100.5"), Ip("203.0.113.7")));
  // The validated addresses, once for the Service (not per port).
  EXPECT_THAT(d.cluster_ips, ElementsAre(Ip("10.96.0.14")));
  EXPECT_THAT(d.external_ips, ElementsAre(Ip("198.51.100.5")));
  EXPECT_THAT(d.load_balancer_ips, ElementsAre(Ip("203.0.113.7")));
  std::string all;
  for (const auto& p : d.problems()) all += p + "\n";
  EXPECT_EQ(d.problems().size(), 4u) << all;
  EXPECT_THAT(all, HasSubstr("externalIP 10.96.0.99 is inside --service-cluster-ip-range"));
  EXPECT_THAT(all, HasSubstr("externalIP 192.0.2.99 is outside --service-external-ip-range"));
  EXPECT_THAT(all, HasSubstr("externalIP \"bogus\" is not an IP address"));
  EXPECT_THAT(all, HasSubstr("LoadBalancer ingress IP 198.51.100.200 is outside "
                             "--loadbalancer-ip-range"));
  EXPECT_THAT(all, HasSubstr("service default/lb"));

  auto lax = Config();
  lax.strict_external_ip_validation = false;
  EXPECT_THAT(Ids(Build(svc, slices, lax)),
              ElementsAre("TCP 10.96.0.14:80", "TCP 192.0.2.10:30081", "TCP 192.0.2.99:80",
                          "TCP 198.51.100.5:80", "TCP 198.51.100.200:80", "TCP 203.0.113.7:80"));
  auto no_ranges = Config();
  no_ranges.external_ip_ranges.clear();
  EXPECT_EQ(Find(Build(svc, slices, no_ranges), "TCP 198.51.100.5:80"), nullptr);

  svc.meta.annotations[kAnnotationSkipLbIps] = "";
  EXPECT_EQ(Find(Build(svc, slices), "TCP 203.0.113.7:80"), nullptr);
}

TEST(DesiredStateTest, SchedulerAndFlagsFromAnnotations) {
  auto svc = Svc("s", "10.96.0.15", {Port("", 80)});
  svc.meta.annotations[kAnnotationScheduler] = "mh";
  svc.meta.annotations[kAnnotationSchedFlags] = "flag-1, flag-2";
  auto d = Build(svc, {});
  const auto& s = d.virtual_services.at(0).vs.service;
  EXPECT_EQ(s.scheduler, "mh");
  EXPECT_EQ(s.flags, netlink::ipvs_flags::kSchedFlag1 | netlink::ipvs_flags::kSchedFlag2);
  EXPECT_THAT(d.problems(), IsEmpty());

  for (const char* sched : {"rr", "lc", "dh", "sh"}) {
    svc.meta.annotations[kAnnotationScheduler] = sched;
    auto other = Build(svc, {});
    EXPECT_EQ(other.virtual_services.at(0).vs.service.scheduler, sched);
    EXPECT_EQ(other.virtual_services.at(0).vs.service.flags, 0u) << "flags are mh-only";
  }
  svc.meta.annotations[kAnnotationScheduler] = "bogus";
  svc.meta.annotations[kAnnotationSchedFlags] = "flag-9";
  auto bad = Build(svc, {});
  EXPECT_EQ(bad.virtual_services.at(0).vs.service.scheduler, "rr");
  ASSERT_EQ(bad.problems().size(), 2u);
  EXPECT_THAT(bad.problems()[0], HasSubstr("service default/s: unknown scheduler \"bogus\""));
  EXPECT_THAT(bad.problems()[1], HasSubstr("flag-9"));
}

TEST(DesiredStateTest, SessionAffinityClientIpWithItsTimeout) {
  auto svc = Svc("s", "10.96.0.16", {Port("", 80)});
  svc.session_affinity = "ClientIP";
  svc.session_affinity_timeout_seconds = 300;
  auto d = Build(svc, {});
  const auto& s = d.virtual_services.at(0).vs.service;
  EXPECT_EQ(s.flags, netlink::ipvs_flags::kPersistent);
  EXPECT_EQ(s.timeout, 300u);
  svc.session_affinity_timeout_seconds = 0;
  auto bad = Build(svc, {});
  EXPECT_EQ(bad.virtual_services.at(0).vs.service.timeout, 10800u);
  ASSERT_EQ(bad.problems().size(), 1u);
  EXPECT_THAT(bad.problems()[0], HasSubstr("timeoutSeconds 0"));
  svc.session_affinity = "None";
  EXPECT_EQ(Build(svc, {}).virtual_services.at(0).vs.service.flags, 0u);
  EXPECT_EQ(Build(svc, {}).virtual_services.at(0).vs.service.timeout, 0u);
}

TEST(DesiredStateTest, TerminatingEndpointsOnlyWhenNoReadyOneExists) {
  auto svc = Svc("s", "10.96.0.17", {Port("", 80)});
  Ep ready{"10.1.0.1"};
  Ep terminating{"10.1.0.2", "node-b", false, true, true};
  Ep gone{"10.1.0.3", "node-b", false, false, true};
  Ep unready{"10.1.0.4", "node-b", false, false, false};
  auto both = Build(svc, {Slice("s", "s-1", {ready, terminating, gone, unready}, {{"", 8080}})});
  EXPECT_THAT(Dests(Find(both, "TCP 10.96.0.17:80")), ElementsAre("10.1.0.1:8080"));
  auto fallback = Build(svc, {Slice("s", "s-1", {terminating, gone, unready}, {{"", 8080}})});
  EXPECT_THAT(Dests(Find(fallback, "TCP 10.96.0.17:80")), ElementsAre("10.1.0.2:8080"));
  auto none = Build(svc, {Slice("s", "s-1", {gone, unready}, {{"", 8080}})});
  EXPECT_THAT(Dests(Find(none, "TCP 10.96.0.17:80")), IsEmpty());
}

TEST(DesiredStateTest, TrafficPoliciesKeepTheServiceEvenWithoutLocalEndpoints) {
  auto svc = Svc("s", "10.96.0.18", {Port("", 80, "TCP", 30082)});
  svc.type = "LoadBalancer";
  svc.external_ips = {"198.51.100.18"};
  svc.external_traffic_policy = "Local";
  Ep local{"10.1.0.1", "node-a"};
  Ep remote{"10.1.0.2", "node-b"};
  auto d = Build(svc, {Slice("s", "s-1", {local, remote}, {{"", 8080}})});
  EXPECT_THAT(Dests(Find(d, "TCP 10.96.0.18:80")), ElementsAre("10.1.0.1:8080", "10.1.0.2:8080"));
  EXPECT_THAT(Dests(Find(d, "TCP 192.0.2.10:30082")), ElementsAre("10.1.0.1:8080"));
  EXPECT_THAT(Dests(Find(d, "TCP 198.51.100.18:80")), ElementsAre("10.1.0.1:8080"));
  ASSERT_EQ(d.ports.size(), 1u);
  EXPECT_TRUE(d.ports[0].external_local);
  EXPECT_EQ(d.ports[0].local_endpoints.size(), 1u);

  // No local endpoint: the virtual services and VIPs stay, empty, so the kernel refuses the
  // packet on this node instead of routing it away.
  auto no_local = Build(svc, {Slice("s", "s-1", {remote}, {{"", 8080}})});
  EXPECT_THAT(Dests(Find(no_local, "TCP 192.0.2.10:30082")), IsEmpty());
  EXPECT_THAT(Dests(Find(no_local, "TCP 198.51.100.18:80")), IsEmpty());
  EXPECT_THAT(no_local.vips, Contains(Ip("198.51.100.18")));

  svc.external_traffic_policy = "Cluster";
  svc.internal_traffic_policy = "Local";
  auto internal = Build(svc, {Slice("s", "s-1", {remote}, {{"", 8080}})});
  EXPECT_THAT(Dests(Find(internal, "TCP 10.96.0.18:80")), IsEmpty());
  EXPECT_THAT(internal.vips, Contains(Ip("10.96.0.18")));
  EXPECT_THAT(Dests(Find(internal, "TCP 192.0.2.10:30082")), ElementsAre("10.1.0.2:8080"));

  // kube-router.io/service.local forces the external policy only.
  svc.internal_traffic_policy = "Cluster";
  svc.meta.annotations[kAnnotationLocal] = "true";
  auto annotated = Build(svc, {Slice("s", "s-1", {local, remote}, {{"", 8080}})});
  EXPECT_THAT(Dests(Find(annotated, "TCP 192.0.2.10:30082")), ElementsAre("10.1.0.1:8080"));
  EXPECT_THAT(Dests(Find(annotated, "TCP 10.96.0.18:80")),
              ElementsAre("10.1.0.1:8080", "10.1.0.2:8080"));
}

TEST(DesiredStateTest, PortNameNoSliceHasIsAProblemOtherPortsStillWork) {
  auto svc = Svc("s", "10.96.0.19", {Port("http", 80), Port("metrics", 9090)});
  auto d = Build(svc, {Slice("s", "s-1", {{"10.1.0.1"}}, {{"http", 8080}})});
  EXPECT_THAT(Dests(Find(d, "TCP 10.96.0.19:80")), ElementsAre("10.1.0.1:8080"));
  EXPECT_THAT(Dests(Find(d, "TCP 10.96.0.19:9090")), IsEmpty());
  ASSERT_EQ(d.problems().size(), 1u);
  EXPECT_THAT(d.problems()[0],
              HasSubstr("service default/s: port \"metrics\" is in no EndpointSlice"));
  // A service without any endpoint yet is not a problem.
  EXPECT_THAT(Build(svc, {Slice("s", "s-1", {}, {})}).problems(), IsEmpty());
}

TEST(DesiredStateTest, BadPortProtocolIsSkippedAlone) {
  auto svc = Svc("s", "10.96.0.20", {Port("a", 80, "ICMP"), Port("b", 81)});
  auto d = Build(svc, {});
  EXPECT_THAT(Ids(d), ElementsAre("TCP 10.96.0.20:81"));
  ASSERT_EQ(d.problems().size(), 1u);
  EXPECT_THAT(d.problems()[0], HasSubstr("ICMP"));
}

TEST(DesiredStateTest, DsrTunnelMarksExternalServicesAndKeepsTheirVipOffTheDummyLink) {
  auto svc = Svc("s", "10.96.0.21", {Port("", 80)});
  svc.external_ips = {"198.51.100.21"};
  svc.meta.annotations[kAnnotationDsr] = "tunnel";
  auto d = Build(svc, {});
  EXPECT_FALSE(Find(d, "TCP 10.96.0.21:80")->dsr);
  EXPECT_TRUE(Find(d, "TCP 198.51.100.21:80")->dsr);
  EXPECT_THAT(d.vips, ElementsAre(Ip("10.96.0.21")));
  EXPECT_TRUE(d.ports.at(0).dsr);
}

TEST(DesiredStateTest, FactsForHealthChecksAndHairpin) {
  auto svc = Svc("s", "10.96.0.22", {Port("", 80)});
  svc.health_check_node_port = 32000;
  svc.meta.annotations[kAnnotationHairpin] = "";
  Ep local{"10.1.0.1", "node-a"};
  Ep local_terminating{"10.1.0.2", "node-a", false, true, true};
  auto d = Build(svc, {Slice("s", "s-1", {local, local_terminating}, {{"", 8080}})});
  ASSERT_EQ(d.ports.size(), 1u);
  EXPECT_EQ(d.ports[0].health_check_node_port, 32000);
  EXPECT_EQ(d.ports[0].local_endpoints.size(), 1u);  // terminating ones do not count
  EXPECT_TRUE(d.ports[0].hairpin);
  EXPECT_FALSE(d.ports[0].hairpin_external_ips);
}

// A build's problems and skip reason sit behind one pointer that only a Service with either
// allocates; copies (the extensions' snapshot copies Services) carry their own.
TEST(DesiredStateTest, ProblemsAndTheSkipReasonAreHeldOnlyWhenThereAreAny) {
  auto svc = Svc("s", "10.96.0.20", {Port("", 80)});
  auto clean = Build(svc, {Slice("s", "s-1", {{"10.1.0.1"}}, {{"", 80}})});
  EXPECT_FALSE(clean.notes.allocated());
  EXPECT_THAT(clean.problems(), IsEmpty());
  EXPECT_TRUE(clean.skipped().empty());

  svc.meta.annotations[kAnnotationScheduler] = "bogus";
  auto bad = Build(svc, {});
  EXPECT_TRUE(bad.notes.allocated());
  DesiredService copy = bad;
  ASSERT_EQ(copy.problems().size(), 1u);
  EXPECT_THAT(copy.problems()[0], HasSubstr("unknown scheduler \"bogus\""));
  EXPECT_NE(&copy.problems(), &bad.problems()) << "a copy holds its own notes";
  copy = clean;
  EXPECT_FALSE(copy.notes.allocated());
  EXPECT_THAT(copy.problems(), IsEmpty());
  EXPECT_EQ(bad.problems().size(), 1u);

  auto headless = Svc("h", "None", {Port("", 80)});
  auto skipped = Build(headless, {});
  EXPECT_TRUE(skipped.notes.allocated());
  EXPECT_FALSE(skipped.skipped().empty());
  EXPECT_THAT(skipped.problems(), IsEmpty());

  BuildNotes notes;
  notes.SetSkipped("");
  EXPECT_FALSE(notes.allocated());
  notes.SetSkipped("headless");
  EXPECT_EQ(notes.skipped(), "headless");
  notes.SetSkipped("");
  EXPECT_FALSE(notes.allocated()) << "nothing held: the pointer goes";
  notes.AddProblem("p");
  notes.SetSkipped("");
  EXPECT_TRUE(notes.allocated());
  EXPECT_THAT(notes.problems(), ::testing::ElementsAre("p"));
}

}  // namespace
}  // namespace kr::proxy::desired_state_test
