// Every command-line flag of the agent, in one flat struct (kube-router: pkg/options/options.go).
// Field defaults ARE the flag defaults: --help prints them from a default-constructed Options.
// Values are parsed Go-style (pflag): booleans `--flag` / `--flag=true|false`, durations as Go
// writes them (`300ms`, `1m0s`, `2h22m`), slices comma-separated and/or repeated.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

#include "kube_router/base/ip.h"
#include "kube_router/base/status.h"

namespace kr {

using std::chrono::milliseconds;

struct Options {
  // ---- global / process ----
  std::string kubeconfig;
  std::string master;
  std::string hostname_override;
  bool cleanup_config = false;
  bool run_router = true;
  bool run_firewall = true;
  bool run_service_proxy = true;
  bool run_loadbalancer = false;
  bool enable_ipv4 = true;
  bool enable_ipv6 = false;
  milliseconds cache_sync_timeout{60'000};
  uint16_t health_port = 20244;  // 0 disables the HTTP endpoint
  std::string health_addr;       // empty = all addresses
  uint16_t metrics_port = 0;     // 0 disables metrics
  std::string metrics_path = "/metrics";
  std::string metrics_addr;
  bool enable_pprof = false;
  int verbosity = 0;  // -v / --v (klog style)
  bool version = false;
  bool help = false;
  // Removed upstream but part of the 2017 command line; kept so old invocations still parse.
  std::string cluster_cidr;
  milliseconds config_sync_period{60'000};

  // ---- service proxy (IPVS) ----
  milliseconds ipvs_sync_period{60'000};
  bool masquerade_all = false;
  bool nodeport_bindon_all_ip = false;
  bool hairpin_mode = false;
  bool ipvs_graceful_termination = false;
  milliseconds ipvs_graceful_period{30'000};
  bool ipvs_permit_all = true;
  std::vector<IpPrefix> excluded_cidrs;
  std::vector<IpPrefix> service_cluster_ip_range{*IpPrefix::Parse("10.96.0.0/12")};
  std::vector<IpPrefix> service_external_ip_range;
  std::vector<IpPrefix> loadbalancer_ip_range;
  bool strict_external_ip_validation = true;
  std::string service_node_port_range = "30000-32767";  // validated "a-b" or "a:b"
  uint16_t node_port_range_first = 30000;               // parsed from the flag above
  uint16_t node_port_range_last = 32767;
  std::string runtime_endpoint;
  milliseconds service_tcp_timeout{0};  // 0 = keep the kernel's value
  milliseconds service_tcpfin_timeout{0};
  milliseconds service_udp_timeout{0};

  // ---- network policy ----
  milliseconds iptables_sync_period{60'000};
  bool netpol_default_deny = false;
  bool netpol_beta_namespace_isolation = false;  // ours: the beta namespace annotation
  bool use_nftables_for_netpol = false;
  std::string iptables_mode = "auto";  // ours: auto | nft | legacy

  // ---- routing / BGP / CNI ----
  milliseconds routes_sync_period{60'000};
  milliseconds injected_routes_sync_period{60'000};
  uint32_t cluster_asn = 0;  // 0 = 64512
  bool nodes_full_mesh = true;
  bool enable_ibgp = true;
  std::vector<IpAddress> peer_router_ips;
  std::vector<uint32_t> peer_router_asns;
  std::vector<std::string> peer_router_passwords;  // base64; never log these
  std::string peer_router_passwords_file;
  std::vector<uint32_t> peer_router_ports;
  uint8_t peer_router_multihop_ttl = 0;
  uint32_t bgp_port = 179;
  milliseconds bgp_holdtime{90'000};
  bool bgp_graceful_restart = false;
  bool bgp_ttl_security = false;  // ours: GTSM towards directly connected peers
  milliseconds bgp_graceful_restart_time{90'000};
  milliseconds bgp_graceful_restart_deferral_time{360'000};
  std::string router_id;  // "", "generate" or an IPv4 address
  bool override_nexthop = false;
  bool advertise_cluster_ip = false;
  bool advertise_external_ip = false;
  bool advertise_loadbalancer_ip = false;
  bool advertise_pod_cidr = true;
  bool enable_overlay = true;
  std::string overlay_type = "subnet";  // subnet | full
  std::string overlay_encap = "ipip";   // ipip | fou
  uint16_t overlay_encap_port = 5555;
  bool enable_pod_egress = true;
  bool enable_cni = true;
  bool auto_mtu = true;
  bool disable_source_dest_check = true;
  uint16_t gobgp_admin_port = 50051;
  std::string gobgp_admin_address = "127.0.0.1";
  bool gobgp_admin_allow_remote = false;
  bool enable_bfd = false;
  uint32_t bfd_port = 3784;
  uint32_t bfd_detection_multiplier = 3;
  uint32_t bfd_desired_min_tx_interval = 1000;  // milliseconds
  uint32_t bfd_required_min_rx_interval = 1000;

  // ---- load balancer allocator ----
  bool loadbalancer_default_class = true;
  milliseconds loadbalancer_sync_period{60'000};
};

// Parses argv (argv[0] is the program name). An error means "exit with status 2": its message
// is one line naming the flag and what was wrong (unknown flag, bad value, positional
// argument). --help and --version set `help` / `version` and still return the options.
Result<Options> ParseOptions(int argc, const char* const* argv);

// The --help text: every flag with its type, description and default.
std::string HelpText(const std::string& program_name);

// Checks that make the whole configuration unusable but are not about one bad flag value
// (for example no --run-* controller enabled). The caller exits non-zero on error.
Status ValidateForRun(const Options& options);

// Go's time.Duration text form ("1m0s", "300ms", "0s"), as pflag prints defaults.
std::string FormatGoDuration(milliseconds d);
// Parses Go's duration syntax into nanoseconds; nullopt-like error on bad syntax or overflow.
Result<int64_t> ParseGoDurationNanos(const std::string& text);
// Go's strconv.ParseBool.
Result<bool> ParseGoBool(const std::string& text);

}  // namespace kr
