// SPDX-License-Identifier: Apache-2.0
#include "controllers.h"

#include <arpa/inet.h>

#include <algorithm>
#include <cstdio>
#include <functional>
#include <set>

namespace sandbox {
namespace {

std::string Str(const json& object, std::initializer_list<const char*> path) {
  const json* cur = &object;
  for (const char* key : path) {
    if (!cur->is_object() || !cur->contains(key)) return "";
    cur = &(*cur)[key];
  }
  return cur->is_string() ? cur->get<std::string>() : "";
}

std::string Key(const json& object) {
  return Str(object, {"metadata", "namespace"}) + "/" + Str(object, {"metadata", "name"});
}

bool ParseV4Cidr(const std::string& cidr, uint32_t* base, int* bits) {
  size_t slash = cidr.find('/');
  if (slash == std::string::npos) return false;
  in_addr a;
  if (inet_pton(AF_INET, cidr.substr(0, slash).c_str(), &a) != 1) return false;
  *bits = std::atoi(cidr.c_str() + slash + 1);
  if (*bits < 0 || *bits > 32) return false;
  uint32_t mask = *bits == 0 ? 0 : ~uint32_t(0) << (32 - *bits);
  *base = ntohl(a.s_addr) & mask;
  return true;
}

std::string V4(uint32_t v) {
  in_addr a;
  a.s_addr = htonl(v);
  char buf[INET_ADDRSTRLEN];
  inet_ntop(AF_INET, &a, buf, sizeof buf);
  return buf;
}

bool SelectorMatches(const json& selector, const json& labels) {
  if (!selector.is_object() || selector.empty()) return false;
  for (auto it = selector.begin(); it != selector.end(); ++it) {
    if (!labels.is_object() || !labels.contains(it.key()) || labels[it.key()] != *it) return false;
  }
  return true;
}

bool PodReady(const json& pod) {
  auto conditions =
      pod.contains("status") ? pod["status"].value("conditions", json::array()) : json::array();
  for (const auto& c : conditions) {
    if (c.is_object() && c.value("type", "") == "Ready") return c.value("status", "") == "True";
  }
  return false;
}

std::vector<std::string> PodIps(const json& pod) {
  std::vector<std::string> ips;
  if (!pod.contains("status") || !pod["status"].is_object()) return ips;
  for (const auto& entry : pod["status"].value("podIPs", json::array())) {
    if (entry.is_object() && entry.value("ip", "") != "") ips.push_back(entry["ip"]);
  }
  std::string single = Str(pod, {"status", "podIP"});
  if (ips.empty() && !single.empty()) ips.push_back(single);
  return ips;
}

// A service port's target on one pod: the number, or 0 when a named port is not declared.
int ResolveTargetPort(const json& service_port, const json& pod) {
  const json target = service_port.value("targetPort", json());
  if (target.is_number_integer()) return target.get<int>();
  if (target.is_string()) {
    const std::string name = target.get<std::string>();
    if (!name.empty() && std::all_of(name.begin(), name.end(), ::isdigit))
      return std::atoi(name.c_str());
    std::string protocol = service_port.value("protocol", "TCP");
    json containers =
        pod.contains("spec") ? pod["spec"].value("containers", json::array()) : json::array();
    for (const auto& c : containers) {
      if (!c.is_object()) continue;
      for (const auto& p : c.value("ports", json::array())) {
        if (p.is_object() && p.value("name", "") == name && p.value("protocol", "TCP") == protocol)
          return p.value("containerPort", 0);
      }
    }
    return 0;
  }
  return service_port.value("port", 0);
}

std::string Hex8(const std::string& text) {
  // FNV-1a: stable across runs and builds (std::hash is not guaranteed to be).
  uint32_t h = 2166136261u;
  for (unsigned char c : text) h = (h ^ c) * 16777619u;
  char buf[9];
  std::snprintf(buf, sizeof buf, "%08x", h);
  return buf;
}

}  // namespace

std::map<std::string, std::string> AssignPodCidrs(const json& nodes,
                                                  const std::string& cluster_cidr, int node_bits) {
  std::map<std::string, std::string> out;
  uint32_t base = 0;
  int bits = 0;
  if (!ParseV4Cidr(cluster_cidr, &base, &bits) || node_bits < bits || node_bits > 30) return out;
  std::set<uint32_t> taken;
  std::vector<std::string> wanting;
  for (const auto& node : nodes) {
    std::string cidr = Str(node, {"spec", "podCIDR"});
    uint32_t b;
    int n;
    if (!cidr.empty() && ParseV4Cidr(cidr, &b, &n)) {
      taken.insert(b);
      continue;
    }
    wanting.push_back(Str(node, {"metadata", "name"}));
  }
  std::sort(wanting.begin(), wanting.end());
  uint64_t blocks = uint64_t(1) << (node_bits - bits);
  uint32_t step = uint32_t(1) << (32 - node_bits);
  uint64_t next = 0;
  for (const auto& name : wanting) {
    while (next < blocks && taken.count(base + uint32_t(next) * step)) ++next;
    if (next >= blocks) break;
    uint32_t block = base + uint32_t(next) * step;
    taken.insert(block);
    out[name] = V4(block) + "/" + std::to_string(node_bits);
  }
  return out;
}

std::map<std::string, std::string> PlacePods(const json& pods,
                                             const std::vector<std::string>& nodes) {
  std::map<std::string, std::string> out;
  if (nodes.empty()) return out;
  std::map<std::string, int> load;
  for (const auto& n : nodes) load[n] = 0;
  std::vector<std::string> pending;
  for (const auto& pod : pods) {
    std::string node = Str(pod, {"spec", "nodeName"});
    if (node.empty())
      pending.push_back(Key(pod));
    else if (load.count(node))
      ++load[node];
  }
  std::sort(pending.begin(), pending.end());
  for (const auto& key : pending) {
    auto best = std::min_element(load.begin(), load.end(), [](const auto& a, const auto& b) {
      return a.second < b.second || (a.second == b.second && a.first < b.first);
    });
    out[key] = best->first;
    ++best->second;
  }
  return out;
}

std::vector<json> DesiredSlices(const json& services, const json& pods) {
  std::vector<json> out;
  for (const auto& svc : services) {
    if (!svc.is_object() || !svc.contains("spec") || !svc["spec"].is_object()) continue;
    const json& spec = svc["spec"];
    json selector = spec.value("selector", json::object());
    if (!selector.is_object() || selector.empty()) continue;  // user-managed endpoints
    std::string ns = Str(svc, {"metadata", "namespace"});
    std::string name = Str(svc, {"metadata", "name"});
    json svc_ports = spec.value("ports", json::array());
    // (family, resolved port numbers) -> endpoints.
    std::map<std::pair<std::string, std::vector<int>>, json> groups;
    for (const auto& pod : pods) {
      if (Str(pod, {"metadata", "namespace"}) != ns) continue;
      if (!SelectorMatches(selector, pod["metadata"].value("labels", json::object()))) continue;
      std::string phase = Str(pod, {"status", "phase"});
      std::string node = Str(pod, {"spec", "nodeName"});
      if (phase == "Succeeded" || phase == "Failed" || node.empty()) continue;
      std::vector<int> resolved;
      for (const auto& p : svc_ports)
        resolved.push_back(p.is_object() ? ResolveTargetPort(p, pod) : 0);
      bool terminating = pod["metadata"].contains("deletionTimestamp");
      bool ready = PodReady(pod);
      for (const auto& ip : PodIps(pod)) {
        std::string family = ip.find(':') == std::string::npos ? "IPv4" : "IPv6";
        json endpoint = {
            {"addresses", {ip}},
            {"conditions",
             {{"ready", ready && !terminating}, {"serving", ready}, {"terminating", terminating}}},
            {"nodeName", node},
            {"targetRef",
             {{"kind", "Pod"},
              {"namespace", ns},
              {"name", Str(pod, {"metadata", "name"})},
              {"uid", Str(pod, {"metadata", "uid"})}}}};
        auto& group = groups[{family, resolved}];
        if (group.is_null()) group = json::array();
        group.push_back(std::move(endpoint));
      }
    }
    for (auto& [key, endpoints] : groups) {
      const auto& [family, resolved] = key;
      json ports = json::array();
      std::string signature = family;
      for (size_t i = 0; i < svc_ports.size(); ++i) {
        if (!svc_ports[i].is_object() || resolved[i] == 0) continue;  // unresolved: left out
        json port = {{"port", resolved[i]}, {"protocol", svc_ports[i].value("protocol", "TCP")}};
        port["name"] = svc_ports[i].value("name", "");
        ports.push_back(port);
        signature += "," + std::to_string(resolved[i]);
      }
      std::sort(endpoints.begin(), endpoints.end(), [](const json& a, const json& b) {
        return a["addresses"][0].get<std::string>() < b["addresses"][0].get<std::string>();
      });
      std::string lower = family == "IPv4" ? "ipv4" : "ipv6";
      out.push_back(
          {{"apiVersion", "discovery.k8s.io/v1"},
           {"kind", "EndpointSlice"},
           {"metadata",
            {{"name", name + "-" + lower + "-" + Hex8(signature)},
             {"namespace", ns},
             {"labels", {{"kubernetes.io/service-name", name}, {kManagedBy, kManagerName}}}}},
           {"addressType", family},
           {"endpoints", endpoints},
           {"ports", ports}});
    }
  }
  return out;
}

}  // namespace sandbox
