// The policy compiler (see policy_compiler.h): a policy's target set, its rules' peer sets
// (pods, ipBlocks, named ports) and its ingress/egress chains, in kube-router's layout.
#include "policy_compiler.h"

#include <algorithm>
#include <map>
#include <optional>
#include <set>

#include "kube_router/netpol/selector.h"
#include "rule_text.h"

namespace kr::netpol::compiler_internal {

using netfilter::Chain;
using netfilter::IpFamily;
using netfilter::IpsetEntry;
using netfilter::IpsetType;

namespace {

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

// The identities that decide a shared set's members (compared on every use, so a second identity
// hashing to a held name is refused). Each is tagged with its kind and encoded unambiguously.
std::string SelectionsKey(std::vector<std::string> selections) {
  std::sort(selections.begin(), selections.end());
  selections.erase(std::unique(selections.begin(), selections.end()), selections.end());
  std::string out;
  for (const auto& selection : selections) out += EncodeNameFields({selection});
  return out;
}

std::string PodsKey(std::vector<std::string> selections) {
  return EncodeNameFields({"pods", SelectionsKey(std::move(selections))});
}

std::string NetsKey(const std::set<IpsetEntry>& entries) {
  std::string out;
  for (const auto& e : entries) out += EncodeNameFields({e.address, e.nomatch ? "nomatch" : ""});
  return EncodeNameFields({"nets", out});
}

}  // namespace

struct PolicyCompiler::Impl {
 public:
  Impl(const ClusterIndex& index, const NetpolConfig& config, IpFamily family, NameOwners& owners,
       SharedSets& sets, DesiredState& out)
      : index_(index),
        local_node_(config.node_name),
        share_sets_(config.share_sets),
        family_(family),
        owners_(owners),
        sets_(sets),
        out_(out) {}

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
      for (const auto& name : compiled.sets) sets_.Release(name);
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

  // A selector peer after validation: its selection key and its pods (computed once per pass).
  struct SelectedPods {
    std::string key;
    std::string description;
    const std::vector<PodRef>* pods;
  };

