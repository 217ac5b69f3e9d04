#include "kube_router/netpol/compiler.h"

#include <algorithm>
#include <set>

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

// Which policies select a local pod, and in which directions.
struct PodPolicy {
  std::string chain;
  bool ingress = false;
  bool egress = false;
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

class Compiler {
 public:
  Compiler(const ClusterView& view, const NetpolConfig& config, IpFamily family)
      : view_(view), config_(config), family_(family) {}

  DesiredState Run() {
    IndexPods();
    std::vector<const k8s::NetworkPolicy*> policies;
    for (const auto& p : view_.policies) policies.push_back(p.get());
    std::sort(policies.begin(), policies.end(),
              [](auto* a, auto* b) { return a->meta.Key() < b->meta.Key(); });
    for (const auto* policy : policies) CompilePolicy(*policy);
    AddStaticChains();
    AddPodChainsAndTopLevel();
    return std::move(out_);
  }

 private:
  void IndexPods() {
    for (const auto& ns : view_.namespaces) {
      auto& labels = namespace_labels_[ns->meta.name];
      labels = ns->meta.labels;
      // The API server sets this label on every namespace; fakes and old servers may not.
      labels["kubernetes.io/metadata.name"] = ns->meta.name;
    }
    for (const auto& pod : view_.pods) {
      std::string ip = PolicyPodIp(*pod, family_);
      if (ip.empty()) continue;
      PodRef ref{pod.get(), ip};
      pods_by_namespace_[pod->meta.namespace_].push_back(ref);
      if (pod->node_name == config_.node_name) local_pods_.push_back(ref);
    }
    auto by_key = [](const PodRef& a, const PodRef& b) {
      return a.pod->meta.Key() < b.pod->meta.Key();
    };
    std::sort(local_pods_.begin(), local_pods_.end(), by_key);
  }

  const k8s::Labels& NamespaceLabels(const std::string& ns) {
    auto it = namespace_labels_.find(ns);
    if (it != namespace_labels_.end()) return it->second;
    auto& labels = namespace_labels_[ns];
    labels["kubernetes.io/metadata.name"] = ns;
    return labels;
  }

  void Problem(const k8s::NetworkPolicy& policy, const std::string& what) {
    out_.problems.push_back("NetworkPolicy " + policy.meta.Key() + ": " + what);
  }

