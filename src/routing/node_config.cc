#include "kube_router/routing/node_config.h"

#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <charconv>
#include <map>

#include "kube_router/base/base64.h"
#include "kube_router/base/strings.h"
#include "kube_router/k8s/node_pod_cidrs.h"

namespace kr::routing {
namespace {

std::optional<uint64_t> ParseUnsigned(std::string_view text) {
  text = TrimBlanks(text);
  if (text.empty()) return std::nullopt;
  uint64_t value = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (ec != std::errc() || end != text.data() + text.size()) return std::nullopt;
  return value;
}

Result<uint16_t> ParsePort(std::string_view text) {
  auto value = ParseUnsigned(text);
  if (!value || *value == 0 || *value > 65535) {
    return Status::Error("invalid port \"" + std::string(text) + "\"");
  }
  return static_cast<uint16_t>(*value);
}

Result<IpAddress> ParseIp(std::string_view text) {
  auto ip = IpAddress::Parse(TrimBlanks(text));
  if (!ip) return Status::Error("invalid IP address \"" + std::string(text) + "\"");
  return *ip;
}

// Each setting parsed from one annotation; a failure becomes a problem naming both.
class ProblemLog {
 public:
  explicit ProblemLog(const std::string& node) : node_(node) {}
  void Add(const std::string& annotation, const std::string& what) {
    problems_.push_back("node " + node_ + ": annotation " + annotation + ": " + what +
                        " (ignored)");
  }
  void AddField(const std::string& what) { problems_.push_back("node " + node_ + ": " + what); }
  std::vector<std::string> Take() { return std::move(problems_); }

