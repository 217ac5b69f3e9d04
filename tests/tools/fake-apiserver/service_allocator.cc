// SPDX-License-Identifier: Apache-2.0
#include "service_allocator.h"

#include <arpa/inet.h>

#include <algorithm>

#include "object_store.h"

namespace fake_apiserver {
namespace {

using json = nlohmann::json;
using U128 = unsigned __int128;

// A v6 service range may hold at most 2^20 addresses (kube-apiserver's old bitmap limit, /108).
constexpr int kMaxV6HostBits = 20;

std::optional<std::pair<U128, bool>> ParseIp(const std::string& text) {
  in_addr a4;
  if (inet_pton(AF_INET, text.c_str(), &a4) == 1)
    return std::make_pair(U128(ntohl(a4.s_addr)), false);
  in6_addr a6;
  if (inet_pton(AF_INET6, text.c_str(), &a6) != 1) return std::nullopt;
  U128 v = 0;
  for (uint8_t b : a6.s6_addr) v = (v << 8) | b;
  return std::make_pair(v, true);
}

std::string FormatIp(U128 v, bool v6) {
  char buf[INET6_ADDRSTRLEN];
  if (!v6) {
    in_addr a4;
    a4.s_addr = htonl(static_cast<uint32_t>(v));
    inet_ntop(AF_INET, &a4, buf, sizeof buf);
  } else {
    in6_addr a6;
    for (int i = 15; i >= 0; --i, v >>= 8) a6.s6_addr[i] = static_cast<uint8_t>(v & 0xff);
    inet_ntop(AF_INET6, &a6, buf, sizeof buf);
  }
  return buf;
}

const char* FamilyName(bool v6) { return v6 ? "IPv6" : "IPv4"; }

// kube-apiserver's answer to a bad field: 422 Invalid, "Service \"NAME\" is invalid: FIELD: MSG".
ApiError Invalid(const json& service, const std::string& field, const std::string& message,
                 const std::string& cause = "FieldValueInvalid") {
  std::string name = service["metadata"].value("name", "");
  ApiError e{422, "Invalid", "Service \"" + name + "\" is invalid: " + field + ": " + message};
  e.cause = cause;
  e.field = field;
  e.details_name = name;
  e.details_kind = "Service";
  e.cause_message = message;
  return e;
}

std::string GoStringSlice(const std::vector<std::string>& v) {
  std::string out = "[]string{";
  for (size_t i = 0; i < v.size(); ++i) out += (i ? ", \"" : "\"") + v[i] + "\"";
  return out + "}";
}

std::vector<std::string> StringList(const json& spec, const char* key) {
  std::vector<std::string> out;
  auto it = spec.find(key);
  if (it == spec.end() || !it->is_array()) return out;
  for (const auto& v : *it)
    if (v.is_string()) out.push_back(v.get<std::string>());
  return out;
}

// The ClusterIPs a Service asks for: spec.clusterIPs, else spec.clusterIP.
std::vector<std::string> WantedIps(const json& spec) {
  auto ips = StringList(spec, "clusterIPs");
  if (ips.empty() && spec.contains("clusterIP") && spec["clusterIP"].is_string() &&
      !spec["clusterIP"].get<std::string>().empty())
    ips.push_back(spec["clusterIP"].get<std::string>());
  return ips;
}

bool UsesNodePorts(const json& spec) {
  std::string type = spec.value("type", "ClusterIP");
  if (type == "NodePort") return true;
  if (type != "LoadBalancer") return false;
  auto it = spec.find("allocateLoadBalancerNodePorts");
  return it == spec.end() || !it->is_boolean() || it->get<bool>();
}

// (port, protocol) -> nodePort of a stored Service, to keep on updates that omit it.
std::map<std::pair<int, std::string>, int> NodePortsOf(const json* service) {
  std::map<std::pair<int, std::string>, int> out;
  if (!service || !service->contains("spec") || !(*service)["spec"].contains("ports")) return out;
  for (const auto& p : (*service)["spec"]["ports"]) {
    if (!p.is_object() || !p.contains("nodePort") || !p["nodePort"].is_number_integer()) continue;
    out[{p.value("port", 0), p.value("protocol", "TCP")}] = p["nodePort"].get<int>();
  }
  return out;
}

std::set<int> PortSet(const std::map<std::pair<int, std::string>, int>& m) {
  std::set<int> out;
  for (const auto& [k, v] : m) out.insert(v);
  return out;
}

}  // namespace

std::string ParseServiceRanges(const std::string& cidrs, const std::string& ports,
                               ServiceRanges* out) {
  *out = ServiceRanges{};
  size_t start = 0;
  bool seen[2] = {false, false};
  while (start <= cidrs.size()) {
    size_t comma = cidrs.find(',', start);
    std::string cidr = cidrs.substr(start, comma == std::string::npos ? comma : comma - start);
    start = comma == std::string::npos ? cidrs.size() + 1 : comma + 1;
    size_t slash = cidr.find('/');
    auto ip = slash == std::string::npos ? std::nullopt : ParseIp(cidr.substr(0, slash));
    if (!ip) return "--service-cluster-ip-range: not a CIDR: " + cidr;
    int bits = std::atoi(cidr.c_str() + slash + 1);
    int width = ip->second ? 128 : 32;
    int host_bits = width - bits;
    if (bits < 0 || bits > width || host_bits < 2)
      return "--service-cluster-ip-range: bad prefix length: " + cidr;
    if (ip->second && host_bits > kMaxV6HostBits)
      return "--service-cluster-ip-range: an IPv6 range may be at most /108: " + cidr;
    if (seen[ip->second]) return "--service-cluster-ip-range: one CIDR per family: " + cidrs;
    seen[ip->second] = true;
    out->cluster_ip_cidrs.push_back(cidr);
  }
  if (out->cluster_ip_cidrs.empty() || out->cluster_ip_cidrs.size() > 2)
    return "--service-cluster-ip-range wants one CIDR or two of different families";
  if (!ports.empty()) {
    int first = 0, last = 0;
    char dash = 0;
    if (std::sscanf(ports.c_str(), "%d%c%d", &first, &dash, &last) != 3 || dash != '-' ||
        first < 1 || last > 65535 || first > last)
      return "--service-node-port-range wants FIRST-LAST, got " + ports;
    out->node_port_first = first;
    out->node_port_last = last;
  }
  return "";
}

ServiceAllocator::ServiceAllocator(const ServiceRanges& ranges)
    : port_first_(ranges.node_port_first), port_last_(ranges.node_port_last) {
  for (const auto& cidr : ranges.cluster_ip_cidrs) {
    size_t slash = cidr.find('/');
    auto ip = ParseIp(cidr.substr(0, slash));
    int bits = std::atoi(cidr.c_str() + slash + 1);
    Range r;
    r.v6 = ip->second;
    int host_bits = (r.v6 ? 128 : 32) - bits;
    r.size = U128(1) << host_bits;
    r.base = ip->first & ~(r.size - 1);
    // IPv4 keeps the broadcast address out of the range too, as kube-apiserver does.
    if (!r.v6) r.size -= 1;
    r.text = cidr;
    ranges_.push_back(std::move(r));
  }
}

ServiceAllocator::Range* ServiceAllocator::RangeFor(bool v6) {
  for (auto& r : ranges_)
    if (r.v6 == v6) return &r;
  return nullptr;
}

std::optional<ServiceAllocator::U128> ServiceAllocator::FirstFree(const Range& r) const {
  // Lowest free address above the network address: walk the (ordered) used set for a gap.
  U128 candidate = r.base + 1;
  for (U128 used : r.used) {
    if (used < candidate) continue;
    if (used > candidate) break;
    ++candidate;
  }
  if (!InRange(r, candidate)) return std::nullopt;
  return candidate;
}

size_t ServiceAllocator::AllocatedIps() const {
  size_t n = 0;
  for (const auto& r : ranges_) n += r.used.size();
  return n;
}

std::optional<ApiError> ServiceAllocator::Admit(json* service, const json* old) {
  json& svc = *service;
  if (!svc.contains("spec") || !svc["spec"].is_object()) svc["spec"] = json::object();
  json& spec = svc["spec"];
  if (!spec.contains("type")) spec["type"] = "ClusterIP";
  if (!spec["type"].is_string()) return Invalid(svc, "spec.type", "must be a string");
  std::string type = spec["type"].get<std::string>();
  static const std::set<std::string> kTypes = {"ClusterIP", "NodePort", "LoadBalancer",
                                               "ExternalName"};
  if (!kTypes.count(type))
    return Invalid(svc, "spec.type",
                   "Unsupported value: \"" + type +
                       "\": supported values: \"ClusterIP\", \"ExternalName\", "
                       "\"LoadBalancer\", \"NodePort\"",
                   "FieldValueNotSupported");
  const json empty_spec = json::object();
  const json& old_spec =
      old && old->contains("spec") && (*old)["spec"].is_object() ? (*old)["spec"] : empty_spec;
  std::vector<std::string> old_ips = WantedIps(old_spec);
  if (old_ips == std::vector<std::string>{"None"}) old_ips.clear();

  // ---- ClusterIPs: decide everything first, commit at the end.
  std::vector<std::pair<U128, bool>> keep_or_take;  // the final addresses (to reserve)
  std::vector<std::string> final_ips;
  std::vector<std::string> families_out;
  std::string policy;
  bool headless = false;
  if (type != "ExternalName") {
    std::vector<std::string> wanted = WantedIps(spec);
    bool from_old = false;
    if (wanted.empty() && !old_ips.empty()) {
      wanted = old_ips;  // an update that omits them keeps them, as the real server patches
      from_old = true;
    }
    if (!wanted.empty() && !old_ips.empty() && wanted[0] != old_ips[0])
      return Invalid(svc, "spec.clusterIPs[0]",
                     "Invalid value: " + GoStringSlice(wanted) + ": may not change once set");
    headless = wanted == std::vector<std::string>{"None"};
    policy = spec.value("ipFamilyPolicy", "");
    if (policy.empty() && from_old) policy = old_spec.value("ipFamilyPolicy", "");
    if (policy.empty()) policy = "SingleStack";
    if (policy != "SingleStack" && policy != "PreferDualStack" && policy != "RequireDualStack")
      return Invalid(svc, "spec.ipFamilyPolicy",
                     "Unsupported value: \"" + policy +
                         "\": supported values: \"PreferDualStack\", \"RequireDualStack\", "
                         "\"SingleStack\"",
                     "FieldValueNotSupported");
    if (policy == "RequireDualStack" && ranges_.size() < 2)
      return Invalid(svc, "spec.ipFamilyPolicy",
                     "Invalid value: \"RequireDualStack\": this cluster is not configured for "
                     "dual-stack services");
    std::vector<std::string> families = StringList(spec, "ipFamilies");
    if (families.empty() && from_old) families = StringList(old_spec, "ipFamilies");
    for (size_t i = 0; i < families.size(); ++i) {
      if (families[i] != "IPv4" && families[i] != "IPv6")
        return Invalid(
            svc, "spec.ipFamilies[" + std::to_string(i) + "]",
            "Unsupported value: \"" + families[i] + "\": supported values: \"IPv4\", \"IPv6\"",
            "FieldValueNotSupported");
      if (!RangeFor(families[i] == "IPv6"))
        return Invalid(svc, "spec.ipFamilies[" + std::to_string(i) + "]",
                       "Invalid value: \"" + families[i] + "\": not configured on this cluster");
    }
    // Families follow the requested IPs, then the cluster's primary range, then the other one
    // when dual-stack is asked for and configured.
    if (!headless) {
      for (size_t i = families.size(); i < wanted.size(); ++i) {
        auto ip = ParseIp(wanted[i]);
        if (!ip)
          return Invalid(svc, "spec.clusterIPs[" + std::to_string(i) + "]",
                         "Invalid value: \"" + wanted[i] + "\": must be a valid IP address");
        families.push_back(FamilyName(ip->second));
      }
    }
    if (families.size() > 2 || (families.size() == 2 && families[0] == families[1]))
      return Invalid(svc, "spec.ipFamilies",
                     "Invalid value: " + GoStringSlice(families) +
                         ": may specify no more than one IP for each IP "
                         "family");
    if (families.empty()) families.push_back(FamilyName(ranges_[0].v6));
    if (families.size() == 1 && policy != "SingleStack" && ranges_.size() == 2)
      families.push_back(FamilyName(families[0] != "IPv6"));
    if (policy == "SingleStack" && families.size() > 1)
      return Invalid(svc, "spec.ipFamilies",
                     "Invalid value: " + GoStringSlice(families) +
                         ": when spec.ipFamilyPolicy is SingleStack, only one family may be "
                         "specified");
    if (policy == "RequireDualStack" && families.size() < 2)
      return Invalid(svc, "spec.ipFamilies",
                     "Invalid value: " + GoStringSlice(families) +
                         ": when spec.ipFamilyPolicy is RequireDualStack, two families must be "
                         "specified");
    if (wanted.size() > families.size())
      return Invalid(svc, "spec.clusterIPs",
                     "Invalid value: " + GoStringSlice(wanted) +
                         ": may specify no more than one IP for each IP family");
    families_out = families;
    if (headless) {
      final_ips = {"None"};
    } else {
      std::set<std::string> old_set(old_ips.begin(), old_ips.end());
      for (size_t i = 0; i < families.size(); ++i) {
        bool v6 = families[i] == "IPv6";
        Range* r = RangeFor(v6);
        std::string field = "spec.clusterIPs[" + std::to_string(i) + "]";
        if (i < wanted.size()) {
          auto ip = ParseIp(wanted[i]);
          if (!ip)
            return Invalid(svc, field,
                           "Invalid value: \"" + wanted[i] + "\": must be a valid IP address");
          if (ip->second != v6)
            return Invalid(svc, field,
                           "Invalid value: \"" + wanted[i] + "\": expected an " + families[i] +
                               " value as indicated by `ipFamilies[" + std::to_string(i) + "]`");
          if (!old_set.count(wanted[i])) {
            if (!InRange(*r, ip->first))
              return Invalid(
                  svc, "spec.clusterIPs",
                  "Invalid value: " + GoStringSlice(wanted) + ": failed to allocate IP " +
                      wanted[i] + ": the provided IP (" + wanted[i] +
                      ") is not in the valid range. The range of valid IPs is " + r->text);
            if (r->used.count(ip->first))
              return Invalid(svc, "spec.clusterIPs",
                             "Invalid value: " + GoStringSlice(wanted) +
                                 ": failed to allocate IP " + wanted[i] +
                                 ": provided IP is already allocated");
          }
          keep_or_take.push_back(*ip);
          final_ips.push_back(FormatIp(ip->first, v6));
        } else {
          // Lowest free address not already picked in this request.
          auto free = FirstFree(*r);
          if (!free)
            return Invalid(svc, "spec.clusterIPs",
                           "Invalid value: []string{}: failed to allocate IP: range is full",
                           "FieldValueInvalid");
          keep_or_take.emplace_back(*free, v6);
          final_ips.push_back(FormatIp(*free, v6));
        }
      }
    }
  }

  // ---- NodePorts.
  auto old_ports = NodePortsOf(old);
  std::set<int> old_port_set = PortSet(old_ports);
  bool node_ports = UsesNodePorts(spec);
  std::map<std::pair<int, std::string>, int> new_ports;  // (port, protocol) -> nodePort
  std::vector<size_t> to_allocate;                       // indexes of ports still without one
  if (spec.contains("ports") && !spec["ports"].is_array())
    return Invalid(svc, "spec.ports", "must be a list");
  json ports = spec.value("ports", json::array());
  std::map<int, std::set<std::string>> used_here;  // nodePort -> protocols in this Service
  for (size_t i = 0; i < ports.size(); ++i) {
    json& p = ports[i];
    if (!p.is_object()) continue;  // the agents' decoders report malformed ports
    std::string field = "spec.ports[" + std::to_string(i) + "].nodePort";
    int port = p.value("port", 0);
    std::string protocol = p.value("protocol", "TCP");
    int np =
        p.contains("nodePort") && p["nodePort"].is_number_integer() ? p["nodePort"].get<int>() : 0;
    if (!node_ports) {
      // A NodePort Service turned into a ClusterIP one drops the ports it had.
      auto was = old_ports.find({port, protocol});
      if (np != 0 && (was == old_ports.end() || was->second != np))
        return Invalid(svc, field, "Forbidden: may not be used when `type` is '" + type + "'",
                       "FieldValueForbidden");
      p.erase("nodePort");
      continue;
    }
    if (np == 0) {
      auto was = old_ports.find({port, protocol});
      if (was != old_ports.end()) np = was->second;
    }
    if (np == 0) {
      to_allocate.push_back(i);
      continue;
    }
    if (np < port_first_ || np > port_last_)
      return Invalid(svc, field,
                     "Invalid value: " + std::to_string(np) +
                         ": provided port is not in the valid range. The range of valid ports "
                         "is " +
                         std::to_string(port_first_) + "-" + std::to_string(port_last_));
    if (used_here[np].count(protocol))
      return Invalid(svc, field, "Duplicate value: " + std::to_string(np), "FieldValueDuplicate");
    if (node_ports_.count(np) && !old_port_set.count(np))
      return Invalid(
          svc, field,
          "Invalid value: " + std::to_string(np) + ": provided port is already allocated");
    used_here[np].insert(protocol);
    p["nodePort"] = np;
    new_ports[{port, protocol}] = np;
  }
  for (size_t i : to_allocate) {
    json& p = ports[i];
    std::string protocol = p.value("protocol", "TCP");
    int np = 0;
    for (int c = port_first_; c <= port_last_ && np == 0; ++c) {
      if ((node_ports_.count(c) && !old_port_set.count(c)) || used_here.count(c)) continue;
      np = c;
    }
    if (np == 0)
      return Invalid(svc, "spec.ports[" + std::to_string(i) + "].nodePort",
                     "Invalid value: 0: range is full");
    used_here[np].insert(protocol);
    p["nodePort"] = np;
    new_ports[{p.value("port", 0), protocol}] = np;
  }

  // ---- Commit: free what the old object held and this one does not, reserve the new.
  if (old) Release(*old);
  for (const auto& [addr, v6] : keep_or_take) RangeFor(v6)->used.insert(addr);
  for (const auto& [np, protocols] : used_here) node_ports_.insert(np);
  if (spec.contains("ports")) spec["ports"] = ports;
  if (type == "ExternalName") {
    spec.erase("clusterIP");
    spec.erase("clusterIPs");
    spec.erase("ipFamilies");
    spec.erase("ipFamilyPolicy");
  } else {
    spec["clusterIP"] = final_ips[0];
    spec["clusterIPs"] = final_ips;
    spec["ipFamilies"] = families_out;
    spec["ipFamilyPolicy"] = policy;
  }
  return std::nullopt;
}

void ServiceAllocator::Restore(json* service) {
  json& svc = *service;
  // Values that conflict are kept in the object (a manifest is restored state) but not
  // reserved; missing ones are allocated.
  json copy = svc;
  if (!Admit(&copy, nullptr)) {
    svc = std::move(copy);
    return;
  }
  if (!svc.contains("spec") || !svc["spec"].is_object()) return;
  for (const auto& ip : WantedIps(svc["spec"])) {
    auto parsed = ParseIp(ip);
    if (!parsed) continue;
    Range* r = RangeFor(parsed->second);
    if (r && InRange(*r, parsed->first)) r->used.insert(parsed->first);
  }
  for (int np : PortSet(NodePortsOf(&svc)))
    if (np >= port_first_ && np <= port_last_) node_ports_.insert(np);
}

void ServiceAllocator::Release(const json& service) {
  if (!service.contains("spec") || !service["spec"].is_object()) return;
  for (const auto& ip : WantedIps(service["spec"])) {
    auto parsed = ParseIp(ip);
    if (!parsed) continue;
    if (Range* r = RangeFor(parsed->second)) r->used.erase(parsed->first);
  }
  for (int np : PortSet(NodePortsOf(&service))) node_ports_.erase(np);
}

}  // namespace fake_apiserver
