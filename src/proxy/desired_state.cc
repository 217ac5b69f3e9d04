#include "kube_router/proxy/desired_state.h"

#include <algorithm>
#include <map>

#include "kube_router/base/strings.h"

namespace kr::proxy {
namespace {

using netlink::IpvsDestination;
using netlink::IpvsProtocol;

constexpr int32_t kMaxAffinitySeconds = 86400;  // the API's limit for timeoutSeconds
constexpr int32_t kDefaultAffinitySeconds = 10800;

bool IsLinkLocalV6(const IpAddress& ip) {
  return ip.is_v6() && ip.bytes()[0] == 0xfe && (ip.bytes()[1] & 0xc0) == 0x80;
}

std::optional<IpvsProtocol> ParseProtocol(const std::string& text) {
  if (text == "TCP" || text.empty()) return IpvsProtocol::kTcp;
  if (text == "UDP") return IpvsProtocol::kUdp;
  if (text == "SCTP") return IpvsProtocol::kSctp;
  return std::nullopt;
}

std::string SkipReason(const k8s::Service& svc, const std::vector<std::string>& cluster_ips) {
  if (svc.type == "ExternalName") return "type ExternalName";
  auto proxy = svc.meta.labels.find(kLabelServiceProxyName);
  if (proxy != svc.meta.labels.end() && proxy->second != kProxyName) {
    return std::string("label ") + kLabelServiceProxyName + "=" + proxy->second;
  }
  if (svc.meta.labels.contains(kLabelHeadless)) return std::string("label ") + kLabelHeadless;
  bool any = std::any_of(cluster_ips.begin(), cluster_ips.end(),
                         [](const std::string& ip) { return !ip.empty() && ip != "None"; });
  if (!any) return "headless (no cluster IP)";
  return "";
}

// One endpoint address of one slice for one service port.
struct Candidate {
  DestinationId id;
  bool ready = false;
  bool serving_terminating = false;
  bool local = false;
};

// KEP-1669 (as kube-proxy): ready endpoints; only when there is none, the serving ones that
// are terminating. With a Local policy the same rule applies to this node's endpoints alone.
Destinations Select(const std::vector<Candidate>& all, bool v6, bool local_only) {
  std::vector<IpvsDestination> ready, terminating;
  for (const Candidate& c : all) {
    if (c.id.address.is_v6() != v6 || (local_only && !c.local)) continue;
    IpvsDestination d;
    d.address = c.id.address;
    d.port = c.id.port;
    d.forward = netlink::IpvsForward::kMasquerade;
    d.weight = 1;
    if (c.ready) ready.push_back(d);
    if (c.serving_terminating) terminating.push_back(d);
  }
  return Destinations::FromUnsorted(ready.empty() ? std::move(terminating) : std::move(ready));
}

class Builder {
 public:
  Builder(const k8s::Service& svc, const std::vector<SlicePtr>& slices, const NodeFacts& node,
          const ProxyConfig& config)
      : svc_(svc), slices_(slices), node_(node), config_(config) {
    out_.name = {svc.meta.namespace_, svc.meta.name};
  }

  DesiredService Build() {
    std::vector<std::string> ips = svc_.cluster_ips.ToVector();  // none: skipped as headless
    out_.notes.SetSkipped(SkipReason(svc_, ips));
    if (!out_.skipped().empty()) return std::move(out_);
    for (const auto& text : ips) {
      if (text.empty() || text == "None") continue;
      auto ip = IpAddress::Parse(text);
      if (!ip) {
        Problem("clusterIP \"" + text + "\" is not an IP address; skipped");
        continue;
      }
      if (!config_.FamilyEnabled(*ip)) continue;  // a family this node does not serve
      if (std::find(cluster_ips_.begin(), cluster_ips_.end(), *ip) == cluster_ips_.end()) {
        cluster_ips_.push_back(*ip);
      }
    }
    if (cluster_ips_.empty()) {
      out_.notes.SetSkipped("no cluster IP of an enabled family");
      return std::move(out_);
    }
    ReadAnnotations();
    external_ips_ = Validated(svc_.external_ips, config_.external_ip_ranges, "externalIP",
                              "--service-external-ip-range");
    std::vector<std::string> lb_texts;
    if (!svc_.meta.annotations.contains(kAnnotationSkipLbIps)) {
      for (const auto& ingress : svc_.load_balancer_ingress) {
        if (ingress.ip.empty() || ingress.ip_mode == "Proxy") continue;
        lb_texts.push_back(ingress.ip);
      }
    }
    lb_ips_ = Validated(lb_texts, config_.loadbalancer_ip_ranges, "LoadBalancer ingress IP",
                        "--loadbalancer-ip-range");
    for (const auto& port : svc_.ports) AddPort(port);
    out_.cluster_ips = cluster_ips_;
    out_.external_ips = external_ips_;
    out_.load_balancer_ips = lb_ips_;
    // (Grown by doubling: no spare slots kept for as long as the Service is.)
    out_.ports.shrink_to_fit();
    out_.virtual_services.shrink_to_fit();
    std::sort(out_.vips.begin(), out_.vips.end());
    out_.vips.erase(std::unique(out_.vips.begin(), out_.vips.end()), out_.vips.end());
    out_.vips.shrink_to_fit();
    std::sort(out_.virtual_services.begin(), out_.virtual_services.end(),
              [](const DesiredVirtualService& a, const DesiredVirtualService& b) {
                return a.vs.id() < b.vs.id();
              });
    return std::move(out_);
  }

