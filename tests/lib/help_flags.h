// The flags kube-router's --help must list, with the default each shows, checked both on the
// options module's help text (unit) and on the real binary's output (netns).
#pragma once

#include <gtest/gtest.h>

#include <string>
#include <utility>

namespace kr::testing {

// The 2017 usage block, then the later flags the features need; "" = no default shown.
inline void ExpectHelpListsEveryFlagWithItsDefault(const std::string& help) {
  const std::pair<std::string, std::string> kFlags[] = {
      {"--advertise-cluster-ip", ""},
      {"--advertise-external-ip", ""},
      {"--cleanup-config", ""},
      {"--cluster-asn uint", ""},
      {"--cluster-cidr string", ""},
      {"--config-sync-period duration", "(default 1m0s)"},
      {"--enable-overlay", "(default true)"},
      {"--enable-pod-egress", "(default true)"},
      {"--hairpin-mode", ""},
      {"-h, --help", ""},
      {"--hostname-override string", ""},
      {"--iptables-sync-period duration", "(default 1m0s)"},
      {"--ipvs-sync-period duration", "(default 1m0s)"},
      {"--kubeconfig string", ""},
      {"--masquerade-all", ""},
      {"--master string", ""},
      {"--nodeport-bindon-all-ip", ""},
      {"--nodes-full-mesh", "(default true)"},
      {"--peer-router-asns uints", ""},
      {"--peer-router-ips ipSlice", ""},
      {"--peer-router-passwords strings", ""},
      {"--routes-sync-period duration", "(default 1m0s)"},
      {"--run-firewall", "(default true)"},
      {"--run-router", "(default true)"},
      {"--run-service-proxy", "(default true)"},
      {"--health-port uint16", "(default 20244)"},
      {"--metrics-port uint16", ""},
      {"--metrics-path string", "(default \"/metrics\")"},
      {"--cache-sync-timeout duration", "(default 1m0s)"},
      {"--bgp-port uint32", "(default 179)"},
      {"--bgp-holdtime duration", "(default 1m30s)"},
      {"--router-id string", ""},
      {"--enable-ibgp", "(default true)"},
      {"--advertise-pod-cidr", "(default true)"},
      {"--peer-router-ports uints", ""},
      {"--peer-router-multihop-ttl uint8", ""},
      {"--override-nexthop", ""},
      {"--enable-cni", "(default true)"},
      {"--excluded-cidrs strings", ""},
      {"--service-cluster-ip-range strings", "(default [10.96.0.0/12])"},
      {"--runtime-endpoint string", ""},
      {"-v, --v string", "(default \"0\")"},
      {"-V, --version", ""},
      {"--iptables-mode string", "(default \"auto\")"},
  };
  for (const auto& [flag, def] : kFlags) {
    SCOPED_TRACE(flag);
    size_t at = help.find(flag + " ");
    ASSERT_NE(at, std::string::npos) << help;
    std::string line = help.substr(at, help.find('\n', at) - at);
    if (def.empty()) {
      EXPECT_EQ(line.find("(default"), std::string::npos) << line;
    } else {
      EXPECT_NE(line.find(def), std::string::npos) << line;
    }
  }
}

}  // namespace kr::testing
