#include "kube_router/routing/cni_config.h"

#include <nlohmann/json.hpp>

namespace kr::routing {
namespace {

using nlohmann::json;

// kube-router's daemonset conflist: bridge on kube-bridge as the pods' gateway, hairpin on
// (services reaching their own endpoints), portmap for hostPort.
json DefaultConflist() {
  return json{
      {"cniVersion", "0.3.1"},
      {"name", "mynet"},
      {"plugins",
       json::array({json{{"name", "kubernetes"},
                         {"type", "bridge"},
                         {"bridge", kBridgeName},
                         {"isDefaultGateway", true},
                         {"hairpinMode", true},
                         {"ipam", json{{"type", "host-local"}}}},
                    json{{"type", "portmap"},
                         {"capabilities", json{{"snat", true}, {"portMappings", true}}}}})}};
}

json* FindBridgePlugin(json& config, bool conflist) {
  if (!conflist) return config.value("type", "") == "bridge" ? &config : nullptr;
  auto plugins = config.find("plugins");
  if (plugins == config.end() || !plugins->is_array()) return nullptr;
  for (auto& plugin : *plugins) {
    if (plugin.is_object() && plugin.value("type", "") == "bridge") return &plugin;
  }
  return nullptr;
}

bool HasRange(const json& ranges, const std::string& subnet) {
  for (const auto& set : ranges) {
    for (const auto& range : set) {
      if (range.is_object() && range.value("subnet", "") == subnet) return true;
    }
  }
  return false;
}

}  // namespace

bool IsConflistPath(const std::string& path) {
  const std::string suffix = ".conflist";
  return path.size() >= suffix.size() &&
         path.compare(path.size() - suffix.size(), suffix.size(), suffix) == 0;
}

Result<std::string> RenderCniConfig(const std::string& existing, bool conflist,
                                    const std::vector<IpPrefix>& pod_cidrs,
                                    std::optional<int> mtu) {
  json config;
  if (existing.find_first_not_of(" \t\r\n") == std::string::npos) {
    config = DefaultConflist();
    if (!conflist) {
      json bridge = config["plugins"][0];
      bridge["cniVersion"] = config["cniVersion"];
      config = bridge;
    }
  } else {
    config = json::parse(existing, nullptr, /*allow_exceptions=*/false);
    if (config.is_discarded() || !config.is_object()) {
      return Status::Error("CNI config is not a JSON object");
    }
  }
  json* bridge = FindBridgePlugin(config, conflist);
  if (!bridge) return Status::Error("CNI config has no plugin of type \"bridge\"");
  try {
    json& ipam = (*bridge)["ipam"];
    if (!ipam.is_object()) ipam = json{{"type", "host-local"}};
    json& ranges = ipam["ranges"];
    if (!ranges.is_array()) ranges = json::array();
    for (const auto& set : ranges) {
      if (!set.is_array()) return Status::Error("CNI config: ipam.ranges holds a non-list entry");
    }
    // Legacy single "subnet" moves into ranges (kube-router does the same migration).
    if (ipam.contains("subnet") && ipam["subnet"].is_string()) {
      std::string legacy = ipam["subnet"];
      if (!HasRange(ranges, legacy)) ranges.push_back(json::array({json{{"subnet", legacy}}}));
      ipam.erase("subnet");
    }
    for (const auto& cidr : pod_cidrs) {
      const std::string subnet = cidr.ToString();
      if (!HasRange(ranges, subnet)) ranges.push_back(json::array({json{{"subnet", subnet}}}));
    }
    if (mtu) (*bridge)["mtu"] = *mtu;
  } catch (const json::exception& e) {
    return Status::Error(std::string("CNI config has an unexpected shape: ") + e.what());
  }
  return config.dump(2) + "\n";
}

GatewayAddress BridgeGateway(const IpPrefix& pod_cidr) {
  auto bytes = pod_cidr.address().bytes();
  const int last = pod_cidr.is_v4() ? 3 : 15;
  // The network address with its last byte's lowest bit set: network + 1.
  bytes[last] |= 1;
  IpAddress gateway = pod_cidr.is_v4()
                          ? IpAddress::V4((uint32_t{bytes[0]} << 24) | (uint32_t{bytes[1]} << 16) |
                                          (uint32_t{bytes[2]} << 8) | bytes[3])
                          : IpAddress::V6(bytes);
  return {gateway, pod_cidr.length()};
}

}  // namespace kr::routing
