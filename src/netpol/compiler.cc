#include "kube_router/netpol/compiler.h"

#include <algorithm>
#include <set>
#include <tuple>
#include <unordered_map>

#include "kube_router/base/hashed_name.h"
#include "kube_router/netpol/naming.h"
#include "kube_router/netpol/selector.h"

namespace kr::netpol {

using netfilter::Chain;
using netfilter::IpFamily;
using netfilter::IpsetEntry;
using netfilter::IpsetSet;
using netfilter::IpsetType;

size_t DesiredState::RuleCount() const {
  size_t n = 0;
  for (const auto& [name, chain] : chains) n += chain.rules.size();
  return n;
}

std::string PolicyPodIp(const k8s::Pod& pod, IpFamily family) {
  if (pod.host_network || pod.phase == "Succeeded" || pod.phase == "Failed") return "";
  auto matches = [&](const std::string& ip) {
    auto parsed = IpAddress::Parse(ip);
    return parsed && parsed->is_v4() == (family == IpFamily::kV4);
  };
  for (const auto& ip : pod.pod_ips) {
    if (matches(ip)) return IpAddress::Parse(ip)->ToString();
  }
  if (!pod.pod_ip.empty() && matches(pod.pod_ip)) return IpAddress::Parse(pod.pod_ip)->ToString();
  return "";
}

namespace {

struct PodRef {
  const k8s::Pod* pod;
  std::string ip;
};

// A port the rule allows: `dport` empty means every port of the protocol, `protocol` empty
// means every protocol (a rule with no ports).
struct PortMatch {
  std::string protocol;
  std::string dport;
};

struct NamedPort {
  std::string protocol;
  std::string name;
};

struct RulePorts {
  bool all = false;
  std::vector<PortMatch> numeric;
  std::vector<NamedPort> named;
};

std::string Lower(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return std::tolower(c); });
  return s;
}

// iptables comments: no quotes or control characters, at most 120 bytes (kube-router clamps so).
std::string Comment(const std::string& text) {
  std::string clean;
  for (char c : text) {
    if (c != '"' && c != '\\' && static_cast<unsigned char>(c) >= 0x20) clean += c;
  }
  if (clean.size() > 120) clean.resize(120);
  return "-m comment --comment \"" + clean + "\"";
}

// A canonical text of a selector (maps are ordered), used as a cache key.
std::string SelectorKey(const k8s::LabelSelector& selector) {
  std::string key;
  for (const auto& [k, v] : selector.match_labels) key += k + "=" + v + ",";
  for (const auto& req : selector.match_expressions) {
    key += ";" + req.key + " " + req.op;
    for (const auto& v : req.values) key += " " + v;
  }
  return key;
}

std::string Join(const std::string& a, const std::string& b) { return a.empty() ? b : a + " " + b; }

std::string MatchSet(const std::string& set, const char* direction) {
  return "-m set --match-set " + set + " " + direction;
}

k8s::Labels EffectiveNamespaceLabels(const std::string& name, const k8s::Namespace* ns) {
  k8s::Labels labels = ns != nullptr ? ns->meta.labels : k8s::Labels{};
  // The API server sets this label on every namespace; fakes and old servers may not.
  labels["kubernetes.io/metadata.name"] = name;
  return labels;
}

// The pods (with an address of the family) and namespace labels of one view, indexed the way
// selectors are evaluated.
class ClusterIndex {
 public:
  ClusterIndex(const ClusterView& view, const NetpolConfig& config, IpFamily family) {
    for (const auto& ns : view.namespaces) {
      namespace_labels_[ns->meta.name] = EffectiveNamespaceLabels(ns->meta.name, ns.get());
    }
    for (const auto& pod : view.pods) {
      std::string ip = PolicyPodIp(*pod, family);
      if (ip.empty()) continue;
      PodRef ref{pod.get(), ip};
      pods_by_namespace_[pod->meta.namespace_].push_back(ref);
      if (pod->node_name == config.node_name) local_pods_.push_back(ref);
    }
    std::sort(local_pods_.begin(), local_pods_.end(), [](const PodRef& a, const PodRef& b) {
      return a.pod->meta.Key() < b.pod->meta.Key();
    });
  }

  const k8s::Labels& NamespaceLabels(const std::string& ns) const {
    auto it = namespace_labels_.find(ns);
    if (it != namespace_labels_.end()) return it->second;
    return namespace_labels_.emplace(ns, EffectiveNamespaceLabels(ns, nullptr)).first->second;
  }

  const std::map<std::string, std::vector<PodRef>>& pods_by_namespace() const {
    return pods_by_namespace_;
  }
  const std::vector<PodRef>& local_pods() const { return local_pods_; }

  std::vector<PodRef> PodsIn(const std::string& ns, const k8s::LabelSelector* selector) const {
    std::vector<PodRef> pods;
    auto it = pods_by_namespace_.find(ns);
    if (it == pods_by_namespace_.end()) return pods;
    for (const auto& ref : it->second) {
      if (selector == nullptr || SelectorMatches(*selector, ref.pod->meta.labels)) {
        pods.push_back(ref);
      }
    }
    return pods;
  }

 private:
  // Mutable: a namespace with pods but no Namespace object gets its default labels on demand.
  mutable std::map<std::string, k8s::Labels> namespace_labels_;
  std::map<std::string, std::vector<PodRef>> pods_by_namespace_;
  std::vector<PodRef> local_pods_;
};

// A selector peer the policy's sets were built from: pods of the policy's namespace (no
// namespace selector) or of the matching namespaces, filtered by the pod selector if any.
struct PeerRead {
  const k8s::LabelSelector* namespace_selector;
  const k8s::LabelSelector* pod_selector;
};

