#include "kube_router/netpol/naming.h"

#include <algorithm>

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

namespace {

void AppendField(std::string& out, std::string_view field) {
  out += std::to_string(field.size());
  out += ':';
  out += field;
}

std::string EncodeFields(const std::vector<std::string>& fields) {
  std::string out;
  for (const auto& field : fields) AppendField(out, field);
  return out;
}

// The requirements of a selector, normalised: matchLabels k=v is `k In (v)` (the same match),
// values sorted and unique (In/NotIn are set tests), requirements sorted and unique (an AND).
std::vector<std::vector<std::string>> Requirements(const k8s::LabelSelector* selector) {
  std::set<std::vector<std::string>> out;
  if (selector != nullptr) {
    for (const auto& [key, value] : selector->match_labels) out.insert({key, "In", value});
    for (const auto& req : selector->match_expressions) {
      std::set<std::string> values(req.values.begin(), req.values.end());
      std::vector<std::string> fields = {req.key, req.op};
      fields.insert(fields.end(), values.begin(), values.end());
      out.insert(std::move(fields));
    }
  }
  return {out.begin(), out.end()};
}

std::string CanonicalSelector(const k8s::LabelSelector* selector) {
  std::vector<std::string> encoded;
  for (const auto& req : Requirements(selector)) encoded.push_back(EncodeFields(req));
  return EncodeFields(encoded);
}

std::string DescribeSelector(const k8s::LabelSelector* selector) {
  std::string out;
  for (const auto& req : Requirements(selector)) {
    if (!out.empty()) out += ", ";
    out += req[0] + " " + req[1];
    if (req.size() > 2) {
      out += " (";
      for (size_t i = 2; i < req.size(); ++i) out += (i > 2 ? "," : "") + req[i];
      out += ")";
    }
  }
  return out.empty() ? "everything" : out;
}

std::string SortedUnique(std::vector<std::string> keys) {
  std::sort(keys.begin(), keys.end());
  keys.erase(std::unique(keys.begin(), keys.end()), keys.end());
  return EncodeFields(keys);
}

}  // namespace

std::string PodSelectionKey(const std::string& ns, const k8s::LabelSelector* namespace_selector,
                            const k8s::LabelSelector* pod_selector) {
  // A null pod selector and an empty one both pick every pod.
  if (namespace_selector == nullptr) {
    return EncodeFields({"namespace", ns, CanonicalSelector(pod_selector)});
  }
  return EncodeFields(
      {"namespaces", CanonicalSelector(namespace_selector), CanonicalSelector(pod_selector)});
}

std::string AllPodsSelectionKey() {
  static const k8s::LabelSelector kEverything;
  return PodSelectionKey("", &kEverything, nullptr);
}

std::string DescribeSelection(const std::string& ns, const k8s::LabelSelector* namespace_selector,
                              const k8s::LabelSelector* pod_selector) {
  std::string where = namespace_selector == nullptr
                          ? "namespace " + ns
                          : "namespaces matching " + DescribeSelector(namespace_selector);
  return "pods of " + where + " matching " + DescribeSelector(pod_selector);
}

std::string PodSetName(bool match_src, std::vector<std::string> selections,
                       netfilter::IpFamily family) {
  return SetFamilyPrefix(family) +
         HashedName(match_src ? "KUBE-SRC-" : "KUBE-DST-",
                    {"pods", netfilter::IpFamilyName(family), SortedUnique(std::move(selections))});
}

std::string NetSetName(bool match_src, const std::set<netfilter::IpsetEntry>& entries,
                       netfilter::IpFamily family) {
  std::vector<std::string> fields;
  for (const auto& entry : entries) {
    fields.push_back(EncodeFields({entry.address, entry.nomatch ? "nomatch" : "match"}));
  }
  return SetFamilyPrefix(family) +
         HashedName(match_src ? "KUBE-SRC-" : "KUBE-DST-",
                    {"nets", netfilter::IpFamilyName(family), EncodeFields(fields)});
}

std::string NamedPortSetName(std::vector<std::string> selections, const std::string& protocol,
                             const std::string& port_name, int32_t number,
                             netfilter::IpFamily family) {
  return SetFamilyPrefix(family) +
         HashedName("KUBE-DST-",
                    {"named-port", netfilter::IpFamilyName(family), protocol, port_name,
                     std::to_string(number), SortedUnique(std::move(selections))});
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
