// Shared label sets (docs/memory.md): equal sets decoded for different objects are one copy, and
// a write to one object's labels never shows in another's.
#include "kube_router/k8s/labels.h"

#include <gtest/gtest.h>

#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "kube_router/k8s/decode.h"

namespace kr::k8s {
namespace {

using nlohmann::json;

std::shared_ptr<const Pod> DecodedPod(const std::string& name, const std::string& labels_json) {
  auto r = DecodePod(json::parse(R"({"metadata":{"name":")" + name +
                                 R"(","namespace":"n","labels":)" + labels_json + "}}"));
  EXPECT_TRUE(r.ok()) << r.error();
  return std::make_shared<const Pod>(std::move(r).value());
}

TEST(LabelsTest, DecodedObjectsWithEqualLabelsShareOneCopy) {
  auto a = DecodedPod("a", R"({"app":"web","role":"server"})");
  auto b = DecodedPod("b", R"({"role":"server","app":"web"})");  // same set, other order
  auto c = DecodedPod("c", R"({"app":"web","role":"client"})");
  EXPECT_TRUE(a->meta.labels.SharesWith(b->meta.labels));
  EXPECT_FALSE(a->meta.labels.SharesWith(c->meta.labels));
  EXPECT_EQ(a->meta.labels, b->meta.labels);
  EXPECT_NE(a->meta.labels, c->meta.labels);
  EXPECT_EQ(b->meta.labels, (Labels{{"app", "web"}, {"role", "server"}}));
  // Other kinds share through the same pool; no labels is no copy at all.
  auto svc = DecodeService(json::parse(
      R"({"metadata":{"name":"s","namespace":"n","labels":{"role":"server","app":"web"}}})"));
  ASSERT_TRUE(svc.ok()) << svc.error();
  EXPECT_TRUE(svc->meta.labels.SharesWith(a->meta.labels));
  auto bare = DecodedPod("d", "{}");
  EXPECT_TRUE(bare->meta.labels.empty());
  EXPECT_FALSE(bare->meta.labels.SharesWith(DecodedPod("e", "{}")->meta.labels));
}

// The controllers' tests and benchmarks build objects by copying and editing: an edit of one
// object's labels, shared with others by decoding or by copying, changes that object only, and
// the pool keeps handing out the original set.
TEST(LabelsTest, WritingOneObjectsLabelsLeavesTheOthersAlone) {
  auto a = DecodedPod("a", R"({"app":"web","tier":"1"})");
  auto b = DecodedPod("b", R"({"app":"web","tier":"1"})");
  ASSERT_TRUE(a->meta.labels.SharesWith(b->meta.labels));
  Pod edited = *b;
  edited.meta.labels["app"] = "db";
  edited.meta.labels.erase("tier");
  EXPECT_EQ(edited.meta.labels, (Labels{{"app", "db"}}));
  EXPECT_EQ(a->meta.labels, (Labels{{"app", "web"}, {"tier", "1"}}));
  EXPECT_EQ(b->meta.labels, (Labels{{"app", "web"}, {"tier", "1"}}));
  auto again = DecodedPod("c", R"({"app":"web","tier":"1"})");
  EXPECT_TRUE(again->meta.labels.SharesWith(a->meta.labels));
  EXPECT_EQ(again->meta.labels.at("app"), "web");

  // Sets made in code: a copy shares until one side writes.
  SharedLabels first{{"k", "v"}};
  SharedLabels second = first;
  EXPECT_TRUE(second.SharesWith(first));
  second["k"] = "w";
  EXPECT_EQ(first.at("k"), "v");
  EXPECT_EQ(second.at("k"), "w");
  first["k2"] = "x";  // the only holder now: written in place, still only its own
  EXPECT_EQ(first, (Labels{{"k", "v"}, {"k2", "x"}}));
  EXPECT_EQ(second, (Labels{{"k", "w"}}));
}

// The pool tracks only sets some object still holds (plus the dead ones until its next sweep):
// churning through many distinct sets does not grow it without bound.
TEST(LabelsTest, PoolForgetsSetsNoObjectHolds) {
  LabelSetPool pool;
  std::vector<SharedLabels> live;
  for (int i = 0; i < 100; ++i) live.push_back(pool.Share({{"keep", std::to_string(i)}}));
  for (int i = 0; i < 50000; ++i) {
    SharedLabels gone = pool.Share({{"pod-template-hash", std::to_string(i)}});
    EXPECT_EQ(gone.at("pod-template-hash"), std::to_string(i));
  }
  EXPECT_LE(pool.TrackedSets(), 2048u);
  for (int i = 0; i < 100; ++i) {
    EXPECT_TRUE(pool.Share({{"keep", std::to_string(i)}}).SharesWith(live[i])) << i;
  }
}