// One policy's share of the DesiredState, and what it read (to know when to recompile it).
// Selector pointers point into `policy`, which this record keeps alive.
struct CompiledPolicy {
  std::shared_ptr<const k8s::NetworkPolicy> policy;
  // Its ingress and egress chains (empty: none for that direction, or not programmed).
  std::string ingress_chain;
  std::string egress_chain;
  std::vector<std::string> sets;
  std::vector<std::string> problems;
  std::vector<std::string> local_targets;  // keys of the pods on this node it selects
  const k8s::LabelSelector* target_selector = nullptr;
  std::vector<PeerRead> peer_reads;
  bool reads_all_pods = false;  // an egress named port towards everyone
  // Names another owner already held (a hash collision): the policy is then not programmed
  // (no chains, `sets` empty) and its targets stay isolated in its directions.
  std::vector<std::string> collisions;
};

// A pod that changed between two views, before and after (either may be null).
struct PodChange {
  const k8s::Pod* before;
  const k8s::Pod* after;
  bool labels_only;  // same addresses, phase, node, ports: peer membership by namespace holds
};

// A namespace whose effective labels changed (or which appeared or went away).
struct NamespaceChange {
  k8s::Labels before;
  k8s::Labels after;
};

bool ReadsPod(const CompiledPolicy& compiled, const k8s::Pod& pod, bool labels_only,
              const ClusterIndex& index) {
  if (compiled.reads_all_pods) return true;
  const std::string& policy_ns = compiled.policy->meta.namespace_;
  const std::string& ns = pod.meta.namespace_;
  if (compiled.target_selector != nullptr && ns == policy_ns &&
      SelectorMatches(*compiled.target_selector, pod.meta.labels)) {
    return true;
  }
  for (const auto& read : compiled.peer_reads) {
    bool in_namespace = read.namespace_selector == nullptr
                            ? ns == policy_ns
                            : SelectorMatches(*read.namespace_selector, index.NamespaceLabels(ns));
    if (!in_namespace) continue;
    if (read.pod_selector == nullptr) {
      if (!labels_only) return true;
    } else if (SelectorMatches(*read.pod_selector, pod.meta.labels)) {
      return true;
    }
  }
  return false;
}

bool NeedsRecompile(const CompiledPolicy& compiled, const std::vector<PodChange>& pods,
                    const std::vector<NamespaceChange>& namespaces, const ClusterIndex& index) {
  for (const auto& change : pods) {
    for (const k8s::Pod* pod : {change.before, change.after}) {
      if (pod != nullptr && ReadsPod(compiled, *pod, change.labels_only, index)) return true;
    }
  }
  for (const auto& change : namespaces) {
    for (const auto& read : compiled.peer_reads) {
      if (read.namespace_selector == nullptr) continue;
      if (SelectorMatches(*read.namespace_selector, change.before) ||
          SelectorMatches(*read.namespace_selector, change.after)) {
        return true;
      }
    }
  }
  return false;
}

// Compiles policies one at a time into a DesiredState, recording in each CompiledPolicy what it
// produced and read. Peer results are shared across the policies of one pass: clusters repeat a
// few selectors across many policies, and a namespace selector has to look at every pod.
class PolicyCompiler {
 public:
  PolicyCompiler(const ClusterIndex& index, const std::string& local_node, IpFamily family,
                 NameOwners& owners, DesiredState& out)
      : index_(index), local_node_(local_node), family_(family), owners_(owners), out_(out) {}

  CompiledPolicy Compile(std::shared_ptr<const k8s::NetworkPolicy> policy_ptr) {
    CompiledPolicy compiled;
    compiled.policy = std::move(policy_ptr);
    record_ = &compiled;
    const k8s::NetworkPolicy& policy = *compiled.policy;
    if (auto s = ValidateSelector(policy.pod_selector); !s.ok()) {
      Problem(policy, "podSelector: " + s.message() + "; policy skipped");
      return compiled;
    }
    if (!policy.policy_ingress && !policy.policy_egress) return compiled;
    compiled.target_selector = &policy.pod_selector;
    auto targets = index_.PodsIn(policy.meta.namespace_, &policy.pod_selector);
    std::vector<std::pair<bool, Chain>> chains;  // claimed, by direction (true: ingress)
    for (bool ingress : {true, false}) {
      if (!(ingress ? policy.policy_ingress : policy.policy_egress)) continue;
      Chain chain;
      chain.name = PolicyChainName(policy.meta.namespace_, policy.meta.name, family_, ingress);
      bool claimed = Claim(chain.name, "chain", ingress ? "ingress chain" : "egress chain");
      CompileDirection(policy, ingress, targets, chain);
      if (claimed) chains.emplace_back(ingress, std::move(chain));
    }
    for (const auto& ref : targets) {
      if (ref.pod->node_name == local_node_) compiled.local_targets.push_back(ref.pod->meta.Key());
    }
    if (!compiled.collisions.empty()) {
      // Programming part of a policy could widen or narrow it: none of it is written.
      for (const auto& name : compiled.sets) {
        out_.sets.erase(name);
        owners_.Release(name);
      }
      compiled.sets.clear();
      for (const auto& [ingress, chain] : chains) owners_.Release(chain.name);
      return compiled;
    }
    for (auto& [ingress, chain] : chains) {
      (ingress ? compiled.ingress_chain : compiled.egress_chain) = chain.name;
      out_.chains[chain.name] = std::move(chain);
    }
    return compiled;
  }

 private:
  void Problem(const k8s::NetworkPolicy& policy, const std::string& what) {
    record_->problems.push_back("NetworkPolicy " + policy.meta.Key() + ": " + what);
  }

