// The flag table: one entry per flag drives CLI11 registration, value conversion and --help,
// so a flag's name, type, default and description live in exactly one place.
#include "kube_router/options/options.h"

#include <CLI/CLI.hpp>
#include <algorithm>
#include <functional>
#include <limits>
#include <map>
#include <sstream>
#include <tuple>

namespace kr {
namespace {

using ValueList = std::vector<std::string>;  // the flag's text, once per occurrence

struct Flag {
  std::string name;  // long name without dashes
  char short_name = 0;
  std::string type;  // shown in --help; empty for booleans
  std::string help;
  // Converts every occurrence into the options; the error is the reason only.
  std::function<Status(Options&, const ValueList&)> apply;
  // Default as --help shows it, computed from a default Options; empty = not shown.
  std::function<std::string(const Options&)> show_default;
  bool is_bool() const { return type.empty(); }
};

std::vector<std::string> SplitCommas(const ValueList& values) {
  std::vector<std::string> out;
  for (const std::string& v : values) {
    if (v.empty()) continue;  // `--flag=` means an empty list, as in pflag
    size_t start = 0;
    while (true) {
      size_t comma = v.find(',', start);
      out.push_back(v.substr(start, comma - start));
      if (comma == std::string::npos) break;
      start = comma + 1;
    }
  }
  return out;
}

std::string Join(const std::vector<std::string>& items) {
  std::string out;
  for (const auto& s : items) out += (out.empty() ? "" : ",") + s;
  return out;
}

Flag BoolFlag(std::string name, bool Options::*field, std::string help) {
  Flag f{std::move(name), 0, "", std::move(help), nullptr, nullptr};
  f.apply = [field](Options& o, const ValueList& values) -> Status {
    for (const std::string& v : values) {
      auto b = ParseGoBool(v);
      if (!b) return b.status();
      o.*field = *b;  // the last occurrence wins, as in pflag
    }
    return Status::Ok();
  };
  f.show_default = [field](const Options& o) { return o.*field ? std::string("true") : ""; };
  return f;
}

enum class Sign { kNonNegative, kPositive };

Flag DurationFlag(std::string name, milliseconds Options::*field, Sign sign, std::string help) {
  Flag f{std::move(name), 0, "duration", std::move(help), nullptr, nullptr};
  f.apply = [field, sign](Options& o, const ValueList& values) -> Status {
    const std::string& v = values.back();
    auto ns = ParseGoDurationNanos(v);
    if (!ns) return ns.status();
    if (*ns < 0) return Status::Error("\"" + v + "\" is negative");
    if (sign == Sign::kPositive && *ns < 1'000'000) {
      return Status::Error("\"" + v + "\": the period must be at least 1ms");
    }
    o.*field = milliseconds(*ns / 1'000'000);
    return Status::Ok();
  };
  f.show_default = [field](const Options& o) { return FormatGoDuration(o.*field); };
  return f;
}

// A string flag; `allowed` (if not empty) lists the accepted values.
Flag StringFlag(std::string name, std::string Options::*field, std::string help,
                std::vector<std::string> allowed = {}) {
  Flag f{std::move(name), 0, "string", std::move(help), nullptr, nullptr};
  f.apply = [field, allowed](Options& o, const ValueList& values) -> Status {
    const std::string& v = values.back();
    if (!allowed.empty() && std::find(allowed.begin(), allowed.end(), v) == allowed.end()) {
      return Status::Error("\"" + v + "\" is not one of " + Join(allowed));
    }
    o.*field = v;
    return Status::Ok();
  };
  f.show_default = [field](const Options& o) {
    return (o.*field).empty() ? std::string() : "\"" + o.*field + "\"";
  };
  return f;
}

Result<uint64_t> ParseUnsigned(const std::string& v, uint64_t max) {
  if (v.empty() || v.size() > 20) return Status::Error("\"" + v + "\" is not a number");
  uint64_t n = 0;
  for (char c : v) {
    if (c < '0' || c > '9') return Status::Error("\"" + v + "\" is not an unsigned number");
    if (n > (UINT64_MAX - (c - '0')) / 10) return Status::Error("\"" + v + "\" is too large");
    n = n * 10 + (c - '0');
  }
  if (n > max) return Status::Error("\"" + v + "\" is larger than " + std::to_string(max));
  return n;
}

template <typename T>
Flag UintFlag(std::string name, std::string type, T Options::*field, std::string help) {
  Flag f{std::move(name), 0, std::move(type), std::move(help), nullptr, nullptr};
  f.apply = [field](Options& o, const ValueList& values) -> Status {
    auto n = ParseUnsigned(values.back(), std::numeric_limits<T>::max());
    if (!n) return n.status();
    o.*field = static_cast<T>(*n);
    return Status::Ok();
  };
  f.show_default = [field](const Options& o) {
    return o.*field == 0 ? std::string() : std::to_string(o.*field);
  };
  return f;
}

Flag StringSliceFlag(std::string name, std::vector<std::string> Options::*field, std::string help) {
  Flag f{std::move(name), 0, "strings", std::move(help), nullptr, nullptr};
  f.apply = [field](Options& o, const ValueList& values) -> Status {
    o.*field = SplitCommas(values);
    return Status::Ok();
  };
  f.show_default = [field](const Options& o) {
    return (o.*field).empty() ? std::string() : "[" + Join(o.*field) + "]";
  };
  return f;
}

Flag IpSliceFlag(std::string name, std::vector<IpAddress> Options::*field, std::string help) {
  Flag f{std::move(name), 0, "ipSlice", std::move(help), nullptr, nullptr};
  f.apply = [field](Options& o, const ValueList& values) -> Status {
    std::vector<IpAddress> ips;
    for (const std::string& item : SplitCommas(values)) {
      auto ip = IpAddress::Parse(item);
      if (!ip) return Status::Error("\"" + item + "\" is not an IP address");
      ips.push_back(*ip);
    }
    o.*field = std::move(ips);
    return Status::Ok();
  };
  f.show_default = [](const Options&) { return std::string(); };
  return f;
}

Flag CidrSliceFlag(std::string name, std::vector<IpPrefix> Options::*field, std::string help) {
  Flag f{std::move(name), 0, "strings", std::move(help), nullptr, nullptr};
  f.apply = [field](Options& o, const ValueList& values) -> Status {
    std::vector<IpPrefix> prefixes;
    for (const std::string& item : SplitCommas(values)) {
      // A CIDR needs the "/len" part; a bare address is not accepted here.
      auto prefix = item.find('/') == std::string::npos ? std::nullopt : IpPrefix::Parse(item);
      if (!prefix) return Status::Error("\"" + item + "\" is not a CIDR (like 10.96.0.0/12)");
      prefixes.push_back(*prefix);
    }
    o.*field = std::move(prefixes);
    return Status::Ok();
  };
  f.show_default = [field](const Options& o) {
    std::vector<std::string> text;
    for (const auto& p : o.*field) text.push_back(p.ToString());
    return text.empty() ? std::string() : "[" + Join(text) + "]";
  };
  return f;
}

Flag UintSliceFlag(std::string name, std::vector<uint32_t> Options::*field, std::string help) {
  Flag f{std::move(name), 0, "uints", std::move(help), nullptr, nullptr};
  f.apply = [field](Options& o, const ValueList& values) -> Status {
    std::vector<uint32_t> numbers;
    for (const std::string& item : SplitCommas(values)) {
      auto n = ParseUnsigned(item, UINT32_MAX);
      if (!n) return n.status();
      numbers.push_back(static_cast<uint32_t>(*n));
    }
    o.*field = std::move(numbers);
    return Status::Ok();
  };
  f.show_default = [](const Options&) { return std::string(); };
  return f;
}

Flag Short(char c, Flag f) {
  f.short_name = c;
  return f;
}

const std::vector<Flag>& Flags() {
  static const std::vector<Flag> kFlags = [] {
    using O = Options;
    const auto kPos = Sign::kPositive;
    const auto kNonNeg = Sign::kNonNegative;
    std::vector<Flag> f = {
        BoolFlag("advertise-cluster-ip", &O::advertise_cluster_ip,
                 "Advertise the service cluster IPs to the external BGP peers."),
        BoolFlag("advertise-external-ip", &O::advertise_external_ip,
                 "Advertise the service external IPs to the external BGP peers."),
        BoolFlag("advertise-loadbalancer-ip", &O::advertise_loadbalancer_ip,
                 "Advertise the service load balancer ingress IPs to the external BGP peers."),
        BoolFlag("advertise-pod-cidr", &O::advertise_pod_cidr,
                 "Advertise this node's pod CIDR to the external BGP peers."),
        BoolFlag("auto-mtu", &O::auto_mtu,
                 "Set kube-bridge and the CNI MTU from the node interface's MTU."),
        DurationFlag("bgp-graceful-restart-deferral-time", &O::bgp_graceful_restart_deferral_time,
                     kPos, "BGP graceful restart deferral time (at most 18h)."),
        BoolFlag("bgp-graceful-restart", &O::bgp_graceful_restart,
                 "Enable BGP graceful restart (RFC 4724) towards all peers."),
        DurationFlag("bgp-graceful-restart-time", &O::bgp_graceful_restart_time, kPos,
                     "BGP graceful restart time announced to peers (at most 4095s)."),
        BoolFlag("bgp-ttl-security", &O::bgp_ttl_security,
                 "GTSM (RFC 5082) towards directly connected BGP peers: send TTL 255 and drop "
                 "their packets that arrive with less. The peers must do the same. Not in "
                 "kube-router; off by default."),
        DurationFlag("bgp-holdtime", &O::bgp_holdtime, kPos,
                     "BGP hold time announced to peers (between 3s and 18h12m16s)."),
        UintFlag<uint32_t>("bgp-port", "uint32", &O::bgp_port,
                           "Port the BGP speaker listens on and dials other nodes on."),
        UintFlag<uint32_t>("bfd-detection-multiplier", "uint32", &O::bfd_detection_multiplier,
                           "BFD detection multiplier (1-255)."),
        UintFlag<uint32_t>("bfd-desired-min-tx-interval", "uint32", &O::bfd_desired_min_tx_interval,
                           "BFD desired minimum transmit interval in milliseconds."),
        UintFlag<uint32_t>("bfd-port", "uint32", &O::bfd_port, "BFD UDP port."),
        UintFlag<uint32_t>("bfd-required-min-rx-interval", "uint32",
                           &O::bfd_required_min_rx_interval,
                           "BFD required minimum receive interval in milliseconds."),
        DurationFlag("cache-sync-timeout", &O::cache_sync_timeout, kPos,
                     "How long to wait for the API caches to fill at start-up before giving "
                     "up."),
        BoolFlag("cleanup-config", &O::cleanup_config,
                 "Remove every iptables rule, ipset, IPVS service, route and link this agent "
                 "created, then exit."),
        UintFlag<uint32_t>("cluster-asn", "uint", &O::cluster_asn,
                           "ASN the cluster nodes use for iBGP (0 means 64512)."),
        StringFlag("cluster-cidr", &O::cluster_cidr,
                   "CIDR of the cluster's pod network; when set, pod egress masquerading is "
                   "enabled."),
        DurationFlag("config-sync-period", &O::config_sync_period, kPos,
                     "How often to resync the API caches (accepted for compatibility; "
                     "watches keep the caches current)."),
        BoolFlag("disable-source-dest-check", &O::disable_source_dest_check,
                 "On AWS, disable the EC2 source/destination check of the nodes."),
        BoolFlag("enable-bfd", &O::enable_bfd, "Enable BFD towards the external BGP peers."),
        BoolFlag("enable-cni", &O::enable_cni,
                 "Write this node's pod CIDR (and MTU) into the CNI configuration file."),
        BoolFlag("enable-ibgp", &O::enable_ibgp, "Peer with the other nodes of the cluster."),
        BoolFlag("enable-ipv4", &O::enable_ipv4, "Enable IPv4 support."),
        BoolFlag("enable-ipv6", &O::enable_ipv6, "Enable IPv6 support."),
        BoolFlag("enable-overlay", &O::enable_overlay,
                 "Use tunnels for pod traffic to nodes in other subnets (see --overlay-type)."),
        BoolFlag("enable-pod-egress", &O::enable_pod_egress,
                 "Masquerade traffic from pods to destinations outside the cluster."),
        BoolFlag("enable-pprof", &O::enable_pprof,
                 "Serve Go pprof profiles (not available in this implementation)."),
        CidrSliceFlag("excluded-cidrs", &O::excluded_cidrs,
                      "CIDRs whose IPVS services are never removed by the service proxy."),
        StringFlag("gobgp-admin-address", &O::gobgp_admin_address,
                   "Address of the read-only routing status view (JSON at /status, in place "
                   "of GoBGP's gRPC admin API, which this implementation does not have); "
                   "loopback only unless --gobgp-admin-allow-remote."),
        BoolFlag("gobgp-admin-allow-remote", &O::gobgp_admin_allow_remote,
                 "Allow a non-loopback --gobgp-admin-address (the status view has no "
                 "authentication)."),
        UintFlag<uint16_t>("gobgp-admin-port", "uint16", &O::gobgp_admin_port,
                           "Port of the routing status view (with --run-router); 0 disables "
                           "it."),
        BoolFlag("hairpin-mode", &O::hairpin_mode,
                 "Add hairpin rules so that every service's pods can reach the service "
                 "through its own endpoints."),
        StringFlag("health-addr", &O::health_addr,
                   "Address for the health check endpoint (empty = all addresses)."),
        UintFlag<uint16_t>("health-port", "uint16", &O::health_port,
                           "Port for the /healthz endpoint; 0 disables it."),
        Short('h', BoolFlag("help", &O::help, "Print this help and exit.")),
        StringFlag("hostname-override", &O::hostname_override,
                   "Node name to use instead of $NODE_NAME or the host name."),
        DurationFlag("injected-routes-sync-period", &O::injected_routes_sync_period, kPos,
                     "How often the routes learned over BGP are re-applied to the kernel."),
        StringFlag("iptables-mode", &O::iptables_mode,
                   "Which iptables backend to write: auto (follow the host), nft or legacy.",
                   {"auto", "nft", "legacy"}),
        DurationFlag("iptables-sync-period", &O::iptables_sync_period, kPos,
                     "How often the network policy firewall is fully reconciled."),
        DurationFlag("ipvs-graceful-period", &O::ipvs_graceful_period, kPos,
                     "Drain time for removed IPVS destinations when the pod's grace period is "
                     "unknown."),
        BoolFlag("ipvs-graceful-termination", &O::ipvs_graceful_termination,
                 "Drain removed IPVS destinations (weight 0) instead of deleting them at once."),
        BoolFlag("ipvs-permit-all", &O::ipvs_permit_all,
                 "Accept all traffic to service VIPs instead of only their service ports."),
        DurationFlag("ipvs-sync-period", &O::ipvs_sync_period, kPos,
                     "How often the IPVS services are fully reconciled."),
        StringFlag("kubeconfig", &O::kubeconfig,
                   "Path to a kubeconfig file; empty means the in-cluster configuration."),
        BoolFlag("loadbalancer-default-class", &O::loadbalancer_default_class,
                 "Also allocate IPs for LoadBalancer services without a class."),
        CidrSliceFlag("loadbalancer-ip-range", &O::loadbalancer_ip_range,
                      "CIDRs load balancer IPs may come from."),
        DurationFlag("loadbalancer-sync-period", &O::loadbalancer_sync_period, kPos,
                     "How often the load balancer allocator re-checks every service."),
        BoolFlag("masquerade-all", &O::masquerade_all,
                 "Masquerade (SNAT) all traffic to service VIPs."),
        StringFlag("master", &O::master,
                   "Address of the Kubernetes API server (overrides the kubeconfig)."),
        StringFlag("metrics-addr", &O::metrics_addr,
                   "Address for the metrics endpoint (empty = all addresses)."),
        StringFlag("metrics-path", &O::metrics_path, "HTTP path of the Prometheus metrics."),
        UintFlag<uint16_t>("metrics-port", "uint16", &O::metrics_port,
                           "Port for the Prometheus metrics; 0 disables them."),
        BoolFlag("netpol-beta-namespace-isolation", &O::netpol_beta_namespace_isolation,
                 "Honour the NetworkPolicy beta namespace annotation "
                 "net.beta.kubernetes.io/network-policy: \"DefaultDeny\" isolates the ingress "
                 "of every pod in the namespace."),
        BoolFlag("netpol-default-deny", &O::netpol_default_deny,
                 "Reject a local pod's traffic until its network policy firewall is in place."),
        BoolFlag("nodeport-bindon-all-ip", &O::nodeport_bindon_all_ip,
                 "Serve NodePort services on every IP of the node, not only the node IP."),
        BoolFlag("nodes-full-mesh", &O::nodes_full_mesh,
                 "Every node peers with every other node (iBGP full mesh)."),
        UintFlag<uint16_t>("overlay-encap-port", "uint16", &O::overlay_encap_port,
                           "UDP port for FoU (GUE) tunnels (at least 1024)."),
        StringFlag("overlay-encap", &O::overlay_encap, "Tunnel encapsulation: ipip or fou.",
                   {"ipip", "fou"}),
        StringFlag("overlay-type", &O::overlay_type,
                   "subnet: tunnel only to nodes in other subnets; full: tunnel to every node.",
                   {"subnet", "full"}),
        BoolFlag("override-nexthop", &O::override_nexthop,
                 "Set this node as the next hop of routes announced to external peers."),
        UintSliceFlag("peer-router-asns", &O::peer_router_asns,
                      "ASN of each external BGP peer, in the order of --peer-router-ips."),
        IpSliceFlag("peer-router-ips", &O::peer_router_ips,
                    "IP addresses of external BGP peers every node peers with."),
        UintFlag<uint8_t>("peer-router-multihop-ttl", "uint8", &O::peer_router_multihop_ttl,
                          "TTL for multihop eBGP sessions (2 or more enables multihop)."),
        StringFlag("peer-router-passwords-file", &O::peer_router_passwords_file,
                   "File holding the peer passwords in the --peer-router-passwords format; "
                   "the flag wins over the file."),
        StringSliceFlag("peer-router-passwords", &O::peer_router_passwords,
                        "Base64 TCP-MD5 passwords, one per external peer in the order of "
                        "--peer-router-ips (blank = none)."),
        UintSliceFlag("peer-router-ports", &O::peer_router_ports,
                      "Remote port of each external peer; 179 when not given."),
        StringFlag("router-id", &O::router_id,
                   "BGP router ID: an IPv4 address, or \"generate\" to derive one from the "
                   "node IP; empty = the node's IPv4 address."),
        DurationFlag("routes-sync-period", &O::routes_sync_period, kPos,
                     "How often routes and BGP advertisements are fully reconciled."),
        BoolFlag("run-firewall", &O::run_firewall, "Run the network policy controller."),
        BoolFlag("run-loadbalancer", &O::run_loadbalancer,
                 "Run the load balancer IP allocator (not available in this implementation)."),
        BoolFlag("run-router", &O::run_router, "Run the routing controller (BGP pod networking)."),
        BoolFlag("run-service-proxy", &O::run_service_proxy, "Run the service proxy (IPVS)."),
        StringFlag("runtime-endpoint", &O::runtime_endpoint,
                   "CRI socket used to enter pod network namespaces for DSR."),
        CidrSliceFlag("service-cluster-ip-range", &O::service_cluster_ip_range,
                      "Cluster IP range(s) of services, at most one per IP family."),
        CidrSliceFlag("service-external-ip-range", &O::service_external_ip_range,
                      "CIDRs service external IPs may come from."),
        StringFlag("service-node-port-range", &O::service_node_port_range,
                   "NodePort range, as first-last or first:last."),
        DurationFlag("service-tcp-timeout", &O::service_tcp_timeout, kNonNeg,
                     "IPVS TCP connection timeout; 0s keeps the kernel's value."),
        DurationFlag("service-tcpfin-timeout", &O::service_tcpfin_timeout, kNonNeg,
                     "IPVS TCP FIN_WAIT timeout; 0s keeps the kernel's value."),
        DurationFlag("service-udp-timeout", &O::service_udp_timeout, kNonNeg,
                     "IPVS UDP timeout; 0s keeps the kernel's value."),
        BoolFlag("strict-external-ip-validation", &O::strict_external_ip_validation,
                 "Ignore external and load balancer IPs outside the configured ranges."),
        BoolFlag("use-nftables-for-netpol", &O::use_nftables_for_netpol,
                 "Use nftables for network policies (not available in this implementation)."),
        Short('V', BoolFlag("version", &O::version, "Print the version and exit.")),
    };
    // -v/--v: klog verbosity, an integer level (kube-router types it as a string).
    Flag v{"v",      'v',
           "string", "Log verbosity: 0 logs notable events, higher levels add detail.",
           nullptr,  nullptr};
    v.apply = [](Options& o, const ValueList& values) -> Status {
      auto n = ParseUnsigned(values.back(), 10);
      if (!n) return Status::Error("\"" + values.back() + "\" is not a level from 0 to 10");
      o.verbosity = static_cast<int>(*n);
      return Status::Ok();
    };
    v.show_default = [](const Options& o) { return "\"" + std::to_string(o.verbosity) + "\""; };
    f.push_back(std::move(v));
    std::sort(f.begin(), f.end(), [](const Flag& a, const Flag& b) { return a.name < b.name; });
    return f;
  }();
  return kFlags;
}

Status FlagError(const std::string& flag, const std::string& why) {
  return Status::Error("invalid value for flag --" + flag + ": " + why);
}

// Checks that need more than one flag, or a range a single-value parser cannot express.
Status CheckValues(Options& o) {
  for (const auto& [name, value, low, high] :
       std::vector<std::tuple<std::string, milliseconds, milliseconds, milliseconds>>{
           {"bgp-holdtime", o.bgp_holdtime, milliseconds(3000), milliseconds(65535000)},
           {"bgp-graceful-restart-time", o.bgp_graceful_restart_time, milliseconds(1),
            milliseconds(4095000)},
           {"bgp-graceful-restart-deferral-time", o.bgp_graceful_restart_deferral_time,
            milliseconds(1), milliseconds(18 * 3600 * 1000)}}) {
    if (value < low || value > high) {
      return FlagError(name, FormatGoDuration(value) + " is outside " + FormatGoDuration(low) +
                                 ".." + FormatGoDuration(high));
    }
  }
  if (o.bgp_port == 0 || o.bgp_port > 65535) {
    return FlagError("bgp-port", std::to_string(o.bgp_port) + " is not a port (1-65535)");
  }
  if (o.cluster_asn != 0 && !(o.cluster_asn >= 64512 && o.cluster_asn <= 65535) &&
      !(o.cluster_asn >= 4200000000u && o.cluster_asn <= 4294967294u)) {
    return FlagError("cluster-asn", std::to_string(o.cluster_asn) +
                                        " is not a private ASN (64512-65535 or "
                                        "4200000000-4294967294)");
  }
  if (!o.peer_router_asns.empty() && o.peer_router_asns.size() != o.peer_router_ips.size()) {
    return FlagError("peer-router-asns", "needs exactly one ASN per --peer-router-ips address (" +
                                             std::to_string(o.peer_router_ips.size()) + ")");
  }
  if (!o.peer_router_ips.empty() && o.peer_router_asns.empty()) {
    return FlagError("peer-router-asns", "is required when --peer-router-ips is set");
  }
  if (!o.peer_router_passwords.empty() &&
      o.peer_router_passwords.size() != o.peer_router_ips.size()) {
    return FlagError("peer-router-passwords",
                     "needs one entry (possibly blank) per --peer-router-ips address");
  }
  if (!o.peer_router_ports.empty()) {
    if (o.peer_router_ports.size() != o.peer_router_ips.size()) {
      return FlagError("peer-router-ports", "needs one port per --peer-router-ips address");
    }
    for (uint32_t port : o.peer_router_ports) {
      if (port == 0 || port > 65535) {
        return FlagError("peer-router-ports", std::to_string(port) + " is not a port");
      }
    }
  }
  if (o.overlay_encap_port < 1024) {
    return FlagError("overlay-encap-port", "must be at least 1024");
  }
  if (o.bfd_detection_multiplier < 1 || o.bfd_detection_multiplier > 255) {
    return FlagError("bfd-detection-multiplier", "must be between 1 and 255");
  }
  if (o.bfd_port == 0 || o.bfd_port > 65535) {
    return FlagError("bfd-port", std::to_string(o.bfd_port) + " is not a port");
  }
  if (!o.router_id.empty() && o.router_id != "generate") {
    auto ip = IpAddress::Parse(o.router_id);
    if (!ip || !ip->is_v4()) {
      return FlagError("router-id", "\"" + o.router_id +
                                        "\" is neither an IPv4 address nor "
                                        "\"generate\"");
    }
  }
  if (o.service_cluster_ip_range.empty() || o.service_cluster_ip_range.size() > 2 ||
      (o.service_cluster_ip_range.size() == 2 &&
       o.service_cluster_ip_range[0].is_v4() == o.service_cluster_ip_range[1].is_v4())) {
    return FlagError("service-cluster-ip-range",
                     "needs one or two CIDRs, at most one per IP family");
  }
  {
    const std::string& r = o.service_node_port_range;
    size_t sep = r.find_first_of("-:");
    auto first = ParseUnsigned(r.substr(0, sep), 65535);
    auto last = sep == std::string::npos ? first : ParseUnsigned(r.substr(sep + 1), 65535);
    if (sep == std::string::npos || !first || !last || *first == 0 || *first > *last) {
      return FlagError("service-node-port-range",
                       "\"" + r + "\" is not a port range like 30000-32767");
    }
    o.node_port_range_first = static_cast<uint16_t>(*first);
    o.node_port_range_last = static_cast<uint16_t>(*last);
  }
  if (!o.metrics_path.empty() && o.metrics_path[0] != '/') {
    return FlagError("metrics-path", "\"" + o.metrics_path + "\" must start with /");
  }
  if (!o.cluster_cidr.empty() && !IpPrefix::Parse(o.cluster_cidr)) {
    return FlagError("cluster-cidr", "\"" + o.cluster_cidr + "\" is not a CIDR");
  }
  return Status::Ok();
}

}  // namespace

// pflag reads "-v=10" as "-v 10"; CLI11 would take "=10" as the value. Rewrite "-x=value" of
// a known short flag to its long form before parsing ("--" ends flag parsing in both).
std::vector<std::string> ExpandShortFlagsWithEquals(int argc, const char* const* argv) {
  std::vector<std::string> args(argv, argv + argc);
  for (size_t i = 1; i < args.size(); ++i) {
    const std::string& a = args[i];
    if (a == "--") break;
    if (a.size() < 3 || a[0] != '-' || a[1] == '-' || a[2] != '=') continue;
    for (const Flag& f : Flags()) {
      if (f.short_name == a[1]) {
        args[i] = "--" + f.name + a.substr(2);
        break;
      }
    }
  }
  return args;
}

Result<Options> ParseOptions(int argc, const char* const* raw_argv) {
  std::vector<std::string> expanded = ExpandShortFlagsWithEquals(argc, raw_argv);
  std::vector<const char*> argv_storage;
  for (const auto& a : expanded) argv_storage.push_back(a.c_str());
  const char* const* argv = argv_storage.data();
  argc = static_cast<int>(argv_storage.size());
  CLI::App app;
  app.set_help_flag();  // --help is one of our flags
  app.allow_extras();   // unknown flags and positionals are reported below, in our words
  std::map<std::string, ValueList> given;
  for (const Flag& f : Flags()) {
    std::string names = "--" + f.name;
    if (f.short_name) names = std::string("-") + f.short_name + "," + names;
    ValueList& values = given[f.name];
    if (f.is_bool()) {
      app.add_flag(names, values);
    } else {
      app.add_option(names, values)
          ->allow_extra_args(false)
          ->multi_option_policy(CLI::MultiOptionPolicy::TakeAll);
    }
  }
  try {
    app.parse(argc, argv);
  } catch (const CLI::ArgumentMismatch& e) {
    // CLI11 says "--flag: 1 required TEXT missing"; keep only the flag's name.
    std::string what = e.what();
    return Status::Error("flag needs an argument: " + what.substr(0, what.find(':')));
  } catch (const CLI::Error& e) {
    return Status::Error(std::string("bad command line: ") + e.what());
  }
  std::vector<std::string> rest = app.remaining();
  if (!rest.empty()) {
    const std::string& first = rest.front();
    if (first.size() > 1 && first[0] == '-' && first != "--") {
      return Status::Error("unknown flag: " + first.substr(0, first.find('=')));
    }
    const std::string& positional = first == "--" && rest.size() > 1 ? rest[1] : first;
    return Status::Error("unexpected argument \"" + positional +
                         "\": kube-router takes only flags");
  }
  Options options;
  for (const Flag& f : Flags()) {
    const ValueList& values = given[f.name];
    if (values.empty()) continue;
    Status s = f.apply(options, values);
    if (!s.ok()) return FlagError(f.name, s.message());
  }
  Status s = CheckValues(options);
  if (!s.ok()) return s;
  return options;
}

std::string HelpText(const std::string& program_name) {
  const Options defaults;
  std::ostringstream out;
  out << "Usage of " << program_name << ":\n";
  std::vector<std::pair<std::string, std::string>> rows;
  size_t width = 0;
  for (const Flag& f : Flags()) {
    std::string left =
        f.short_name ? std::string("  -") + f.short_name + ", --" + f.name : "      --" + f.name;
    if (!f.is_bool()) left += " " + f.type;
    std::string right = f.help;
    std::string def = f.show_default(defaults);
    if (!def.empty()) right += " (default " + def + ")";
    width = std::max(width, left.size());
    rows.emplace_back(std::move(left), std::move(right));
  }
  for (const auto& [left, right] : rows) {
    out << left << std::string(width - left.size() + 3, ' ') << right << "\n";
  }
  return out.str();
}

namespace {
bool IsLoopback(const IpAddress& ip) {
  if (ip.is_v4()) return ip.bytes()[0] == 127;
  return ip == *IpAddress::Parse("::1");
}
}  // namespace

Status ValidateForRun(const Options& o) {
  if (!o.run_router && !o.run_firewall && !o.run_service_proxy) {
    return Status::Error(
        "no controller enabled: set at least one of --run-router, --run-firewall, "
        "--run-service-proxy");
  }
  if (!o.enable_ipv4 && !o.enable_ipv6) {
    return Status::Error("both --enable-ipv4 and --enable-ipv6 are false");
  }
  if (o.run_router && o.gobgp_admin_port != 0) {
    // The status view is unauthenticated: loopback unless the operator asks for more.
    auto ip = IpAddress::Parse(o.gobgp_admin_address);
    if (!ip) {
      return Status::Error("--gobgp-admin-address \"" + o.gobgp_admin_address +
                           "\": want a literal IP address");
    }
    if (!IsLoopback(*ip) && !o.gobgp_admin_allow_remote) {
      return Status::Error("--gobgp-admin-address " + o.gobgp_admin_address +
                           " is not a loopback address: the status view has no authentication; "
                           "set --gobgp-admin-allow-remote to serve it there anyway");
    }
  }
  return Status::Ok();
}

}  // namespace kr