// Endpoints' node names (docs/memory.md, "Compact endpoints"): decoded endpoints naming the same
// node hold one copy of the name, in one slice and across slices; giving one endpoint another
// node leaves every other endpoint's name alone.
TEST(SharedStringTest, DecodedEndpointsNamingOneNodeShareItsName) {
  // Longer than std::string's inline buffer, as real node names are (a heap chunk each before).
  const std::string node = "ip-10-0-12-34.eu-west-1.compute.internal";
  auto decode = [&](const std::string& name) {
    auto r = DecodeEndpointSlice(
        json::parse(R"({"metadata":{"name":")" + name +
                    R"(","namespace":"n"},"endpoints":[)"
                    R"({"addresses":["10.0.0.1"],"nodeName":")" +
                    node +
                    R"("},)"
                    R"({"addresses":["10.0.0.2"],"nodeName":")" +
                    node +
                    R"("},)"
                    R"({"addresses":["10.0.0.3"],"nodeName":"other-node-with-a-long-name"},)"
                    R"({"addresses":["10.0.0.4"]}]})"));
    EXPECT_TRUE(r.ok()) << r.error();
    return std::make_shared<EndpointSlice>(std::move(r).value());
  };
  auto a = decode("a");
  auto b = decode("b");
  ASSERT_EQ(a->endpoints.size(), 4u);
  EXPECT_EQ(a->endpoints[0].node_name, node);
  EXPECT_TRUE(a->endpoints[0].node_name.SharesWith(a->endpoints[1].node_name));
  EXPECT_TRUE(a->endpoints[0].node_name.SharesWith(b->endpoints[1].node_name));
  EXPECT_TRUE(a->endpoints[2].node_name.SharesWith(b->endpoints[2].node_name));
  EXPECT_FALSE(a->endpoints[0].node_name.SharesWith(a->endpoints[2].node_name));
  EXPECT_EQ(a->endpoints[2].node_name, "other-node-with-a-long-name");
  EXPECT_TRUE(a->endpoints[3].node_name.empty());

  // Another node for one endpoint: the others keep theirs, and the pool's copy is unchanged
  // (a slice decoded afterwards still gets the original name, shared with the untouched ones).
  a->endpoints[0].node_name = "moved-to-a-node-with-a-long-name";
  EXPECT_EQ(a->endpoints[0].node_name, "moved-to-a-node-with-a-long-name");
  EXPECT_EQ(a->endpoints[1].node_name, node);
  EXPECT_EQ(b->endpoints[0].node_name, node);
  auto c = decode("c");
  EXPECT_EQ(c->endpoints[0].node_name, node);
  EXPECT_TRUE(c->endpoints[0].node_name.SharesWith(b->endpoints[0].node_name));
  EXPECT_FALSE(c->endpoints[0].node_name.SharesWith(a->endpoints[0].node_name));
}

// A Service's enum-like fields and its ports' names and protocols, and a slice's address type and
// ports, are one copy per distinct value across objects (types.h); unequal values stay apart.
TEST(SharedStringTest, DecodedServicesAndSlicesShareTheirShortStrings) {
  auto service = [](const std::string& name, const std::string& type) {
    auto r = DecodeService(json::parse(
        R"({"metadata":{"name":")" + name + R"(","namespace":"n"},"spec":{"type":")" + type +
        R"(","sessionAffinity":"ClientIP","externalTrafficPolicy":"Local",)"
        R"("ports":[{"name":"https-metrics","protocol":"TCP","port":443},)"
        R"({"name":"dns-over-udp-port","protocol":"UDP","port":53}]}})"));
    EXPECT_TRUE(r.ok()) << r.error();
    return std::move(r).value();
  };
  Service a = service("a", "LoadBalancer"), b = service("b", "LoadBalancer");
  Service c = service("c", "NodePort");
  EXPECT_TRUE(a.type.SharesWith(b.type));
  EXPECT_FALSE(a.type.SharesWith(c.type));
  EXPECT_EQ(c.type, "NodePort");
  EXPECT_TRUE(a.session_affinity.SharesWith(c.session_affinity));
  EXPECT_TRUE(a.external_traffic_policy.SharesWith(c.external_traffic_policy));
  EXPECT_EQ(a.internal_traffic_policy, "Cluster");  // the default when absent
  EXPECT_TRUE(a.internal_traffic_policy.SharesWith(b.internal_traffic_policy));
  ASSERT_EQ(a.ports.size(), 2u);
  EXPECT_TRUE(a.ports[0].name.SharesWith(b.ports[0].name));
  EXPECT_TRUE(a.ports[1].protocol.SharesWith(c.ports[1].protocol));
  EXPECT_FALSE(a.ports[0].protocol.SharesWith(a.ports[1].protocol));
  EXPECT_EQ(a.ports[1].name, "dns-over-udp-port");
  EXPECT_EQ(a.ports[1].protocol, "UDP");

  auto slice = [](const std::string& name) {
    auto r = DecodeEndpointSlice(
        json::parse(R"({"metadata":{"name":")" + name +
                    R"(","namespace":"n"},"addressType":"IPv6",)"
                    R"("ports":[{"name":"https-metrics","protocol":"SCTP","port":443}]})"));
    EXPECT_TRUE(r.ok()) << r.error();
    return std::move(r).value();
  };
  EndpointSlice x = slice("x"), y = slice("y");
  EXPECT_TRUE(x.address_type.SharesWith(y.address_type));
  EXPECT_EQ(x.address_type, "IPv6");
  EXPECT_TRUE(x.ports[0].name.SharesWith(a.ports[0].name));
  EXPECT_TRUE(x.ports[0].protocol.SharesWith(y.ports[0].protocol));
  EXPECT_EQ(x.ports[0].protocol, "SCTP");
}