  // Pods a selector peer names; null (with a logged problem) for an invalid selector.
  const std::vector<PodRef>* PeerPods(const k8s::NetworkPolicy& policy,
                                      const k8s::NetworkPolicyPeer& peer,
                                      const std::string& where) {
    for (const auto* selector : {peer.pod_selector ? &*peer.pod_selector : nullptr,
                                 peer.namespace_selector ? &*peer.namespace_selector : nullptr}) {
      if (selector == nullptr) continue;
      if (auto s = ValidateSelector(*selector); !s.ok()) {
        Problem(policy, where + ": " + s.message() + "; peer skipped");
        return nullptr;
      }
    }
    const k8s::LabelSelector* pod_selector = peer.pod_selector ? &*peer.pod_selector : nullptr;
    const k8s::LabelSelector* ns_selector =
        peer.namespace_selector ? &*peer.namespace_selector : nullptr;
    record_->peer_reads.push_back({ns_selector, pod_selector});
    std::string key =
        (ns_selector ? "sel:" + SelectorKey(*ns_selector) : "ns:" + policy.meta.namespace_) + "|" +
        (pod_selector ? SelectorKey(*pod_selector) : "*");
    auto cached = peer_cache_.find(key);
    if (cached != peer_cache_.end()) return &cached->second;
    std::vector<PodRef>& pods = peer_cache_[key];
    if (ns_selector == nullptr) {
      pods = index_.PodsIn(policy.meta.namespace_, pod_selector);
      return &pods;
    }
    for (const auto& [ns, refs] : index_.pods_by_namespace()) {
      if (!SelectorMatches(*ns_selector, index_.NamespaceLabels(ns))) continue;
      auto in_ns = index_.PodsIn(ns, pod_selector);
      pods.insert(pods.end(), in_ns.begin(), in_ns.end());
    }
    return &pods;
  }

  // Adds an ipBlock's CIDR and its excepted ranges (as nomatch) for this family. False (with a
  // logged problem) when the block is invalid; true and no entries for the other family.
  bool AddIpBlock(const k8s::NetworkPolicy& policy, const k8s::IpBlock& block,
                  const std::string& where, std::set<IpsetEntry>& entries) {
    auto cidr = IpPrefix::Parse(block.cidr);
    if (!cidr || block.cidr.find('/') == std::string::npos) {
      Problem(policy, where + ": invalid CIDR \"" + block.cidr + "\"; peer skipped");
      return false;
    }
    std::vector<IpPrefix> excepts;
    for (const auto& text : block.except) {
      auto except = IpPrefix::Parse(text);
      if (!except || text.find('/') == std::string::npos) {
        Problem(policy, where + ": invalid except CIDR \"" + text + "\"; peer skipped");
        return false;
      }
      if (except->is_v4() != cidr->is_v4() || except->length() <= cidr->length() ||
          !cidr->Contains(*except)) {
        Problem(policy, where + ": except " + text + " is not inside ipBlock " + block.cidr +
                            "; peer skipped");
        return false;
      }
      excepts.push_back(*except);
    }
    if (cidr->is_v4() != (family_ == IpFamily::kV4)) return true;
    if (cidr->length() == 0) {
      // hash:net cannot hold a /0: two halves cover the same space.
      static constexpr const char* kV4Halves[] = {"0.0.0.0/1", "128.0.0.0/1"};
      static constexpr const char* kV6Halves[] = {"::/1", "8000::/1"};
      for (const char* half : family_ == IpFamily::kV4 ? kV4Halves : kV6Halves) {
        entries.insert({half, false});
      }
    } else {
      entries.insert(netfilter::CanonicalEntry({cidr->ToString(), false}));
    }
    for (const auto& except : excepts) {
      entries.insert(netfilter::CanonicalEntry({except.ToString(), true}));
    }
    return true;
  }

  // Validated ports of a rule; nullopt when the rule listed ports and none was valid (the
  // rule then allows nothing instead of everything).
  std::optional<RulePorts> ResolvePorts(const k8s::NetworkPolicy& policy,
                                        const k8s::NetworkPolicyRule& rule,
                                        const std::string& where) {
    RulePorts ports;
    if (rule.ports.empty()) {
      ports.all = true;
      return ports;
    }
    for (size_t i = 0; i < rule.ports.size(); ++i) {
      const auto& port = rule.ports[i];
      std::string at = where + " port " + std::to_string(i);
      std::string protocol = port.protocol.empty() ? "tcp" : Lower(port.protocol);
      if (protocol != "tcp" && protocol != "udp" && protocol != "sctp") {
        Problem(policy, at + ": unknown protocol \"" + port.protocol + "\"; port skipped");
        continue;
      }
      if (!port.port) {
        if (port.end_port) {
          Problem(policy, at + ": endPort without port; port skipped");
          continue;
        }
        ports.numeric.push_back({protocol, ""});
        continue;
      }
      if (port.port->is_string) {
        if (port.end_port) {
          Problem(policy,
                  at + ": endPort with named port \"" + port.port->text + "\"; port skipped");
          continue;
        }
        ports.named.push_back({protocol, port.port->text});
        continue;
      }
      int32_t first = port.port->number;
      if (first < 1 || first > 65535) {
        Problem(policy, at + ": port " + std::to_string(first) + " out of range; port skipped");
        continue;
      }
      std::string dport = std::to_string(first);
      if (port.end_port) {
        int32_t last = *port.end_port;
        if (last < first || last > 65535) {
          Problem(policy, at + ": endPort " + std::to_string(last) + " is less than port " +
                              std::to_string(first) + " or out of range; port skipped");
          continue;
        }
        if (last != first) dport += ":" + std::to_string(last);
      }
      ports.numeric.push_back({protocol, dport});
    }
    if (ports.numeric.empty() && ports.named.empty()) return std::nullopt;
    return ports;
  }

  // Records this policy as the owner of `name` (for `purpose`); false, with the collision
  // recorded, when another owner holds it.
  bool Claim(const std::string& name, const char* kind, const std::string& purpose) {
    std::string owner = "NetworkPolicy " + record_->policy->meta.Key() + " (" + purpose + ")";
    auto holder = owners_.Claim(name, owner);
    if (!holder) return true;
    record_->collisions.push_back(owner + ": " + kind + " name " + name + " is already held by " +
                                  *holder + " (hash collision); policy not programmed, " +
                                  "its pods stay isolated");
    return false;
  }

  IpsetSet& AddSet(const std::string& name, IpsetType type, const std::string& purpose) {
    if (!Claim(name, "ipset", purpose)) {
      scratch_ = IpsetSet{};  // filled and thrown away
      return scratch_;
    }
    auto& set = out_.sets[name];
    if (set.name.empty()) record_->sets.push_back(name);
    set.name = name;
    set.type = type;
    set.family = family_;
    return set;
  }

