#include "kube_router/routing/agent.h"

#include <cstdlib>
#include <fstream>
#include <sstream>

#include "kube_router/base/log.h"
#include "kube_router/bgp/speaker.h"
#include "kube_router/netfilter/adapters.h"
#include "kube_router/netlink/libnl.h"
#include "kube_router/netlink/sysctl.h"
#include "kube_router/routing/cni_config.h"
#include "kube_router/routing/network_routes_controller.h"
#include "kube_router/routing/node_config.h"

namespace kr::routing {
namespace {

Result<std::vector<std::string>> PeerPasswords(const Options& options) {
  if (!options.peer_router_passwords.empty() || options.peer_router_passwords_file.empty()) {
    return options.peer_router_passwords;
  }
  // --peer-router-passwords-file: the same comma list as the flag; the flag wins.
  std::ifstream in(options.peer_router_passwords_file);
  if (!in) {
    return Status::Error("--peer-router-passwords-file: cannot read " +
                         options.peer_router_passwords_file);
  }
  std::stringstream text;
  text << in.rdbuf();
  std::string content = text.str();
  while (!content.empty() && (content.back() == '\n' || content.back() == '\r')) {
    content.pop_back();
  }
  return SplitList(content);
}

// Owns the real adapters for the controller's lifetime.
struct AgentDataplane {
  std::unique_ptr<netlink::RouteTable> routes;
  std::unique_ptr<netlink::Links> links;
  std::unique_ptr<netfilter::Iptables> iptables;
  std::unique_ptr<netfilter::Iptables> iptables6;
  std::unique_ptr<netfilter::Ipset> ipset;
  std::unique_ptr<netlink::Sysctl> sysctl;
  std::unique_ptr<netlink::FouPorts> fou;
};

}  // namespace

Result<RoutingConfig> RoutingConfigFromOptions(const Options& options,
                                               const std::string& node_name) {
  RoutingConfig config;
  config.node_name = node_name;
  config.enable_ipv4 = options.enable_ipv4;
  config.enable_ipv6 = options.enable_ipv6;
  config.cluster_asn = options.cluster_asn == 0 ? 64512 : options.cluster_asn;
  if (!IsPrivateAsn(config.cluster_asn)) {
    return Status::Error("--cluster-asn " + std::to_string(config.cluster_asn) +
                         ": must be 64512-65534 or 4200000000-4294967294");
  }
  config.nodes_full_mesh = options.nodes_full_mesh;
  config.enable_ibgp = options.enable_ibgp;
  if (options.bgp_port == 0 || options.bgp_port > 65535) {
    return Status::Error("--bgp-port " + std::to_string(options.bgp_port) + ": not a port");
  }
  config.bgp_port = static_cast<uint16_t>(options.bgp_port);
  config.hold_time = std::chrono::duration_cast<std::chrono::seconds>(options.bgp_holdtime);
  if (config.hold_time.count() != 0 && config.hold_time.count() < 3) {
    return Status::Error("--bgp-holdtime: must be 0 or at least 3s");
  }
  config.graceful_restart = options.bgp_graceful_restart;
  config.ttl_security = options.bgp_ttl_security;
  config.service_ranges = options.service_cluster_ip_range;
  config.service_ranges.insert(config.service_ranges.end(),
                               options.service_external_ip_range.begin(),
                               options.service_external_ip_range.end());
  if (options.router_id == "generate") {
    config.generate_router_id = true;
  } else if (!options.router_id.empty()) {
    auto id = IpAddress::Parse(options.router_id);
    if (!id || !id->is_v4()) {
      return Status::Error("--router-id \"" + options.router_id +
                           "\": want an IPv4 address or \"generate\"");
    }
    config.router_id = *id;
  }

  std::vector<std::string> ips, asns, ports;
  for (const auto& ip : options.peer_router_ips) ips.push_back(ip.ToString());
  for (uint32_t asn : options.peer_router_asns) asns.push_back(std::to_string(asn));
  for (uint32_t port : options.peer_router_ports) ports.push_back(std::to_string(port));
  auto passwords = PeerPasswords(options);
  if (!passwords) return passwords.status();
  // kube-router: one port for all peers is allowed (and no ports means 179).
  if (ports.size() == 1 && ips.size() > 1) ports.assign(ips.size(), ports.front());
  auto peers = BuildPeerList(ips, asns, *passwords, ports, {});
  if (!peers) return peers.status().Context("--peer-router-ips/-asns/-passwords/-ports");
  config.global_peers = std::move(*peers);
  config.peer_multihop_ttl = options.peer_router_multihop_ttl;
  config.override_nexthop = options.override_nexthop;

  config.advertise_pod_cidr = options.advertise_pod_cidr;
  config.advertise_cluster_ip = options.advertise_cluster_ip;
  config.advertise_external_ip = options.advertise_external_ip;
  config.advertise_loadbalancer_ip = options.advertise_loadbalancer_ip;

  config.enable_overlay = options.enable_overlay;
  if (options.overlay_type == "subnet") {
    config.overlay_type = OverlayType::kSubnet;
  } else if (options.overlay_type == "full") {
    config.overlay_type = OverlayType::kFull;
  } else {
    return Status::Error("--overlay-type \"" + options.overlay_type + "\": want subnet or full");
  }
  if (options.overlay_encap == "ipip") {
    config.overlay_encap = OverlayEncap::kIpip;
  } else if (options.overlay_encap == "fou") {
    config.overlay_encap = OverlayEncap::kFou;
  } else {
    return Status::Error("--overlay-encap \"" + options.overlay_encap + "\": want ipip or fou");
  }
  config.overlay_encap_port = options.overlay_encap_port;  // >= 1024, checked by the flags
  config.routes_sync_period = options.routes_sync_period;
  config.injected_routes_sync_period = options.injected_routes_sync_period;
  config.enable_pod_egress = options.enable_pod_egress;
  config.enable_cni = options.enable_cni;
  config.auto_mtu = options.auto_mtu;
  if (const char* file = std::getenv(kCniConfFileEnv); file && *file) {
    config.cni_conf_file = file;
  }
  return config;
}

Result<std::unique_ptr<Controller>> MakeAgentRoutesController(const Options& options,
                                                              const std::string& node_name,
                                                              const k8s::Cluster* cluster,
                                                              metrics::Registry* metrics) {
  auto config = RoutingConfigFromOptions(options, node_name);
  if (!config) return config.status();
  auto owner = std::make_shared<AgentDataplane>();
  auto routes = netlink::MakeNetlinkRouteTable();
  if (!routes) return routes.status().Context("routing: rtnetlink");
  owner->routes = std::move(*routes);
  auto links = netlink::MakeNetlinkLinks();
  if (!links) return links.status().Context("routing: rtnetlink links");
  owner->links = std::move(*links);
  netfilter::IptablesMode mode = netfilter::DetectIptablesMode();
  if (options.iptables_mode != "auto") {
    auto forced = netfilter::ParseIptablesMode(options.iptables_mode);
    if (!forced) return Status::Error("--iptables-mode \"" + options.iptables_mode + "\"");
    mode = *forced;
  }
  owner->iptables = netfilter::MakeIptables(mode, netfilter::IpFamily::kV4);
  if (options.cleanup_config) {
    // Cleanup removes the IPv6 state whatever the flags (a table that is not there is empty).
    owner->iptables6 = netfilter::MakeIptablesForCleanup(mode, netfilter::IpFamily::kV6);
  } else if (options.enable_ipv6) {
    owner->iptables6 = netfilter::MakeIptables(mode, netfilter::IpFamily::kV6);
  }
  owner->ipset = netfilter::MakeIpset();
  owner->sysctl = netlink::MakeProcSysctl();
  // Always made (a socket only; the fou module is loaded on the first port): --cleanup-config
  // and a switch back to ipip remove the ports an earlier fou run added.
  auto fou = netlink::MakeNetlinkFouPorts();
  if (!fou) return fou.status().Context("routing: generic netlink (FoU)");
  owner->fou = std::move(*fou);
  RoutingDataplane dataplane{owner->routes.get(), owner->links.get(),  owner->iptables.get(),
                             owner->ipset.get(),  owner->sysctl.get(), owner->iptables6.get(),
                             owner->fou.get()};
  return std::unique_ptr<Controller>(std::make_unique<NetworkRoutesController>(
      std::move(*config), cluster, dataplane,
      [](const bgp::GlobalConfig& global) { return bgp::NewSpeaker(global); }, metrics,
      std::move(owner)));
}

}  // namespace kr::routing
