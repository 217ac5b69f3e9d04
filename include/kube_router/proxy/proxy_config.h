// The service proxy's settings, mapped from the command line in one place
// (ProxyConfigFromOptions in agent.h); tests build it directly.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

#include "kube_router/base/ip.h"
#include "kube_router/netlink/ipvs.h"

namespace kr::proxy {

struct ProxyConfig {
  std::string node_name;
  bool enable_ipv4 = true;
  bool enable_ipv6 = false;
  std::chrono::milliseconds sync_period{60'000};  // --ipvs-sync-period
  bool nodeport_bindon_all_ip = false;
  bool graceful_termination = false;                  // --ipvs-graceful-termination
  std::chrono::milliseconds graceful_period{30'000};  // --ipvs-graceful-period
  bool hairpin_mode = false;
  bool masquerade_all = false;
  bool permit_all = true;                // --ipvs-permit-all: the VIP firewall
  std::vector<IpPrefix> excluded_cidrs;  // IPVS services there are never touched
  std::vector<IpPrefix> cluster_ip_ranges;
  std::vector<IpPrefix> external_ip_ranges;
  std::vector<IpPrefix> loadbalancer_ip_ranges;
  bool strict_external_ip_validation = true;
  uint16_t node_port_first = 30000;  // --service-node-port-range: what NodePorts can be ours
  uint16_t node_port_last = 32767;
  netlink::IpvsTimeouts timeouts;  // --service-*-timeout; zero keeps the kernel's value
  // How often a pending graceful drain (or --nodeport-bindon-all-ip address changes) is
  // looked at between syncs.
  std::chrono::milliseconds tick{5'000};
  // The periodic verification runs in steps of at most this many items (a Service rebuilt or a
  // virtual service read back and compared); the runner serves events between the steps, so
  // an event waits for one step, not for the whole verification (docs/proxy.md).
  size_t verify_step_items = 64;
  // ... and of at most about this long (checked between items; 0: items only). A Service
  // rebuilt costs several times what a VIP or virtual service compared does.
  std::chrono::microseconds verify_step_time{2000};
  // A full sync (startup, repair) diffs and writes the virtual services in chunks of at most
  // this many, in order: a cold start's plan and write batch hold one chunk's changes, not all
  // of them (220,000 at 10k Services with two ports; docs/memory.md). The VIPs are added with
  // the first chunk and removed after the last.
  size_t full_sync_chunk = 256;

  bool FamilyEnabled(const IpAddress& ip) const { return ip.is_v4() ? enable_ipv4 : enable_ipv6; }
};

}  // namespace kr::proxy