  static void AllowPair(Chain& chain, const std::string& comment, const std::string& match) {
    chain.rules.push_back(comment + " " + match + " -j MARK --set-xmark " + kAllowedMark);
    chain.rules.push_back(comment + " " + match + " -m mark --mark " + kAllowedMark + " -j RETURN");
  }

  static std::string PortText(const PortMatch& port) {
    if (port.protocol.empty()) return "";
    std::string text = " -p " + port.protocol;
    if (!port.dport.empty()) text += " --dport " + port.dport;
    return text;
  }

  // Named ports resolved against `pods`: one set per distinct (protocol, number), since the same
  // name can mean different numbers on different pods.
  void AddNamedPortRules(const k8s::NetworkPolicy& policy, bool ingress, size_t rule_index,
                         const RulePorts& ports, const std::vector<PodRef>& pods,
                         const std::vector<std::string>& peer_matches,
                         const std::string& target_match, Chain& chain, const std::string& comment,
                         const std::string& where, size_t& named_index) {
    for (const auto& named : ports.named) {
      std::map<int32_t, std::set<std::string>> ips_by_port;
      for (const auto& ref : pods) {
        for (const auto& cp : ref.pod->container_ports) {
          if (cp.name == named.name &&
              Lower(cp.protocol.empty() ? "TCP" : cp.protocol) == named.protocol) {
            ips_by_port[cp.container_port].insert(ref.ip);
          }
        }
      }
      if (ips_by_port.empty()) {
        Problem(policy, where + ": named port \"" + named.name + "\" (" + named.protocol +
                            ") is not exposed by any selected pod; it allows nothing");
        continue;
      }
      for (const auto& [number, ips] : ips_by_port) {
        size_t port_index = named_index++;
        std::string set_name = NamedPortSetName(ingress, policy.meta.namespace_, policy.meta.name,
                                                rule_index, port_index, family_);
        auto& set =
            AddSet(set_name, IpsetType::kHashIp,
                   std::string(ingress ? "ingress" : "egress") + " rule " +
                       std::to_string(rule_index) + " named port " + std::to_string(port_index));
        for (const auto& ip : ips) set.entries.insert({ip, false});
        std::string port_text = PortText({named.protocol, std::to_string(number)});
        for (const auto& peer : peer_matches) {
          // Ingress: peer source and the named-port set as destination. Egress: the targets as
          // source and the named-port set (already only the peer pods) as destination.
          std::string match = Join(ingress ? peer : target_match, MatchSet(set_name, "dst"));
          AllowPair(chain, comment, match + port_text);
        }
      }
    }
  }

  void CompileDirection(const k8s::NetworkPolicy& policy, bool ingress,
                        const std::vector<PodRef>& targets, Chain& chain) {
    const auto& ns = policy.meta.namespace_;
    const auto& rules = ingress ? policy.ingress : policy.egress;
    std::string target_set = TargetSetName(ingress, ns, policy.meta.name, family_);
    auto& tset = AddSet(target_set, IpsetType::kHashIp,
                        std::string(ingress ? "ingress" : "egress") + " targets");
    for (const auto& ref : targets) tset.entries.insert({ref.ip, false});
    // Ingress: the targets are the destination; egress: the source.
    std::string target_match = MatchSet(target_set, ingress ? "dst" : "src");
    const char* peer_dir = ingress ? "src" : "dst";

    for (size_t i = 0; i < rules.size(); ++i) {
      const auto& rule = rules[i];
      std::string where =
          std::string(ingress ? "ingress" : "egress") + " rule " + std::to_string(i);
      std::string comment = Comment(policy.meta.Key() + " " + where);
      auto ports = ResolvePorts(policy, rule, where);
      if (!ports) continue;  // every listed port was invalid: allow nothing

      // Peer matches for numeric ports (sets of pods and of CIDRs), and the pods that named
      // ports are resolved against.
      std::vector<std::string> peer_matches;
      // Only egress named ports need the peer pods themselves (to look the name up on them).
      bool need_peer_pods = !ingress && !ports->named.empty();
      std::vector<PodRef> peer_pods;
      bool match_all_peers = rule.peers.empty();
      if (match_all_peers) {
        peer_matches.push_back("");
      } else {
        bool any_pod_peer = false;
        bool any_block_peer = false;
        std::set<IpsetEntry> pod_entries, block_entries;
        for (size_t p = 0; p < rule.peers.size(); ++p) {
          const auto& peer = rule.peers[p];
          std::string peer_where = where + " peer " + std::to_string(p);
          if (peer.pod_selector || peer.namespace_selector) {
            if (peer.ip_block) {
              Problem(policy, peer_where + ": ipBlock combined with a selector is ignored");
            }
            const auto* pods = PeerPods(policy, peer, peer_where);
            if (pods == nullptr) continue;
            any_pod_peer = true;
            for (const auto& ref : *pods) {
              pod_entries.insert({ref.ip, false});
              if (need_peer_pods) peer_pods.push_back(ref);
            }
          } else if (peer.ip_block) {
            std::set<IpsetEntry> entries;
            if (!AddIpBlock(policy, *peer.ip_block, peer_where, entries)) continue;
            if (entries.empty()) continue;  // the other family's block
            if (peer.ip_block->except.empty()) {
              any_block_peer = true;
              block_entries.insert(entries.begin(), entries.end());
              continue;
            }
            // A block with excepts gets a set of its own: in a shared hash:net set its nomatch
            // entries would also cut what another peer of the rule allows.
            std::string name = IpBlockPeerSetName(ingress, ns, policy.meta.name, i, p, family_);
            AddSet(name, IpsetType::kHashNet, peer_where + " ipBlock").entries = std::move(entries);
            peer_matches.push_back(MatchSet(name, peer_dir));
          } else {
            Problem(policy, peer_where + ": empty peer; peer skipped");
          }
        }
        if (any_pod_peer) {
          std::string name = PeerSetName(ingress, ns, policy.meta.name, i, false, family_);
          AddSet(name, IpsetType::kHashIp, where + " pod peers").entries = std::move(pod_entries);
          peer_matches.push_back(MatchSet(name, peer_dir));
        }
        if (any_block_peer) {
          std::string name = PeerSetName(ingress, ns, policy.meta.name, i, true, family_);
          AddSet(name, IpsetType::kHashNet, where + " ipBlock peers").entries =
              std::move(block_entries);
          peer_matches.push_back(MatchSet(name, peer_dir));
        }
        if (peer_matches.empty()) continue;  // every peer was invalid: allow nothing
      }

      for (const auto& peer : peer_matches) {
        std::string base = ingress ? Join(peer, target_match) : Join(target_match, peer);
        if (ports->all) AllowPair(chain, comment, base);
        for (const auto& port : ports->numeric) AllowPair(chain, comment, base + PortText(port));
      }
      if (ports->named.empty()) continue;
      size_t named_index = 0;
      if (ingress) {
        // The name is looked up on the destination: the selected pods.
        AddNamedPortRules(policy, true, i, *ports, targets, peer_matches, target_match, chain,
                          comment, where, named_index);
      } else {
        // The name is looked up on the destination: the peer pods (any pod for an empty `to`).
        // The named-port set then stands for the destination; ipBlock peers have no ports.
        std::vector<PodRef> destinations;
        if (match_all_peers) {
          record_->reads_all_pods = true;
          for (const auto& [pns, refs] : index_.pods_by_namespace()) {
            destinations.insert(destinations.end(), refs.begin(), refs.end());
          }
        } else {
          destinations = peer_pods;
        }
        AddNamedPortRules(policy, false, i, *ports, destinations, {""}, target_match, chain,
                          comment, where, named_index);
      }
    }
  }

