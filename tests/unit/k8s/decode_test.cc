#include "kube_router/k8s/decode.h"

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "lib/files.h"

namespace kr::k8s {
namespace {

using nlohmann::json;

json LoadTestdata(const std::string& file) {
  return json::parse(kr::testing::ReadFile(KR_SOURCE_DIR "/tests/unit/k8s/testdata/" + file));
}

TEST(DecodeTest, FullyPopulatedServiceFromApiRepo) {
  auto r = DecodeService(LoadTestdata("core.v1.Service.json"));
  ASSERT_TRUE(r.ok()) << r.error();
  const Service& s = *r;
  EXPECT_EQ(s.meta.Key(), "namespaceValue/nameValue");
  EXPECT_EQ(s.meta.resource_version, "resourceVersionValue");
  // deletionTimestamp and status.loadBalancer.ingress[].hostname are set in the testdata and
  // decode (not kept: no controller reads them; docs/k8s.md).
  EXPECT_EQ(s.meta.labels.at("labelsKey"), "labelsValue");
  EXPECT_EQ(s.type, "typeValue");
  ASSERT_EQ(s.ports.size(), 1u);
  EXPECT_EQ(s.ports[0].port, 3);
  EXPECT_EQ(s.ports[0].node_port, 5);
  EXPECT_EQ(s.session_affinity_timeout_seconds, 1);
  EXPECT_EQ(s.health_check_node_port, 12);
  EXPECT_EQ(s.cluster_ips, std::vector<std::string>{"clusterIPsValue"});
  EXPECT_EQ(s.cluster_ip(), "clusterIPsValue");  // clusterIPs[0]: what the server keeps equal
  EXPECT_EQ(s.external_ips, std::vector<std::string>{"externalIPsValue"});
  ASSERT_EQ(s.load_balancer_ingress.size(), 1u);
  EXPECT_EQ(s.load_balancer_ingress[0].ip, "ipValue");
}

TEST(DecodeTest, FullyPopulatedEndpointSlice) {
  auto r = DecodeEndpointSlice(LoadTestdata("discovery.k8s.io.v1.EndpointSlice.json"));
  ASSERT_TRUE(r.ok()) << r.error();
  ASSERT_EQ(r->endpoints.size(), 1u);
  EXPECT_EQ(r->endpoints[0].addresses, std::vector<std::string>{"addressesValue"});
  EXPECT_TRUE(r->endpoints[0].terminating);
  EXPECT_EQ(r->endpoints[0].node_name, "nodeNameValue");
  ASSERT_EQ(r->ports.size(), 1u);
  EXPECT_EQ(r->ports[0].port, 3);
  EXPECT_EQ(r->address_type, "addressTypeValue");
}

// An endpoint's addresses live in one string (types.h): every list comes back as it was, with
// several addresses, IPv6 addresses longer than the inline buffer, and empty addresses (which
// the proxy reports as problems, so they are not dropped).
TEST(DecodeTest, EndpointAddressesSurviveTheCompactForm) {
  const std::vector<std::vector<std::string>> lists = {
      {},
      {"10.0.0.1"},
      {"255.255.255.255"},
      {"10.0.0.1", "10.0.0.2", "10.0.0.3"},
      {"2001:db8:85a3:1234:5678:8a2e:370:7334"},
      {"2001:db8:85a3:1234:5678:8a2e:370:7334", "fd00:10:244:1:2:3:4:5", "10.1.2.3"},
      {""},
      {"", ""},
      {"", "", ""},
      {"10.0.0.1", ""},
      {"", "10.0.0.1"},
      {"", "10.0.0.1", ""},
  };
  json slice = json::parse(R"({"metadata":{"name":"s","namespace":"n"},"endpoints":[]})");
  for (const auto& list : lists) slice["endpoints"].push_back({{"addresses", list}});
  auto r = DecodeEndpointSlice(slice);
  ASSERT_TRUE(r.ok()) << r.error();
  ASSERT_EQ(r->endpoints.size(), lists.size());
  for (size_t i = 0; i < lists.size(); ++i) {
    const EndpointAddresses& got = r->endpoints[i].addresses;
    EXPECT_EQ(got, lists[i]) << i;
    EXPECT_EQ(got.ToVector(), lists[i]) << i;
    EXPECT_EQ(got.size(), lists[i].size()) << i;
    EXPECT_EQ(got.empty(), lists[i].empty()) << i;
    for (const auto& address : lists[i]) EXPECT_TRUE(got.contains(address)) << i << address;
    EXPECT_FALSE(got.contains("10.9.9.9")) << i;
    // The same list built in code is equal, and unequal to every other list.
    for (size_t j = 0; j < lists.size(); ++j) {
      EXPECT_EQ(EndpointAddresses(lists[j]) == got, i == j) << i << " " << j;
    }
  }
  // Several addresses are one allocation of exactly their size.
  for (size_t i : {3u, 4u, 5u}) {
    const std::string& text = r->endpoints[i].addresses.text();
    EXPECT_EQ(text.capacity(), text.size()) << i;
  }
  EXPECT_THROW(EndpointAddresses({"a", std::string_view("b\0c", 3)}), std::invalid_argument);
  EXPECT_LE(sizeof(Endpoint), 56u);
}

TEST(DecodeTest, FullyPopulatedPodNodeNamespacePolicy) {
  auto pod = DecodePod(LoadTestdata("core.v1.Pod.json"));
  ASSERT_TRUE(pod.ok()) << pod.error();
  EXPECT_EQ(pod->node_name, "nodeNameValue");
  EXPECT_TRUE(pod->host_network);
  EXPECT_FALSE(pod->container_ports.empty());
  EXPECT_EQ(pod->pod_ips, std::vector<std::string>{"ipValue"});  // podIPs; podIP is podIPs[0]
  EXPECT_EQ(pod->pod_ip(), "ipValue");
  EXPECT_EQ(pod->phase, "phaseValue");

  auto node = DecodeNode(LoadTestdata("core.v1.Node.json"));
  ASSERT_TRUE(node.ok()) << node.error();
  EXPECT_EQ(node->meta.Key(), "nameValue");
  EXPECT_EQ(node->pod_cidr, "podCIDRValue");
  ASSERT_EQ(node->addresses.size(), 1u);
  EXPECT_EQ(node->addresses[0].address, "addressValue");

  auto ns = DecodeNamespace(LoadTestdata("core.v1.Namespace.json"));
  ASSERT_TRUE(ns.ok()) << ns.error();

  auto np = DecodeNetworkPolicy(LoadTestdata("networking.k8s.io.v1.NetworkPolicy.json"));
  ASSERT_TRUE(np.ok()) << np.error();
  ASSERT_EQ(np->ingress.size(), 1u);
  ASSERT_EQ(np->ingress[0].peers.size(), 1u);
  EXPECT_TRUE(np->ingress[0].peers[0].namespace_selector.has_value());
  ASSERT_TRUE(np->ingress[0].peers[0].ip_block.has_value());
  EXPECT_EQ(np->ingress[0].peers[0].ip_block->except, std::vector<std::string>{"exceptValue"});
  ASSERT_EQ(np->egress.size(), 1u);
  EXPECT_EQ(np->egress[0].ports[0].end_port, 3);
}

TEST(DecodeTest, ListItemsWithoutKindAndDefaults) {
  auto r = DecodeService(json::parse(R"({"metadata":{"name":"a","namespace":"ns"},
      "spec":{"ports":[{"port":80}]}})"));
  ASSERT_TRUE(r.ok()) << r.error();
  EXPECT_EQ(r->type, "ClusterIP");
  EXPECT_EQ(r->ports[0].protocol, "TCP");
  EXPECT_EQ(r->session_affinity_timeout_seconds, 10800);
}

// A Service's cluster IPs are one compact list (types.h): clusterIPs, or clusterIP alone from a
// server that sends no clusterIPs; cluster_ip() is the first. A single-stack Service's address
// stays in the string's inline buffer, a dual-stack pair is one exactly-sized allocation.
TEST(DecodeTest, ServiceClusterIpsAreOneCompactList) {
  auto decode = [](const std::string& spec) {
    auto r = DecodeService(
        json::parse(R"({"metadata":{"name":"a","namespace":"n"},"spec":)" + spec + "}"));
    EXPECT_TRUE(r.ok()) << r.error();
    return std::move(r).value();
  };
  Service v4 = decode(R"({"clusterIP":"10.96.0.10","clusterIPs":["10.96.0.10"]})");
  EXPECT_EQ(v4.cluster_ips, std::vector<std::string>{"10.96.0.10"});
  EXPECT_EQ(v4.cluster_ip(), "10.96.0.10");
  EXPECT_EQ(v4.cluster_ips.text().capacity(), std::string().capacity());

  Service dual = decode(R"({"clusterIP":"10.96.0.12","clusterIPs":["10.96.0.12","fd00:96::12"]})");
  EXPECT_EQ(dual.cluster_ips, (std::vector<std::string>{"10.96.0.12", "fd00:96::12"}));
  EXPECT_EQ(dual.cluster_ip(), "10.96.0.12");
  EXPECT_EQ(dual.cluster_ips.text().capacity(), dual.cluster_ips.text().size());

  for (const char* spec :
       {R"({"clusterIP":"10.96.0.11"})", R"({"clusterIP":"10.96.0.11","clusterIPs":[]})",
        R"({"clusterIP":"10.96.0.11","clusterIPs":null})"}) {
    SCOPED_TRACE(spec);
    Service old = decode(spec);  // a server from before dual-stack
    EXPECT_EQ(old.cluster_ips, std::vector<std::string>{"10.96.0.11"});
    EXPECT_EQ(old.cluster_ip(), "10.96.0.11");
  }
  Service headless = decode(R"({"clusterIP":"None"})");
  EXPECT_EQ(headless.cluster_ips, std::vector<std::string>{"None"});
  EXPECT_EQ(headless.cluster_ip(), "None");
  Service none = decode(R"({"type":"ExternalName"})");
  EXPECT_TRUE(none.cluster_ips.empty());
  EXPECT_EQ(none.cluster_ip(), "");
  // One AddressList (32 B) where a std::string and a std::vector stood (56 B).
  EXPECT_EQ(sizeof(Service::cluster_ips), sizeof(std::string));
}

// A Pod's addresses are one compact list as a Service's cluster IPs: podIPs, or podIP alone from
// a server that sends no podIPs; pod_ip() is the first.
TEST(DecodeTest, PodIpsAreOneCompactList) {
  auto decode = [](const std::string& status) {
    auto r = DecodePod(
        json::parse(R"({"metadata":{"name":"p","namespace":"n"},"status":)" + status + "}"));
    EXPECT_TRUE(r.ok()) << r.error();
    return std::move(r).value();
  };
  Pod v4 = decode(R"({"podIP":"10.244.1.5","podIPs":[{"ip":"10.244.1.5"}]})");
  EXPECT_EQ(v4.pod_ips, std::vector<std::string>{"10.244.1.5"});
  EXPECT_EQ(v4.pod_ip(), "10.244.1.5");
  EXPECT_EQ(v4.pod_ips.text().capacity(), std::string().capacity());
  Pod dual = decode(R"({"podIP":"10.244.1.6","podIPs":[{"ip":"10.244.1.6"},{"ip":"fd00::6"}]})");
  EXPECT_EQ(dual.pod_ips, (std::vector<std::string>{"10.244.1.6", "fd00::6"}));
  EXPECT_EQ(dual.pod_ip(), "10.244.1.6");
  for (const char* status :
       {R"({"podIP":"10.244.1.7"})", R"({"podIP":"10.244.1.7","podIPs":[]})"}) {
    SCOPED_TRACE(status);
    Pod old = decode(status);  // a server from before dual-stack
    EXPECT_EQ(old.pod_ips, std::vector<std::string>{"10.244.1.7"});
    EXPECT_EQ(old.pod_ip(), "10.244.1.7");
  }
  Pod pending = decode(R"({"phase":"Pending"})");
  EXPECT_TRUE(pending.pod_ips.empty());
  EXPECT_EQ(pending.pod_ip(), "");
  EXPECT_EQ(sizeof(Pod::pod_ips), sizeof(std::string));
}

// Fields no controller reads are decoded and not kept (docs/k8s.md, "What the caches keep"): a
// Service's load-balancer hostname is still type-checked (MalformedObjects...), a deletion
// timestamp is accepted as before (it never was checked); neither costs the cached objects a byte.
TEST(DecodeTest, UnreadFieldsAreNotKept) {
  for (const char* deletion : {R"("2009-01-01T01:01:01Z")", "5"}) {
    SCOPED_TRACE(deletion);
    auto r = DecodeService(json::parse(
        std::string(R"({"metadata":{"name":"a","namespace":"n","deletionTimestamp":)") + deletion +
        R"(},"status":{"loadBalancer":{"ingress":[{"ip":"192.0.2.1","hostname":"lb.example"}]}}})"));
    ASSERT_TRUE(r.ok()) << r.error();
    ASSERT_EQ(r->load_balancer_ingress.size(), 1u);
    EXPECT_EQ(r->load_balancer_ingress[0].ip, "192.0.2.1");
  }
  // Every cached object's metadata, an ingress entry: the kept fields and no padding.
  EXPECT_EQ(sizeof(ObjectMeta), 3 * sizeof(std::string) + sizeof(SharedLabels) + sizeof(Labels));
  EXPECT_EQ(sizeof(LoadBalancerIngress), 2 * sizeof(std::string));
}

TEST(DecodeTest, ProxyFieldsIpModeAndGracePeriod) {
  auto svc = DecodeService(json::parse(R"({"metadata":{"name":"a","namespace":"ns"},
      "spec":{"type":"LoadBalancer"},"status":{"loadBalancer":{"ingress":[
      {"ip":"192.0.2.1","ipMode":"Proxy"},{"ip":"192.0.2.2"}]}}})"));
  ASSERT_TRUE(svc.ok()) << svc.error();
  ASSERT_EQ(svc->load_balancer_ingress.size(), 2u);
  EXPECT_EQ(svc->load_balancer_ingress[0].ip_mode, "Proxy");
  EXPECT_EQ(svc->load_balancer_ingress[1].ip_mode, "");
  auto pod = DecodePod(json::parse(R"({"metadata":{"name":"p","namespace":"ns"},
      "spec":{"terminationGracePeriodSeconds":45}})"));
  ASSERT_TRUE(pod.ok()) << pod.error();
  EXPECT_EQ(pod->termination_grace_period_seconds, 45);
  auto bare = DecodePod(json::parse(R"({"metadata":{"name":"p","namespace":"ns"},"spec":{}})"));
  ASSERT_TRUE(bare.ok()) << bare.error();
  EXPECT_FALSE(bare->termination_grace_period_seconds.has_value());
  auto bad = DecodePod(json::parse(R"({"metadata":{"name":"p","namespace":"ns"},
      "spec":{"terminationGracePeriodSeconds":"x"}})"));
  EXPECT_FALSE(bad.ok());
}

TEST(DecodeTest, EndpointConditionsNilMeansReady) {
  auto r = DecodeEndpointSlice(json::parse(R"({"metadata":{"name":"s","namespace":"n",
      "labels":{"kubernetes.io/service-name":"web"}},"addressType":"IPv4",
      "endpoints":[{"addresses":["10.0.0.1"]},{"addresses":["10.0.0.2"],
      "conditions":{"ready":false}}],"ports":[{"name":"","port":null}]})"));
  ASSERT_TRUE(r.ok()) << r.error();
  EXPECT_EQ(r->service_name, "web");
  EXPECT_TRUE(r->endpoints[0].ready);
  EXPECT_FALSE(r->endpoints[1].ready);
  EXPECT_FALSE(r->endpoints[1].serving);  // nil serving follows ready
  EXPECT_FALSE(r->ports[0].port.has_value());
}

TEST(DecodeTest, PolicyTypesDefaulting) {
  struct Case {
    const char* name;
    const char* spec;
    bool ingress, egress;
  } cases[] = {
      {"absent, no egress", R"({"podSelector":{}})", true, false},
      {"absent, egress rules", R"({"egress":[{}]})", true, true},
      {"absent, empty egress", R"({"egress":[]})", true, false},
      {"egress only", R"({"policyTypes":["Egress"]})", false, true},
      {"both", R"({"policyTypes":["Ingress","Egress"]})", true, true},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.name);
    json obj = {{"metadata", {{"name", "p"}, {"namespace", "n"}}}, {"spec", json::parse(c.spec)}};
    auto r = DecodeNetworkPolicy(obj);
    ASSERT_TRUE(r.ok()) << r.error();
    EXPECT_EQ(r->policy_ingress, c.ingress);
    EXPECT_EQ(r->policy_egress, c.egress);
  }
}

