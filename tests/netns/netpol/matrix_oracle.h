// An independent model of NetworkPolicy semantics for the randomized matrix test, written from
// the Kubernetes API reference (networking.k8s.io/v1 NetworkPolicy) and the concepts page, not
// from our compiler: it reads the policies as the API server returns them (JSON) and says
// whether one pod may open a connection to another on a protocol and port.
//
// The rules it encodes:
//  * A pod is isolated for ingress (egress) when any policy in its namespace selects it
//    (spec.podSelector; {} selects all) and lists Ingress (Egress) in spec.policyTypes. When
//    policyTypes is absent the server defaults it to Ingress, plus Egress if spec.egress has at
//    least one rule.
//  * A connection needs both ends: the sender's egress allows it (not isolated, or some egress
//    rule of a policy selecting the sender matches) AND the receiver's ingress allows it.
//  * A rule matches when one of its peers matches (no peers: every peer) and one of its ports
//    matches (no ports: every port and protocol).
//  * A peer is an ipBlock (the other pod's IP is in cidr and in no except), or selectors:
//    podSelector alone = those pods in the policy's namespace; namespaceSelector alone = every
//    pod of the matching namespaces; both = the matching pods of the matching namespaces.
//  * A port matches the protocol (default TCP); without `port` every port of it; a number, or
//    number..endPort; a name = the destination pod's container port of that name and protocol.
//  * Label selectors: matchLabels and matchExpressions ANDed; In (key present, value listed),
//    NotIn (key absent or value not listed), Exists, DoesNotExist; an empty selector matches all.
//    Namespaces carry kubernetes.io/metadata.name = their name.
#pragma once

#include <arpa/inet.h>

#include <algorithm>
#include <cstdint>
#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace kr::netpol::testing::oracle {

using Labels = std::map<std::string, std::string>;
using Json = nlohmann::json;

struct NamedPortDef {
  std::string name;
  int number;
  std::string protocol;  // "TCP" | "UDP"
};

struct ModelPod {
  std::string ns;
  std::string name;
  std::string ip;  // IPv4
  Labels labels;
  std::vector<NamedPortDef> ports;
};

struct Model {
  std::map<std::string, Labels> namespaces;  // name -> labels (metadata.name label included)
  std::vector<ModelPod> pods;
  std::vector<Json> policies;  // NetworkPolicy objects as the API returns them
};

inline bool HasLabel(const Labels& labels, const std::string& key) { return labels.count(key); }

inline bool SelectorMatches(const Json& selector, const Labels& labels) {
  if (selector.contains("matchLabels")) {
    for (const auto& [key, value] : selector["matchLabels"].items()) {
      auto it = labels.find(key);
      if (it == labels.end() || it->second != value.get<std::string>()) return false;
    }
  }
  if (selector.contains("matchExpressions")) {
    for (const auto& expr : selector["matchExpressions"]) {
      std::string key = expr["key"];
      std::string op = expr["operator"];
      std::vector<std::string> values;
      if (expr.contains("values")) values = expr["values"].get<std::vector<std::string>>();
      auto it = labels.find(key);
      bool present = it != labels.end();
      bool listed = present && std::find(values.begin(), values.end(), it->second) != values.end();
      bool ok = op == "In"             ? listed
                : op == "NotIn"        ? !listed
                : op == "Exists"       ? present
                : op == "DoesNotExist" ? !present
                                       : false;
      if (!ok) return false;
    }
  }
  return true;
}

inline uint32_t Ipv4(const std::string& text) {
  in_addr addr{};
  inet_pton(AF_INET, text.c_str(), &addr);
  return ntohl(addr.s_addr);
}

inline bool InCidr(const std::string& ip, const std::string& cidr) {
  auto slash = cidr.find('/');
  int length = std::stoi(cidr.substr(slash + 1));
  uint32_t mask = length == 0 ? 0 : ~uint32_t{0} << (32 - length);
  return (Ipv4(ip) & mask) == (Ipv4(cidr.substr(0, slash)) & mask);
}

inline bool PeerMatches(const Model& model, const std::string& policy_ns, const Json& peer,
                        const ModelPod& other) {
  if (peer.contains("ipBlock")) {
    const Json& block = peer["ipBlock"];
    if (!InCidr(other.ip, block["cidr"])) return false;
    if (block.contains("except")) {
      for (const auto& except : block["except"]) {
        if (InCidr(other.ip, except)) return false;
      }
    }
    return true;
  }
  bool ns_ok = peer.contains("namespaceSelector")
                   ? SelectorMatches(peer["namespaceSelector"], model.namespaces.at(other.ns))
                   : other.ns == policy_ns;
  bool pod_ok = !peer.contains("podSelector") || SelectorMatches(peer["podSelector"], other.labels);
  return ns_ok && pod_ok;
}

inline bool PortMatches(const Json& rule, const std::string& protocol, int port,
                        const ModelPod& destination) {
  if (!rule.contains("ports") || rule["ports"].empty()) return true;
  for (const auto& p : rule["ports"]) {
    std::string proto = p.contains("protocol") ? p["protocol"].get<std::string>() : "TCP";
    if (proto != protocol) continue;
    if (!p.contains("port")) return true;
    if (p["port"].is_number()) {
      int first = p["port"];
      int last = p.contains("endPort") ? p["endPort"].get<int>() : first;
      if (port >= first && port <= last) return true;
      continue;
    }
    std::string name = p["port"];
    for (const auto& def : destination.ports) {
      if (def.name == name && def.protocol == proto && def.number == port) return true;
    }
  }
  return false;
}

inline std::vector<std::string> PolicyTypes(const Json& spec) {
  if (spec.contains("policyTypes")) return spec["policyTypes"].get<std::vector<std::string>>();
  std::vector<std::string> types = {"Ingress"};
  if (spec.contains("egress") && !spec["egress"].empty()) types.push_back("Egress");
  return types;
}

// Whether `pod`'s side allows the connection in `direction` ("Ingress": `pod` receives from
// `other`; "Egress": `pod` sends to `other`).
inline bool SideAllows(const Model& model, const ModelPod& pod, const ModelPod& other,
                       const std::string& direction, const std::string& protocol, int port) {
  bool isolated = false;
  const ModelPod& destination = direction == "Ingress" ? pod : other;
  const char* rules_field = direction == "Ingress" ? "ingress" : "egress";
  const char* peers_field = direction == "Ingress" ? "from" : "to";
  for (const auto& policy : model.policies) {
    const std::string ns = policy["metadata"]["namespace"];
    const Json& spec = policy["spec"];
    if (ns != pod.ns) continue;
    if (!SelectorMatches(spec.value("podSelector", Json::object()), pod.labels)) continue;
    auto types = PolicyTypes(spec);
    if (std::find(types.begin(), types.end(), direction) == types.end()) continue;
    isolated = true;
    if (!spec.contains(rules_field)) continue;
    for (const auto& rule : spec[rules_field]) {
      bool peer_ok = !rule.contains(peers_field) || rule[peers_field].empty();
      if (!peer_ok) {
        for (const auto& peer : rule[peers_field]) {
          if (PeerMatches(model, ns, peer, other)) {
            peer_ok = true;
            break;
          }
        }
      }
      if (peer_ok && PortMatches(rule, protocol, port, destination)) return true;
    }
  }
  return !isolated;
}

inline bool Allowed(const Model& model, const ModelPod& from, const ModelPod& to,
                    const std::string& protocol, int port) {
  return SideAllows(model, from, to, "Egress", protocol, port) &&
         SideAllows(model, to, from, "Ingress", protocol, port);
}

}  // namespace kr::netpol::testing::oracle