  const ClusterIndex& index_;
  const std::string& local_node_;
  IpFamily family_;
  NameOwners& owners_;  // policy chains and sets, across the policies of the state
  DesiredState& out_;
  CompiledPolicy* record_ = nullptr;
  IpsetSet scratch_;  // where a set goes whose name another owner holds
  std::map<std::string, std::vector<PodRef>> peer_cache_;
};

void AddStaticChains(IpFamily family, std::map<std::string, Chain>& chains) {
  Chain common{kCommonChain, {}};
  common.rules.push_back(Comment("rule to drop invalid state for pod") +
                         " -m conntrack --ctstate INVALID -j DROP");
  common.rules.push_back(Comment("rule for stateful firewall for pod") +
                         " -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT");
  if (family == IpFamily::kV4) {
    for (const char* type : {"echo-request", "destination-unreachable", "time-exceeded"}) {
      common.rules.push_back(Comment("allow icmp " + std::string(type)) + " -p icmp --icmp-type " +
                             type + " -j ACCEPT");
    }
  } else {
    for (const char* type : {"echo-request", "destination-unreachable", "time-exceeded",
                             "neighbour-solicitation", "neighbour-advertisement", "echo-reply"}) {
      common.rules.push_back(Comment("allow icmp " + std::string(type)) +
                             " -p ipv6-icmp --icmpv6-type " + type + " -j ACCEPT");
    }
  }
  chains[common.name] = std::move(common);
  chains[kDefaultChain] = Chain{kDefaultChain,
                                {Comment("rule to mark traffic matching a network policy") +
                                 " -j MARK --set-xmark " + kAllowedMark}};
}

// The end of every top-level chain. With default deny, traffic of this node's pod CIDRs passes
// only for pods whose chain is programmed (in the local-pods set); the final REJECTs catch what
// no pod chain marked. The node's own addresses in a pod CIDR (the kube-bridge gateway) are not
// pods and are left alone.
Chain TailChain(const NetpolConfig& config, IpFamily family,
                const std::vector<IpPrefix>& node_pod_cidrs) {
  Chain tail{kTailChain, {}};
  std::vector<std::string> cidrs;
  if (config.default_deny) {
    for (const auto& cidr : node_pod_cidrs) {
      if (cidr.is_v4() == (family == IpFamily::kV4)) cidrs.push_back(cidr.ToString());
    }
  }
  const std::string from_pod = " -m addrtype ! --src-type LOCAL";
  const std::string to_pod = " -m addrtype ! --dst-type LOCAL";
  const std::string local_pods = LocalPodsSetName(family);
  for (const auto& cidr : cidrs) {
    tail.rules.push_back(Comment("default deny: reject traffic from local pods without a chain") +
                         " -s " + cidr + from_pod + " -m set ! --match-set " + local_pods +
                         " src -j REJECT");
    tail.rules.push_back(Comment("default deny: reject traffic to local pods without a chain") +
                         " -d " + cidr + to_pod + " -m set ! --match-set " + local_pods +
                         " dst -j REJECT");
  }
  tail.rules.push_back(
      Comment("rule to explicitly ACCEPT traffic that comply to network policies") +
      " -m mark --mark " + kPassedMark + " -j ACCEPT");
  for (const auto& cidr : cidrs) {
    tail.rules.push_back(Comment("default deny: reject local pod traffic no policy passed") +
                         " -s " + cidr + from_pod + " -j REJECT");
    tail.rules.push_back(Comment("default deny: reject local pod traffic no policy passed") +
                         " -d " + cidr + to_pod + " -j REJECT");
  }
  return tail;
}

// The local pods whose chains this state programs (default deny only).
IpsetSet LocalPodsSet(const ClusterIndex& index, IpFamily family) {
  IpsetSet set{LocalPodsSetName(family), IpsetType::kHashIp, family, {}};
  for (const auto& ref : index.local_pods()) set.entries.insert(IpsetEntry{ref.ip});
  return set;
}

// Which policies select a local pod, in which directions, and their chains (empty when not
// programmed: the pod is still isolated in that direction).
struct PodPolicy {
  std::string ingress_chain;
  std::string egress_chain;
  bool ingress = false;
  bool egress = false;
};

