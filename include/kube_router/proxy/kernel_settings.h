// The kernel settings the service proxy needs, as kube-router sets them: IPVS sysctls,
// ARP behaviour, rp_filter loosened from strict (1) to loose (2) on the interfaces that carry
// service traffic, and the global IPVS timeouts from --service-{tcp,tcpfin,udp}-timeout. Every
// value is read first and written only when it differs, so the call is cheap enough for each
// periodic sync (vs.sloppy_tcp follows the DSR services). Nothing is reverted on cleanup.
#pragma once

#include <optional>
#include <set>
#include <string>
#include <vector>

#include "kube_router/base/status.h"
#include "kube_router/netlink/ipvs.h"
#include "kube_router/netlink/sysctl.h"

namespace kr::proxy {

struct KernelSettingsInput {
  // Some DSR service uses the mh scheduler (vs.sloppy_tcp=1, so a director that did not see
  // the SYN still forwards the rest of the flow).
  bool sloppy_tcp = false;
  // Interfaces whose IPv4 rp_filter goes from 1 to 2 besides "all": kube-bridge, kube-dummy-if
  // and the node's interface. A missing interface is skipped.
  std::vector<std::string> rp_filter_interfaces;
  // Seconds; 0 keeps the kernel's value (900 / 120 / 300).
  netlink::IpvsTimeouts timeouts;
  // uname -r; decides vs.conn_reuse_mode (see ConnReuseModeWanted). Empty: read uname.
  std::string kernel_release;
};

struct SysctlWrite {
  std::string key;
  std::string value;
  bool operator==(const SysctlWrite&) const = default;
};

// The fixed IPVS and ARP sysctls with the values kube-router writes, sloppy_tcp included;
// vs.conn_reuse_mode=0 only on kernels before 5.9 (docs/parity.md).
std::vector<SysctlWrite> ProxySysctls(const KernelSettingsInput& input);
// Whether kube-router's vs.conn_reuse_mode=0 is written for this kernel release ("6.1.0-18-amd64"):
// only before 5.9, where mode 1 dropped the SYN of a reused port (kernels >= 5.9 fixed that,
// and mode 0 there sends new connections to a removed backend: k/k #81775, #99162).
bool ConnReuseModeWanted(const std::string& kernel_release);

// Applies the sysctls, rp_filter and timeouts; call at start and on each periodic sync. A
// missing key (IPVS not loaded, interface absent) is logged once and skipped; other failures
// are returned after everything else was tried. The IPVS timeouts are sent when they differ
// from the last ones sent (the kernel's cannot be read back through the adapter), and only
// when non-zero. One writer; not thread-safe.
class KernelSettings {
 public:
  // `ipvs` may be null (no timeouts). Both outlive this object.
  KernelSettings(netlink::Sysctl* sysctl, netlink::Ipvs* ipvs);
  Status Apply(const KernelSettingsInput& input);

 private:
  netlink::Sysctl* sysctl_;
  netlink::Ipvs* ipvs_;
  std::set<std::string> reported_missing_;
  std::optional<netlink::IpvsTimeouts> sent_timeouts_;
};

}  // namespace kr::proxy