 private:
  void Problem(const std::string& text) {
    out_.notes.AddProblem("service " + out_.name.ToString() + ": " + text);
  }

  void ReadAnnotations() {
    const auto& a = svc_.meta.annotations;
    if (auto it = a.find(kAnnotationScheduler); it != a.end()) {
      if (auto sched = ParseScheduler(it->second)) {
        scheduler_ = *sched;
      } else {
        Problem(std::string("unknown scheduler \"") + it->second + "\" in " + kAnnotationScheduler +
                " (want rr, lc, dh, sh or mh); using rr");
      }
    }
    if (auto it = a.find(kAnnotationSchedFlags); it != a.end()) {
      for (const auto& flag : SplitList(it->second)) {
        if (flag == "flag-1") {
          sched_flags_ |= netlink::ipvs_flags::kSchedFlag1;
        } else if (flag == "flag-2") {
          sched_flags_ |= netlink::ipvs_flags::kSchedFlag2;
        } else if (flag == "flag-3") {
          sched_flags_ |= netlink::ipvs_flags::kSchedFlag3;
        } else {
          Problem("unknown flag \"" + flag + "\" in " + kAnnotationSchedFlags +
                  " (want flag-1, flag-2, flag-3); ignored");
        }
      }
    }
    // As kube-router: the scheduler flags mean something only to the Maglev scheduler.
    if (scheduler_ != "mh") sched_flags_ = 0;
    if (svc_.session_affinity == "ClientIP") {
      int32_t t = svc_.session_affinity_timeout_seconds;
      if (t <= 0 || t > kMaxAffinitySeconds) {
        Problem("sessionAffinityConfig.clientIP.timeoutSeconds " + std::to_string(t) +
                " is outside 1..86400; using 10800");
        t = kDefaultAffinitySeconds;
      }
      affinity_timeout_ = static_cast<uint32_t>(t);
    } else if (svc_.session_affinity != "None" && !svc_.session_affinity.empty()) {
      Problem("unknown sessionAffinity \"" + svc_.session_affinity + "\"; using None");
    }
    external_local_ = svc_.external_traffic_policy == "Local" ||
                      (a.contains(kAnnotationLocal) && a.at(kAnnotationLocal) == "true");
    internal_local_ = svc_.internal_traffic_policy == "Local";
    hairpin_ = config_.hairpin_mode || a.contains(kAnnotationHairpin);
    hairpin_external_ = a.contains(kAnnotationHairpinExternalIps);
    dsr_ = a.contains(kAnnotationDsr) && a.at(kAnnotationDsr) == "tunnel";
  }

  // kube-router's svcip validator: never inside the cluster range; with strict validation
  // (the default) only inside the configured ranges, and nothing when none is configured.
  std::vector<IpAddress> Validated(const std::vector<std::string>& texts,
                                   const std::vector<IpPrefix>& ranges, const std::string& what,
                                   const std::string& flag) {
    std::vector<IpAddress> out;
    for (const auto& text : texts) {
      auto ip = IpAddress::Parse(text);
      if (!ip) {
        Problem(what + " \"" + text + "\" is not an IP address; skipped");
        continue;
      }
      if (!config_.FamilyEnabled(*ip)) continue;
      auto in = [&](const std::vector<IpPrefix>& prefixes) {
        return std::any_of(prefixes.begin(), prefixes.end(),
                           [&](const IpPrefix& p) { return p.Contains(*ip); });
      };
      if (in(config_.cluster_ip_ranges)) {
        Problem(what + " " + text + " is inside --service-cluster-ip-range; rejected");
        continue;
      }
      if (config_.strict_external_ip_validation && !in(ranges)) {
        Problem(what + " " + text + " is outside " + flag +
                (ranges.empty() ? " (none configured)" : "") + "; rejected");
        continue;
      }
      if (std::find(out.begin(), out.end(), *ip) == out.end()) out.push_back(*ip);
    }
    return out;
  }

