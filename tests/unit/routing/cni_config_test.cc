#include "kube_router/routing/cni_config.h"

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

namespace kr::routing::cni_config_test {
namespace {

using nlohmann::json;

IpPrefix Cidr(const std::string& text) { return *IpPrefix::Parse(text); }

TEST(CniConfigTest, DefaultConflistGetsPodCidrAndMtu) {
  auto text = RenderCniConfig("", true, {Cidr("10.1.2.0/24")}, 1450);
  ASSERT_TRUE(text) << text.error();
  json config = json::parse(*text);
  const json& bridge = config["plugins"][0];
  EXPECT_EQ(bridge["type"], "bridge");
  EXPECT_EQ(bridge["bridge"], "kube-bridge");
  EXPECT_EQ(bridge["isDefaultGateway"], true);
  EXPECT_EQ(bridge["mtu"], 1450);
  EXPECT_EQ(bridge["ipam"]["type"], "host-local");
  EXPECT_EQ(bridge["ipam"]["ranges"], json::parse(R"([[{"subnet":"10.1.2.0/24"}]])"));
  EXPECT_EQ(config["plugins"][1]["type"], "portmap");
}

TEST(CniConfigTest, DefaultConfIsTheBridgePluginItself) {
  auto text = RenderCniConfig("", false, {Cidr("10.1.2.0/24")}, std::nullopt);
  ASSERT_TRUE(text);
  json config = json::parse(*text);
  EXPECT_EQ(config["type"], "bridge");
  EXPECT_TRUE(config.contains("cniVersion"));
  EXPECT_FALSE(config.contains("mtu"));
}

TEST(CniConfigTest, ExistingConfigKeepsOtherFieldsAndMigratesSubnet) {
  const std::string existing = R"({
    "cniVersion": "0.3.0", "name": "mynet",
    "plugins": [
      {"type": "bridge", "bridge": "kube-bridge", "custom": 7,
       "ipam": {"type": "host-local", "subnet": "10.1.2.0/24"}},
      {"type": "portmap"}]})";
  auto text = RenderCniConfig(existing, true, {Cidr("10.1.2.0/24"), Cidr("fd00:2::/64")}, 1500);
  ASSERT_TRUE(text);
  json config = json::parse(*text);
  const json& bridge = config["plugins"][0];
  EXPECT_EQ(bridge["custom"], 7);
  EXPECT_FALSE(bridge["ipam"].contains("subnet"));
  EXPECT_EQ(bridge["ipam"]["ranges"],
            json::parse(R"([[{"subnet":"10.1.2.0/24"}],[{"subnet":"fd00:2::/64"}]])"));
  // Idempotent: a second pass changes nothing.
  EXPECT_EQ(*RenderCniConfig(*text, true, {Cidr("10.1.2.0/24"), Cidr("fd00:2::/64")}, 1500), *text);
}

TEST(CniConfigTest, BadConfigIsAnError) {
  EXPECT_FALSE(RenderCniConfig("{not json", true, {}, std::nullopt));
  EXPECT_FALSE(RenderCniConfig("[1,2]", true, {}, std::nullopt));
  EXPECT_FALSE(RenderCniConfig(R"({"plugins":[{"type":"ptp"}]})", true, {}, std::nullopt));
  EXPECT_FALSE(RenderCniConfig(R"({"plugins":[{"type":"bridge","ipam":{"ranges":[5]}}]})", true,
                               {Cidr("10.1.2.0/24")}, std::nullopt));
}

TEST(CniConfigTest, PathKindAndGateway) {
  EXPECT_TRUE(IsConflistPath("/etc/cni/net.d/10-kuberouter.conflist"));
  EXPECT_FALSE(IsConflistPath("/etc/cni/net.d/10-kuberouter.conf"));
  auto gw = BridgeGateway(Cidr("10.1.2.0/24"));
  EXPECT_EQ(gw.address.ToString(), "10.1.2.1");
  EXPECT_EQ(gw.prefix_length, 24);
  EXPECT_EQ(BridgeGateway(Cidr("fd00:2::/64")).address.ToString(), "fd00:2::1");
}

}  // namespace
}  // namespace kr::routing::cni_config_test
