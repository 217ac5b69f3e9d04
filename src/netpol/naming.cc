#include "kube_router/netpol/naming.h"

#include "kube_router/base/hashed_name.h"

namespace kr::netpol {
namespace {

std::string SetFamilyPrefix(netfilter::IpFamily family) {
  return family == netfilter::IpFamily::kV6 ? "inet6:" : "";
}

std::string Direction(bool ingress) { return ingress ? "ingress" : "egress"; }

}  // namespace

// Every hashed name below goes through HashedName: its fields are length-prefixed, so no two
// (namespace, name, ...) tuples share an input (kube-router concatenates them: team-a/bx and
// team-ab/x collide there). Each kind adds a tag of its own as well.

std::string PodChainName(const std::string& ns, const std::string& pod) {
  return HashedName(kPodChainPrefix, {"pod", ns, pod});
}

std::string PolicyChainName(const std::string& ns, const std::string& policy,
                            netfilter::IpFamily family, bool ingress) {
  return HashedName(kPolicyChainPrefix,
                    {"policy", ns, policy, netfilter::IpFamilyName(family), Direction(ingress)});
}

std::string TargetSetName(bool ingress, const std::string& ns, const std::string& policy,
                          netfilter::IpFamily family) {
  return SetFamilyPrefix(family) +
         HashedName(ingress ? "KUBE-DST-" : "KUBE-SRC-",
                    {"targets", ns, policy, netfilter::IpFamilyName(family), Direction(ingress)});
}

std::string PeerSetName(bool ingress, const std::string& ns, const std::string& policy,
                        size_t index, bool ip_block, netfilter::IpFamily family) {
  return SetFamilyPrefix(family) +
         HashedName(ingress ? "KUBE-SRC-" : "KUBE-DST-",
                    {ip_block ? "ipblock-peers" : "pod-peers", ns, policy,
                     netfilter::IpFamilyName(family), Direction(ingress), std::to_string(index)});
}

std::string IpBlockPeerSetName(bool ingress, const std::string& ns, const std::string& policy,
                               size_t index, size_t peer_index, netfilter::IpFamily family) {
  return SetFamilyPrefix(family) +
         HashedName(ingress ? "KUBE-SRC-" : "KUBE-DST-",
                    {"ipblock-except-peer", ns, policy, netfilter::IpFamilyName(family),
                     Direction(ingress), std::to_string(index), std::to_string(peer_index)});
}

std::string NamedPortSetName(bool ingress, const std::string& ns, const std::string& policy,
                             size_t index, size_t port_index, netfilter::IpFamily family) {
  return SetFamilyPrefix(family) +
         HashedName("KUBE-DST-",
                    {"named-port", ns, policy, netfilter::IpFamilyName(family), Direction(ingress),
                     std::to_string(index), std::to_string(port_index)});
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
