// Kernel parameters as "net/bridge/bridge-nf-call-iptables" style keys (relative to
// /proc/sys). Sysctls under /proc/sys/net are per network namespace.
#pragma once

#include <string>

#include "kube_router/base/status.h"

namespace kr::netfilter {

class Sysctl {
 public:
  virtual ~Sysctl() = default;
  virtual Result<std::string> Get(const std::string& key) = 0;
  virtual Status Set(const std::string& key, const std::string& value) = 0;
};

}  // namespace kr::netfilter
