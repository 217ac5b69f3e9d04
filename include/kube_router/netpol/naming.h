// Names of the network policy chains and ipsets: kube-router's prefixes and lengths (reference
// §4.1), but every hashed name is HashedName(prefix, {kind, namespace, name, ...}) from
// base/hashed_name.h (length-prefixed fields, 16 base32 characters of SHA-256), not kube-router's
// plain concatenation. That keeps chain names within the 28 characters xtables allows and set
// names within ipset's 31, and no two objects share a name unless SHA-256 truncated to 80 bits
// collides (the compiler refuses a second owner of a name).
#pragma once

#include <cstdint>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "kube_router/k8s/types.h"
#include "kube_router/netfilter/ipset.h"
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
// Policy ipsets are content-addressed: a set's name is derived from what decides its members
// (which pods a selector picks, which CIDRs a block lists), never from the policy that uses it,
// so every policy needing the same members uses one set (the compiler counts its users). The
// prefix says which address of a packet the set is matched against (kube-router's meaning:
// KUBE-SRC- source, KUBE-DST- destination), and the hash covers the prefix, the family and an
// unambiguous encoding of the identity (length-prefixed fields, as HashedName).

// Who a pod set selects, as canonical text: the pods of namespace `ns` (`namespace_selector`
// null) or of every namespace `namespace_selector` matches, filtered by `pod_selector` (null or
// empty: all). Selectors are normalised (matchLabels k=v is `k In (v)`; requirements and values
// sorted, duplicates dropped), so equal keys pick the same pods in every cluster.
std::string PodSelectionKey(const std::string& ns, const k8s::LabelSelector* namespace_selector,
                            const k8s::LabelSelector* pod_selector);
// Every pod of the cluster (an egress named port towards everyone).
std::string AllPodsSelectionKey();
// The readable form of a key for logs ("pods of namespace x matching app In (web)").
std::string DescribeSelection(const std::string& ns, const k8s::LabelSelector* namespace_selector,
                              const k8s::LabelSelector* pod_selector);

// The hash:ip set of the pods of the union of `selections` (keys in any order), matched
// against the source (`match_src`) or the destination address.
std::string PodSetName(bool match_src, std::vector<std::string> selections,
                       netfilter::IpFamily family);
// The hash:net set holding exactly `entries` (CIDRs, nomatch excepts).
std::string NetSetName(bool match_src, const std::set<netfilter::IpsetEntry>& entries,
                       netfilter::IpFamily family);
// The pods of the union of `selections` that expose named port `port_name` for `protocol` as
// `number` (matched against the destination).
std::string NamedPortSetName(std::vector<std::string> selections, const std::string& protocol,
                             const std::string& port_name, int32_t number,
                             netfilter::IpFamily family);

// kube-router-local-pods (IPv6: inet6:kube-router-local-pods): the local pods whose chain is
// programmed, which --netpol-default-deny lets through.
std::string LocalPodsSetName(netfilter::IpFamily family);

// True for every chain and set name this controller creates (and may therefore delete).
bool IsOwnedChain(std::string_view chain);
bool IsOwnedSet(std::string_view set);

}  // namespace kr::netpol
