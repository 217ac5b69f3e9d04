// The incremental compiler must always produce exactly what a from-scratch Compile produces, and
// report every chain and set whose content changed. A seeded random walk over the kinds of
// change a cluster sees (labels, addresses, nodes, phases, ports, namespaces, policies) checks
// both after every step; a second test checks that a label change recompiles only the policies
// that read the pod.
#include <gtest/gtest.h>

#include <random>

#include "kube_router/netpol/compiler.h"
#include "objects.h"

namespace kr::netpol::incremental_test {
namespace {

using netfilter::IpFamily;
using namespace testing;  // NOLINT: builders

constexpr char kNode[] = "node1";

// A mutable cluster the walk edits; View() hands out the same objects until they change, as the
// informer caches do.
struct World {
  std::map<std::string, std::shared_ptr<const k8s::Pod>> pods;
  std::map<std::string, std::shared_ptr<const k8s::Namespace>> namespaces;
  std::map<std::string, std::shared_ptr<const k8s::NetworkPolicy>> policies;
  std::vector<IpPrefix> node_pod_cidrs;

  void Set(const k8s::Pod& p) { pods[p.meta.Key()] = std::make_shared<const k8s::Pod>(p); }
  void Set(const k8s::Namespace& n) {
    namespaces[n.meta.Key()] = std::make_shared<const k8s::Namespace>(n);
  }
  void Set(const k8s::NetworkPolicy& p) {
    policies[p.meta.Key()] = std::make_shared<const k8s::NetworkPolicy>(p);
  }

  ClusterView View() const {
    ClusterView view;
    for (const auto& [k, v] : pods) view.pods.push_back(v);
    for (const auto& [k, v] : namespaces) view.namespaces.push_back(v);
    for (const auto& [k, v] : policies) view.policies.push_back(v);
    view.node_pod_cidrs = node_pod_cidrs;
    return view;
  }
};

const std::vector<std::string> kNamespaces = {"x", "y", "z", "w"};
const std::vector<std::string> kApps = {"web", "db", "cache"};

k8s::NetworkPolicyRule Rule(std::vector<k8s::NetworkPolicyPeer> peers,
                            std::vector<k8s::NetworkPolicyPort> ports) {
  k8s::NetworkPolicyRule rule;
  rule.peers = std::move(peers);
  rule.ports = std::move(ports);
  return rule;
}

// One of many policy shapes, picked by `shape`; `variant` varies selectors and ports.
k8s::NetworkPolicy MakePolicy(const std::string& ns, const std::string& name, int shape,
                              int variant) {
  const std::string app = kApps[variant % kApps.size()];
  const std::string other = kApps[(variant + 1) % kApps.size()];
  const std::string team = "t" + std::to_string(variant % 2);
  switch (shape) {
    case 0:  // pod peers in the namespace, numeric port
      return Policy(ns, name, Labels({{"app", app}}), true, false,
                    {Rule({PodPeer(Labels({{"app", other}}))}, {Port(80 + variant % 2)})});
    case 1:  // namespace peers on a named port (looked up on the targets)
      return Policy(ns, name, Labels({{"app", app}}), true, false,
                    {Rule({NamespacePeer(Labels({{"team", team}}))}, {NamedPort("http")})});
    case 2: {  // namespace AND pod selector, matchExpressions
      k8s::NetworkPolicyPeer peer;
      peer.namespace_selector = Expr("team", "In", {"t0", "t1"});
      peer.pod_selector = Expr("app", "NotIn", {app});
      return Policy(ns, name, Expr("app", "Exists"), true, false, {Rule({peer}, {})});
    }
    case 3:  // egress to pods by name port; ipBlock with except
      return Policy(ns, name, Labels({{"app", app}}), false, true, {},
                    {Rule({PodPeer(Labels({{"app", other}}))}, {NamedPort("dns", "UDP")}),
                     Rule({BlockPeer("192.0.2.0/24", {"192.0.2.128/25"})}, {Port(443)})});
    case 4:  // egress to everyone on a named port: reads every pod
      return Policy(ns, name, Labels({{"app", app}}), false, true, {},
                    {Rule({}, {NamedPort("http")})});
    case 5:  // default deny both ways
      return Policy(ns, name, Labels({}), true, true);
    case 6:  // an invalid peer selector next to a valid one (the valid one still applies)
      return Policy(ns, name, Labels({{"app", app}}), true, false,
                    {Rule({PodPeer(Expr("app", "Sometimes", {"x"})),
                           NamespacePeer(Expr("kubernetes.io/metadata.name", "In", {"x", "z"}))},
                          {Port(81, "SCTP")})});
    case 7:  // all namespaces, pods by label, both directions
      return Policy(ns, name, Expr("app", "In", {app, other}), true, true,
                    {Rule({[] {
                            k8s::NetworkPolicyPeer p;
                            p.namespace_selector = Labels({});
                            p.pod_selector = Labels({{"role", "client"}});
                            return p;
                          }()},
                          {Port(80)})},
                    {Rule({NamespacePeer(Labels({}))}, {})});
    default:  // an invalid podSelector: the whole policy is skipped
      return Policy(ns, name, Expr("app", "In"), true, false);
  }
}

k8s::Pod MakePod(std::mt19937& rng, const std::string& ns, int index) {
  auto pick = [&](int n) { return static_cast<int>(rng() % n); };
  k8s::Labels labels = {{"app", kApps[pick(3)]}};
  if (pick(2) == 0) labels["role"] = "client";
  std::vector<k8s::ContainerPort> ports;
  if (pick(3) != 0) ports.push_back({"http", 8080 + pick(2), "TCP"});
  if (pick(2) == 0) ports.push_back({"dns", 53, "UDP"});
  int host = (static_cast<int>(std::find(kNamespaces.begin(), kNamespaces.end(), ns) -
                               kNamespaces.begin()) *
              50) +
             index + 1;
  return Pod(ns, "p" + std::to_string(index), "10.1.0." + std::to_string(host),
             pick(2) == 0 ? kNode : "node2", labels, ports);
}

class Walk {
 public:
  explicit Walk(uint32_t seed) : rng_(seed) {
    for (const auto& ns : kNamespaces) {
      if (ns != "w") world_.Set(Namespace(ns, {{"team", "t" + std::to_string(Pick(2))}}));
      for (int i = 0; i < 6; ++i) world_.Set(MakePod(rng_, ns, i));
    }
    for (int i = 0; i < 14; ++i) AddPolicy();
  }

