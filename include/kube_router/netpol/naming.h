// Names of the network policy chains and ipsets: kube-router's prefixes and lengths (reference
// §4.1), but every hashed name is HashedName(prefix, {kind, namespace, name, ...}) from
// base/hashed_name.h (length-prefixed fields, 16 base32 characters of SHA-256), not kube-router's
// plain concatenation. That keeps chain names within the 28 characters xtables allows and set
// names within ipset's 31, and no two objects share a name unless SHA-256 truncated to 80 bits
// collides (the compiler refuses a second owner of a name).
#pragma once

#include <string>
#include <string_view>

#include "kube_router/netfilter/iptables.h"

namespace kr::netpol {

inline constexpr char kInputChain[] = "KUBE-ROUTER-INPUT";
inline constexpr char kForwardChain[] = "KUBE-ROUTER-FORWARD";
inline constexpr char kOutputChain[] = "KUBE-ROUTER-OUTPUT";
inline constexpr char kDefaultChain[] = "KUBE-NWPLCY-DEFAULT";
inline constexpr char kCommonChain[] = "KUBE-NWPLCY-COMMON";
inline constexpr char kTailChain[] = "KUBE-NWPLCY-TAIL";
inline constexpr char kPodChainPrefix[] = "KUBE-POD-FW-";
inline constexpr char kPolicyChainPrefix[] = "KUBE-NWPLCY-";
inline constexpr char kLocalPodsSet[] = "kube-router-local-pods";

// Marks: "a policy permitted this packet" and "passed network policies".
inline constexpr char kAllowedMark[] = "0x10000/0x10000";
inline constexpr char kPassedMark[] = "0x20000/0x20000";

std::string PodChainName(const std::string& ns, const std::string& pod);
// One chain per policy and direction: a pod chain jumps to the ingress chain only for packets
// to the pod and to the egress chain only for packets from it, so one pod's egress check never
// runs the ingress rules that belong to the other end (and vice versa).
std::string PolicyChainName(const std::string& ns, const std::string& policy,
                            netfilter::IpFamily family, bool ingress);
// The set of a policy's target pods: KUBE-DST- (ingress) or KUBE-SRC- (egress).
std::string TargetSetName(bool ingress, const std::string& ns, const std::string& policy,
                          netfilter::IpFamily family);
// The peer set of ingress/egress rule `index`; `ip_block` selects the hash:net set of the
// rule's ipBlock peers without `except` (pod peers: hash:ip).
std::string PeerSetName(bool ingress, const std::string& ns, const std::string& policy,
                        size_t index, bool ip_block, netfilter::IpFamily family);
// The hash:net set of one ipBlock peer with `except` entries (peer `peer_index` of rule
// `index`): alone in its set, so its nomatch entries cannot cut another peer's block.
std::string IpBlockPeerSetName(bool ingress, const std::string& ns, const std::string& policy,
                               size_t index, size_t peer_index, netfilter::IpFamily family);
// The set of pods exposing named port group `port_index` of rule `index`.
std::string NamedPortSetName(bool ingress, const std::string& ns, const std::string& policy,
                             size_t index, size_t port_index, netfilter::IpFamily family);

// kube-router-local-pods (IPv6: inet6:kube-router-local-pods): the local pods whose chain is
// programmed, which --netpol-default-deny lets through.
std::string LocalPodsSetName(netfilter::IpFamily family);

// True for every chain and set name this controller creates (and may therefore delete).
bool IsOwnedChain(std::string_view chain);
bool IsOwnedSet(std::string_view set);

}  // namespace kr::netpol
