// Sysctl: kernel parameters under /proc/sys. Keys are given in dotted form
// ("net.ipv4.vs.conntrack") or as a path below /proc/sys ("net/ipv4/conf/eth0.100/rp_filter")
// when a component itself holds a dot (VLAN interface names).
#pragma once

#include <map>
#include <memory>
#include <string>

#include "kube_router/base/status.h"

namespace kr::netlink {

class Sysctl {
 public:
  virtual ~Sysctl() = default;
  // The value with surrounding white space removed.
  virtual Result<std::string> Get(const std::string& key) = 0;
  virtual Status Set(const std::string& key, const std::string& value) = 0;
};

// The path below the sysctl root for a key ("net.ipv4.ip_forward" -> "net/ipv4/ip_forward").
std::string SysctlPath(const std::string& key);

// Reads and writes files under `root` (/proc/sys; tests pass a temporary directory). /proc/sys/net
// shows the network namespace of the calling thread.
std::unique_ptr<Sysctl> MakeProcSysctl(std::string root = "/proc/sys");

}  // namespace kr::netlink
