// fake-apiserver's Service allocation through its ObjectStore: ClusterIPs from the service
// range(s), NodePorts from the node-port range, dual-stack as ipFamilyPolicy asks, 422 Invalid
// for taken/out-of-range values, updates that keep what was allocated, frees on delete.
#include <gtest/gtest.h>

#include "object_store.h"

namespace fake_apiserver {
namespace {

const ResourceType& Services() { return *FindByPath("", "v1", "services"); }

json Svc(const std::string& name, json spec) {
  return {{"metadata", {{"name", name}}}, {"spec", std::move(spec)}};
}

class AllocationTest : public ::testing::Test {
 protected:
  void Enable(const std::string& cidrs, const std::string& ports = "30000-30002") {
    ServiceRanges ranges;
    ASSERT_EQ(ParseServiceRanges(cidrs, ports, &ranges), "");
    store_.EnableServiceAllocation(ranges);
  }
  json Create(const std::string& name, json spec) {
    auto out = store_.Create(Services(), "demo", Svc(name, std::move(spec)));
    if (auto* e = std::get_if<ApiError>(&out)) {
      ADD_FAILURE() << e->message;
      return json();
    }
    return std::get<json>(out);
  }
  ApiError CreateFails(const std::string& name, json spec) {
    auto out = store_.Create(Services(), "demo", Svc(name, std::move(spec)));
    EXPECT_TRUE(std::holds_alternative<ApiError>(out)) << std::get<json>(out).dump();
    return std::holds_alternative<ApiError>(out) ? std::get<ApiError>(out) : ApiError{};
  }

