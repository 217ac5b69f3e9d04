// NetworkPolicy beta semantics: the namespace annotation
// net.beta.kubernetes.io/network-policy={"ingress":{"isolation":"DefaultDeny"}} isolates the
// ingress of the namespace's pods, only with NetpolConfig::beta_namespace_isolation
// (--netpol-beta-namespace-isolation). Compiler output, incremental updates and the
// controller's event filter, over fakes.
#include <gtest/gtest.h>

#include <algorithm>

#include "kube_router/netfilter/fakes.h"
#include "kube_router/netlink/fakes.h"
#include "kube_router/netpol/compiler.h"
#include "kube_router/netpol/naming.h"
#include "kube_router/netpol/network_policy_controller.h"
#include "objects.h"

namespace kr::netpol::namespace_isolation_test {
namespace {

using netfilter::IpFamily;
using namespace testing;  // NOLINT: builders

constexpr char kNode[] = "node1";
constexpr char kDenyAll[] = R"({"ingress": {"isolation": "DefaultDeny"}})";

k8s::Namespace Annotated(const std::string& name, const std::string& value) {
  k8s::Namespace ns = Namespace(name, {{"ns", name}});
  ns.meta.annotations[kBetaIsolationAnnotation] = value;
  return ns;
}

// Namespaces x and y, pods a and b in each, all on this node (10.0.<ns>.<pod>); x carries the
// beta annotation `x_annotation` (none when empty).
ClusterView World(const std::string& x_annotation) {
  ClusterView view;
  view.namespaces.push_back(std::make_shared<k8s::Namespace>(
      x_annotation.empty() ? Namespace("x", {{"ns", "x"}}) : Annotated("x", x_annotation)));
  view.namespaces.push_back(std::make_shared<k8s::Namespace>(Namespace("y", {{"ns", "y"}})));
  for (const auto& [ns, n] : {std::pair<std::string, int>{"x", 1}, {"y", 2}}) {
    for (const auto& [pod, p] : {std::pair<std::string, int>{"a", 1}, {"b", 2}}) {
      std::string ip = "10.0." + std::to_string(n) + "." + std::to_string(p);
      view.pods.push_back(std::make_shared<k8s::Pod>(Pod(ns, pod, ip, kNode, {{"pod", pod}})));
    }
  }
  return view;
}

NetpolConfig Config(bool beta) {
  NetpolConfig config;
  config.node_name = kNode;
  config.beta_namespace_isolation = beta;
  return config;
}

const std::vector<std::string>& PodChain(const DesiredState& state, const std::string& ns,
                                         const std::string& pod) {
  return state.chains.at(PodChainName(ns, pod)).rules;
}

bool HasRuleWith(const std::vector<std::string>& rules, const std::string& fragment) {
  return std::any_of(rules.begin(), rules.end(), [&](const std::string& rule) {
    return rule.find(fragment) != std::string::npos;
  });
}

// The pod chain sends packets to the pod through KUBE-NWPLCY-DEFAULT (ingress not isolated).
bool IngressOpen(const DesiredState& state, const std::string& ns, const std::string& pod,
                 const std::string& ip) {
  return HasRuleWith(PodChain(state, ns, pod), "-d " + ip + " -j " + kDefaultChain);
}
bool EgressOpen(const DesiredState& state, const std::string& ns, const std::string& pod,
                const std::string& ip) {
  return HasRuleWith(PodChain(state, ns, pod), "-s " + ip + " -j " + kDefaultChain);
}

TEST(BetaNamespaceIsolation, WithoutTheOptInTheAnnotationChangesNothing) {
  DesiredState annotated = Compile(World(kDenyAll), Config(false), IpFamily::kV4);
  DesiredState plain = Compile(World(""), Config(false), IpFamily::kV4);
  EXPECT_EQ(annotated.chains, plain.chains);
  EXPECT_EQ(annotated.sets, plain.sets);
  EXPECT_TRUE(IngressOpen(annotated, "x", "a", "10.0.1.1"));
  // Not even a broken annotation is read.
  DesiredState broken = Compile(World("{not json"), Config(false), IpFamily::kV4);
  EXPECT_EQ(broken.chains, plain.chains);
  EXPECT_TRUE(broken.problems.empty());
}

TEST(BetaNamespaceIsolation, DefaultDenyIsolatesTheIngressOfEveryPodOfTheNamespace) {
  DesiredState state = Compile(World(kDenyAll), Config(true), IpFamily::kV4);
  EXPECT_TRUE(state.problems.empty());
  for (const auto& [pod, ip] :
       {std::pair<std::string, std::string>{"a", "10.0.1.1"}, {"b", "10.0.1.2"}}) {
    EXPECT_FALSE(IngressOpen(state, "x", pod, ip)) << "x/" << pod;
    EXPECT_TRUE(EgressOpen(state, "x", pod, ip)) << "x/" << pod << ": egress is not isolated";
    // What is not let in is rejected.
    EXPECT_TRUE(HasRuleWith(PodChain(state, "x", pod), "-j REJECT"));
  }
  // Another namespace is untouched.
  EXPECT_TRUE(IngressOpen(state, "y", "a", "10.0.2.1"));
  EXPECT_TRUE(IngressOpen(state, "y", "b", "10.0.2.2"));
  // Only the pod chains of the isolated namespace differ from a compile without the annotation.
  DesiredState plain = Compile(World(""), Config(true), IpFamily::kV4);
  for (const auto& [name, chain] : plain.chains) {
    bool isolated_pod = name == PodChainName("x", "a") || name == PodChainName("x", "b");
    EXPECT_EQ(state.chains.at(name) == chain, !isolated_pod) << name;
  }
}

TEST(BetaNamespaceIsolation, APolicyOpensTheIsolatedNamespaceForWhatItAllows) {
  ClusterView view = World(kDenyAll);
  // Ingress to x/a from y's pods on TCP 80. Its policyTypes are Ingress, as any v1 policy's.
  view.policies.push_back(std::make_shared<k8s::NetworkPolicy>(
      Policy("x", "from-y", Labels({{"pod", "a"}}), true, false,
             {{{NamespacePeer(Labels({{"ns", "y"}}))}, {Port(80)}}})));
  DesiredState state = Compile(view, Config(true), IpFamily::kV4);
  std::string chain = PolicyChainName("x", "from-y", IpFamily::kV4, true);
  EXPECT_TRUE(HasRuleWith(PodChain(state, "x", "a"), "-d 10.0.1.1 -j " + chain));
  EXPECT_FALSE(IngressOpen(state, "x", "a", "10.0.1.1"));
  // x/b is selected by no policy and stays isolated by its namespace alone.
  EXPECT_FALSE(HasRuleWith(PodChain(state, "x", "b"), chain));
  EXPECT_FALSE(IngressOpen(state, "x", "b", "10.0.1.2"));
}

TEST(BetaNamespaceIsolation, ValuesOtherThanDefaultDenyDoNotIsolateWhenTheyAreValid) {
  for (const char* value : {"{}", R"({"ingress": {}})", R"({"ingress": {}, "egress": 1})"}) {
    DesiredState state = Compile(World(value), Config(true), IpFamily::kV4);
    EXPECT_TRUE(IngressOpen(state, "x", "a", "10.0.1.1")) << value;
    EXPECT_TRUE(state.problems.empty()) << value;
  }
}

TEST(BetaNamespaceIsolation, AMalformedAnnotationIsReportedNamingTheNamespaceAndFailsClosed) {
  const std::string too_long =
      R"({"ingress": {"isolation": "DefaultDeny"}, "pad": ")" + std::string(2000, 'x') + "\"}";
  for (const std::string& value :
       {std::string("{not json"), std::string("[]"), std::string("\"DefaultDeny\""),
        std::string(R"({"ingress": "DefaultDeny"})"),
        std::string(R"({"ingress": {"isolation": 1}})"),
        std::string(R"({"ingress": {"isolation": "DefaultAllow"}})"), too_long}) {
    ClusterView view = World(value);
    view.policies.push_back(std::make_shared<k8s::NetworkPolicy>(
        Policy("y", "deny-b", Labels({{"pod", "b"}}), true, false)));
    DesiredState state = Compile(view, Config(true), IpFamily::kV4);
    ASSERT_EQ(state.problems.size(), 1u) << value;
    EXPECT_NE(state.problems[0].find("Namespace x:"), std::string::npos) << state.problems[0];
    EXPECT_NE(state.problems[0].find(kBetaIsolationAnnotation), std::string::npos);
    EXPECT_FALSE(IngressOpen(state, "x", "a", "10.0.1.1")) << value;
    // Everything else keeps working: y's policy is programmed, y/a stays open.
    EXPECT_TRUE(state.chains.contains(PolicyChainName("y", "deny-b", IpFamily::kV4, true)));
    EXPECT_FALSE(IngressOpen(state, "y", "b", "10.0.2.2"));
    EXPECT_TRUE(IngressOpen(state, "y", "a", "10.0.2.1"));
  }
}

TEST(BetaNamespaceIsolation, IncrementalUpdatesFollowTheAnnotationAndEqualAFreshCompile) {
  IncrementalCompiler compiler(Config(true), IpFamily::kV4);
  compiler.Update(World(""));
  ASSERT_TRUE(IngressOpen(compiler.state(), "x", "a", "10.0.1.1"));
  const std::string x_a = PodChainName("x", "a");
  for (const std::string& value : {std::string(kDenyAll), std::string("{broken"), std::string()}) {
    ClusterView view = World(value);
    auto changes = compiler.Update(view);
    DesiredState fresh = Compile(view, Config(true), IpFamily::kV4);
    EXPECT_EQ(compiler.state().chains, fresh.chains) << value;
    EXPECT_EQ(compiler.state().problems, fresh.problems) << value;
    EXPECT_EQ(IngressOpen(compiler.state(), "x", "a", "10.0.1.1"), value.empty()) << value;
    // (DefaultDeny to a broken value leaves x isolated: nothing to rewrite.)
    if (value != "{broken") {
      EXPECT_TRUE(changes.chains.contains(x_a)) << value;
    }
    EXPECT_FALSE(changes.chains.contains(PodChainName("y", "a"))) << value;
  }
}

// A pre-1.7 API server (policies from extensions/v1beta1): the beta semantics alone, as
// kube-router did there, with or without the flag. Policies never isolate; the annotation does.
TEST(BetaNamespaceIsolation, OnABetaApiServerPoliciesOnlyAllowAndTheAnnotationAloneIsolates) {
  for (bool flag : {false, true}) {
    ClusterView view = World(kDenyAll);
    view.beta_api = true;
    // In y (not annotated) a policy selecting y/a with no rule: under v1 it would close y/a.
    view.policies.push_back(std::make_shared<k8s::NetworkPolicy>(
        Policy("y", "deny-a", Labels({{"pod", "a"}}), true, false)));
    view.policies.push_back(std::make_shared<k8s::NetworkPolicy>(
        Policy("x", "from-y", Labels({{"pod", "a"}}), true, false,
               {{{NamespacePeer(Labels({{"ns", "y"}}))}, {}}})));
    DesiredState state = Compile(view, Config(flag), IpFamily::kV4);
    EXPECT_TRUE(IngressOpen(state, "y", "a", "10.0.2.1")) << flag;
    EXPECT_FALSE(IngressOpen(state, "x", "a", "10.0.1.1")) << flag;
    EXPECT_FALSE(IngressOpen(state, "x", "b", "10.0.1.2")) << flag;
    std::string chain = PolicyChainName("x", "from-y", IpFamily::kV4, true);
    EXPECT_TRUE(HasRuleWith(PodChain(state, "x", "a"), "-d 10.0.1.1 -j " + chain)) << flag;
    // The same cluster on a v1 server without the flag: the policies isolate, x's annotation not.
    view.beta_api = false;
    DesiredState v1 = Compile(view, Config(false), IpFamily::kV4);
    EXPECT_FALSE(IngressOpen(v1, "y", "a", "10.0.2.1"));
    EXPECT_TRUE(IngressOpen(v1, "x", "b", "10.0.1.2"));
  }
}

k8s::Event NamespaceUpdate(const k8s::Namespace& before, const k8s::Namespace& after) {
  k8s::Event e;
  e.kind = k8s::ResourceKind::kNamespace;
  e.type = k8s::EventType::kUpdated;
  e.old_object = std::make_shared<const k8s::Namespace>(before);
  e.new_object = std::make_shared<const k8s::Namespace>(after);
  return e;
}

std::unique_ptr<NetworkPolicyController> Controller(const k8s::Cluster* cluster, bool beta,
                                                    netfilter::FakeIptables** iptables) {
  NetpolDataplane dataplane;
  auto fake = std::make_unique<netfilter::FakeIptables>();
  *iptables = fake.get();
  dataplane.iptables_v4 = std::move(fake);
  dataplane.ipset = std::make_unique<netfilter::FakeIpset>();
  dataplane.sysctl = std::make_unique<netlink::FakeSysctl>();
  return std::make_unique<NetworkPolicyController>(Config(beta), cluster, std::move(dataplane));
}

TEST(BetaNamespaceIsolation, TheControllerSyncsOnAnAnnotationChangeOnlyWithTheOptIn) {
  auto cluster = k8s::MakeCluster();
  netfilter::FakeIptables* iptables = nullptr;
  k8s::Namespace plain = Namespace("x", {{"ns", "x"}});
  k8s::Namespace annotated = Annotated("x", kDenyAll);
  k8s::Namespace other_annotation = plain;
  other_annotation.meta.annotations["owner"] = "team-x";
  auto off = Controller(cluster.get(), false, &iptables);
  EXPECT_FALSE(off->OnUpdate(NamespaceUpdate(plain, annotated)));
  auto on = Controller(cluster.get(), true, &iptables);
  EXPECT_TRUE(on->OnUpdate(NamespaceUpdate(plain, annotated)));
  EXPECT_TRUE(on->OnUpdate(NamespaceUpdate(annotated, plain)));
  EXPECT_TRUE(on->OnUpdate(NamespaceUpdate(annotated, Annotated("x", "{}"))));
  EXPECT_FALSE(on->OnUpdate(NamespaceUpdate(plain, other_annotation)));
  EXPECT_FALSE(on->OnUpdate(NamespaceUpdate(annotated, annotated)));
  // On a pre-1.7 API server the annotation counts without the flag.
  cluster->network_policies_beta_api = true;
  EXPECT_TRUE(off->OnUpdate(NamespaceUpdate(plain, annotated)));
}

TEST(BetaNamespaceIsolation, TheControllerProgramsTheIsolationIntoTheKernel) {
  auto cluster = k8s::MakeCluster();
  Put(*cluster, Annotated("x", kDenyAll));
  Put(*cluster, Pod("x", "a", "10.0.1.1", kNode, {{"pod", "a"}}));
  netfilter::FakeIptables* iptables = nullptr;
  auto controller = Controller(cluster.get(), true, &iptables);
  ASSERT_TRUE(controller->Sync(SyncReason::kStartup).ok());
  const auto& chains = iptables->table("filter").chains;
  ASSERT_TRUE(chains.contains(PodChainName("x", "a")));
  EXPECT_FALSE(
      HasRuleWith(chains.at(PodChainName("x", "a")), "-d 10.0.1.1 -j KUBE-NWPLCY-DEFAULT"));
  // The annotation goes: an incremental sync opens the pod again.
  Put(*cluster, Namespace("x", {{"ns", "x"}}));
  ASSERT_TRUE(controller->Sync(SyncReason::kRequested).ok());
  EXPECT_TRUE(HasRuleWith(iptables->table("filter").chains.at(PodChainName("x", "a")),
                          "-d 10.0.1.1 -j KUBE-NWPLCY-DEFAULT"));
}

}  // namespace
}  // namespace kr::netpol::namespace_isolation_test