 private:
  std::string node_;
  std::vector<std::string> problems_;
};

const std::string* Annotation(const k8s::Node& node, const char* key) {
  auto it = node.meta.annotations.find(key);
  return it == node.meta.annotations.end() ? nullptr : &it->second;
}

void ParsePodCidrs(const k8s::Node& node, NodeInfo& info, ProblemLog& log) {
  auto parsed = k8s::PodCidrsOfNode(node);
  info.pod_cidrs = std::move(parsed.cidrs);
  for (const auto& problem : parsed.problems) log.AddField(problem);
}

template <typename T>
void ParseOptional(const k8s::Node& node, const char* key, std::optional<T>& out,
                   Result<T> (*parse)(std::string_view), ProblemLog& log) {
  const auto* text = Annotation(node, key);
  if (!text) return;
  auto value = parse(*text);
  if (!value) {
    log.Add(key, value.error());
    return;
  }
  out = *value;
}

void ParseExternalPeers(const k8s::Node& node, NodeInfo& info, ProblemLog& log) {
  // The YAML form wins over the legacy comma lists (kube-router v2.7+).
  if (const auto* yaml = Annotation(node, kAnnotationPeers)) {
    auto peers = ParsePeersYaml(*yaml);
    if (!peers) {
      log.Add(kAnnotationPeers, peers.error());
    } else {
      info.external_peers = std::move(*peers);
    }
    return;
  }
  const auto* ips = Annotation(node, kAnnotationPeerIps);
  const auto* asns = Annotation(node, kAnnotationPeerAsns);
  if (!ips && !asns) return;
  auto list = [&](const char* key) {
    const auto* text = Annotation(node, key);
    return text ? SplitList(*text) : std::vector<std::string>{};
  };
  auto peers = BuildPeerList(list(kAnnotationPeerIps), list(kAnnotationPeerAsns),
                             list(kAnnotationPeerPasswords), list(kAnnotationPeerPorts),
                             list(kAnnotationPeerLocalIps));
  if (!peers) {
    log.Add(kAnnotationPeerIps, peers.error());
    return;
  }
  info.external_peers = std::move(*peers);
}

void ParsePrepend(const k8s::Node& node, NodeInfo& info, ProblemLog& log) {
  const auto* as_text = Annotation(node, kAnnotationPrependAs);
  const auto* repeat_text = Annotation(node, kAnnotationPrependRepeat);
  if (!as_text && !repeat_text) return;
  if (!as_text || !repeat_text) {
    log.Add(as_text ? kAnnotationPrependAs : kAnnotationPrependRepeat,
            std::string("needs ") + (as_text ? kAnnotationPrependRepeat : kAnnotationPrependAs) +
                " as well");
    return;
  }
  auto asn = ParseAsn(*as_text);
  if (!asn) {
    log.Add(kAnnotationPrependAs, asn.error());
    return;
  }
  auto repeat = ParseUnsigned(*repeat_text);
  if (!repeat || *repeat < 1 || *repeat > 255) {
    log.Add(kAnnotationPrependRepeat, "repeat count must be 1-255, got \"" + *repeat_text + "\"");
    return;
  }
  info.prepend = PathPrepend{*asn, static_cast<uint8_t>(*repeat)};
}

void ParseCommunities(const k8s::Node& node, NodeInfo& info, ProblemLog& log) {
  const auto* text = Annotation(node, kAnnotationCommunities);
  if (!text) return;
  for (const auto& item : SplitList(*text)) {
    auto community = ParseCommunity(item);
    if (!community) {
      log.Add(kAnnotationCommunities, community.error());
      continue;
    }
    info.communities.push_back(*community);
  }
}

void ParseImportReject(const k8s::Node& node, NodeInfo& info, ProblemLog& log) {
  const auto* text = Annotation(node, kAnnotationCustomImportReject);
  if (!text) return;
  for (const auto& item : SplitList(*text)) {
    auto prefix = IpPrefix::Parse(item, /*strict=*/false);
    if (!prefix || item.find('/') == std::string::npos) {
      log.Add(kAnnotationCustomImportReject, "invalid CIDR \"" + item + "\"");
      continue;
    }
    info.custom_import_reject.push_back(*prefix);
  }
}

}  // namespace

std::optional<IpAddress> PrimaryNodeIp(const k8s::Node& node) {
  for (const char* type : {"InternalIP", "ExternalIP"}) {
    for (const auto& address : node.addresses) {
      if (address.type != type) continue;
      if (auto ip = IpAddress::Parse(address.address)) return ip;
    }
  }
  return std::nullopt;
}

Result<uint32_t> ParseAsn(std::string_view text) {
  auto value = ParseUnsigned(text);
  if (!value || *value > 0xFFFFFFFFull) {
    return Status::Error("invalid AS number \"" + std::string(text) + "\"");
  }
  // RFC 7607 (0), RFC 6793 (23456 AS_TRANS), RFC 7300 (65535, 4294967295).
  if (*value == 0 || *value == 23456 || *value == 65535 || *value == 0xFFFFFFFFull) {
    return Status::Error("reserved AS number " + std::to_string(*value));
  }
  return static_cast<uint32_t>(*value);
}

bool IsPrivateAsn(uint32_t asn) {
  return (asn >= 64512 && asn <= 65534) || (asn >= 4200000000u && asn <= 4294967294u);
}

Result<uint32_t> ParseClusterId(std::string_view text) {
  if (auto value = ParseUnsigned(text); value && *value <= 0xFFFFFFFFull) {
    return static_cast<uint32_t>(*value);
  }
  if (auto ip = IpAddress::Parse(TrimBlanks(text)); ip && ip->is_v4()) return ip->v4_host_order();
  return Status::Error("invalid route-reflector cluster ID \"" + std::string(text) +
                       "\" (want a 32-bit number or an IPv4 address)");
}

Result<uint32_t> ParseCommunity(std::string_view text) {
  // RFC 1997 / RFC 8326 / RFC 7999 / RFC 8642 well-known communities.
  static const std::map<std::string, uint32_t, std::less<>> kWellKnown = {
      {"no-export", 0xFFFFFF01},           {"no-advertise", 0xFFFFFF02},
      {"no-export-subconfed", 0xFFFFFF03}, {"no-peer", 0xFFFFFF04},
      {"graceful-shutdown", 0xFFFF0000},   {"accept-own", 0xFFFF0001},
      {"llgr-stale", 0xFFFF0006},          {"no-llgr", 0xFFFF0007},
      {"blackhole", 0xFFFF029A},
  };
  auto trimmed = TrimBlanks(text);
  std::string lower(trimmed);
  std::transform(lower.begin(), lower.end(), lower.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  if (auto it = kWellKnown.find(lower); it != kWellKnown.end()) return it->second;
  auto bad = [&] { return Status::Error("invalid BGP community \"" + std::string(text) + "\""); };
  size_t colon = trimmed.find(':');
  if (colon == std::string_view::npos) {
    auto value = ParseUnsigned(trimmed);
    if (!value || *value > 0xFFFFFFFFull) return bad();
    return static_cast<uint32_t>(*value);
  }
  auto high = ParseUnsigned(trimmed.substr(0, colon));
  auto low = ParseUnsigned(trimmed.substr(colon + 1));
  if (!high || !low || *high > 0xFFFF || *low > 0xFFFF) return bad();
  return static_cast<uint32_t>((*high << 16) | *low);
}

Result<std::vector<PeerSpec>> BuildPeerList(const std::vector<std::string>& ips,
                                            const std::vector<std::string>& asns,
                                            const std::vector<std::string>& passwords,
                                            const std::vector<std::string>& ports,
                                            const std::vector<std::string>& local_ips) {
  auto mismatch = [&](const char* what, size_t n) {
    return Status::Error(std::to_string(ips.size()) + " peer IPs but " + std::to_string(n) + " " +
                         what);
  };
  if (asns.size() != ips.size()) return mismatch("ASNs", asns.size());
  if (!passwords.empty() && passwords.size() != ips.size()) {
    return mismatch("passwords", passwords.size());
  }
  if (!ports.empty() && ports.size() != ips.size()) return mismatch("ports", ports.size());
  if (!local_ips.empty() && local_ips.size() != ips.size()) {
    return mismatch("local IPs", local_ips.size());
  }
  std::vector<PeerSpec> peers;
  for (size_t i = 0; i < ips.size(); ++i) {
    PeerSpec peer;
    peer.external = true;
    auto ip = ParseIp(ips[i]);
    if (!ip) return ip.status().Context("peer " + std::to_string(i + 1));
    peer.address = *ip;
    auto asn = ParseAsn(asns[i]);
    if (!asn) return asn.status().Context("peer " + ips[i]);
    peer.asn = *asn;
    if (!passwords.empty() && !passwords[i].empty()) {
      auto password = Base64Decode(passwords[i]);
      // The message must not include the password text itself.
      if (!password) return Status::Error("password of peer " + ips[i] + ": invalid base64");
      peer.password = std::move(*password);
    }
    if (!ports.empty() && !ports[i].empty()) {
      auto port = ParsePort(ports[i]);
      if (!port) return port.status().Context("peer " + ips[i]);
      peer.port = *port;
    }
    if (!local_ips.empty() && !local_ips[i].empty()) {
      auto local = ParseIp(local_ips[i]);
      if (!local) return local.status().Context("local IP of peer " + ips[i]);
      peer.local_address = *local;
    }
    peers.push_back(std::move(peer));
  }
  return peers;
}

Result<std::vector<PeerSpec>> ParsePeersYaml(std::string_view yaml) {
  try {
    YAML::Node root = YAML::Load(std::string(yaml));
    if (!root.IsSequence()) return Status::Error("YAML is not a list of peers");
    std::vector<PeerSpec> peers;
    for (size_t i = 0; i < root.size(); ++i) {
      const YAML::Node entry = root[i];
      std::string where = "peer " + std::to_string(i + 1);
      if (!entry.IsMap()) return Status::Error(where + " is not a map");
      for (const char* key : {"remoteip", "remoteasn", "password", "port", "localip"}) {
        const YAML::Node value = entry[key];
        if (value && !value.IsNull() && !value.IsScalar()) {
          return Status::Error(where + ": " + key + " is not a single value");
        }
      }
      auto field = [&](const char* key) -> std::optional<std::string> {
        const YAML::Node value = entry[key];
        if (!value || value.IsNull()) return std::nullopt;
        return value.as<std::string>();
      };
      auto remote_ip = field("remoteip");
      auto remote_asn = field("remoteasn");
      if (!remote_ip || !remote_asn) {
        return Status::Error(where + " needs remoteip and remoteasn");
      }
      auto peer = BuildPeerList({*remote_ip}, {*remote_asn}, {field("password").value_or("")},
                                {field("port").value_or("")}, {field("localip").value_or("")});
      if (!peer) return peer.status().Context(where);
      peers.push_back(std::move(peer->front()));
    }
    return peers;
  } catch (const YAML::Exception& e) {
    return Status::Error(std::string("bad YAML: ") + e.what());
  }
}

std::optional<IpAddress> NodeIpOfFamily(const k8s::Node& node, IpAddress::Family family) {
  for (const char* type : {"InternalIP", "ExternalIP"}) {
    for (const auto& address : node.addresses) {
      if (address.type != type) continue;
      auto ip = IpAddress::Parse(address.address);
      if (ip && ip->family() == family) return ip;
    }
  }
  return std::nullopt;
}

std::optional<IpAddress> AddressOf(const NodeInfo& node, IpAddress::Family family) {
  const auto& own = family == IpAddress::Family::kV4 ? node.ipv4 : node.ipv6;
  if (own) return own;
  if (node.ip && node.ip->family() == family) return node.ip;
  return std::nullopt;
}

ParsedNode ParseNode(const k8s::Node& node) {
  ParsedNode parsed;
  NodeInfo& info = parsed.info;
  ProblemLog log(node.meta.name);
  info.name = node.meta.name;
  info.ip = PrimaryNodeIp(node);
  info.ipv4 = NodeIpOfFamily(node, IpAddress::Family::kV4);
  info.ipv6 = NodeIpOfFamily(node, IpAddress::Family::kV6);
  if (!info.ip) log.AddField("no InternalIP or ExternalIP address");
  ParsePodCidrs(node, info, log);
  ParseOptional<uint32_t>(node, kAnnotationNodeAsn, info.asn, ParseAsn, log);
  ParseOptional<uint32_t>(node, kAnnotationRrServer, info.rr_server_cluster_id, ParseClusterId,
                          log);
  ParseOptional<uint32_t>(node, kAnnotationRrClient, info.rr_client_cluster_id, ParseClusterId,
                          log);
  ParseExternalPeers(node, info, log);
  ParsePrepend(node, info, log);
  ParseCommunities(node, info, log);
  ParseImportReject(node, info, log);
  parsed.problems = log.Take();
  return parsed;
}

}  // namespace kr::routing
