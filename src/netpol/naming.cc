#include "kube_router/netpol/naming.h"

#include "kube_router/base/sha256.h"

namespace kr::netpol {
namespace {

std::string SetFamilyPrefix(netfilter::IpFamily family) {
  return family == netfilter::IpFamily::kV6 ? "inet6:" : "";
}

}  // namespace

std::string HashName(std::string_view text) {
  static constexpr char kAlphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
  auto digest = Sha256(text);
  // 16 characters x 5 bits = 80 bits = the first 10 digest bytes.
  std::string out;
  uint64_t buffer = 0;
  int bits = 0;
  for (size_t i = 0; out.size() < 16; ++i) {
    buffer = (buffer << 8) | digest[i];
    bits += 8;
    while (bits >= 5 && out.size() < 16) {
      bits -= 5;
      out += kAlphabet[(buffer >> bits) & 0x1f];
    }
  }
  return out;
}

std::string PodChainName(const std::string& ns, const std::string& pod) {
  return kPodChainPrefix + HashName(ns + pod);
}

std::string PolicyChainName(const std::string& ns, const std::string& policy,
                            netfilter::IpFamily family) {
  return kPolicyChainPrefix + HashName(ns + policy + netfilter::IpFamilyName(family));
}

std::string TargetSetName(bool ingress, const std::string& ns, const std::string& policy,
                          netfilter::IpFamily family) {
  return SetFamilyPrefix(family) + (ingress ? "KUBE-DST-" : "KUBE-SRC-") +
         HashName(ns + policy + netfilter::IpFamilyName(family));
}

std::string PeerSetName(bool ingress, const std::string& ns, const std::string& policy,
                        size_t index, bool ip_block, netfilter::IpFamily family) {
  std::string key = ns + policy + (ingress ? "ingressrule" : "egressrule") + std::to_string(index) +
                    netfilter::IpFamilyName(family) + (ip_block ? "ipblock" : "pod");
  return SetFamilyPrefix(family) + (ingress ? "KUBE-SRC-" : "KUBE-DST-") + HashName(key);
}

std::string NamedPortSetName(bool ingress, const std::string& ns, const std::string& policy,
                             size_t index, size_t port_index, netfilter::IpFamily family) {
  std::string key = ns + policy + (ingress ? "ingressrule" : "egressrule") + std::to_string(index) +
                    std::to_string(port_index) + netfilter::IpFamilyName(family) + "namedport";
  return SetFamilyPrefix(family) + "KUBE-DST-" + HashName(key);
}

std::string LocalPodsSetName(netfilter::IpFamily family) {
  return SetFamilyPrefix(family) + kLocalPodsSet;
}

bool IsOwnedChain(std::string_view chain) {
  return chain == kInputChain || chain == kForwardChain || chain == kOutputChain ||
         chain.starts_with(kPodChainPrefix) || chain.starts_with(kPolicyChainPrefix);
}

bool IsOwnedSet(std::string_view set) {
  if (set.starts_with("inet6:")) set.remove_prefix(6);
  return set.starts_with("KUBE-SRC-") || set.starts_with("KUBE-DST-") ||
         set.starts_with("KUBE-TMP-") || set == kLocalPodsSet;
}

}  // namespace kr::netpol