TEST(DecodeTest, NilVersusEmptySelectors) {
  auto r = DecodeNetworkPolicy(json::parse(R"({"metadata":{"name":"p","namespace":"n"},
      "spec":{"ingress":[{"from":[{"podSelector":{"matchLabels":{"a":"b"}}},
      {"namespaceSelector":{}}],"ports":[{"port":"http"},{"protocol":"UDP","port":53}]}]}})"));
  ASSERT_TRUE(r.ok()) << r.error();
  const auto& peers = r->ingress[0].peers;
  EXPECT_FALSE(peers[0].namespace_selector.has_value());
  EXPECT_TRUE(peers[0].pod_selector.has_value());
  EXPECT_TRUE(peers[1].namespace_selector.has_value());
  EXPECT_TRUE(peers[1].namespace_selector->match_labels.empty());
  EXPECT_FALSE(peers[1].pod_selector.has_value());
  const auto& ports = r->ingress[0].ports;
  EXPECT_TRUE(ports[0].port->is_string);
  EXPECT_EQ(ports[0].protocol, "TCP");
  EXPECT_EQ(ports[1].port->number, 53);
  EXPECT_EQ(ports[1].protocol, "UDP");
}

TEST(DecodeTest, MalformedObjectsAreErrorsNamingObjectAndField) {
  struct Case {
    ResourceKind kind;
    const char* text;
    const char* want_in_error;
  } cases[] = {
      {ResourceKind::kService, R"({"metadata":{"namespace":"n"}})", "metadata.name"},
      {ResourceKind::kService, R"([1,2])", "object"},
      {ResourceKind::kService, R"({"metadata":{"name":"a","namespace":"n"},
          "spec":{"ports":[{"port":"eighty"}]}})",
       "n/a: spec.ports[0].port"},
      {ResourceKind::kService, R"({"metadata":{"name":"a"},"spec":{"ports":[{"port":1e3}]}})",
       "spec.ports[0].port"},
      {ResourceKind::kService, R"({"metadata":{"name":"a"},
          "spec":{"ports":[{"port":4294967297}]}})",
       "out of range"},
      {ResourceKind::kPod, R"({"metadata":{"name":"p","labels":{"a":1}}})", "metadata.labels[a]"},
      {ResourceKind::kPod, R"({"metadata":{"name":"p"},"spec":{"containers":"x"}})",
       "spec.containers"},
      {ResourceKind::kNode, R"({"metadata":{"name":"n"},"status":{"addresses":[7]}})",
       "status.addresses[0]"},
      {ResourceKind::kEndpointSlice, R"({"metadata":{"name":"s"},
          "endpoints":[{"conditions":{"ready":"yes"}}]})",
       "endpoints[0].conditions.ready"},
      {ResourceKind::kNetworkPolicy, R"({"metadata":{"name":"p"},
          "spec":{"ingress":[{"from":[{"ipBlock":{"cidr":5}}]}]}})",
       "spec.ingress[0].from[0].ipBlock.cidr"},
      // Fields the caches do not keep are still checked (docs/k8s.md, "What the caches keep").
      {ResourceKind::kPod, R"({"metadata":{"name":"p","uid":7}})", "metadata.uid"},
      {ResourceKind::kPod, R"({"metadata":{"name":"p","annotations":{"a":1}}})",
       "metadata.annotations[a]"},
      {ResourceKind::kPod, R"({"metadata":{"name":"p"},"status":{"hostIP":1}})", "status.hostIP"},
      {ResourceKind::kEndpointSlice, R"({"metadata":{"name":"s"},
          "endpoints":[{"addresses":["10.0.0.1","10.0.0.2\u0000x"]}]})",
       "endpoints[0].addresses[1]"},
      {ResourceKind::kService, R"({"metadata":{"name":"a"},
          "spec":{"clusterIPs":["10.96.0.1","fd00::1\u0000x"]}})",
       "spec.clusterIPs[1]"},
      {ResourceKind::kService,
       R"({"metadata":{"name":"a"},"spec":{"clusterIP":"10.96.0.1\u0000"}})",
       "spec.clusterIP: expected an address without NUL"},
      {ResourceKind::kService, R"({"metadata":{"name":"a"},"spec":{"clusterIP":["10.96.0.1"]}})",
       "spec.clusterIP: expected a string"},
      {ResourceKind::kPod, R"({"metadata":{"name":"p"},
          "status":{"podIPs":[{"ip":"10.0.0.1"},{"ip":"fd00::1\u0000"}]}})",
       "status.podIPs[1].ip: expected an address"},
      {ResourceKind::kPod, R"({"metadata":{"name":"p"},"status":{"podIP":"10.0.0.1\u0000"}})",
       "status.podIP: expected an address"},
      {ResourceKind::kPod, R"({"metadata":{"name":"p"},"status":{"podIP":1}})",
       "status.podIP: expected a string"},
      {ResourceKind::kService, R"({"metadata":{"name":"a"},"spec":{"clusterIPs":[1]}})",
       "spec.clusterIPs[0]"},
      {ResourceKind::kEndpointSlice, R"({"metadata":{"name":"s"},
          "endpoints":[{"addresses":["10.0.0.1",2]}]})",
       "endpoints[0].addresses[1]"},
      {ResourceKind::kEndpointSlice, R"({"metadata":{"name":"s"},"endpoints":[{"nodeName":1}]})",
       "endpoints[0].nodeName"},
      {ResourceKind::kEndpointSlice, R"({"metadata":{"name":"s","labels":{"x":false}}})",
       "metadata.labels[x]"},
      {ResourceKind::kEndpointSlice, R"({"metadata":{"name":"s"},"endpoints":[{"zone":3}]})",
       "endpoints[0].zone"},
      {ResourceKind::kEndpointSlice, R"({"metadata":{"name":"s"},"endpoints":[{"hostname":[]}]})",
       "endpoints[0].hostname"},
      {ResourceKind::kNode, R"({"metadata":{"name":"n"},"spec":{"providerID":{}}})",
       "spec.providerID"},
      {ResourceKind::kService, R"({"metadata":{"name":"a"},"spec":{"ports":[{"targetPort":[]}]}})",
       "spec.ports[0].targetPort"},
      {ResourceKind::kService, R"({"metadata":{"name":"a"},
          "status":{"loadBalancer":{"ingress":[{"ip":"192.0.2.1","hostname":7}]}}})",
       "status.loadBalancer.ingress[0].hostname"},
      {ResourceKind::kService, R"({"metadata":{"name":"a"},"spec":{"ipFamilies":[4]}})",
       "spec.ipFamilies[0]"},
      {ResourceKind::kService, R"({"metadata":{"name":"a"},"spec":{"ipFamilyPolicy":1}})",
       "spec.ipFamilyPolicy"},
      {ResourceKind::kService, R"({"metadata":{"name":"a"},"spec":{"selector":{"app":2}}})",
       "spec.selector[app]"},
      {ResourceKind::kService, R"({"metadata":{"name":"a"},"spec":{"loadBalancerIP":[]}})",
       "spec.loadBalancerIP"},
      {ResourceKind::kService, R"({"metadata":{"name":"a"},"spec":{"loadBalancerClass":7}})",
       "spec.loadBalancerClass"},
      {ResourceKind::kService,
       R"({"metadata":{"name":"a"},"spec":{"loadBalancerSourceRanges":"10.0.0.0/8"}})",
       "spec.loadBalancerSourceRanges"},
      {ResourceKind::kNamespace, R"({"metadata":"x"})", "metadata"},
      {ResourceKind::kNamespace, R"({"metadata":{"name":"x"})", "invalid JSON"},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.text);
    auto r = DecodeObjectText(c.kind, c.text);
    ASSERT_FALSE(r.ok());
    EXPECT_NE(r.error().find(c.want_in_error), std::string::npos) << r.error();
    EXPECT_NE(r.error().find(ResourceKindName(c.kind)), std::string::npos) << r.error();
  }
}