Chain PodChain(const PodRef& ref, const std::vector<PodPolicy>* policies) {
  const std::string key = ref.pod->meta.Key();
  const std::string& ip = ref.ip;
  Chain chain{PodChainName(ref.pod->meta.namespace_, ref.pod->meta.name), {}};
  chain.rules.push_back(Comment("rule for stateful firewall for pod") + " -j " + kCommonChain);
  chain.rules.push_back(
      Comment("rule to permit the traffic to pods when source is the pod's local node") + " -d " +
      ip + " -m addrtype --src-type LOCAL -j ACCEPT");
  bool ingress = false, egress = false;
  if (policies != nullptr) {
    for (const auto& pp : *policies) {
      ingress |= pp.ingress;
      egress |= pp.egress;
    }
  }
  if (!egress) {
    chain.rules.push_back(Comment("run through default egress network policy chain") + " -s " + ip +
                          " -j " + kDefaultChain);
  }
  if (!ingress) {
    chain.rules.push_back(Comment("run through default ingress network policy chain") + " -d " +
                          ip + " -j " + kDefaultChain);
  }
  if (policies != nullptr) {
    // Ingress chains only for packets to the pod, egress chains only for packets from it.
    for (const auto& pp : *policies) {
      if (pp.ingress && !pp.ingress_chain.empty()) {
        chain.rules.push_back(Comment("run through nw policy chain") + " -d " + ip + " -j " +
                              pp.ingress_chain);
      }
      if (pp.egress && !pp.egress_chain.empty()) {
        chain.rules.push_back(Comment("run through nw policy chain") + " -s " + ip + " -j " +
                              pp.egress_chain);
      }
    }
  }
  chain.rules.push_back(Comment("rule to log dropped traffic POD name:" + key) +
                        " -m mark ! --mark " + kAllowedMark +
                        " -m limit --limit 10/minute --limit-burst 10 -j NFLOG --nflog-group 100");
  chain.rules.push_back(Comment("rule to REJECT traffic destined for POD name:" + key) +
                        " -m mark ! --mark " + kAllowedMark + " -j REJECT");
  chain.rules.push_back(Comment("reset mark to let traffic pass through rest of tiers") +
                        " -j MARK --set-xmark 0x0/0x10000");
  chain.rules.push_back(Comment("set mark to ACCEPT traffic that comply to network policies") +
                        " -j MARK --set-xmark " + kPassedMark);
  return chain;
}

// The per-pod chains of the local pods and the three top-level chains that jump to them.
// With them the tail chain, which depends on the node's pod CIDRs.
// A local pod whose chain name another pod holds (a hash collision) gets no chain: its traffic
// is rejected outright, and `collisions` says why.
std::map<std::string, Chain> PodAndTopLevelChains(
    const ClusterIndex& index, const NetpolConfig& config, IpFamily family,
    const std::map<std::string, CompiledPolicy>& policies,
    const std::vector<IpPrefix>& node_pod_cidrs, std::vector<std::string>& collisions) {
  std::map<std::string, std::vector<PodPolicy>> pod_policies;
  for (const auto& [key, compiled] : policies) {  // policy key order: the jump order
    for (const auto& pod : compiled.local_targets) {
      pod_policies[pod].push_back({compiled.ingress_chain, compiled.egress_chain,
                                   compiled.policy->policy_ingress,
                                   compiled.policy->policy_egress});
    }
  }

  std::map<std::string, Chain> chains;
  Chain input{kInputChain, {}}, forward{kForwardChain, {}}, output{kOutputChain, {}};
  bool v4 = family == IpFamily::kV4;
  auto in_family = [&](const IpPrefix& p) { return p.is_v4() == v4; };
  for (const auto& range : config.service_cluster_ip_ranges) {
    if (!in_family(range)) continue;
    input.rules.push_back(Comment("allow traffic to cluster IP range") + " -d " + range.ToString() +
                          " -j RETURN");
  }
  std::string node_ports =
      std::to_string(config.node_port_first) + ":" + std::to_string(config.node_port_last);
  for (const char* proto : {"tcp", "udp", "sctp"}) {
    input.rules.push_back(Comment(std::string("allow LOCAL ") + proto + " traffic to node ports") +
                          " -p " + proto + " -m addrtype --dst-type LOCAL -m multiport --dports " +
                          node_ports + " -j RETURN");
  }
  for (const auto* ranges : {&config.service_external_ip_ranges, &config.loadbalancer_ip_ranges}) {
    for (const auto& range : *ranges) {
      if (!in_family(range)) continue;
      input.rules.push_back(Comment("allow traffic to external and load balancer IP ranges") +
                            " -d " + range.ToString() + " -j RETURN");
    }
  }

  NameOwners pod_chains;
  for (const auto& ref : index.local_pods()) {
    const std::string key = ref.pod->meta.Key();
    const std::string name = PodChainName(ref.pod->meta.namespace_, ref.pod->meta.name);
    if (auto holder = pod_chains.Claim(name, "Pod " + key)) {
      collisions.push_back("Pod " + key + ": chain name " + name + " is already held by " +
                           *holder + " (hash collision); its traffic is rejected");
      std::string reject = Comment("chain name collision, rejected: POD name:" + key);
      for (Chain* top : {&forward, &output}) {
        top->rules.push_back(reject + " -d " + ref.ip + " -j REJECT");
        top->rules.push_back(reject + " -s " + ref.ip + " -j REJECT");
      }
      input.rules.push_back(reject + " -s " + ref.ip + " -j REJECT");
      continue;
    }
    auto found = pod_policies.find(key);
    Chain chain = PodChain(ref, found == pod_policies.end() ? nullptr : &found->second);
    std::string to_pod = Comment("rule to jump traffic destined to POD name:" + key);
    std::string from_pod = Comment("rule to jump traffic from POD name:" + key);
    forward.rules.push_back(to_pod + " -d " + ref.ip + " -j " + chain.name);
    forward.rules.push_back(from_pod + " -s " + ref.ip + " -j " + chain.name);
    output.rules.push_back(to_pod + " -d " + ref.ip + " -j " + chain.name);
    output.rules.push_back(from_pod + " -s " + ref.ip + " -j " + chain.name);
    input.rules.push_back(from_pod + " -s " + ref.ip + " -j " + chain.name);
    chains[chain.name] = std::move(chain);
  }
  for (Chain* top : {&input, &forward, &output}) {
    top->rules.push_back(
        Comment("rule to explicitly ACCEPT traffic that comply to network policies") + " -j " +
        kTailChain);
    chains[top->name] = std::move(*top);
  }
  chains[kTailChain] = TailChain(config, family, node_pod_cidrs);
  return chains;
}

