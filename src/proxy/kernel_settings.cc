#include "kube_router/proxy/kernel_settings.h"

#include <sys/utsname.h>

#include <cstdio>

#include "kube_router/base/log.h"

namespace kr::proxy {
namespace {

std::string RunningKernelRelease() {
  struct utsname name {};
  if (uname(&name) != 0) return "";
  return name.release;
}

bool SameTimeouts(const netlink::IpvsTimeouts& a, const netlink::IpvsTimeouts& b) {
  return a.tcp == b.tcp && a.tcp_fin == b.tcp_fin && a.udp == b.udp;
}

}  // namespace

bool ConnReuseModeWanted(const std::string& kernel_release) {
  int major = 0;
  int minor = 0;
  // The widths bound each number to 4 digits, so neither conversion can overflow an int.
  // NOLINTNEXTLINE(cert-err34-c)
  if (std::sscanf(kernel_release.c_str(), "%4d.%4d", &major, &minor) != 2) return true;
  return major < 5 || (major == 5 && minor < 9);
}

std::vector<SysctlWrite> ProxySysctls(const KernelSettingsInput& input) {
  std::vector<SysctlWrite> writes = {
      {"net.ipv4.vs.conntrack", "1"},
      {"net.ipv4.vs.expire_nodest_conn", "1"},
      {"net.ipv4.vs.expire_quiescent_template", "1"},
  };
  const std::string release =
      input.kernel_release.empty() ? RunningKernelRelease() : input.kernel_release;
  if (ConnReuseModeWanted(release)) writes.push_back({"net.ipv4.vs.conn_reuse_mode", "0"});
  writes.push_back({"net.ipv4.conf.all.arp_ignore", "1"});
  writes.push_back({"net.ipv4.conf.all.arp_announce", "2"});
  writes.push_back({"net.ipv4.vs.sloppy_tcp", input.sloppy_tcp ? "1" : "0"});
  return writes;
}

KernelSettings::KernelSettings(netlink::Sysctl* sysctl, netlink::Ipvs* ipvs)
    : sysctl_(sysctl), ipvs_(ipvs) {}

Status KernelSettings::Apply(const KernelSettingsInput& input) {
  Status result = Status::Ok();
  auto fail = [&](Status s) {
    KR_LOG_ERROR("service proxy kernel settings: {}", s.message());
    if (result.ok()) result = std::move(s);
  };
  // Reads first: a missing key is skipped (logged once), an equal value is not written.
  auto ensure = [&](const std::string& key, const std::string& value, bool only_if_strict) {
    auto current = sysctl_->Get(key);
    if (!current.ok()) {
      if (reported_missing_.insert(key).second) {
        KR_LOG_WARN("sysctl {} not available, skipped: {}", key, current.error());
      }
      return;
    }
    reported_missing_.erase(key);
    if (*current == value) return;
    if (only_if_strict && *current != "1") return;  // rp_filter 0 (off) or 2 (loose) stays
    if (auto s = sysctl_->Set(key, value); !s.ok()) fail(s);
  };
  for (const auto& write : ProxySysctls(input)) ensure(write.key, write.value, false);
  // Strict reverse-path filtering drops replies of IPVS-forwarded and DSR traffic that arrive
  // on another interface than the route back; kube-router loosens 1 (strict) to 2 (loose).
  ensure("net/ipv4/conf/all/rp_filter", "2", true);
  for (const auto& link : input.rp_filter_interfaces) {
    if (link.empty() || link.find('/') != std::string::npos) continue;
    ensure("net/ipv4/conf/" + link + "/rp_filter", "2", true);
  }
  const auto& t = input.timeouts;
  const bool any = t.tcp != 0 || t.tcp_fin != 0 || t.udp != 0;
  if (ipvs_ != nullptr && any && (!sent_timeouts_ || !SameTimeouts(*sent_timeouts_, t))) {
    if (auto s = ipvs_->SetTimeouts(t); !s.ok()) {
      fail(s.Context("setting the IPVS timeouts"));
    } else {
      sent_timeouts_ = t;
    }
  }
  return result;
}

}  // namespace kr::proxy