// The caches keep only what a controller reads (docs/memory.md): each kind's labels and
// annotations as the controllers use them, never kubectl's copy of the applied manifest.
TEST(DecodeTest, CachesKeepOnlyTheLabelsAndAnnotationsControllersRead) {
  const std::string last_applied =
      R"("kubectl.kubernetes.io/last-applied-configuration":"{\"kind\":\"X\"}")";
  auto slice = DecodeEndpointSlice(json::parse(
      R"({"metadata":{"name":"s","namespace":"n","labels":{"kubernetes.io/service-name":"web",
      "service.kubernetes.io/headless":"","endpointslice.kubernetes.io/managed-by":"c",
      "app":"web"},"annotations":{"endpoints.kubernetes.io/last-change-trigger-time":"t",
      "other":"x",)" +
      last_applied + "}}}"));
  ASSERT_TRUE(slice.ok()) << slice.error();
  EXPECT_EQ(slice->service_name, "web");  // held once: not in the labels again
  EXPECT_EQ(slice->meta.labels, (Labels{{"service.kubernetes.io/headless", ""}}));
  EXPECT_EQ(slice->meta.annotations,
            (Labels{{"endpoints.kubernetes.io/last-change-trigger-time", "t"}}));

  const std::string meta = R"({"name":"a","namespace":"n","labels":{"app":"web"},
      "annotations":{"kube-router.io/service.local":"true",)" +
                           last_applied + "}}";
  const Labels kept_annotations{{"kube-router.io/service.local", "true"}};
  auto svc = DecodeService(json::parse(R"({"metadata":)" + meta + "}"));
  ASSERT_TRUE(svc.ok()) << svc.error();
  EXPECT_EQ(svc->meta.labels, (Labels{{"app", "web"}}));
  EXPECT_EQ(svc->meta.annotations, kept_annotations);
  auto node = DecodeNode(json::parse(R"({"metadata":)" + meta + "}"));
  ASSERT_TRUE(node.ok()) << node.error();
  EXPECT_EQ(node->meta.annotations, kept_annotations);
  auto ns = DecodeNamespace(json::parse(R"({"metadata":)" + meta + "}"));
  ASSERT_TRUE(ns.ok()) << ns.error();
  EXPECT_EQ(ns->meta.annotations, kept_annotations);
  EXPECT_EQ(ns->meta.labels, (Labels{{"app", "web"}}));
  // No controller reads Pod or NetworkPolicy annotations; their labels are selector input.
  auto pod = DecodePod(json::parse(R"({"metadata":)" + meta + "}"));
  ASSERT_TRUE(pod.ok()) << pod.error();
  EXPECT_TRUE(pod->meta.annotations.empty());
  EXPECT_EQ(pod->meta.labels, (Labels{{"app", "web"}}));
  auto np = DecodeNetworkPolicy(json::parse(R"({"metadata":)" + meta + "}"));
  ASSERT_TRUE(np.ok()) << np.error();
  EXPECT_TRUE(np->meta.annotations.empty());
}