  // The endpoints of one service port, from every slice of the Service.
  std::vector<Candidate> Candidates(const k8s::ServicePort& port) {
    std::vector<Candidate> out;
    bool name_found = false, slices_with_ports = false;
    for (const auto& slice : slices_) {
      if (!slice) continue;
      bool v6 = slice->address_type == "IPv6";
      if (!v6 && slice->address_type != "IPv4") continue;  // FQDN slices carry no IPs
      if (slice->meta.labels.contains(kLabelHeadless)) continue;
      if (!slice->endpoints.empty() && !slice->ports.empty()) slices_with_ports = true;
      auto sp = std::find_if(slice->ports.begin(), slice->ports.end(),
                             [&](const k8s::EndpointPort& p) { return p.name == port.name; });
      if (sp == slice->ports.end()) continue;
      name_found = true;
      if (!sp->port || *sp->port < 1 || *sp->port > 65535) continue;
      for (const auto& ep : slice->endpoints) {
        for (const auto& text : ep.addresses) {
          auto ip = IpAddress::Parse(text);
          if (!ip || ip->is_v6() != v6) {
            Problem("endpoint \"" + std::string(text) + "\" in EndpointSlice " + slice->meta.name +
                    " is not an " + slice->address_type + " address; skipped");
            continue;
          }
          Candidate c;
          c.id = {*ip, static_cast<uint16_t>(*sp->port)};
          c.ready = ep.ready && !ep.terminating;
          c.serving_terminating = ep.serving && ep.terminating;
          c.local = !ep.node_name.empty() && ep.node_name == config_.node_name;
          out.push_back(c);
        }
      }
    }
    if (!name_found && slices_with_ports) {
      Problem("port \"" + port.name + "\" is in no EndpointSlice of the service; no endpoints");
    }
    return out;
  }

  void AddVirtualService(const IpAddress& address, IpvsProtocol protocol, uint16_t port,
                         VipRole role, uint32_t port_index,
                         const std::vector<Candidate>& candidates, bool local_only, bool dsr) {
    DesiredVirtualService d;
    d.port_index = port_index;
    d.role = role;
    d.dsr = dsr;
    d.vs.service.address = address;
    d.vs.service.protocol = protocol;
    d.vs.service.port = port;
    d.vs.service.scheduler = scheduler_;
    d.vs.service.flags = sched_flags_;
    if (affinity_timeout_) {
      d.vs.service.flags |= netlink::ipvs_flags::kPersistent;
      d.vs.service.timeout = *affinity_timeout_;
    }
    d.vs.destinations = Select(candidates, address.is_v6(), local_only);
    out_.virtual_services.push_back(std::move(d));
  }

