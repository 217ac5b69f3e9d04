// Table-driven tests of the rule compiler: objects in, chains and set members out.
#include "kube_router/netpol/compiler.h"

#include <gtest/gtest.h>

#include "kube_router/netpol/naming.h"
#include "objects.h"

namespace kr::netpol::compiler_test {
namespace {

using netfilter::IpFamily;
using netfilter::IpsetEntry;
using netfilter::IpsetType;
using namespace testing;  // NOLINT: builders

constexpr char kNode[] = "node1";

// Namespaces x, y, z with pods a, b, c each (10.0.<ns>.<pod>); x's pods and y/a are local.
ClusterView World() {
  ClusterView view;
  const std::string namespaces[] = {"x", "y", "z"};
  const std::string pods[] = {"a", "b", "c"};
  for (int n = 0; n < 3; ++n) {
    view.namespaces.push_back(
        std::make_shared<k8s::Namespace>(Namespace(namespaces[n], {{"ns", namespaces[n]}})));
    for (int p = 0; p < 3; ++p) {
      std::string ip = "10.0." + std::to_string(n + 1) + "." + std::to_string(p + 1);
      bool local = n == 0 || (n == 1 && p == 0);
      // The same port name means 80 on pod a and 8080 on the others.
      std::vector<k8s::ContainerPort> ports = {{"serve-80-tcp", p == 0 ? 80 : 8080, "TCP"},
                                               {"serve-81-udp", 81, "UDP"}};
      view.pods.push_back(std::make_shared<k8s::Pod>(
          Pod(namespaces[n], pods[p], ip, local ? kNode : "node2", {{"pod", pods[p]}}, ports)));
    }
  }
  return view;
}

std::set<IpsetEntry> Ips(std::initializer_list<const char*> ips) {
  std::set<IpsetEntry> out;
  for (const char* ip : ips) out.insert({ip, false});
  return out;
}

k8s::NetworkPolicyRule Rule(std::vector<k8s::NetworkPolicyPeer> peers,
                            std::vector<k8s::NetworkPolicyPort> ports = {}) {
  return {std::move(peers), std::move(ports)};
}

struct ExpectedRule {
  std::string chain;     // a chain name
  std::string fragment;  // text the chain must contain in one rule
};

struct Case {
  std::string what;
  std::vector<k8s::NetworkPolicy> policies;
  std::map<std::string, std::set<IpsetEntry>> sets;  // exact members of these sets
  std::vector<ExpectedRule> rules;
  std::vector<ExpectedRule> absent;
  std::vector<std::string> problems;  // substrings, one problem each
};

bool ChainHas(const DesiredState& state, const std::string& chain, const std::string& fragment) {
  auto it = state.chains.find(chain);
  if (it == state.chains.end()) return false;
  for (const auto& rule : it->second.rules) {
    if (rule.find(fragment) != std::string::npos) return true;
  }
  return false;
}

// The shared set names as the compiler derives them (naming.h), for policies in namespace x.
std::string Selection(const k8s::LabelSelector& pods) {
  return PodSelectionKey("x", nullptr, &pods);
}
std::string Selection(const k8s::NetworkPolicyPeer& peer) {
  return PodSelectionKey("x", peer.namespace_selector ? &*peer.namespace_selector : nullptr,
                         peer.pod_selector ? &*peer.pod_selector : nullptr);
}
// Ingress targets (matched as destination) and egress targets (as source).
std::string Dst(const k8s::LabelSelector& pods = {}) {
  return PodSetName(false, {Selection(pods)}, IpFamily::kV4);
}
std::string Src(const k8s::LabelSelector& pods = {}) {
  return PodSetName(true, {Selection(pods)}, IpFamily::kV4);
}
std::string Peers(bool src, const std::vector<k8s::NetworkPolicyPeer>& peers) {
  std::vector<std::string> keys;
  for (const auto& peer : peers) keys.push_back(Selection(peer));
  return PodSetName(src, keys, IpFamily::kV4);
}
std::string InPeer(const std::vector<k8s::NetworkPolicyPeer>& peers) { return Peers(true, peers); }
std::string OutPeer(const std::vector<k8s::NetworkPolicyPeer>& peers) {
  return Peers(false, peers);
}
std::string InNets(const std::set<IpsetEntry>& entries) {
  return NetSetName(true, entries, IpFamily::kV4);
}
std::string OutNets(const std::set<IpsetEntry>& entries) {
  return NetSetName(false, entries, IpFamily::kV4);
}
std::string Named(const std::vector<std::string>& selections, int32_t number) {
  return NamedPortSetName(selections, "tcp", "serve-80-tcp", number, IpFamily::kV4);
}
std::string PChain(const std::string& policy, bool ingress = true) {
  return PolicyChainName("x", policy, IpFamily::kV4, ingress);
}
const std::string kPodXA = PodChainName("x", "a");

std::vector<Case> Cases() {
  std::vector<Case> cases;
  cases.push_back({"default deny ingress selects every pod of the namespace",
                   {Policy("x", "deny", {}, true, false)},
                   {{Dst(), Ips({"10.0.1.1", "10.0.1.2", "10.0.1.3"})}},
                   {{kPodXA, "-d 10.0.1.1 -j " + PChain("deny")},
                    {kPodXA, "-s 10.0.1.1 -j KUBE-NWPLCY-DEFAULT"}},
                   {{kPodXA, "-d 10.0.1.1 -j KUBE-NWPLCY-DEFAULT"}, {PChain("deny"), "MARK"}},
                   {}});
  cases.push_back(
      {"pod selector peer on one TCP port",
       {Policy("x", "p", Labels({{"pod", "a"}}), true, false,
               {Rule({PodPeer(Labels({{"pod", "b"}}))}, {Port(80)})})},
       {{Dst(Labels({{"pod", "a"}})), Ips({"10.0.1.1"})},
        {InPeer({PodPeer(Labels({{"pod", "b"}}))}), Ips({"10.0.1.2"})}},
       {{PChain("p"), "-m set --match-set " + InPeer({PodPeer(Labels({{"pod", "b"}}))}) +
                          " src -m set --match-set " + Dst(Labels({{"pod", "a"}})) +
                          " dst -p tcp --dport 80 -j MARK --set-xmark 0x10000/0x10000"},
        {PChain("p"), "-p tcp --dport 80 -m mark --mark 0x10000/0x10000 -j RETURN"}},
       {},
       {}});
  k8s::NetworkPolicyPeer and_peer = NamespacePeer(Labels({{"ns", "y"}}));
  and_peer.pod_selector = Labels({{"pod", "a"}});
  cases.push_back({"namespace AND pod selector in one peer",
                   {Policy("x", "and", {}, true, false, {Rule({and_peer})})},
                   {{InPeer({and_peer}), Ips({"10.0.2.1"})}},
                   {{PChain("and"), "--match-set " + InPeer({and_peer}) +
                                        " src -m set --match-set " + Dst() + " dst -j MARK"}},
                   {},
                   {}});
  cases.push_back(
      {"namespace OR pod selector as two peers",
       {Policy("x", "or", {}, true, false,
               {Rule({NamespacePeer(Labels({{"ns", "y"}})), PodPeer(Labels({{"pod", "a"}}))})})},
       {{InPeer({NamespacePeer(Labels({{"ns", "y"}})), PodPeer(Labels({{"pod", "a"}}))}),
         Ips({"10.0.2.1", "10.0.2.2", "10.0.2.3", "10.0.1.1"})}},
       {},
       {},
       {}});
  cases.push_back(
      {"matchExpressions NotIn on namespaces, automatic name label",
       {Policy("x", "expr", {}, true, false,
               {Rule({NamespacePeer(Expr("kubernetes.io/metadata.name", "NotIn", {"x", "y"}))})})},
       {{InPeer({NamespacePeer(Expr("kubernetes.io/metadata.name", "NotIn", {"x", "y"}))}),
         Ips({"10.0.3.1", "10.0.3.2", "10.0.3.3"})}},
       {},
       {},
       {}});
  cases.push_back(
      {"ipBlock with except uses hash:net and nomatch, in a set of its own",
       {Policy("x", "block", {}, true, false,
               {Rule({BlockPeer("10.0.0.0/16", {"10.0.2.0/24", "10.0.3.3/32"})})})},
       {{InNets({{"10.0.0.0/16", false}, {"10.0.2.0/24", true}, {"10.0.3.3", true}}),
         {{"10.0.0.0/16", false}, {"10.0.2.0/24", true}, {"10.0.3.3", true}}}},
       {{PChain("block"),
         "--match-set " +
             InNets({{"10.0.0.0/16", false}, {"10.0.2.0/24", true}, {"10.0.3.3", true}}) + " src"}},
       {},
       {}});
  // Found by the matrix test: one shared hash:net set let the except of one peer cut what
  // another peer of the same rule allows (10.0.2.2 is allowed by the second block).
  cases.push_back(
      {"an except of one ipBlock peer does not cut another peer's block",
       {Policy("x", "blocks", {}, true, false,
               {Rule({BlockPeer("10.0.0.0/16", {"10.0.2.0/24"}), BlockPeer("10.0.2.0/30"),
                      BlockPeer("10.0.3.0/24", {"10.0.3.3/32"})})})},
       {{InNets({{"10.0.0.0/16", false}, {"10.0.2.0/24", true}}),
         {{"10.0.0.0/16", false}, {"10.0.2.0/24", true}}},
        {InNets({{"10.0.2.0/30", false}}), {{"10.0.2.0/30", false}}},
        {InNets({{"10.0.3.0/24", false}, {"10.0.3.3", true}}),
         {{"10.0.3.0/24", false}, {"10.0.3.3", true}}}},
       {{PChain("blocks"),
         "--match-set " + InNets({{"10.0.0.0/16", false}, {"10.0.2.0/24", true}}) + " src"},
        {PChain("blocks"), "--match-set " + InNets({{"10.0.2.0/30", false}}) + " src"},
        {PChain("blocks"),
         "--match-set " + InNets({{"10.0.3.0/24", false}, {"10.0.3.3", true}}) + " src"}},
       {},
       {}});
  cases.push_back({"egress to 0.0.0.0/0 is split in two halves",
                   {Policy("x", "world", {}, false, true, {}, {Rule({BlockPeer("0.0.0.0/0")})})},
                   {{OutNets({{"0.0.0.0/1", false}, {"128.0.0.0/1", false}}),
                     {{"0.0.0.0/1", false}, {"128.0.0.0/1", false}}},
                    {Src(), Ips({"10.0.1.1", "10.0.1.2", "10.0.1.3"})}},
                   {{PChain("world", false),
                     "-m set --match-set " + Src() + " src -m set --match-set " +
                         OutNets({{"0.0.0.0/1", false}, {"128.0.0.0/1", false}}) + " dst -j MARK"},
                    {kPodXA, "-s 10.0.1.1 -j " + PChain("world", false)},
                    {kPodXA, "-d 10.0.1.1 -j KUBE-NWPLCY-DEFAULT"}},
                   {{kPodXA, "-s 10.0.1.1 -j KUBE-NWPLCY-DEFAULT"}},
                   {}});
  cases.push_back(
      {"named port resolves to different numbers on different pods",
       {Policy("x", "named", {}, true, false, {Rule({}, {NamedPort("serve-80-tcp")})})},
       {{Named({Selection(k8s::LabelSelector{})}, 80), Ips({"10.0.1.1"})},
        {Named({Selection(k8s::LabelSelector{})}, 8080), Ips({"10.0.1.2", "10.0.1.3"})}},
       {{PChain("named"), "--match-set " + Named({Selection(k8s::LabelSelector{})}, 80) +
                              " dst -p tcp --dport 80 -j MARK"},
        {PChain("named"), "--match-set " + Named({Selection(k8s::LabelSelector{})}, 8080) +
                              " dst -p tcp --dport 8080 -j MARK"}},
       {},
       {}});
  k8s::NetworkPolicyPort range = Port(80);
  range.end_port = 90;
  cases.push_back({"endPort, UDP and SCTP ports",
                   {Policy("x", "ports", {}, true, false,
                           {Rule({}, {range, Port(81, "UDP"), Port(82, "SCTP")})})},
                   {},
                   {{PChain("ports"), "--match-set " + Dst() + " dst -p tcp --dport 80:90"},
                    {PChain("ports"), "-p udp --dport 81"},
                    {PChain("ports"), "-p sctp --dport 82"}},
                   {},
                   {}});
  cases.push_back({"ingress: [{}] allows everything to the selected pods",
                   {Policy("x", "all", {}, true, false, {Rule({})})},
                   {},
                   {{PChain("all"),
                     "-m set --match-set " + Dst() + " dst -j MARK --set-xmark 0x10000/0x10000"}},
                   {},
                   {}});
  cases.push_back(
      {"egress named port to selected pods uses those pods only",
       {Policy("x", "out", Labels({{"pod", "a"}}), false, true, {},
               {Rule({NamespacePeer(Labels({{"ns", "z"}}))}, {NamedPort("serve-80-tcp")})})},
       {{Named({Selection(NamespacePeer(Labels({{"ns", "z"}})))}, 80), Ips({"10.0.3.1"})},
        {Named({Selection(NamespacePeer(Labels({{"ns", "z"}})))}, 8080),
         Ips({"10.0.3.2", "10.0.3.3"})}},
       {{PChain("out", false), "-m set --match-set " + Src(Labels({{"pod", "a"}})) +
                                   " src -m set --match-set " +
                                   Named({Selection(NamespacePeer(Labels({{"ns", "z"}})))}, 8080) +
                                   " dst -p tcp --dport 8080"}},
       {},
       {}});
  cases.push_back(
      {"a policy of both types: its ingress chain for packets to the pod, its egress chain for "
       "packets from it (issue 16 item 2)",
       {Policy("x", "both", Labels({{"pod", "a"}}), true, true, {Rule({})},
               {Rule({PodPeer(Labels({{"pod", "b"}}))})})},
       {},
       {{kPodXA, "-d 10.0.1.1 -j " + PChain("both", true)},
        {kPodXA, "-s 10.0.1.1 -j " + PChain("both", false)},
        {PChain("both", true), "--match-set " + Dst(Labels({{"pod", "a"}})) + " dst -j MARK"},
        {PChain("both", false),
         "--match-set " + OutPeer({PodPeer(Labels({{"pod", "b"}}))}) + " dst -j MARK"}},
       {{kPodXA, "-j KUBE-NWPLCY-DEFAULT"},
        {kPodXA, "-s 10.0.1.1 -j " + PChain("both", true)},
        {kPodXA, "-d 10.0.1.1 -j " + PChain("both", false)},
        {PChain("both", true), OutPeer({PodPeer(Labels({{"pod", "b"}}))})},
        {PChain("both", false), Dst(Labels({{"pod", "a"}}))}},
       {}});
  cases.push_back(
      {"several policies on one pod are all jumped to",
       {Policy("x", "one", Labels({{"pod", "a"}}), true, false),
        Policy("x", "two", Expr("pod", "In", {"a", "b"}), true, false, {Rule({})})},
       {{Dst(Expr("pod", "In", {"a", "b"})), Ips({"10.0.1.1", "10.0.1.2"})}},
       {{kPodXA, "-d 10.0.1.1 -j " + PChain("one")}, {kPodXA, "-d 10.0.1.1 -j " + PChain("two")}},
       {},
       {}});
  return cases;
}

TEST(Compile, Table) {
  NetpolConfig config;
  config.node_name = kNode;
  for (const auto& c : Cases()) {
    SCOPED_TRACE(c.what);
    ClusterView view = World();
    for (const auto& p : c.policies)
      view.policies.push_back(std::make_shared<k8s::NetworkPolicy>(p));
    DesiredState state = Compile(view, config, IpFamily::kV4);
    for (const auto& [name, members] : c.sets) {
      auto it = state.sets.find(name);
      ASSERT_NE(it, state.sets.end()) << "missing set " << name;
      EXPECT_EQ(it->second.entries, members) << name;
    }
    for (const auto& r : c.rules) {
      EXPECT_TRUE(ChainHas(state, r.chain, r.fragment)) << r.chain << " lacks " << r.fragment;
    }
    for (const auto& r : c.absent) {
      EXPECT_FALSE(ChainHas(state, r.chain, r.fragment)) << r.chain << " has " << r.fragment;
    }
    EXPECT_EQ(state.problems.size(), c.problems.size());
  }
}

TEST(Compile, ChainLayoutForLocalPodsOnly) {
  NetpolConfig config;
  config.node_name = kNode;
  config.service_cluster_ip_ranges = {*IpPrefix::Parse("10.96.0.0/12")};
  DesiredState state = Compile(World(), config, IpFamily::kV4);
  // x/a, x/b, x/c, y/a are local: 4 pod chains, plus 3 top-level and 3 static chains.
  size_t pod_chains = 0;
  for (const auto& [name, chain] : state.chains) pod_chains += name.starts_with("KUBE-POD-FW-");
  EXPECT_EQ(pod_chains, 4u);
  EXPECT_EQ(state.chains.size(), 10u);
  EXPECT_FALSE(state.chains.contains(PodChainName("z", "a")));
  const auto& pod = state.chains.at(kPodXA).rules;
  ASSERT_GE(pod.size(), 4u);
  EXPECT_NE(pod.front().find("-j KUBE-NWPLCY-COMMON"), std::string::npos);
  EXPECT_NE(pod[pod.size() - 3].find("-m mark ! --mark 0x10000/0x10000 -j REJECT"),
            std::string::npos);
  EXPECT_NE(pod.back().find("-j MARK --set-xmark 0x20000/0x20000"), std::string::npos);
  EXPECT_TRUE(ChainHas(state, kInputChain, "-d 10.96.0.0/12 -j RETURN"));
  EXPECT_TRUE(ChainHas(state, kInputChain, "--dports 30000:32767 -j RETURN"));
  EXPECT_TRUE(ChainHas(state, kForwardChain, "-d 10.0.1.1 -j " + kPodXA));
  EXPECT_TRUE(ChainHas(state, kForwardChain, "-s 10.0.1.1 -j " + kPodXA));
  EXPECT_NE(state.chains.at(kForwardChain).rules.back().find("-j KUBE-NWPLCY-TAIL"),
            std::string::npos);
  EXPECT_TRUE(state.sets.empty());
}

TEST(Compile, IgnoresHostNetworkFinishedAndAddresslessPods) {
  NetpolConfig config;
  config.node_name = kNode;
  ClusterView view;
  auto host = Pod("x", "host", "10.0.9.1", kNode);
  host.host_network = true;
  auto done = Pod("x", "done", "10.0.9.2", kNode);
  done.phase = "Succeeded";
  auto failed = Pod("x", "failed", "10.0.9.3", kNode);
  failed.phase = "Failed";
  auto pending = Pod("x", "pending", "", kNode);
  auto live = Pod("x", "live", "10.0.9.4", kNode);
  for (const auto& p : {host, done, failed, pending, live}) {
    view.pods.push_back(std::make_shared<k8s::Pod>(p));
  }
  view.policies.push_back(
      std::make_shared<k8s::NetworkPolicy>(Policy("x", "deny", {}, true, false)));
  DesiredState state = Compile(view, config, IpFamily::kV4);
  EXPECT_EQ(state.sets.at(Dst()).entries, Ips({"10.0.9.4"}));
  EXPECT_TRUE(state.chains.contains(PodChainName("x", "live")));
  for (const char* name : {"host", "done", "failed", "pending"}) {
    EXPECT_FALSE(state.chains.contains(PodChainName("x", name))) << name;
  }
}

TEST(Compile, BadInputIsReportedAndFailsClosed) {
  NetpolConfig config;
  config.node_name = kNode;
  k8s::NetworkPolicyPort unknown_protocol = Port(80, "ICMP");
  k8s::NetworkPolicyPort backwards = Port(90);
  backwards.end_port = 80;
  struct BadCase {
    std::string what;
    k8s::NetworkPolicyRule rule;
    std::string problem;
  };
  const BadCase bad[] = {
      {"invalid CIDR", Rule({BlockPeer("10.0.0.300/8")}), "invalid CIDR \"10.0.0.300/8\""},
      {"except outside", Rule({BlockPeer("10.0.0.0/16", {"10.1.0.0/24"})}),
       "except 10.1.0.0/24 is not inside ipBlock 10.0.0.0/16"},
      {"unknown protocol", Rule({}, {unknown_protocol}), "unknown protocol \"ICMP\""},
      {"endPort below port", Rule({}, {backwards}), "endPort 80 is less than port 90"},
      {"named port nobody has", Rule({}, {NamedPort("nope")}), "named port \"nope\""},
      {"unknown operator", Rule({PodPeer(Expr("pod", "Matches", {"a"}))}),
       "unknown selector operator \"Matches\""},
  };
  for (const auto& b : bad) {
    SCOPED_TRACE(b.what);
    ClusterView view = World();
    view.policies.push_back(std::make_shared<k8s::NetworkPolicy>(
        Policy("x", "bad", Labels({{"pod", "a"}}), true, false, {b.rule})));
    view.policies.push_back(std::make_shared<k8s::NetworkPolicy>(
        Policy("x", "good", Labels({{"pod", "b"}}), true, false, {Rule({}, {Port(80)})})));
    DesiredState state = Compile(view, config, IpFamily::kV4);
    ASSERT_EQ(state.problems.size(), 1u);
    EXPECT_NE(state.problems[0].find("NetworkPolicy x/bad"), std::string::npos);
    EXPECT_NE(state.problems[0].find(b.problem), std::string::npos) << state.problems[0];
    // The bad rule allows nothing, yet the pod stays isolated by the policy.
    EXPECT_TRUE(state.chains.at(PChain("bad")).rules.empty());
    EXPECT_TRUE(ChainHas(state, kPodXA, "-d 10.0.1.1 -j " + PChain("bad")));
    // The other policy is still enforced.
    EXPECT_TRUE(ChainHas(state, PChain("good"), "-p tcp --dport 80"));
  }
}

TEST(Compile, OneBadPeerLeavesTheOtherPeersOfTheRule) {
  NetpolConfig config;
  config.node_name = kNode;
  ClusterView view = World();
  view.policies.push_back(std::make_shared<k8s::NetworkPolicy>(
      Policy("x", "mixed", {}, true, false,
             {Rule({BlockPeer("not-a-cidr"), PodPeer(Labels({{"pod", "c"}}))})})));
  DesiredState state = Compile(view, config, IpFamily::kV4);
  EXPECT_EQ(state.problems.size(), 1u);
  EXPECT_EQ(state.sets.at(InPeer({PodPeer(Labels({{"pod", "c"}}))})).entries, Ips({"10.0.1.3"}));
  EXPECT_EQ(state.sets.size(), 2u);  // the targets and the pod peers: no set for the bad block
}

TEST(Compile, Ipv6FamilyUsesInet6SetsAndIgnoresV4Blocks) {
  NetpolConfig config;
  config.node_name = kNode;
  ClusterView view;
  auto pod = Pod("x", "a", "10.0.1.1", kNode);
  pod.pod_ips = {"10.0.1.1", "fd00::1"};
  view.pods.push_back(std::make_shared<k8s::Pod>(pod));
  view.policies.push_back(std::make_shared<k8s::NetworkPolicy>(Policy(
      "x", "p", {}, true, false, {Rule({BlockPeer("10.0.0.0/8"), BlockPeer("fd00::/64")})})));
  DesiredState v6 = Compile(view, config, IpFamily::kV6);
  const k8s::LabelSelector all;
  EXPECT_EQ(v6.sets.at(PodSetName(false, {Selection(all)}, IpFamily::kV6)).entries,
            Ips({"fd00::1"}));
  EXPECT_EQ(v6.sets.at(NetSetName(true, {{"fd00::/64", false}}, IpFamily::kV6)).entries,
            (std::set<IpsetEntry>{{"fd00::/64", false}}));
  EXPECT_TRUE(ChainHas(v6, PodChainName("x", "a"), "-d fd00::1 -j"));
  EXPECT_TRUE(v6.problems.empty());
}

TEST(Compile, WithoutDefaultDenyTheTailOnlyAcceptsMarkedTraffic) {
  NetpolConfig config;
  config.node_name = kNode;
  ClusterView view = World();
  view.node_pod_cidrs = {*IpPrefix::Parse("10.0.1.0/24")};  // ignored without default deny
  DesiredState state = Compile(view, config, IpFamily::kV4);
  ASSERT_EQ(state.chains.at(kTailChain).rules.size(), 1u);
  EXPECT_NE(state.chains.at(kTailChain).rules[0].find("-m mark --mark 0x20000/0x20000 -j ACCEPT"),
            std::string::npos);
  EXPECT_FALSE(state.sets.contains(kLocalPodsSet));
}

TEST(Compile, DefaultDenyRejectsPodCidrTrafficOfPodsWithoutAChain) {
  NetpolConfig config;
  config.node_name = kNode;
  config.default_deny = true;
  ClusterView view = World();
  view.node_pod_cidrs = {*IpPrefix::Parse("10.0.1.0/24"), *IpPrefix::Parse("fd00:1::/64"),
                         *IpPrefix::Parse("10.0.2.0/24")};
  auto host = Pod("x", "host", "10.0.1.50", kNode);
  host.host_network = true;
  view.pods.push_back(std::make_shared<k8s::Pod>(host));
  DesiredState state = Compile(view, config, IpFamily::kV4);

  // The local pods with an address (x/a, x/b, x/c, y/a); not remote or host-network pods.
  EXPECT_EQ(state.sets.at(kLocalPodsSet).entries,
            Ips({"10.0.1.1", "10.0.1.2", "10.0.1.3", "10.0.2.1"}));
  EXPECT_EQ(state.sets.at(kLocalPodsSet).type, IpsetType::kHashIp);

  std::vector<std::string> tail;
  for (const auto& rule : state.chains.at(kTailChain).rules) {
    tail.push_back(rule.substr(rule.find("\" ") + 2));  // without the comment
  }
  const std::vector<std::string> expected = {
      "-s 10.0.1.0/24 -m addrtype ! --src-type LOCAL -m set ! --match-set kube-router-local-pods "
      "src -j REJECT",
      "-d 10.0.1.0/24 -m addrtype ! --dst-type LOCAL -m set ! --match-set kube-router-local-pods "
      "dst -j REJECT",
      "-s 10.0.2.0/24 -m addrtype ! --src-type LOCAL -m set ! --match-set kube-router-local-pods "
      "src -j REJECT",
      "-d 10.0.2.0/24 -m addrtype ! --dst-type LOCAL -m set ! --match-set kube-router-local-pods "
      "dst -j REJECT",
      "-m mark --mark 0x20000/0x20000 -j ACCEPT",
      "-s 10.0.1.0/24 -m addrtype ! --src-type LOCAL -j REJECT",
      "-d 10.0.1.0/24 -m addrtype ! --dst-type LOCAL -j REJECT",
      "-s 10.0.2.0/24 -m addrtype ! --src-type LOCAL -j REJECT",
      "-d 10.0.2.0/24 -m addrtype ! --dst-type LOCAL -j REJECT",
  };
  EXPECT_EQ(tail, expected);
  // Every top-level chain ends in the tail.
  for (const char* top : {kInputChain, kForwardChain, kOutputChain}) {
    EXPECT_NE(state.chains.at(top).rules.back().find("-j KUBE-NWPLCY-TAIL"), std::string::npos);
  }
}

TEST(Compile, DefaultDenyPerFamily) {
  NetpolConfig config;
  config.node_name = kNode;
  config.default_deny = true;
  ClusterView view;
  auto pod = Pod("x", "a", "10.0.1.1", kNode);
  pod.pod_ips = {"10.0.1.1", "fd00:1::1"};
  view.pods.push_back(std::make_shared<k8s::Pod>(pod));
  view.node_pod_cidrs = {*IpPrefix::Parse("10.0.1.0/24"), *IpPrefix::Parse("fd00:1::/64")};
  DesiredState v6 = Compile(view, config, IpFamily::kV6);
  const std::string v6_set = "inet6:kube-router-local-pods";
  EXPECT_EQ(LocalPodsSetName(IpFamily::kV6), v6_set);
  EXPECT_EQ(v6.sets.at(v6_set).entries, Ips({"fd00:1::1"}));
  EXPECT_EQ(v6.sets.at(v6_set).family, IpFamily::kV6);
  EXPECT_TRUE(ChainHas(v6, kTailChain, "-s fd00:1::/64"));
  EXPECT_TRUE(ChainHas(v6, kTailChain, "--match-set " + v6_set + " src -j REJECT"));
  EXPECT_FALSE(ChainHas(v6, kTailChain, "10.0.1.0/24"));

  // No pod CIDR of a family yet: nothing of that family is guarded (the set is still kept).
  view.node_pod_cidrs = {*IpPrefix::Parse("fd00:1::/64")};
  DesiredState v4 = Compile(view, config, IpFamily::kV4);
  EXPECT_EQ(v4.chains.at(kTailChain).rules.size(), 1u);
  EXPECT_EQ(v4.sets.at(kLocalPodsSet).entries, Ips({"10.0.1.1"}));
}

}  // namespace
}  // namespace kr::netpol::compiler_test
