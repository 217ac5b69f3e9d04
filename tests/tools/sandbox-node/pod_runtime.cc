// SPDX-License-Identifier: Apache-2.0
#include "pod_runtime.h"

#include <filesystem>
#include <fstream>
#include <iostream>
#include <sstream>

#include "kube_router/base/exec.h"

namespace sandbox {
namespace {

constexpr auto kPluginTimeout = std::chrono::seconds(30);

std::string Hex10(const std::string& text) {
  uint64_t h = 1469598103934665603ull;  // FNV-1a 64: stable across runs and builds
  for (unsigned char c : text) h = (h ^ c) * 1099511628211ull;
  char buf[17];
  std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(h));
  return std::string(buf).substr(0, 10);
}

std::string Meta(const json& pod, const char* field) {
  return pod.contains("metadata") && pod["metadata"].is_object()
             ? pod["metadata"].value(field, std::string())
             : std::string();
}

bool NetnsExists(const std::string& name) {
  return std::filesystem::exists("/var/run/netns/" + name);
}

kr::Status Ip(const std::vector<std::string>& args) {
  std::vector<std::string> argv = {"ip"};
  argv.insert(argv.end(), args.begin(), args.end());
  auto r = kr::ExecChecked(argv, "", {.timeout = std::chrono::seconds(10)});
  return r.ok() ? kr::Status::Ok() : r.status();
}

// Addresses on the pod's eth0 (global scope), IPv4 first.
std::vector<std::string> ReadPodIps(const std::string& netns) {
  auto r = kr::ExecChecked({"ip", "-n", netns, "-j", "addr", "show", "dev", "eth0"}, "",
                           {.timeout = std::chrono::seconds(10)});
  std::vector<std::string> v4, v6;
  if (!r.ok()) return v4;
  json links = json::parse(*r, nullptr, false);
  if (!links.is_array()) return v4;
  for (const auto& link : links) {
    for (const auto& a : link.value("addr_info", json::array())) {
      if (a.value("scope", "") != "global") continue;
      (a.value("family", "") == "inet6" ? v6 : v4).push_back(a.value("local", ""));
    }
  }
  v4.insert(v4.end(), v6.begin(), v6.end());
  return v4;
}

}  // namespace

PodRuntime::PodRuntime(std::string netns_prefix, std::string state_dir, std::string cni_bin_dir)
    : prefix_(std::move(netns_prefix)),
      state_dir_(std::move(state_dir)),
      cni_bin_(std::move(cni_bin_dir)) {}

PodRuntime::~PodRuntime() = default;  // servers stop; namespaces stay (a restart adopts them)

std::string PodRuntime::NetnsName(const json& pod) const {
  return prefix_ + "-p-" +
         Hex10(Meta(pod, "namespace") + "/" + Meta(pod, "name") + "/" + Meta(pod, "uid"));
}

kr::Result<json> PodRuntime::CniConfig(const NodeHost& node) const {
  std::ifstream in(node.cni_conf_file);
  if (!in) return kr::Status::Error("no CNI config at " + node.cni_conf_file + " yet");
  std::stringstream text;
  text << in.rdbuf();
  json config = json::parse(text.str(), nullptr, false);
  if (!config.is_object()) return kr::Status::Error(node.cni_conf_file + " is not a JSON object");
  // A single plugin config is a list of one.
  if (!config.contains("plugins")) {
    json single = config;
    config = {{"cniVersion", single.value("cniVersion", "0.3.1")},
              {"name", single.value("name", "")},
              {"plugins", json::array({single})}};
  }
  if (!config["plugins"].is_array() || config["plugins"].empty())
    return kr::Status::Error(node.cni_conf_file + " has no plugins");
  // host-local's leases live in the sandbox's state, not the host's /var/lib/cni.
  for (auto& plugin : config["plugins"]) {
    if (plugin.is_object() && plugin.contains("ipam") && plugin["ipam"].is_object() &&
        plugin["ipam"].value("type", "") == "host-local")
      plugin["ipam"]["dataDir"] = state_dir_ + "/cni/" + node.name;
  }
  return config;
}