// Equal in everything the compiler reads except the labels.
bool SameExceptLabels(const k8s::Pod& a, const k8s::Pod& b) {
  auto ports = [](const k8s::Pod& p) {
    std::vector<std::tuple<std::string, int32_t, std::string>> out;
    for (const auto& cp : p.container_ports) {
      out.emplace_back(cp.name, cp.container_port, cp.protocol);
    }
    return out;
  };
  return a.meta.namespace_ == b.meta.namespace_ && a.pod_ip == b.pod_ip && a.pod_ips == b.pod_ips &&
         a.phase == b.phase && a.node_name == b.node_name && a.host_network == b.host_network &&
         ports(a) == ports(b);
}

template <typename T>
using ByKey = std::unordered_map<std::string, std::shared_ptr<const T>>;

template <typename T>
ByKey<T> IndexByKey(const std::vector<std::shared_ptr<const T>>& objects) {
  ByKey<T> out;
  out.reserve(objects.size());
  for (const auto& object : objects) out.emplace(object->meta.Key(), object);
  return out;
}

// Calls `changed(before, after)` for every key whose object is not the same one in both maps.
template <typename T, typename F>
void ForEachChanged(const ByKey<T>& before, const ByKey<T>& after, F changed) {
  for (const auto& [key, object] : after) {
    auto it = before.find(key);
    const T* old = it == before.end() ? nullptr : it->second.get();
    if (old != object.get()) changed(old, object.get());
  }
  for (const auto& [key, object] : before) {
    if (!after.contains(key)) changed(object.get(), nullptr);
  }
}

}  // namespace

bool PodChangeMatters(const k8s::Pod& a, const k8s::Pod& b) {
  return a.meta.labels != b.meta.labels || !SameExceptLabels(a, b);
}

struct IncrementalCompiler::Impl {
  NetpolConfig config;
  IpFamily family;
  bool compiled = false;
  DesiredState state;
  std::map<std::string, CompiledPolicy> policies;  // by policy key
  std::set<std::string> pod_and_top_chains;        // names in state.chains
  NameOwners owners;                               // of the policies' chains and sets
  std::set<std::string> collided;                  // keys of policies refused a name
  std::vector<std::string> pod_collisions;
  ByKey<k8s::Pod> pods;
  ByKey<k8s::Namespace> namespaces;
  ByKey<k8s::NetworkPolicy> policy_objects;

  // Removes a policy's share from the state, remembering the old content in `changes`.
  void RemovePolicy(const std::string& key, Changes& changes) {
    auto it = policies.find(key);
    if (it == policies.end()) return;
    for (const auto& name : {it->second.ingress_chain, it->second.egress_chain}) {
      if (name.empty()) continue;
      auto chain = state.chains.extract(name);
      changes.chains.try_emplace(name, std::move(chain.mapped()));
      owners.Release(name);
    }
    for (const auto& name : it->second.sets) {
      auto set = state.sets.extract(name);
      changes.sets.try_emplace(name, std::move(set.mapped()));
      owners.Release(name);
    }
    collided.erase(key);
    policies.erase(it);
  }

  void AddPolicy(PolicyCompiler& compiler, const std::shared_ptr<const k8s::NetworkPolicy>& policy,
                 Changes* changes) {
    CompiledPolicy compiled = compiler.Compile(policy);
    if (changes != nullptr) {
      // Names another policy never produces (they hash this policy's namespace and name), so a
      // name not recorded by RemovePolicy did not exist.
      for (const auto& name : {compiled.ingress_chain, compiled.egress_chain}) {
        if (!name.empty()) changes->chains.try_emplace(name, std::nullopt);
      }
      for (const auto& name : compiled.sets) changes->sets.try_emplace(name, std::nullopt);
    }
    if (!compiled.collisions.empty()) collided.insert(policy->meta.Key());
    policies[policy->meta.Key()] = std::move(compiled);
  }

  void SetPodAndTopLevelChains(const ClusterIndex& index, const ClusterView& view,
                               Changes* changes) {
    pod_collisions.clear();
    auto chains =
        PodAndTopLevelChains(index, config, family, policies, view.node_pod_cidrs, pod_collisions);
    for (const auto& name : pod_and_top_chains) {
      if (chains.contains(name)) continue;
      auto old = state.chains.extract(name);
      if (changes != nullptr) changes->chains.try_emplace(name, std::move(old.mapped()));
    }
    pod_and_top_chains.clear();
    for (auto& [name, chain] : chains) {
      pod_and_top_chains.insert(name);
      Store(state.chains, name, std::move(chain), changes ? &changes->chains : nullptr);
    }
  }

  void SetLocalPodsSet(const ClusterIndex& index, Changes* changes) {
    if (!config.default_deny) return;
    IpsetSet set = LocalPodsSet(index, family);
    std::string name = set.name;
    Store(state.sets, name, std::move(set), changes ? &changes->sets : nullptr);
  }

  // Puts `value` under `name`; if that changes anything, the previous content (nullopt: none)
  // goes to `changed`.
  template <typename T>
  static void Store(std::map<std::string, T>& current, const std::string& name, T value,
                    std::map<std::string, std::optional<T>>* changed) {
    auto it = current.find(name);
    if (it == current.end()) {
      if (changed != nullptr) changed->try_emplace(name, std::nullopt);
      current.emplace(name, std::move(value));
    } else if (it->second != value) {
      if (changed != nullptr) changed->try_emplace(name, std::move(it->second));
      it->second = std::move(value);
    }
  }