  // One random change to the world.
  void Step() {
    switch (Pick(13)) {
      case 0:
      case 1:
      case 2: {  // relabel a pod (the common case)
        auto pod = *RandomPod();
        pod.meta.labels["app"] = kApps[Pick(3)];
        if (Pick(2) == 0) pod.meta.labels.erase("role");
        world_.Set(pod);
        break;
      }
      case 3: {  // new address, node, phase or hostNetwork
        auto pod = *RandomPod();
        switch (Pick(4)) {
          case 0:
            pod.pod_ips = {"10.1.1." + std::to_string(1 + Pick(200))};
            break;
          case 1:
            pod.node_name = pod.node_name == kNode ? "node2" : kNode;
            break;
          case 2:
            pod.phase = pod.phase == "Running" ? "Succeeded" : "Running";
            break;
          default:
            pod.host_network = !pod.host_network;
        }
        world_.Set(pod);
        break;
      }
      case 4: {  // container ports change
        auto pod = *RandomPod();
        if (pod.container_ports.empty()) {
          pod.container_ports.push_back({"http", 9090, "TCP"});
        } else {
          pod.container_ports.pop_back();
        }
        world_.Set(pod);
        break;
      }
      case 5: {  // add or remove a pod
        const auto& ns = kNamespaces[Pick(4)];
        if (Pick(2) == 0) {
          world_.Set(MakePod(rng_, ns, 10 + Pick(20)));
        } else if (world_.pods.size() > 4) {
          world_.pods.erase(std::next(world_.pods.begin(), Pick(world_.pods.size())));
        }
        break;
      }
      case 6: {  // relabel, add or remove a namespace
        const auto& ns = kNamespaces[Pick(4)];
        if (Pick(3) == 0) {
          world_.namespaces.erase(ns);
        } else {
          world_.Set(Namespace(ns, {{"team", "t" + std::to_string(Pick(3))}}));
        }
        break;
      }
      case 7:
      case 8:  // add or replace a policy
        AddPolicy();
        break;
      case 9:  // remove a policy
        if (!world_.policies.empty()) {
          world_.policies.erase(std::next(world_.policies.begin(), Pick(world_.policies.size())));
        }
        break;
      case 10: {  // an update that changes nothing the compiler reads (new object, same content)
        auto pod = *RandomPod();
        pod.meta.annotations["touched"] = std::to_string(Pick(1000));
        world_.Set(pod);
        break;
      }
      case 11: {  // the node's pod CIDRs change (read by default deny)
        const std::vector<std::vector<std::string>> choices = {
            {}, {"10.1.0.0/24"}, {"10.1.0.0/24", "fd00:1::/64"}, {"10.1.1.0/24", "10.1.0.0/24"}};
        world_.node_pod_cidrs.clear();
        for (const auto& text : choices[Pick(4)]) {
          world_.node_pod_cidrs.push_back(*IpPrefix::Parse(text));
        }
        break;
      }
      default: {  // two pods relabelled in one sync
        for (int i = 0; i < 2; ++i) {
          auto pod = *RandomPod();
          pod.meta.labels["role"] = "client";
          pod.meta.labels["app"] = kApps[Pick(3)];
          world_.Set(pod);
        }
      }
    }
  }