// A Pod's node name, phase and container ports' names and protocols are one copy per distinct
// value across pods and kinds (types.h); unequal values stay apart.
TEST(SharedStringTest, DecodedPodsShareTheirShortStrings) {
  auto pod = [](const std::string& name, const std::string& phase) {
    auto r = DecodePod(json::parse(
        R"({"metadata":{"name":")" + name +
        R"(","namespace":"n"},"spec":{"nodeName":"ip-10-0-12-34.eu-west-1.compute.internal",)"
        R"("containers":[{"ports":[{"name":"https-metrics","containerPort":443},)"
        R"({"name":"dns-over-udp-port","protocol":"UDP","containerPort":53}]},)"
        R"({"ports":[{"name":"sctp-port-name","protocol":"SCTP","containerPort":9}]}]},)"
        R"("status":{"phase":")" +
        phase + R"("}})"));
    EXPECT_TRUE(r.ok()) << r.error();
    return std::move(r).value();
  };
  Pod a = pod("a", "Running"), b = pod("b", "Running"), c = pod("c", "Succeeded");
  EXPECT_TRUE(a.node_name.SharesWith(c.node_name));
  EXPECT_EQ(a.node_name, "ip-10-0-12-34.eu-west-1.compute.internal");
  EXPECT_TRUE(a.phase.SharesWith(b.phase));
  EXPECT_FALSE(a.phase.SharesWith(c.phase));
  EXPECT_EQ(c.phase, "Succeeded");
  ASSERT_EQ(a.container_ports.size(), 3u);
  EXPECT_EQ(a.container_ports.capacity(), 3u);  // sized from the containers' arrays
  for (size_t i = 0; i < a.container_ports.size(); ++i) {
    EXPECT_TRUE(a.container_ports[i].name.SharesWith(c.container_ports[i].name)) << i;
    EXPECT_TRUE(a.container_ports[i].protocol.SharesWith(b.container_ports[i].protocol)) << i;
  }
  EXPECT_EQ(a.container_ports[0].protocol, "TCP");  // the default when absent
  EXPECT_EQ(a.container_ports[1].name, "dns-over-udp-port");
  EXPECT_EQ(a.container_ports[2].protocol, "SCTP");
  EXPECT_EQ(a.container_ports[2].container_port, 9);
  EXPECT_FALSE(a.container_ports[0].name.SharesWith(a.container_ports[1].name));
  // The same values as a Service's port: the same copy, whichever kind decoded it first.
  auto svc =
      DecodeService(json::parse(R"({"metadata":{"name":"s","namespace":"n"},"spec":{"ports":[)"
                                R"({"name":"dns-over-udp-port","protocol":"UDP","port":53}]}})"));
  ASSERT_TRUE(svc.ok()) << svc.error();
  EXPECT_TRUE(svc->ports[0].name.SharesWith(a.container_ports[1].name));
  EXPECT_TRUE(svc->ports[0].protocol.SharesWith(a.container_ports[1].protocol));
}

// The node-name pool, like the label-set pool, tracks only names some object still holds (plus
// dead ones until its next sweep).
TEST(SharedStringTest, PoolForgetsStringsNoObjectHolds) {
  StringPool pool;
  std::vector<SharedString> live;
  for (int i = 0; i < 100; ++i) live.push_back(pool.Share("keep-" + std::to_string(i)));
  for (int i = 0; i < 50000; ++i) {
    SharedString gone = pool.Share("autoscaled-node-" + std::to_string(i));
    EXPECT_EQ(gone, "autoscaled-node-" + std::to_string(i));
  }
  EXPECT_LE(pool.TrackedStrings(), 2048u);
  for (int i = 0; i < 100; ++i) {
    EXPECT_TRUE(pool.Share("keep-" + std::to_string(i)).SharesWith(live[i])) << i;
  }
}

}  // namespace
}  // namespace kr::k8s
