// The sandbox node agent's stand-ins for the node IPAM controller, the scheduler and the
// EndpointSlice controller, as pure functions of listed objects.
#include "controllers.h"

#include <gtest/gtest.h>

namespace sandbox {
namespace {

json Node(const std::string& name, const std::string& cidr = "") {
  json n = {{"metadata", {{"name", name}}}, {"spec", json::object()}};
  if (!cidr.empty()) n["spec"]["podCIDR"] = cidr;
  return n;
}

json Pod(const std::string& name, const std::string& node, json labels = json::object(),
         const std::string& ip = "", json ports = json::array(), bool ready = true) {
  json p = {{"metadata",
             {{"name", name}, {"namespace", "demo"}, {"uid", "u-" + name}, {"labels", labels}}},
            {"spec", {{"containers", {{{"name", "c"}, {"ports", ports}}}}}},
            {"status", json::object()}};
  if (!node.empty()) p["spec"]["nodeName"] = node;
  if (!ip.empty()) {
    p["status"] = {{"phase", "Running"},
                   {"podIP", ip},
                   {"podIPs", {{{"ip", ip}}}},
                   {"conditions", {{{"type", "Ready"}, {"status", ready ? "True" : "False"}}}}};
  }
  return p;
}

TEST(PodCidrsTest, LowestFreeBlocksForNodesWithout) {
  json nodes = {Node("b"), Node("a", "10.244.0.0/24"), Node("c"), Node("d", "10.244.2.0/24")};
  auto got = AssignPodCidrs(nodes, "10.244.0.0/16");
  EXPECT_EQ(got,
            (std::map<std::string, std::string>{{"b", "10.244.1.0/24"}, {"c", "10.244.3.0/24"}}));
  // A full range assigns what it can.
  auto small = AssignPodCidrs({Node("x"), Node("y")}, "10.9.0.0/24", 25);
  EXPECT_EQ(small.size(), 2u);
  EXPECT_EQ(small["y"], "10.9.0.128/25");
  EXPECT_EQ(AssignPodCidrs({Node("x"), Node("y"), Node("z")}, "10.9.0.0/25", 25).size(), 1u);
  EXPECT_TRUE(AssignPodCidrs({Node("x")}, "not-a-cidr").empty());
}

TEST(SchedulerTest, LeastLoadedNodeAndNodeNameRespected) {
  json pods = {Pod("pinned", "n1"), Pod("a", ""), Pod("b", ""), Pod("c", ""),
               Pod("elsewhere", "gone")};
  auto got = PlacePods(pods, {"n1", "n2"});
  // n1 already has one pod: a -> n2, b -> n1 (tie, by name), c -> n2.
  EXPECT_EQ(got, (std::map<std::string, std::string>{
                     {"demo/a", "n2"}, {"demo/b", "n1"}, {"demo/c", "n2"}}));
  EXPECT_TRUE(PlacePods(pods, {}).empty());
}

TEST(EndpointSlicesTest, SelectedPodsWithNamedPortsResolvedPerPod) {
  json services = {{{"metadata", {{"name", "web"}, {"namespace", "demo"}}},
                    {"spec",
                     {{"selector", {{"app", "web"}}},
                      {"ports", {{{"name", "http"}, {"port", 80}, {"targetPort", "http"}}}}}}},
                   {{"metadata", {{"name", "manual"}, {"namespace", "demo"}}},
                    {"spec", {{"ports", {{{"port", 80}}}}}}}};
  json p8080 = {{{"name", "http"}, {"containerPort", 8080}}};
  json p9090 = {{{"name", "http"}, {"containerPort", 9090}}};
  json pods = {Pod("w1", "n1", {{"app", "web"}}, "10.244.0.5", p8080),
               Pod("w2", "n2", {{"app", "web"}}, "10.244.1.5", p9090, /*ready=*/false),
               Pod("w3", "n2", {{"app", "web"}}, "10.244.1.6", p8080),
               Pod("pending", "", {{"app", "web"}}),                 // no node, no IP
               Pod("noport", "n1", {{"app", "web"}}, "10.244.0.9"),  // "http" not declared
               Pod("other", "n1", {{"app", "db"}}, "10.244.0.7", p8080)};
  pods[1]["metadata"]["deletionTimestamp"] = "2024-01-01T00:00:00Z";  // terminating, not ready
  pods[2]["metadata"]["deletionTimestamp"] = "2024-01-01T00:00:00Z";  // terminating, still ready
  auto slices = DesiredSlices(services, pods);
  std::map<int, json> by_port;  // resolved port -> slice (the one without ports: key 0)
  for (const auto& s : slices) {
    EXPECT_EQ(s["metadata"]["labels"]["kubernetes.io/service-name"], "web");
    EXPECT_EQ(s["metadata"]["labels"][kManagedBy], kManagerName);
    EXPECT_EQ(s["addressType"], "IPv4");
    by_port[s["ports"].empty() ? 0 : s["ports"][0]["port"].get<int>()] = s;
  }
  ASSERT_EQ(by_port.size(), 3u) << json(slices).dump(1);
  const json& s8080 = by_port[8080];
  ASSERT_EQ(s8080["endpoints"].size(), 2u);
  EXPECT_EQ(s8080["endpoints"][0]["addresses"][0], "10.244.0.5");
  EXPECT_EQ(s8080["endpoints"][0]["nodeName"], "n1");
  EXPECT_EQ(s8080["endpoints"][0]["targetRef"]["name"], "w1");
  EXPECT_EQ(s8080["endpoints"][0]["conditions"],
            json({{"ready", true}, {"serving", true}, {"terminating", false}}));
  // A terminating pod that is still Ready serves (KEP-1672) but is not ready.
  EXPECT_EQ(s8080["endpoints"][1]["targetRef"]["name"], "w3");
  EXPECT_EQ(s8080["endpoints"][1]["conditions"],
            json({{"ready", false}, {"serving", true}, {"terminating", true}}));
  EXPECT_EQ(s8080["ports"][0]["name"], "http");
  const json& s9090 = by_port[9090];
  ASSERT_EQ(s9090["endpoints"].size(), 1u);
  EXPECT_EQ(s9090["endpoints"][0]["conditions"],
            json({{"ready", false}, {"serving", false}, {"terminating", true}}));
  EXPECT_EQ(by_port[0]["endpoints"][0]["addresses"][0], "10.244.0.9");
  EXPECT_NE(s8080["metadata"]["name"], s9090["metadata"]["name"]);
  // Names are stable from pass to pass.
  EXPECT_EQ(DesiredSlices(services, pods)[0]["metadata"]["name"], slices[0]["metadata"]["name"]);
}

TEST(EndpointSlicesTest, NumericTargetPortAndDualStackPods) {
  json services = {{{"metadata", {{"name", "s"}, {"namespace", "demo"}}},
                    {"spec",
                     {{"selector", {{"app", "x"}}},
                      {"ports", {{{"port", 53}, {"protocol", "UDP"}, {"targetPort", 5353}}}}}}}};
  json pod = Pod("p", "n1", {{"app", "x"}}, "10.244.0.5");
  pod["status"]["podIPs"].push_back({{"ip", "fd00::5"}});
  auto slices = DesiredSlices(services, json::array({pod}));
  ASSERT_EQ(slices.size(), 2u);
  std::set<std::string> families;
  for (const auto& s : slices) {
    families.insert(s["addressType"]);
    EXPECT_EQ(s["ports"][0], json({{"port", 5353}, {"protocol", "UDP"}, {"name", ""}}));
  }
  EXPECT_EQ(families, (std::set<std::string>{"IPv4", "IPv6"}));
  // A pod in another namespace is not selected.
  pod["metadata"]["namespace"] = "other";
  EXPECT_TRUE(DesiredSlices(services, json::array({pod})).empty());
}

}  // namespace
}  // namespace sandbox