  void AddPort(const k8s::ServicePort& port) {
    auto protocol = ParseProtocol(port.protocol);
    if (!protocol) {
      Problem("port " + std::to_string(port.port) + ": protocol \"" + port.protocol +
              "\" is not TCP, UDP or SCTP; port skipped");
      return;
    }
    if (port.port < 1 || port.port > 65535) {
      Problem("port " + std::to_string(port.port) + " is not a port number; skipped");
      return;
    }
    auto number = static_cast<uint16_t>(port.port);
    auto candidates = Candidates(port);
    // Its facts go in after its virtual services: at this index.
    const auto port_index = static_cast<uint32_t>(out_.ports.size());

    ServicePortFacts facts;
    facts.port_name = port.name;
    facts.protocol = *protocol;
    facts.port = number;
    facts.external_local = external_local_;
    facts.internal_local = internal_local_;
    facts.hairpin = hairpin_;
    facts.hairpin_external_ips = hairpin_external_;
    facts.dsr = dsr_;
    if (svc_.health_check_node_port > 0 && svc_.health_check_node_port <= 65535) {
      facts.health_check_node_port = static_cast<uint16_t>(svc_.health_check_node_port);
    }
    for (const Candidate& c : candidates) {
      if (c.local && c.ready &&
          std::find(facts.local_endpoints.begin(), facts.local_endpoints.end(), c.id) ==
              facts.local_endpoints.end()) {
        facts.local_endpoints.push_back(c.id);
      }
    }

    for (const IpAddress& vip : cluster_ips_) {
      AddVirtualService(vip, *protocol, number, VipRole::kClusterIp, port_index, candidates,
                        internal_local_, false);
      out_.vips.push_back(vip);
    }
    bool wants_node_port = svc_.type == "NodePort" || svc_.type == "LoadBalancer";
    if (wants_node_port && port.node_port != 0) {
      if (port.node_port < 1 || port.node_port > 65535) {
        Problem("nodePort " + std::to_string(port.node_port) + " is not a port number; skipped");
      } else {
        facts.node_port = static_cast<uint16_t>(port.node_port);
        for (bool v6 : {false, true}) {
          bool family_present = std::any_of(cluster_ips_.begin(), cluster_ips_.end(),
                                            [&](const IpAddress& ip) { return ip.is_v6() == v6; });
          if (!family_present) continue;
          for (const IpAddress& address : node_.NodePortAddresses(v6)) {
            AddVirtualService(address, *protocol, facts.node_port, VipRole::kNodePort, port_index,
                              candidates, external_local_, false);
            facts.node_port_addresses.push_back(address);
          }
        }
      }
    }
    for (const IpAddress& ip : external_ips_) {
      AddVirtualService(ip, *protocol, number, VipRole::kExternalIp, port_index, candidates,
                        external_local_, dsr_);
      if (!dsr_) out_.vips.push_back(ip);
    }
    for (const IpAddress& ip : lb_ips_) {
      AddVirtualService(ip, *protocol, number, VipRole::kLoadBalancer, port_index, candidates,
                        external_local_, dsr_);
      if (!dsr_) out_.vips.push_back(ip);
    }
    out_.ports.push_back(std::move(facts));
  }

  const k8s::Service& svc_;
  const std::vector<SlicePtr>& slices_;
  const NodeFacts& node_;
  const ProxyConfig& config_;
  DesiredService out_;
  std::vector<IpAddress> cluster_ips_, external_ips_, lb_ips_;
  std::string scheduler_ = "rr";
  uint32_t sched_flags_ = 0;
  std::optional<uint32_t> affinity_timeout_;
  bool external_local_ = false, internal_local_ = false;
  bool hairpin_ = false, hairpin_external_ = false, dsr_ = false;
};

}  // namespace

std::vector<IpAddress> NodeFacts::NodePortAddresses(bool v6) const {
  std::vector<IpAddress> out;
  if (bind_all) {
    for (const auto& ip : all_addresses) {
      if (ip.is_v6() == v6 && !IsLinkLocalV6(ip)) out.push_back(ip);
    }
  } else if (auto ip = NodeIp(v6)) {
    out.push_back(*ip);
  }
  return out;
}

NodeFacts NodeFactsFromNode(const k8s::Node& node) {
  NodeFacts facts;
  auto first = [&](const std::string& type, std::optional<bool> v6) -> std::optional<IpAddress> {
    for (const auto& a : node.addresses) {
      if (a.type != type) continue;
      auto ip = IpAddress::Parse(a.address);
      if (ip && (!v6 || ip->is_v6() == *v6)) return ip;
    }
    return std::nullopt;
  };
  auto primary = first("InternalIP", std::nullopt);
  if (!primary) primary = first("ExternalIP", std::nullopt);
  for (bool v6 : {false, true}) {
    std::optional<IpAddress> ip;
    if (primary && primary->is_v6() == v6) ip = primary;
    if (!ip) ip = first("InternalIP", v6);
    if (!ip) ip = first("ExternalIP", v6);
    (v6 ? facts.ipv6 : facts.ipv4) = ip;
  }
  return facts;
}

bool NodePortLinkEligible(const std::string& name) {
  for (const char* word : {"dummy", "kube", "docker"}) {
    if (name.find(word) != std::string::npos) return false;
  }
  return true;
}

std::optional<std::string> ParseScheduler(const std::string& annotation) {
  for (const char* known : {"rr", "lc", "dh", "sh", "mh"}) {
    if (annotation == known) return std::string(known);
  }
  return std::nullopt;
}

DesiredService BuildService(const k8s::Service& service, const std::vector<SlicePtr>& slices,
                            const NodeFacts& node, const ProxyConfig& config) {
  return Builder(service, slices, node, config).Build();
}

}  // namespace kr::proxy