  ObjectStore store_;
};

TEST_F(AllocationTest, ClusterIpComesFromTheRangeAndIsFreedOnDelete) {
  Enable("10.96.0.0/30");  // two usable addresses: .1 and .2
  json a = Create("a", {{"ports", {{{"port", 80}}}}});
  EXPECT_EQ(a["spec"]["clusterIP"], "10.96.0.1");
  EXPECT_EQ(a["spec"]["clusterIPs"], json({"10.96.0.1"}));
  EXPECT_EQ(a["spec"]["ipFamilies"], json({"IPv4"}));
  EXPECT_EQ(a["spec"]["ipFamilyPolicy"], "SingleStack");
  EXPECT_EQ(a["spec"]["type"], "ClusterIP");
  EXPECT_EQ(Create("b", json::object())["spec"]["clusterIP"], "10.96.0.2");
  ApiError full = CreateFails("c", json::object());
  EXPECT_EQ(full.code, 422);
  EXPECT_NE(full.message.find("range is full"), std::string::npos) << full.message;
  ASSERT_TRUE(std::holds_alternative<json>(store_.Delete(Services(), "demo", "a")));
  EXPECT_EQ(Create("c", json::object())["spec"]["clusterIP"], "10.96.0.1");
}

TEST_F(AllocationTest, TakenOrOutOfRangeClusterIpIsInvalid) {
  Enable("10.96.0.0/24");
  Create("a", {{"clusterIP", "10.96.0.10"}});
  ApiError taken = CreateFails("b", {{"clusterIP", "10.96.0.10"}});
  EXPECT_EQ(taken.code, 422);
  EXPECT_EQ(taken.reason, "Invalid");
  EXPECT_EQ(taken.field, "spec.clusterIPs");
  EXPECT_EQ(taken.message,
            "Service \"b\" is invalid: spec.clusterIPs: Invalid value: []string{\"10.96.0.10\"}: "
            "failed to allocate IP 10.96.0.10: provided IP is already allocated");
  json body = StatusBody(taken);
  EXPECT_EQ(body["details"]["causes"][0]["field"], "spec.clusterIPs");
  EXPECT_EQ(body["details"]["kind"], "Service");
  ApiError outside = CreateFails("c", {{"clusterIP", "10.97.0.1"}});
  EXPECT_NE(outside.message.find("is not in the valid range. The range of valid IPs is "
                                 "10.96.0.0/24"),
            std::string::npos)
      << outside.message;
  // Headless Services hold no address.
  json headless = Create("h", {{"clusterIP", "None"}});
  EXPECT_EQ(headless["spec"]["clusterIPs"], json({"None"}));
  json h2 = Create("h2", {{"clusterIP", "None"}});
  EXPECT_EQ(h2["spec"]["clusterIP"], "None");
}

TEST_F(AllocationTest, NodePortsForNodePortAndLoadBalancerOnly) {
  Enable("10.96.0.0/24", "30000-30002");
  json np = Create("np", {{"type", "NodePort"},
                          {"ports", {{{"port", 80}}, {{"port", 53}, {"protocol", "UDP"}}}}});
  EXPECT_EQ(np["spec"]["ports"][0]["nodePort"], 30000);
  EXPECT_EQ(np["spec"]["ports"][1]["nodePort"], 30001);
  json lb = Create("lb", {{"type", "LoadBalancer"}, {"ports", {{{"port", 443}}}}});
  EXPECT_EQ(lb["spec"]["ports"][0]["nodePort"], 30002);
  json noalloc = Create("lb2", {{"type", "LoadBalancer"},
                                {"allocateLoadBalancerNodePorts", false},
                                {"ports", {{{"port", 443}}}}});
  EXPECT_FALSE(noalloc["spec"]["ports"][0].contains("nodePort"));
  json cip = Create("cip", {{"ports", {{{"port", 80}}}}});
  EXPECT_FALSE(cip["spec"]["ports"][0].contains("nodePort"));
  ApiError full = CreateFails("np2", {{"type", "NodePort"}, {"ports", {{{"port", 80}}}}});
  EXPECT_EQ(full.field, "spec.ports[0].nodePort");
  ASSERT_TRUE(std::holds_alternative<json>(store_.Delete(Services(), "demo", "np")));
  json again = Create("np2", {{"type", "NodePort"}, {"ports", {{{"port", 80}}}}});
  EXPECT_EQ(again["spec"]["ports"][0]["nodePort"], 30000);
}

TEST_F(AllocationTest, TakenOrOutOfRangeNodePortIsInvalid) {
  Enable("10.96.0.0/24", "30000-32767");
  Create("a", {{"type", "NodePort"}, {"ports", {{{"port", 80}, {"nodePort", 30080}}}}});
  ApiError taken = CreateFails(
      "b",
      {{"type", "NodePort"}, {"ports", {{{"port", 81}}, {{"port", 80}, {"nodePort", 30080}}}}});
  EXPECT_EQ(taken.message,
            "Service \"b\" is invalid: spec.ports[1].nodePort: Invalid value: 30080: provided "
            "port is already allocated");
  ApiError outside =
      CreateFails("c", {{"type", "NodePort"}, {"ports", {{{"port", 80}, {"nodePort", 80}}}}});
  EXPECT_NE(outside.message.find("The range of valid ports is 30000-32767"), std::string::npos);
  // A refused create reserves nothing: b's port 81 did not keep a node port.
  json d = Create("d", {{"type", "NodePort"}, {"ports", {{{"port", 81}}}}});
  EXPECT_EQ(d["spec"]["ports"][0]["nodePort"], 30000);
  // The same node port for TCP and UDP of one Service is fine, twice for TCP is not.
  Create("dns", {{"type", "NodePort"},
                 {"ports",
                  {{{"port", 53}, {"nodePort", 30053}},
                   {{"port", 53}, {"protocol", "UDP"}, {"nodePort", 30053}}}}});
  ApiError dup = CreateFails(
      "dup", {{"type", "NodePort"},
              {"ports", {{{"port", 1}, {"nodePort", 30100}}, {{"port", 2}, {"nodePort", 30100}}}}});
  EXPECT_EQ(dup.field, "spec.ports[1].nodePort");
  ApiError forbidden = CreateFails("f", {{"ports", {{{"port", 1}, {"nodePort", 30101}}}}});
  EXPECT_NE(forbidden.message.find("may not be used when `type` is 'ClusterIP'"),
            std::string::npos);
}

TEST_F(AllocationTest, DualStackAsThePolicyAsks) {
  Enable("10.96.0.0/24,fd00:96::/112");
  json single = Create("single", json::object());
  EXPECT_EQ(single["spec"]["clusterIPs"], json({"10.96.0.1"}));
  json prefer = Create("prefer", {{"ipFamilyPolicy", "PreferDualStack"}});
  EXPECT_EQ(prefer["spec"]["clusterIPs"], json({"10.96.0.2", "fd00:96::1"}));
  EXPECT_EQ(prefer["spec"]["ipFamilies"], json({"IPv4", "IPv6"}));
  json v6first =
      Create("v6", {{"ipFamilyPolicy", "RequireDualStack"}, {"ipFamilies", {"IPv6", "IPv4"}}});
  EXPECT_EQ(v6first["spec"]["clusterIPs"], json({"fd00:96::2", "10.96.0.3"}));
  json only6 = Create("only6", {{"ipFamilies", {"IPv6"}}});
  EXPECT_EQ(only6["spec"]["clusterIP"], "fd00:96::3");
  ApiError mismatch = CreateFails(
      "m", {{"ipFamilyPolicy", "RequireDualStack"}, {"clusterIPs", {"10.96.0.50", "10.96.0.51"}}});
  EXPECT_EQ(mismatch.code, 422);
  ASSERT_TRUE(std::holds_alternative<json>(store_.Delete(Services(), "demo", "prefer")));
  EXPECT_EQ(Create("again", {{"ipFamilies", {"IPv6"}}})["spec"]["clusterIP"], "fd00:96::1");
}

TEST_F(AllocationTest, RequireDualStackOnASingleStackClusterIsInvalid) {
  Enable("10.96.0.0/24");
  ApiError e = CreateFails("d", {{"ipFamilyPolicy", "RequireDualStack"}});
  EXPECT_EQ(e.field, "spec.ipFamilyPolicy");
  EXPECT_NE(e.message.find("not configured for dual-stack"), std::string::npos);
  // PreferDualStack falls back to the one family there is.
  EXPECT_EQ(Create("p", {{"ipFamilyPolicy", "PreferDualStack"}})["spec"]["clusterIPs"],
            json({"10.96.0.1"}));
  EXPECT_EQ(CreateFails("six", {{"ipFamilies", {"IPv6"}}}).field, "spec.ipFamilies[0]");
}

TEST_F(AllocationTest, UpdatesKeepAllocationsAndFreeWhatIsDropped) {
  Enable("10.96.0.0/24", "30000-30010");
  json np = Create("web", {{"type", "NodePort"}, {"ports", {{{"port", 80}}, {{"port", 81}}}}});
  ASSERT_EQ(np["spec"]["ports"][1]["nodePort"], 30001);
  // A replace without clusterIP/nodePorts (kubectl replace of the original file) keeps them.
  json replaced = Svc("web", {{"type", "NodePort"}, {"ports", {{{"port", 80}}}}});
  auto out = store_.Update(Services(), "demo", "web", replaced, false);
  ASSERT_TRUE(std::holds_alternative<json>(out)) << std::get<ApiError>(out).message;
  json stored = std::get<json>(out);
  EXPECT_EQ(stored["spec"]["clusterIP"], "10.96.0.1");
  EXPECT_EQ(stored["spec"]["ports"][0]["nodePort"], 30000);
  // Port 81's node port was freed with the port.
  EXPECT_EQ(Create("other", {{"type", "NodePort"},
                             {"ports", {{{"port", 1}}}}})["spec"]["ports"][0]["nodePort"],
            30001);
  // Changing the ClusterIP is refused.
  auto moved =
      store_.Patch(Services(), "demo", "web", PatchType::kMerge,
                   {{"spec", {{"clusterIP", "10.96.0.99"}, {"clusterIPs", nullptr}}}}, false);
  ASSERT_TRUE(std::holds_alternative<ApiError>(moved));
  EXPECT_NE(std::get<ApiError>(moved).message.find("may not change once set"), std::string::npos);
  // NodePort -> ClusterIP drops its node ports, which become free.
  auto to_cip = store_.Patch(Services(), "demo", "web", PatchType::kMerge,
                             {{"spec", {{"type", "ClusterIP"}}}}, false);
  ASSERT_TRUE(std::holds_alternative<json>(to_cip)) << std::get<ApiError>(to_cip).message;
  EXPECT_FALSE(std::get<json>(to_cip)["spec"]["ports"][0].contains("nodePort"));
  EXPECT_EQ(Create("third", {{"type", "NodePort"},
                             {"ports", {{{"port", 1}}}}})["spec"]["ports"][0]["nodePort"],
            30000);
  // A status-only update does not touch allocations.
  json with_status = Svc("web", json::object());
  with_status["status"] = {{"loadBalancer", json::object()}};
  auto status = store_.Update(Services(), "demo", "web", with_status, true);
  EXPECT_TRUE(std::holds_alternative<json>(status));
}

TEST_F(AllocationTest, ManifestsAreReservedNeverRefused) {
  Enable("10.96.0.0/24");
  json loaded = Svc("pre", {{"clusterIP", "10.96.0.1"}});
  loaded["metadata"]["namespace"] = "demo";
  ASSERT_TRUE(std::holds_alternative<json>(store_.Load(Services(), loaded)));
  EXPECT_EQ(Create("next", json::object())["spec"]["clusterIP"], "10.96.0.2");
  json outside = Svc("outside", {{"clusterIP", "192.0.2.1"}});
  auto kept = store_.Load(Services(), outside);
  ASSERT_TRUE(std::holds_alternative<json>(kept));
  EXPECT_EQ(std::get<json>(kept)["spec"]["clusterIP"], "192.0.2.1");
}

TEST(AllocationFlagsTest, BadRangesAreRejected) {
  ServiceRanges r;
  EXPECT_EQ(ParseServiceRanges("10.96.0.0/12", "", &r), "");
  EXPECT_EQ(r.node_port_first, 30000);
  EXPECT_NE(ParseServiceRanges("10.96.0.0", "", &r), "");
  EXPECT_NE(ParseServiceRanges("10.96.0.0/12,10.0.0.0/8", "", &r), "");
  EXPECT_NE(ParseServiceRanges("fd00::/64", "", &r), "");
  EXPECT_NE(ParseServiceRanges("10.96.0.0/12", "32767-30000", &r), "");
  EXPECT_EQ(ParseServiceRanges("10.96.0.0/12,fd00::/108", "20000-20100", &r), "");
  EXPECT_EQ(r.node_port_last, 20100);
}

}  // namespace
}  // namespace fake_apiserver