  const World& world() const { return world_; }

 private:
  int Pick(int n) { return static_cast<int>(rng_() % static_cast<uint32_t>(n)); }

  std::shared_ptr<const k8s::Pod> RandomPod() {
    return std::next(world_.pods.begin(), Pick(world_.pods.size()))->second;
  }

  void AddPolicy() {
    const auto& ns = kNamespaces[Pick(4)];
    world_.Set(MakePolicy(ns, "np" + std::to_string(Pick(8)), Pick(9), Pick(6)));
  }

  std::mt19937 rng_;
  World world_;
};

// Every name whose content differs between `before` and `after` must be reported with its
// previous content.
void ExpectChangesCover(const DesiredState& before, const DesiredState& after,
                        const IncrementalCompiler::Changes& changes, int step) {
  auto check = [&](const auto& old_map, const auto& new_map, const auto& reported,
                   const char* what) {
    std::set<std::string> names;
    for (const auto& [name, v] : old_map) names.insert(name);
    for (const auto& [name, v] : new_map) names.insert(name);
    for (const auto& name : names) {
      auto o = old_map.find(name);
      auto n = new_map.find(name);
      bool same = o != old_map.end() && n != new_map.end() && o->second == n->second;
      if (same) continue;
      auto r = reported.find(name);
      ASSERT_NE(r, reported.end())
          << "step " << step << ": " << what << " " << name << " changed but was not reported";
      if (o == old_map.end()) {
        EXPECT_FALSE(r->second.has_value()) << "step " << step << ": " << name;
      } else {
        ASSERT_TRUE(r->second.has_value()) << "step " << step << ": " << name;
        EXPECT_EQ(*r->second, o->second) << "step " << step << ": " << name;
      }
    }
  };
  check(before.chains, after.chains, changes.chains, "chain");
  check(before.sets, after.sets, changes.sets, "set");
}

TEST(IncrementalCompilerTest, RandomWalkAlwaysEqualsAFreshCompile) {
  NetpolConfig config;
  config.node_name = kNode;
  for (uint32_t seed : {1u, 2u, 3u, 4u}) {
    for (IpFamily family : {IpFamily::kV4, IpFamily::kV6}) {
      config.default_deny = seed % 2 == 0;  // the tail chain and the local-pods set vary too
      Walk walk(seed);
      IncrementalCompiler compiler(config, family);
      auto first = compiler.Update(walk.world().View());
      EXPECT_TRUE(first.full);
      size_t recompiled = 0, steps = 150;
      for (size_t step = 0; step < steps; ++step) {
        walk.Step();
        DesiredState before = compiler.state();
        ClusterView view = walk.world().View();
        auto changes = compiler.Update(view);
        ASSERT_FALSE(changes.full);
        DesiredState fresh = Compile(view, config, family);
        ASSERT_EQ(compiler.state().chains, fresh.chains) << "seed " << seed << " step " << step;
        ASSERT_EQ(compiler.state().sets, fresh.sets) << "seed " << seed << " step " << step;
        ASSERT_EQ(compiler.state().problems, fresh.problems) << "seed " << seed << " step " << step;
        ExpectChangesCover(before, compiler.state(), changes, static_cast<int>(step));
        if (::testing::Test::HasFatalFailure()) return;
        recompiled += changes.policies_compiled;
      }
      // The point of it: on average far fewer policies than the cluster holds are recompiled.
      EXPECT_LT(recompiled, steps * walk.world().policies.size() / 2) << "seed " << seed;
    }
  }
}

TEST(IncrementalCompilerTest, ALabelChangeRecompilesOnlyThePoliciesThatReadThePod) {
  World world;
  world.Set(Namespace("x", {{"team", "a"}}));
  world.Set(Namespace("y", {{"team", "b"}}));
  world.Set(Pod("x", "a", "10.0.0.1", kNode, {{"app", "web"}}));
  world.Set(Pod("x", "b", "10.0.0.2", kNode, {{"app", "db"}}));
  world.Set(Pod("y", "c", "10.0.0.3", kNode, {{"app", "web"}}));
  // Reads x/a: targets app=web in x (before the change) and app=cache in x (after it).
  world.Set(Policy("x", "web", Labels({{"app", "web"}}), true, false));
  world.Set(Policy("x", "cache", Labels({{"app", "cache"}}), true, false));
  // Does not read x/a's labels: other namespace, and a namespace peer without a pod selector
  // (membership by namespace does not depend on labels).
  world.Set(Policy("y", "web", Labels({{"app", "web"}}), true, false,
                   {Rule({PodPeer(Labels({{"app", "db"}}))}, {})}));
  world.Set(Policy("y", "team", Labels({}), true, false,
                   {Rule({NamespacePeer(Labels({{"team", "a"}}))}, {})}));
  world.Set(Policy("x", "db", Labels({{"app", "db"}}), true, false,
                   {Rule({PodPeer(Labels({{"app", "db"}}))}, {})}));

  NetpolConfig config;
  config.node_name = kNode;
  IncrementalCompiler compiler(config, IpFamily::kV4);
  EXPECT_EQ(compiler.Update(world.View()).policies_compiled, 5u);

  auto pod = *world.pods["x/a"];
  pod.meta.labels["app"] = "cache";
  world.Set(pod);
  auto changes = compiler.Update(world.View());
  EXPECT_EQ(changes.policies_compiled, 2u);
  EXPECT_EQ(compiler.state().chains, Compile(world.View(), config, IpFamily::kV4).chains);

  // A new address is read by the namespace peer as well.
  pod.pod_ips = {"10.0.0.9"};
  world.Set(pod);
  EXPECT_EQ(compiler.Update(world.View()).policies_compiled, 2u);  // x/cache and y/team
  EXPECT_EQ(compiler.state().sets, Compile(world.View(), config, IpFamily::kV4).sets);

  // Nothing the compiler reads: nothing recompiled, nothing reported.
  pod.meta.annotations["note"] = "x";
  world.Set(pod);
  auto unchanged = compiler.Update(world.View());
  EXPECT_EQ(unchanged.policies_compiled, 0u);
  EXPECT_TRUE(unchanged.sets.empty());
}

TEST(IncrementalCompilerTest, ResetCompilesEverythingAgain) {
  World world;
  world.Set(Namespace("x"));
  world.Set(Pod("x", "a", "10.0.0.1", kNode, {{"app", "web"}}));
  world.Set(Policy("x", "web", Labels({{"app", "web"}}), true, false));
  NetpolConfig config;
  config.node_name = kNode;
  IncrementalCompiler compiler(config, IpFamily::kV4);
  compiler.Update(world.View());
  EXPECT_EQ(compiler.Update(world.View()).policies_compiled, 0u);
  compiler.Reset();
  EXPECT_TRUE(compiler.state().chains.empty());
  auto changes = compiler.Update(world.View());
  EXPECT_TRUE(changes.full);
  EXPECT_EQ(changes.policies_compiled, 1u);
  EXPECT_EQ(compiler.state().chains, Compile(world.View(), config, IpFamily::kV4).chains);
}

}  // namespace
}  // namespace kr::netpol::incremental_test