  std::vector<PodRef> PodsIn(const std::string& ns, const k8s::LabelSelector* selector) {
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

  // Pods a selector peer names; null (with a logged problem) for an invalid selector. Results
  // are shared by every peer with the same selectors: clusters repeat a few selectors across
  // many policies, and a namespace selector has to look at every pod.
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
    std::string key = (peer.namespace_selector ? "sel:" + SelectorKey(*peer.namespace_selector)
                                               : "ns:" + policy.meta.namespace_) +
                      "|" + (pod_selector ? SelectorKey(*pod_selector) : "*");
    auto cached = peer_cache_.find(key);
    if (cached != peer_cache_.end()) return &cached->second;
    std::vector<PodRef>& pods = peer_cache_[key];
    if (!peer.namespace_selector) {
      pods = PodsIn(policy.meta.namespace_, pod_selector);
      return &pods;
    }
    for (const auto& [ns, refs] : pods_by_namespace_) {
      if (!SelectorMatches(*peer.namespace_selector, NamespaceLabels(ns))) continue;
      auto in_ns = PodsIn(ns, pod_selector);
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

  IpsetSet& AddSet(const std::string& name, IpsetType type) {
    auto& set = out_.sets[name];
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
        std::string set_name = NamedPortSetName(ingress, policy.meta.namespace_, policy.meta.name,
                                                rule_index, named_index++, family_);
        auto& set = AddSet(set_name, IpsetType::kHashIp);
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
    auto& tset = AddSet(target_set, IpsetType::kHashIp);
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
            any_block_peer = true;
            block_entries.insert(entries.begin(), entries.end());
          } else {
            Problem(policy, peer_where + ": empty peer; peer skipped");
          }
        }
        if (any_pod_peer) {
          std::string name = PeerSetName(ingress, ns, policy.meta.name, i, false, family_);
          AddSet(name, IpsetType::kHashIp).entries = std::move(pod_entries);
          peer_matches.push_back(MatchSet(name, peer_dir));
        }
        if (any_block_peer) {
          std::string name = PeerSetName(ingress, ns, policy.meta.name, i, true, family_);
          AddSet(name, IpsetType::kHashNet).entries = std::move(block_entries);
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
          for (const auto& [pns, refs] : pods_by_namespace_) {
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

  void CompilePolicy(const k8s::NetworkPolicy& policy) {
    if (auto s = ValidateSelector(policy.pod_selector); !s.ok()) {
      Problem(policy, "podSelector: " + s.message() + "; policy skipped");
      return;
    }
    if (!policy.policy_ingress && !policy.policy_egress) return;
    auto targets = PodsIn(policy.meta.namespace_, &policy.pod_selector);
    Chain chain;
    chain.name = PolicyChainName(policy.meta.namespace_, policy.meta.name, family_);
    if (policy.policy_ingress) CompileDirection(policy, true, targets, chain);
    if (policy.policy_egress) CompileDirection(policy, false, targets, chain);
    for (const auto& ref : targets) {
      if (ref.pod->node_name != config_.node_name) continue;
      pod_policies_[ref.pod->meta.Key()].push_back(
          {chain.name, policy.policy_ingress, policy.policy_egress});
    }
    out_.chains[chain.name] = std::move(chain);
  }

  void AddStaticChains() {
    Chain common{kCommonChain, {}};
    common.rules.push_back(Comment("rule to drop invalid state for pod") +
                           " -m conntrack --ctstate INVALID -j DROP");
    common.rules.push_back(Comment("rule for stateful firewall for pod") +
                           " -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT");
    if (family_ == IpFamily::kV4) {
      for (const char* type : {"echo-request", "destination-unreachable", "time-exceeded"}) {
        common.rules.push_back(Comment("allow icmp " + std::string(type)) +
                               " -p icmp --icmp-type " + type + " -j ACCEPT");
      }
    } else {
      for (const char* type : {"echo-request", "destination-unreachable", "time-exceeded",
                               "neighbour-solicitation", "neighbour-advertisement", "echo-reply"}) {
        common.rules.push_back(Comment("allow icmp " + std::string(type)) +
                               " -p ipv6-icmp --icmpv6-type " + type + " -j ACCEPT");
      }
    }
    out_.chains[common.name] = std::move(common);
    out_.chains[kDefaultChain] = Chain{kDefaultChain,
                                       {Comment("rule to mark traffic matching a network policy") +
                                        " -j MARK --set-xmark " + kAllowedMark}};
    out_.chains[kTailChain] =
        Chain{kTailChain,
              {Comment("rule to explicitly ACCEPT traffic that comply to network policies") +
               " -m mark --mark " + kPassedMark + " -j ACCEPT"}};
  }

  void AddPodChainsAndTopLevel() {
    Chain input{kInputChain, {}}, forward{kForwardChain, {}}, output{kOutputChain, {}};
    bool v4 = family_ == IpFamily::kV4;
    auto in_family = [&](const IpPrefix& p) { return p.is_v4() == v4; };
    for (const auto& range : config_.service_cluster_ip_ranges) {
      if (!in_family(range)) continue;
      input.rules.push_back(Comment("allow traffic to cluster IP range") + " -d " +
                            range.ToString() + " -j RETURN");
    }
    std::string node_ports =
        std::to_string(config_.node_port_first) + ":" + std::to_string(config_.node_port_last);
    for (const char* proto : {"tcp", "udp", "sctp"}) {
      input.rules.push_back(
          Comment(std::string("allow LOCAL ") + proto + " traffic to node ports") + " -p " + proto +
          " -m addrtype --dst-type LOCAL -m multiport --dports " + node_ports + " -j RETURN");
    }
    for (const auto* ranges :
         {&config_.service_external_ip_ranges, &config_.loadbalancer_ip_ranges}) {
      for (const auto& range : *ranges) {
        if (!in_family(range)) continue;
        input.rules.push_back(Comment("allow traffic to external and load balancer IP ranges") +
                              " -d " + range.ToString() + " -j RETURN");
      }
    }

    for (const auto& ref : local_pods_) {
      const std::string key = ref.pod->meta.Key();
      const std::string chain_name = PodChainName(ref.pod->meta.namespace_, ref.pod->meta.name);
      const std::string& ip = ref.ip;
      Chain chain{chain_name, {}};
      chain.rules.push_back(Comment("rule for stateful firewall for pod") + " -j " + kCommonChain);
      chain.rules.push_back(
          Comment("rule to permit the traffic to pods when source is the pod's local node") +
          " -d " + ip + " -m addrtype --src-type LOCAL -j ACCEPT");
      bool ingress = false, egress = false;
      auto found = pod_policies_.find(key);
      if (found != pod_policies_.end()) {
        for (const auto& pp : found->second) {
          ingress |= pp.ingress;
          egress |= pp.egress;
        }
      }
      if (!egress) {
        chain.rules.push_back(Comment("run through default egress network policy chain") + " -s " +
                              ip + " -j " + kDefaultChain);
      }
      if (!ingress) {
        chain.rules.push_back(Comment("run through default ingress network policy chain") + " -d " +
                              ip + " -j " + kDefaultChain);
      }
      if (found != pod_policies_.end()) {
        for (const auto& pp : found->second) {
          std::string direction = pp.ingress && pp.egress ? ""
                                  : pp.ingress            ? " -d " + ip
                                                          : " -s " + ip;
          chain.rules.push_back(Comment("run through nw policy chain") + direction + " -j " +
                                pp.chain);
        }
      }
      std::string pod_comment = Comment("rule to log dropped traffic POD name:" + key);
      chain.rules.push_back(
          pod_comment + " -m mark ! --mark " + kAllowedMark +
          " -m limit --limit 10/minute --limit-burst 10 -j NFLOG --nflog-group 100");
      chain.rules.push_back(Comment("rule to REJECT traffic destined for POD name:" + key) +
                            " -m mark ! --mark " + kAllowedMark + " -j REJECT");
      chain.rules.push_back(Comment("reset mark to let traffic pass through rest of tiers") +
                            " -j MARK --set-xmark 0x0/0x10000");
      chain.rules.push_back(Comment("set mark to ACCEPT traffic that comply to network policies") +
                            " -j MARK --set-xmark " + kPassedMark);
      out_.chains[chain_name] = std::move(chain);

      std::string to_pod = Comment("rule to jump traffic destined to POD name:" + key);
      std::string from_pod = Comment("rule to jump traffic from POD name:" + key);
      forward.rules.push_back(to_pod + " -d " + ip + " -j " + chain_name);
      forward.rules.push_back(from_pod + " -s " + ip + " -j " + chain_name);
      output.rules.push_back(to_pod + " -d " + ip + " -j " + chain_name);
      output.rules.push_back(from_pod + " -s " + ip + " -j " + chain_name);
      input.rules.push_back(from_pod + " -s " + ip + " -j " + chain_name);
    }
    for (Chain* top : {&input, &forward, &output}) {
      top->rules.push_back(
          Comment("rule to explicitly ACCEPT traffic that comply to network policies") + " -j " +
          kTailChain);
      out_.chains[top->name] = std::move(*top);
    }
  }

  const ClusterView& view_;
  const NetpolConfig& config_;
  IpFamily family_;
  DesiredState out_;
  std::map<std::string, k8s::Labels> namespace_labels_;
  std::map<std::string, std::vector<PodRef>> pods_by_namespace_;
  std::vector<PodRef> local_pods_;
  std::map<std::string, std::vector<PodPolicy>> pod_policies_;
  std::map<std::string, std::vector<PodRef>> peer_cache_;
};

}  // namespace

DesiredState Compile(const ClusterView& view, const NetpolConfig& config, IpFamily family) {
  return Compiler(view, config, family).Run();
}

}  // namespace kr::netpol