// A cached object holds no spare vector capacity: vectors are sized from the JSON arrays.
TEST(DecodeTest, VectorsAreSizedFromTheJsonArrays) {
  json slice = json::parse(R"({"metadata":{"name":"s","namespace":"n"},"endpoints":[],
      "ports":[{"port":1},{"port":2},{"port":3}]})");
  for (int i = 0; i < 10; ++i) {
    slice["endpoints"].push_back({{"addresses", {"10.0.0." + std::to_string(i)}}});
  }
  auto r = DecodeEndpointSlice(slice);
  ASSERT_TRUE(r.ok()) << r.error();
  EXPECT_EQ(r->endpoints.size(), 10u);
  EXPECT_EQ(r->endpoints.capacity(), 10u);
  // One address: no vector any more (types.h), and its one string stays in the inline buffer.
  EXPECT_EQ(r->endpoints[9].addresses.size(), 1u);
  EXPECT_EQ(r->endpoints[9].addresses.text().capacity(), std::string().capacity());
  EXPECT_EQ(r->ports.capacity(), 3u);
  auto svc = DecodeService(json::parse(R"({"metadata":{"name":"a","namespace":"n"},
      "spec":{"ports":[{"port":1},{"port":2},{"port":3}],"clusterIPs":["a","b","c"]}})"));
  ASSERT_TRUE(svc.ok()) << svc.error();
  EXPECT_EQ(svc->ports.capacity(), 3u);
  EXPECT_EQ(svc->cluster_ips.size(), 3u);  // one string (types.h): see ServiceClusterIps...
  auto node = DecodeNode(json::parse(R"({"metadata":{"name":"n"},"status":{"addresses":[
      {"type":"InternalIP","address":"a"},{"type":"Hostname","address":"b"},
      {"type":"ExternalIP","address":"c"}]}})"));
  ASSERT_TRUE(node.ok()) << node.error();
  EXPECT_EQ(node->addresses.capacity(), 3u);
}

TEST(DecodeTest, DecodeObjectPicksTheKindAndMetaOfFindsMetadata) {
  auto r = DecodeObjectText(ResourceKind::kNode, R"({"metadata":{"name":"n1",
      "resourceVersion":"7"}})");
  ASSERT_TRUE(r.ok()) << r.error();
  ASSERT_TRUE(std::holds_alternative<std::shared_ptr<const Node>>(*r));
  ASSERT_NE(MetaOf(*r), nullptr);
  EXPECT_EQ(MetaOf(*r)->resource_version, "7");
  EXPECT_EQ(MetaOf(AnyObject{}), nullptr);
}

}  // namespace
}  // namespace kr::k8s