kr::Result<json> PodRuntime::CniRun(const NodeHost& node, const std::string& command,
                                    const json& plugin, const std::string& netns,
                                    const std::string& container_id) const {
  std::string type = plugin.value("type", "");
  if (type.empty() || type.find('/') != std::string::npos)
    return kr::Status::Error("CNI plugin without a plain type: " + plugin.dump());
  kr::ExecOptions options;
  options.timeout = kPluginTimeout;
  options.env = {{"CNI_COMMAND", command},
                 {"CNI_CONTAINERID", container_id},
                 {"CNI_NETNS", "/var/run/netns/" + netns},
                 {"CNI_IFNAME", "eth0"},
                 {"CNI_PATH", cni_bin_}};
  // Run inside the node's namespace: the bridge plugin makes kube-bridge and the host end of
  // the veth where it runs.
  auto r =
      kr::Exec({"ip", "netns", "exec", node.netns, cni_bin_ + "/" + type}, plugin.dump(), options);
  if (!r.ok()) return kr::Status::Error("CNI " + type + " " + command + ": " + r.error());
  json out = r->out.empty() ? json::object() : json::parse(r->out, nullptr, false);
  if (r->exit_code != 0) {
    std::string msg = out.is_object() ? out.value("msg", r->out) : r->out;
    return kr::Status::Error("CNI " + type + " " + command + " failed: " + msg + " " + r->err);
  }
  if (out.is_discarded()) return kr::Status::Error("CNI " + type + " printed no JSON: " + r->out);
  return out;
}

kr::Result<const PodRuntime::Running*> PodRuntime::Start(const NodeHost& node, const json& pod) {
  std::string uid = Meta(pod, "uid");
  if (auto it = running_.find(uid); it != running_.end()) return &it->second;
  Running run;
  run.key = Meta(pod, "namespace") + "/" + Meta(pod, "name");
  run.uid = uid;
  run.node = node.name;
  run.netns = NetnsName(pod);
  bool adopted = NetnsExists(run.netns);
  if (adopted) {
    run.ips = ReadPodIps(run.netns);
    if (run.ips.empty()) {
      // A half-made namespace from a killed run: start over.
      Stop(uid, &node);
      adopted = false;
    }
  }
  if (!adopted) {
    auto config = CniConfig(node);
    if (!config.ok()) return config.status();
    if (auto s = Ip({"netns", "add", run.netns}); !s.ok()) return s;
    (void)Ip({"-n", run.netns, "link", "set", "lo", "up"});
    json prev;
    for (const auto& plugin_in : (*config)["plugins"]) {
      json plugin = plugin_in;
      plugin["name"] = (*config)["name"];
      plugin["cniVersion"] = (*config)["cniVersion"];
      if (!prev.is_null()) plugin["prevResult"] = prev;
      auto result = CniRun(node, "ADD", plugin, run.netns, uid);
      if (!result.ok()) {
        running_[uid] = std::move(run);
        Stop(uid, &node);
        return result.status();
      }
      prev = *result;
    }
    for (const auto& ip : prev.value("ips", json::array())) {
      std::string address = ip.value("address", "");
      run.ips.push_back(address.substr(0, address.find('/')));
    }
    if (run.ips.empty()) {
      running_[uid] = std::move(run);
      Stop(uid, &node);
      return kr::Status::Error("CNI ADD returned no IP address");
    }
  }
  auto& stored = running_[uid] = std::move(run);
  StartServers(&stored, pod.value("spec", json::object()), Meta(pod, "name"));
  return &stored;
}

void PodRuntime::StartServers(Running* run, const json& spec, const std::string& name) {
  for (const auto& c : spec.value("containers", json::array())) {
    if (!c.is_object()) continue;
    for (const auto& p : c.value("ports", json::array())) {
      if (!p.is_object() || !p.contains("containerPort") || !p["containerPort"].is_number_integer())
        continue;
      int port = p["containerPort"].get<int>();
      std::string protocol = p.value("protocol", "TCP");
      using Kind = kr::testing::AnswerServer::Kind;
      Kind kind = protocol == "UDP"    ? Kind::kUdp
                  : protocol == "SCTP" ? Kind::kSctp
                                       : Kind::kTcpOrHttp;
      try {
        run->servers.push_back(
            std::make_unique<kr::testing::AnswerServer>(run->netns, name, port, kind));
      } catch (const std::exception& e) {
        std::cerr << "sandbox-node: pod " << run->key << ": " << protocol << " port " << port
                  << " not served: " << e.what() << std::endl;
      }
    }
  }
}

void PodRuntime::Stop(const std::string& uid, const NodeHost* node) {
  auto it = running_.find(uid);
  if (it == running_.end()) return;
  Running& run = it->second;
  run.servers.clear();
  if (node) {
    auto config = CniConfig(*node);
    if (config.ok()) {
      auto& plugins = (*config)["plugins"];
      for (auto p = plugins.rbegin(); p != plugins.rend(); ++p) {
        json plugin = *p;
        plugin["name"] = (*config)["name"];
        plugin["cniVersion"] = (*config)["cniVersion"];
        auto r = CniRun(*node, "DEL", plugin, run.netns, uid);
        if (!r.ok()) std::cerr << "sandbox-node: pod " << run.key << ": " << r.error() << std::endl;
      }
    }
  }
  if (NetnsExists(run.netns)) {
    auto s = Ip({"netns", "delete", run.netns});
    if (!s.ok()) std::cerr << "sandbox-node: pod " << run.key << ": " << s.message() << std::endl;
  }
  running_.erase(it);
}

}  // namespace sandbox