  // Policies first (key order), then pods: the same list a fresh compile would give.
  void CollectCollisions() {
    state.name_collisions.clear();
    for (const auto& key : collided) {
      const auto& lines = policies.at(key).collisions;
      state.name_collisions.insert(state.name_collisions.end(), lines.begin(), lines.end());
    }
    state.name_collisions.insert(state.name_collisions.end(), pod_collisions.begin(),
                                 pod_collisions.end());
  }

  void CollectProblems() {
    state.problems.clear();
    for (const auto& [key, compiled] : policies) {
      state.problems.insert(state.problems.end(), compiled.problems.begin(),
                            compiled.problems.end());
    }
  }

  Changes CompileAll(const ClusterView& view) {
    Changes changes;
    changes.full = true;
    state = DesiredState{};
    policies.clear();
    owners.Clear();
    collided.clear();
    ClusterIndex index(view, config, family);
    PolicyCompiler compiler(index, config.node_name, family, owners, state);
    // Key order decides which of two colliding policies keeps a name, as in CompileChanged.
    std::vector<std::shared_ptr<const k8s::NetworkPolicy>> ordered = view.policies;
    std::sort(ordered.begin(), ordered.end(),
              [](const auto& a, const auto& b) { return a->meta.Key() < b->meta.Key(); });
    for (const auto& policy : ordered) AddPolicy(compiler, policy, nullptr);
    changes.policies_compiled = policies.size();
    AddStaticChains(family, state.chains);
    pod_and_top_chains.clear();
    SetPodAndTopLevelChains(index, view, nullptr);
    SetLocalPodsSet(index, nullptr);
    CollectProblems();
    CollectCollisions();
    compiled = true;
    return changes;
  }

  Changes CompileChanged(const ClusterView& view, ByKey<k8s::Pod>& new_pods,
                         ByKey<k8s::Namespace>& new_namespaces,
                         ByKey<k8s::NetworkPolicy>& new_policies) {
    Changes changes;
    std::set<std::string> dirty;
    ForEachChanged<k8s::NetworkPolicy>(
        policy_objects, new_policies,
        [&](const k8s::NetworkPolicy* before, const k8s::NetworkPolicy* after) {
          dirty.insert((after != nullptr ? after : before)->meta.Key());
        });
    std::vector<NamespaceChange> namespace_changes;
    ForEachChanged<k8s::Namespace>(
        namespaces, new_namespaces, [&](const k8s::Namespace* before, const k8s::Namespace* after) {
          const std::string& name = (after != nullptr ? after : before)->meta.name;
          NamespaceChange change{EffectiveNamespaceLabels(name, before),
                                 EffectiveNamespaceLabels(name, after)};
          if (change.before != change.after) namespace_changes.push_back(std::move(change));
        });
    std::vector<PodChange> pod_changes;
    ForEachChanged<k8s::Pod>(pods, new_pods, [&](const k8s::Pod* before, const k8s::Pod* after) {
      if (before != nullptr && after != nullptr && !PodChangeMatters(*before, *after)) return;
      bool labels_only = before != nullptr && after != nullptr && SameExceptLabels(*before, *after);
      pod_changes.push_back({before, after, labels_only});
    });

    ClusterIndex index(view, config, family);
    if (!pod_changes.empty() || !namespace_changes.empty()) {
      for (const auto& [key, compiled] : policies) {
        if (dirty.contains(key)) continue;
        if (NeedsRecompile(compiled, pod_changes, namespace_changes, index)) dirty.insert(key);
      }
    }
    // A policy refused a name retries whenever others change: the holder may be gone.
    if (!dirty.empty()) dirty.insert(collided.begin(), collided.end());
    PolicyCompiler compiler(index, config.node_name, family, owners, state);
    // All removals first, so the names they free are there for the additions (in key order).
    for (const auto& key : dirty) RemovePolicy(key, changes);
    for (const auto& key : dirty) {
      auto it = new_policies.find(key);
      if (it != new_policies.end()) AddPolicy(compiler, it->second, &changes);
    }
    changes.policies_compiled = dirty.size();
    SetPodAndTopLevelChains(index, view, &changes);
    SetLocalPodsSet(index, &changes);
    if (!dirty.empty()) CollectProblems();
    CollectCollisions();
    return changes;
  }
};

IncrementalCompiler::IncrementalCompiler(NetpolConfig config, IpFamily family)
    : impl_(std::make_unique<Impl>()) {
  impl_->config = std::move(config);
  impl_->family = family;
}
IncrementalCompiler::~IncrementalCompiler() = default;
IncrementalCompiler::IncrementalCompiler(IncrementalCompiler&&) noexcept = default;
IncrementalCompiler& IncrementalCompiler::operator=(IncrementalCompiler&&) noexcept = default;

void IncrementalCompiler::Reset() {
  NetpolConfig config = std::move(impl_->config);
  IpFamily family = impl_->family;
  impl_ = std::make_unique<Impl>();
  impl_->config = std::move(config);
  impl_->family = family;
}

const DesiredState& IncrementalCompiler::state() const { return impl_->state; }

IncrementalCompiler::Changes IncrementalCompiler::Update(const ClusterView& view) {
  auto pods = IndexByKey(view.pods);
  auto namespaces = IndexByKey(view.namespaces);
  auto policies = IndexByKey(view.policies);
  Changes changes = impl_->compiled ? impl_->CompileChanged(view, pods, namespaces, policies)
                                    : impl_->CompileAll(view);
  // The objects stay alive through these maps, so the next Update can compare with them.
  impl_->pods = std::move(pods);
  impl_->namespaces = std::move(namespaces);
  impl_->policy_objects = std::move(policies);
  return changes;
}

DesiredState Compile(const ClusterView& view, const NetpolConfig& config, IpFamily family) {
  IncrementalCompiler compiler(config, family);
  compiler.Update(view);
  return compiler.state();
}

}  // namespace kr::netpol
