#include "kube_router/routing/bgp_plan.h"

#include <algorithm>
#include <map>

namespace kr::routing {
namespace {

bool SameFamily(const IpAddress& a, const IpAddress& b) { return a.family() == b.family(); }

IpPrefix HostPrefix(const IpAddress& ip) { return IpPrefix(ip, ip.bit_length()); }

const char* FamilyName(IpAddress::Family family) {
  return family == IpAddress::Family::kV4 ? "IPv4" : "IPv6";
}

// A per-service "true"/"false" annotation overriding a flag; anything else keeps the flag.
bool FlagOrAnnotation(const k8s::Service& service, const char* key, bool flag) {
  auto it = service.meta.annotations.find(key);
  if (it == service.meta.annotations.end()) return flag;
  if (it->second == "true") return true;
  if (it->second == "false") return false;
  return flag;
}

// Services whose EndpointSlices list an endpoint on this node, as "namespace/name".
std::set<std::string> ServicesWithLocalEndpoints(
    const NodeInfo& self, const std::vector<std::shared_ptr<const k8s::EndpointSlice>>& slices) {
  std::set<std::string> local;
  std::vector<std::string> node_ips;
  for (const auto& ip : {self.ip, self.ipv4, self.ipv6}) {
    if (ip) node_ips.push_back(ip->ToString());
  }
  for (const auto& slice : slices) {
    if (!slice || slice->service_name.empty()) continue;
    for (const auto& endpoint : slice->endpoints) {
      if (!endpoint.ready && !endpoint.serving) continue;
      bool on_this_node = endpoint.node_name == self.name ||
                          std::any_of(node_ips.begin(), node_ips.end(), [&](const auto& ip) {
                            return std::find(endpoint.addresses.begin(), endpoint.addresses.end(),
                                             ip) != endpoint.addresses.end();
                          });
      if (on_this_node) {
        local.insert(slice->meta.namespace_ + "/" + slice->service_name);
        break;
      }
    }
  }
  return local;
}

bool Advertisable(const k8s::Service& service) {
  if (service.type == "ExternalName") return false;
  return true;
}

std::vector<std::string> ClusterIps(const k8s::Service& service) {
  std::vector<std::string> ips = service.cluster_ips.ToVector();
  std::erase_if(ips, [](const std::string& ip) { return ip.empty() || ip == "None"; });
  return ips;
}

}  // namespace

const char* RouteKindName(RouteKind kind) {
  switch (kind) {
    case RouteKind::kPodCidr:
      return "pod-route";
    case RouteKind::kClusterIp:
      return "cluster-ip";
    case RouteKind::kExternalIp:
      return "external-ip";
    case RouteKind::kLoadBalancerIp:
      return "loadbalancer-ip";
  }
  return "unknown";
}

std::vector<std::string> ApplyFamilies(const RoutingConfig& config, NodeInfo& node) {
  std::vector<std::string> problems;
  if (!config.enable_ipv4) node.ipv4.reset();
  if (!config.enable_ipv6) node.ipv6.reset();
  if (node.ip && !config.FamilyEnabled(node.ip->family())) {
    node.ip = node.ip->is_v4() ? node.ipv6 : node.ipv4;
  }
  std::erase_if(node.pod_cidrs, [&](const IpPrefix& cidr) {
    const auto family = cidr.address().family();
    if (!config.FamilyEnabled(family)) return true;
    if (AddressOf(node, family)) return false;
    problems.push_back("node " + node.name + ": pod CIDR " + cidr.ToString() + " is " +
                       FamilyName(family) + " but the node has no " + FamilyName(family) +
                       " InternalIP or ExternalIP to route it to (skipped)");
    return true;
  });
  return problems;
}

Result<uint32_t> LocalAsn(const RoutingConfig& config, const NodeInfo& self) {
  if (config.nodes_full_mesh) return config.cluster_asn;
  if (!self.asn) {
    return Status::Error("node " + self.name + ": --nodes-full-mesh=false needs the annotation " +
                         kAnnotationNodeAsn);
  }
  return *self.asn;
}

std::vector<PeerSpec> PlanInternalPeers(const RoutingConfig& config, const NodeInfo& self,
                                        uint32_t local_asn, const std::vector<NodeInfo>& nodes) {
  std::vector<PeerSpec> peers;
  if (!config.enable_ibgp || !self.ip) return peers;
  for (const auto& node : nodes) {
    if (node.name == self.name || !node.ip || !SameFamily(*node.ip, *self.ip)) continue;
    if (*node.ip == *self.ip) continue;
    // kube-router bgp_peers.go (syncInternalPeers).
    if (self.rr_client_cluster_id && !node.rr_server_cluster_id) continue;
    if (!config.nodes_full_mesh && node.asn != std::optional<uint32_t>(local_asn)) continue;
    PeerSpec peer;
    peer.address = *node.ip;
    peer.asn = local_asn;
    peer.port = config.bgp_port;
    peer.local_address = self.ip;
    peer.node_name = node.name;
    if (self.rr_server_cluster_id && node.rr_client_cluster_id) {
      peer.route_reflector_client = true;
      peer.cluster_id = *self.rr_server_cluster_id;
    }
    peers.push_back(std::move(peer));
  }
  std::sort(peers.begin(), peers.end(),
            [](const PeerSpec& a, const PeerSpec& b) { return a.address < b.address; });
  return peers;
}

std::vector<PeerSpec> PlanExternalPeers(const RoutingConfig& config, const NodeInfo& self,
                                        std::vector<std::string>* problems) {
  const std::vector<PeerSpec>& configured =
      config.global_peers.empty() ? self.external_peers : config.global_peers;
  std::vector<PeerSpec> peers;
  for (PeerSpec peer : configured) {
    // The session runs in the peer's family, from this node's address of that family
    // (kube-router skips peers it cannot reach that way too).
    const auto family = peer.address.family();
    const std::string name = FamilyName(family);
    std::string why;
    if (!config.FamilyEnabled(family)) {
      why = name + " is disabled (--enable-" +
            (family == IpAddress::Family::kV4 ? "ipv4" : "ipv6") + "=false)";
    } else if (peer.local_address && !SameFamily(*peer.local_address, peer.address)) {
      why = "its local address " + peer.local_address->ToString() + " is not " + name;
    } else if (!peer.local_address && !AddressOf(self, family)) {
      why = "node " + self.name + " has no " + name + " address";
    }
    if (!why.empty()) {
      if (problems) {
        problems->push_back("external BGP peer " + peer.address.ToString() + " (AS " +
                            std::to_string(peer.asn) + "): " + why + "; skipped");
      }
      continue;
    }
    peer.external = true;
    if (!peer.local_address) peer.local_address = AddressOf(self, family);
    if (config.peer_multihop_ttl >= 2) peer.multihop_ttl = config.peer_multihop_ttl;
    peers.push_back(std::move(peer));
  }
  return peers;
}

std::vector<Advertisement> PlanPodCidrAdvertisements(const NodeInfo& self) {
  std::vector<Advertisement> out;
  for (const auto& cidr : self.pod_cidrs) {
    // An IPv6 pod CIDR goes out with the node's IPv6 address as next hop (MP_REACH), whatever
    // family the session runs in.
    auto next_hop = AddressOf(self, cidr.address().family());
    if (!next_hop) continue;
    out.push_back({cidr, *next_hop, RouteKind::kPodCidr});
  }
  return out;
}

std::vector<Advertisement> PlanServiceAdvertisements(
    const RoutingConfig& config, const NodeInfo& self,
    const std::vector<std::shared_ptr<const k8s::Service>>& services,
    const std::vector<std::shared_ptr<const k8s::EndpointSlice>>& slices) {
  std::set<Advertisement> out;
  const std::set<std::string> local = ServicesWithLocalEndpoints(self, slices);
  auto add = [&](const std::string& text, RouteKind kind) {
    auto ip = IpAddress::Parse(text);
    if (!ip || !config.FamilyEnabled(ip->family())) return;
    auto next_hop = AddressOf(self, ip->family());
    if (!next_hop) return;
    out.insert({HostPrefix(*ip), *next_hop, kind});
  };
  for (const auto& service : services) {
    if (!service || !Advertisable(*service)) continue;
    const bool has_local = local.count(service->meta.Key()) > 0;
    // kube-router ecmp_vip.go: Local policies advertise only from nodes with an endpoint.
    const bool internal_local = service->internal_traffic_policy == "Local";
    auto service_local = service->meta.annotations.find(kAnnotationServiceLocal);
    const bool external_local =
        service->external_traffic_policy == "Local" ||
        (service_local != service->meta.annotations.end() && service_local->second == "true");

    if (FlagOrAnnotation(*service, kAnnotationAdvertiseClusterIp, config.advertise_cluster_ip) &&
        (!internal_local || has_local)) {
      for (const auto& ip : ClusterIps(*service)) add(ip, RouteKind::kClusterIp);
    }
    if (external_local && !has_local) continue;
    if (FlagOrAnnotation(*service, kAnnotationAdvertiseExternalIp, config.advertise_external_ip)) {
      for (const auto& ip : service->external_ips) add(ip, RouteKind::kExternalIp);
    }
    const bool skip_lb = service->meta.annotations.count(kAnnotationSkipLbIps) > 0;
    if (!skip_lb &&
        FlagOrAnnotation(*service, kAnnotationAdvertiseLbIp, config.advertise_loadbalancer_ip)) {
      for (const auto& ingress : service->load_balancer_ingress) {
        if (!ingress.ip.empty()) add(ingress.ip, RouteKind::kLoadBalancerIp);
      }
    }
  }
  // One VIP shared by two services is advertised once (the first kind wins).
  std::vector<Advertisement> unique;
  for (const auto& ad : out) {
    if (!unique.empty() && unique.back().prefix == ad.prefix) continue;
    unique.push_back(ad);
  }
  return unique;
}

std::set<IpAddress> AllServiceVips(
    const std::vector<std::shared_ptr<const k8s::Service>>& services) {
  std::set<IpAddress> vips;
  auto add = [&](const std::string& text) {
    if (auto ip = IpAddress::Parse(text)) vips.insert(*ip);
  };
  for (const auto& service : services) {
    if (!service) continue;
    for (const auto& ip : ClusterIps(*service)) add(ip);
    for (const auto& ip : service->external_ips) add(ip);
    for (const auto& ingress : service->load_balancer_ingress) add(ingress.ip);
  }
  return vips;
}

ExportDecision DecideExport(const RoutingConfig& config, const NodeInfo& self, const PeerSpec& peer,
                            RouteKind kind) {
  ExportDecision decision;
  if (!peer.external) {
    // iBGP carries only pod CIDRs; VIPs go to external routers only.
    decision.accept = kind == RouteKind::kPodCidr;
    return decision;
  }
  decision.accept = kind != RouteKind::kPodCidr || config.advertise_pod_cidr;
  if (!decision.accept) return decision;
  decision.communities = self.communities;
  decision.prepend = self.prepend;
  decision.next_hop_self = config.override_nexthop;
  return decision;
}

bool AcceptImport(const ImportFilter& filter, const IpPrefix& prefix) {
  if (prefix.length() == 0) return false;  // default route
  if (prefix.length() == prefix.address().bit_length() &&
      filter.service_vips.count(prefix.address())) {
    return false;
  }
  for (const auto& reject : filter.reject) {
    if (reject.is_v4() == prefix.is_v4() && reject.Contains(prefix)) return false;
  }
  return true;
}

namespace {

bool Overlaps(const IpPrefix& a, const IpPrefix& b) {
  return a.is_v4() == b.is_v4() && (a.Contains(b) || b.Contains(a));
}

// Address space no peer may route to this node, by family.
struct SpecialRange {
  const char* cidr;
  ImportVerdict verdict;
};
constexpr SpecialRange kSpecialRanges[] = {
    {"0.0.0.0/8", ImportVerdict::kUnspecified},    {"127.0.0.0/8", ImportVerdict::kLoopback},
    {"169.254.0.0/16", ImportVerdict::kLinkLocal}, {"224.0.0.0/4", ImportVerdict::kMulticast},
    {"::/128", ImportVerdict::kUnspecified},       {"::1/128", ImportVerdict::kLoopback},
    {"fe80::/10", ImportVerdict::kLinkLocal},      {"ff00::/8", ImportVerdict::kMulticast},
};

const std::vector<std::pair<IpPrefix, ImportVerdict>>& SpecialRanges() {
  static const auto* ranges = [] {
    auto* out = new std::vector<std::pair<IpPrefix, ImportVerdict>>;
    for (const auto& r : kSpecialRanges) out->emplace_back(*IpPrefix::Parse(r.cidr), r.verdict);
    return out;
  }();
  return *ranges;
}

}  // namespace

const char* ImportVerdictName(ImportVerdict verdict) {
  switch (verdict) {
    case ImportVerdict::kAccept:
      return "accepted";
    case ImportVerdict::kDefaultRoute:
      return "default route";
    case ImportVerdict::kServiceVip:
      return "service VIP";
    case ImportVerdict::kCustomReject:
      return "customimportreject";
    case ImportVerdict::kUnspecified:
      return "unspecified address space";
    case ImportVerdict::kLoopback:
      return "loopback";
    case ImportVerdict::kLinkLocal:
      return "link-local";
    case ImportVerdict::kMulticast:
      return "multicast";
    case ImportVerdict::kServiceRange:
      return "service range";
    case ImportVerdict::kNodeAddress:
      return "covers a node address";
    case ImportVerdict::kNodeSubnet:
      return "covers a node subnet";
    case ImportVerdict::kUnusableNextHop:
      return "unusable next hop";
    case ImportVerdict::kNotANodesPodCidr:
      return "not the announcing node's pod CIDR";
  }
  return "?";
}

ImportVerdict DecideImport(const ImportFilter& filter, bool from_node_peer, const IpPrefix& prefix,
                           const IpAddress& next_hop) {
  if (prefix.length() == 0) return ImportVerdict::kDefaultRoute;
  if (prefix.length() == prefix.address().bit_length() &&
      filter.service_vips.count(prefix.address())) {
    return ImportVerdict::kServiceVip;
  }
  for (const auto& reject : filter.reject) {
    if (reject.is_v4() == prefix.is_v4() && reject.Contains(prefix)) {
      return ImportVerdict::kCustomReject;
    }
  }
  for (const auto& [range, verdict] : SpecialRanges()) {
    if (Overlaps(range, prefix)) return verdict;
  }
  for (const auto& range : filter.service_ranges) {
    if (Overlaps(range, prefix)) return ImportVerdict::kServiceRange;
  }
  for (const auto& address : filter.node_addresses) {
    if (address.family() == prefix.address().family() && prefix.Contains(address)) {
      return ImportVerdict::kNodeAddress;
    }
  }
  for (const auto& subnet : filter.node_subnets) {
    if (subnet.is_v4() == prefix.is_v4() && prefix.Contains(subnet)) {
      return ImportVerdict::kNodeSubnet;
    }
  }
  for (const auto& [range, verdict] : SpecialRanges()) {
    if (range.Contains(next_hop)) return ImportVerdict::kUnusableNextHop;
  }
  if (from_node_peer) {
    // kube-router nodes send each other their pod CIDRs only (a reflector passes them on
    // with the owner's next hop); anything else from a node is refused.
    auto owner = filter.pod_cidr_owners.find(prefix);
    if (owner == filter.pod_cidr_owners.end() || !owner->second.count(next_hop)) {
      return ImportVerdict::kNotANodesPodCidr;
    }
  }
  return ImportVerdict::kAccept;
}

}  // namespace kr::routing