  // The pods a selector peer names; nullopt (with a logged problem) for an invalid selector.
  std::optional<SelectedPods> PeerPods(const k8s::NetworkPolicy& policy,
                                       const k8s::NetworkPolicyPeer& peer,
                                       const std::string& where) {
    for (const auto* selector : {peer.pod_selector ? &*peer.pod_selector : nullptr,
                                 peer.namespace_selector ? &*peer.namespace_selector : nullptr}) {
      if (selector == nullptr) continue;
      if (auto s = ValidateSelector(*selector); !s.ok()) {
        Problem(policy, where + ": " + s.message() + "; peer skipped");
        return std::nullopt;
      }
    }
    const k8s::LabelSelector* pod_selector = peer.pod_selector ? &*peer.pod_selector : nullptr;
    const k8s::LabelSelector* ns_selector =
        peer.namespace_selector ? &*peer.namespace_selector : nullptr;
    record_->peer_reads.push_back({ns_selector, pod_selector});
    const std::string& ns = policy.meta.namespace_;
    SelectedPods out{PodSelectionKey(ns, ns_selector, pod_selector),
                     DescribeSelection(ns, ns_selector, pod_selector), nullptr};
    auto [cached, fresh] = peer_cache_.try_emplace(out.key);
    out.pods = &cached->second;
    if (!fresh) return out;
    std::vector<PodRef>& pods = cached->second;
    if (ns_selector == nullptr) {
      pods = index_.PodsIn(ns, pod_selector);
      return out;
    }
    for (const auto& [pod_ns, refs] : index_.pods_by_namespace()) {
      if (!SelectorMatches(*ns_selector, index_.NamespaceLabels(pod_ns))) continue;
      auto in_ns = index_.PodsIn(pod_ns, pod_selector);
      pods.insert(pods.end(), in_ns.begin(), in_ns.end());
    }
    return out;
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

  // One use of the shared set `name` (members decided by `key`) by this policy for `purpose`;
  // `members` computes the entries when the set is built in this pass. False, with the
  // collision recorded, when another identity holds the name. Without sharing, `name` becomes
  // the name of this use's own set.
  template <typename Members>
  bool UseSet(std::string& name, IpsetType type, std::string key, const std::string& description,
              const std::string& purpose, Members members) {
    if (!share_sets_) {
      // The benchmark's baseline: a set of its own per policy and use (the same prefix).
      std::string user =
          EncodeNameFields({record_->policy->meta.namespace_, record_->policy->meta.name, purpose});
      name = name.substr(0, name.size() - 16) + NameDigest(EncodeNameFields({name, user}), 16);
      key += user;
    }
    auto grant = sets_.Acquire(name, key, description);
    if (!grant.granted) {
      std::string owner = "NetworkPolicy " + record_->policy->meta.Key() + " (" + purpose + ")";
      record_->collisions.push_back(
          owner + ": ipset name " + name + " is already held by " + "the set of " + grant.holder +
          " (hash collision); policy not programmed, " + "its pods stay isolated");
      return false;
    }
    record_->sets.push_back(name);
    if (grant.build) sets_.Put({name, type, family_, members()});
    return true;
  }

  static std::set<IpsetEntry> Entries(const std::vector<const std::vector<PodRef>*>& groups) {
    std::set<IpsetEntry> out;
    for (const auto* pods : groups) {
      for (const auto& ref : *pods) out.insert({ref.ip, false});
    }
    return out;
  }

  static std::string DescribeNets(const std::set<IpsetEntry>& entries) {
    std::string out = "CIDRs";
    for (const auto& e : entries) out += (e.nomatch ? " except " : " ") + e.address;
    return out;
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

  // Named ports resolved against `pods` (the union of `selections`): one set per distinct
  // (protocol, number), since the same name can mean different numbers on different pods.
  void AddNamedPortRules(const k8s::NetworkPolicy& policy, bool ingress, const RulePorts& ports,
                         const std::vector<PodRef>& pods,
                         const std::vector<std::string>& selections,
                         const std::string& selection_text,
                         const std::vector<std::string>& peer_matches,
                         const std::string& target_match, Chain& chain, const std::string& comment,
                         const std::string& where) {
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
      for (const auto& [number, ips_of_number] : ips_by_port) {
        const auto& ips = ips_of_number;  // the lambda below cannot capture a structured binding
        std::string set_name =
            NamedPortSetName(selections, named.protocol, named.name, number, family_);
        std::string key = EncodeNameFields({"named-port", named.protocol, named.name,
                                            std::to_string(number), SelectionsKey(selections)});
        std::string description = "named port " + named.name + "/" + named.protocol + " = " +
                                  std::to_string(number) + " of " + selection_text;
        if (!UseSet(set_name, IpsetType::kHashIp, key, description,
                    where + " named port " + named.name, [&] {
                      std::set<IpsetEntry> entries;
                      for (const auto& ip : ips) entries.insert({ip, false});
                      return entries;
                    })) {
          continue;
        }
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
    // Ingress: the targets are the destination; egress: the source.
    const std::string target_key = PodSelectionKey(ns, nullptr, &policy.pod_selector);
    const std::string target_text = DescribeSelection(ns, nullptr, &policy.pod_selector);
    std::string target_set = PodSetName(!ingress, {target_key}, family_);
    UseSet(target_set, IpsetType::kHashIp, PodsKey({target_key}), target_text,
           std::string(ingress ? "ingress" : "egress") + " targets",
           [&] { return Entries({&targets}); });
    std::string target_match = MatchSet(target_set, ingress ? "dst" : "src");
    const bool peer_src = ingress;
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
      std::vector<std::string> selections;  // keys of the rule's selector peers
      std::string selection_text;
      std::vector<const std::vector<PodRef>*> peer_pods;
      bool match_all_peers = rule.peers.empty();
      if (match_all_peers) {
        peer_matches.push_back("");
      } else {
        std::set<IpsetEntry> block_entries;
        for (size_t p = 0; p < rule.peers.size(); ++p) {
          const auto& peer = rule.peers[p];
          std::string peer_where = where + " peer " + std::to_string(p);
          if (peer.pod_selector || peer.namespace_selector) {
            if (peer.ip_block) {
              Problem(policy, peer_where + ": ipBlock combined with a selector is ignored");
            }
            auto selected = PeerPods(policy, peer, peer_where);
            if (!selected) continue;
            selections.push_back(selected->key);
            selection_text += (selection_text.empty() ? "" : " or ") + selected->description;
            peer_pods.push_back(selected->pods);
          } else if (peer.ip_block) {
            std::set<IpsetEntry> entries;
            if (!AddIpBlock(policy, *peer.ip_block, peer_where, entries)) continue;
            if (entries.empty()) continue;  // the other family's block
            if (peer.ip_block->except.empty()) {
              block_entries.insert(entries.begin(), entries.end());
              continue;
            }
            // A block with excepts gets a set of its own: in a shared hash:net set its nomatch
            // entries would also cut what another peer of the rule allows.
            std::string name = NetSetName(peer_src, entries, family_);
            if (UseSet(name, IpsetType::kHashNet, NetsKey(entries), DescribeNets(entries),
                       peer_where + " ipBlock", [&] { return entries; })) {
              peer_matches.push_back(MatchSet(name, peer_dir));
            }
          } else {
            Problem(policy, peer_where + ": empty peer; peer skipped");
          }
        }
        if (!selections.empty()) {
          std::string name = PodSetName(peer_src, selections, family_);
          if (UseSet(name, IpsetType::kHashIp, PodsKey(selections), selection_text,
                     where + " pod peers", [&] { return Entries(peer_pods); })) {
            peer_matches.push_back(MatchSet(name, peer_dir));
          }
        }
        if (!block_entries.empty()) {
          std::string name = NetSetName(peer_src, block_entries, family_);
          if (UseSet(name, IpsetType::kHashNet, NetsKey(block_entries), DescribeNets(block_entries),
                     where + " ipBlock peers", [&] { return block_entries; })) {
            peer_matches.push_back(MatchSet(name, peer_dir));
          }
        }
        if (peer_matches.empty()) continue;  // every peer was invalid: allow nothing
      }

      for (const auto& peer : peer_matches) {
        std::string base = ingress ? Join(peer, target_match) : Join(target_match, peer);
        if (ports->all) AllowPair(chain, comment, base);
        for (const auto& port : ports->numeric) AllowPair(chain, comment, base + PortText(port));
      }
      if (ports->named.empty()) continue;
      if (ingress) {
        // The name is looked up on the destination: the selected pods.
        AddNamedPortRules(policy, true, *ports, targets, {target_key}, target_text, peer_matches,
                          target_match, chain, comment, where);
      } else if (match_all_peers) {
        // The name is looked up on the destination: any pod for an empty `to`.
        record_->reads_all_pods = true;
        std::vector<PodRef> destinations;
        for (const auto& [pns, refs] : index_.pods_by_namespace()) {
          destinations.insert(destinations.end(), refs.begin(), refs.end());
        }
        AddNamedPortRules(policy, false, *ports, destinations, {AllPodsSelectionKey()}, "every pod",
                          {""}, target_match, chain, comment, where);
      } else if (!selections.empty()) {
        // The peer pods; the named-port set then stands for the destination (ipBlock peers
        // have no ports to look the name up on).
        std::vector<PodRef> destinations;
        for (const auto* pods : peer_pods) {
          destinations.insert(destinations.end(), pods->begin(), pods->end());
        }
        AddNamedPortRules(policy, false, *ports, destinations, selections, selection_text, {""},
                          target_match, chain, comment, where);
      }
    }
  }

  const ClusterIndex& index_;
  const std::string& local_node_;
  const bool share_sets_;
  IpFamily family_;
  NameOwners& owners_;  // policy chains, across the policies of the state
  SharedSets& sets_;
  DesiredState& out_;
  CompiledPolicy* record_ = nullptr;
  std::map<std::string, std::vector<PodRef>> peer_cache_;  // by selection key, for one pass
};

PolicyCompiler::PolicyCompiler(const ClusterIndex& index, const NetpolConfig& config,
                               IpFamily family, NameOwners& owners, SharedSets& sets,
                               DesiredState& out)
    : impl_(std::make_unique<Impl>(index, config, family, owners, sets, out)) {}

PolicyCompiler::~PolicyCompiler() = default;

CompiledPolicy PolicyCompiler::Compile(std::shared_ptr<const k8s::NetworkPolicy> policy) {
  return impl_->Compile(std::move(policy));
}

}  // namespace kr::netpol::compiler_internal
