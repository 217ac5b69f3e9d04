// The chains outside the policies (see pod_chains.h), in kube-router's layout and order.
#include "pod_chains.h"

#include "kube_router/netpol/naming.h"
#include "rule_text.h"

namespace kr::netpol::compiler_internal {

using netfilter::Chain;
using netfilter::IpFamily;
using netfilter::IpsetEntry;
using netfilter::IpsetSet;
using netfilter::IpsetType;

namespace {

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

// Which policies select a local pod, in which directions, and their chains (empty when not
// programmed: the pod is still isolated in that direction).
struct PodPolicy {
  std::string ingress_chain;
  std::string egress_chain;
  bool ingress = false;
  bool egress = false;
};

// `namespace_isolated`: the pod's namespace isolates its ingress (beta semantics), so only its
// policies' ingress rules let traffic in, whether or not one selects it. Without
// `policies_isolate` (a pre-1.7 API server) that is the only ingress isolation.
Chain PodChain(const PodRef& ref, const std::vector<PodPolicy>* policies, bool namespace_isolated,
               bool policies_isolate) {
  const std::string key = ref.pod->meta.Key();
  const std::string& ip = ref.ip;
  Chain chain{PodChainName(ref.pod->meta.namespace_, ref.pod->meta.name), {}};
  chain.rules.push_back(Comment("rule for stateful firewall for pod") + " -j " + kCommonChain);
  chain.rules.push_back(
      Comment("rule to permit the traffic to pods when source is the pod's local node") + " -d " +
      ip + " -m addrtype --src-type LOCAL -j ACCEPT");
  bool ingress = namespace_isolated, egress = false;
  if (policies != nullptr) {
    for (const auto& pp : *policies) {
      ingress |= pp.ingress && policies_isolate;
      egress |= pp.egress && policies_isolate;
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

}  // namespace

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

IpsetSet LocalPodsSet(const ClusterIndex& index, IpFamily family) {
  IpsetSet set{LocalPodsSetName(family), IpsetType::kHashIp, family, {}};
  for (const auto& ref : index.local_pods()) set.entries.insert(IpsetEntry{ref.ip});
  return set;
}

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
    Chain chain = PodChain(ref, found == pod_policies.end() ? nullptr : &found->second,
                           index.NamespaceIsolatesIngress(ref.pod->meta.namespace_),
                           index.policies_isolate());
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
}  // namespace kr::netpol::compiler_internal
