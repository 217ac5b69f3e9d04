// The controller over stateful fakes: assertions are about the resulting kernel state.
#include <gtest/gtest.h>

#include <algorithm>
#include <future>

#include "controller_fixture.h"
#include "kube_router/base/hashed_name.h"
#include "kube_router/k8s/node_pod_cidrs.h"
#include "kube_router/netfilter/fakes.h"
#include "kube_router/netlink/fakes.h"
#include "kube_router/netpol/naming.h"
#include "kube_router/netpol/network_policy_controller.h"
#include "kube_router/runtime/runner.h"
#include "lib/netns.h"  // WaitFor
#include "objects.h"

namespace kr::netpol::controller_test {
namespace {

using netfilter::FakeIpset;
using netfilter::FakeIptables;
using netfilter::IpFamily;
using netfilter::IpsetEntry;
using namespace testing;  // NOLINT: builders

const k8s::LabelSelector kPodA = Labels({{"pod", "a"}});
const k8s::LabelSelector kPodB = Labels({{"pod", "b"}});

class ControllerTest : public ControllerFixture {
 protected:
  void SetUp() override {
    StartController();
    Put(*cluster_, Namespace("x"));
    Put(*cluster_, Pod("x", "a", "10.0.1.1", "node1", {{"pod", "a"}}));
    Put(*cluster_, Pod("x", "b", "10.0.1.2", "node1", {{"pod", "b"}}));
    Put(*cluster_, Pod("x", "c", "10.0.1.3", "node2", {{"pod", "c"}}));
    Put(*cluster_, Policy("x", "allow-b", Labels({{"pod", "a"}}), true, false,
                          {{{PodPeer(Labels({{"pod", "b"}}))}, {Port(80)}}}));
  }

  k8s::Event PodEvent(k8s::EventType type, const k8s::Pod* old_pod, const k8s::Pod* new_pod) {
    k8s::Event e;
    e.kind = k8s::ResourceKind::kPod;
    e.type = type;
    if (old_pod) e.old_object = std::make_shared<const k8s::Pod>(*old_pod);
    if (new_pod) e.new_object = std::make_shared<const k8s::Pod>(*new_pod);
    return e;
  }

  const std::string policy_chain_ = PolicyChainName("x", "allow-b", IpFamily::kV4, true);
  const std::string peer_set_ =
      PodSetName(true, {PodSelectionKey("x", nullptr, &kPodB)}, IpFamily::kV4);  // allow-b's peers
  const std::string target_set_ = PodSetName(false, {PodSelectionKey("x", nullptr, &kPodA)},
                                             IpFamily::kV4);  // allow-b's targets
};

TEST_F(ControllerTest, WatchesNodesOnlyForDefaultDeny) {
  auto kinds = controller_->WatchedKinds();
  EXPECT_EQ(std::count(kinds.begin(), kinds.end(), k8s::ResourceKind::kNode), 0);
}

TEST_F(ControllerTest, InitEnablesBridgeNetfilter) {
  ASSERT_TRUE(controller_->Init().ok());
  EXPECT_EQ(*sysctl_->Get("net.bridge.bridge-nf-call-iptables"), "1");
}

TEST_F(ControllerTest, FullSyncProgramsChainsSetsAndJumpsAtPositionOne) {
  Chain("INPUT").push_back("-j ACCEPT");  // someone else's rule stays behind ours
  ASSERT_TRUE(controller_->Sync(SyncReason::kStartup).ok());
  for (const char* builtin : {"INPUT", "FORWARD", "OUTPUT"}) {
    ASSERT_FALSE(Chain(builtin).empty());
    EXPECT_NE(Chain(builtin)[0].find("-j KUBE-ROUTER-"), std::string::npos) << builtin;
  }
  EXPECT_EQ(Chain("INPUT").size(), 2u);
  EXPECT_TRUE(HasChain(PodChainName("x", "a")));
  EXPECT_TRUE(HasChain(PodChainName("x", "b")));
  EXPECT_FALSE(HasChain(PodChainName("x", "c")));  // not on this node
  EXPECT_TRUE(HasChain(policy_chain_));
  EXPECT_EQ(Members(peer_set_), (std::set<IpsetEntry>{{"10.0.1.2"}}));

  // A second full sync changes nothing and does not duplicate the jumps.
  auto before = iptables_->table("filter");
  ASSERT_TRUE(controller_->Sync(SyncReason::kPeriodic).ok());
  EXPECT_EQ(iptables_->table("filter"), before);
}

// The service proxy plans its INPUT jump below ours from its own read on its own thread: a full
// sync reads and writes the jumps under netfilter::BuiltinChainsMutex (checked from another
// thread at the write), so neither write lands between the other's read and write.
TEST_F(ControllerTest, FullSyncWritesTheJumpsUnderTheBuiltinChainsMutex) {
  int writes = 0, unheld = 0;
  iptables_->AfterEachApply([&] {
    ++writes;
    const bool free_elsewhere = std::async(std::launch::async, [] {
                                  kr::Mutex& mu = netfilter::BuiltinChainsMutex();
                                  if (!mu.try_lock()) return false;
                                  mu.unlock();
                                  return true;
                                }).get();
    if (free_elsewhere) ++unheld;
  });
  ASSERT_TRUE(controller_->Sync(SyncReason::kStartup).ok());
  EXPECT_GE(writes, 1);
  EXPECT_EQ(unheld, 0);
}

TEST_F(ControllerTest, LabelChangeUpdatesSetMembershipWithoutRewritingChains) {
  ASSERT_TRUE(controller_->Sync(SyncReason::kStartup).ok());
  auto old_c = *cluster_->pods.Get("x/c");
  auto new_c = old_c;
  new_c.meta.labels = {{"pod", "b"}};
  Put(*cluster_, new_c);
  ASSERT_TRUE(controller_->OnUpdate(PodEvent(k8s::EventType::kUpdated, &old_c, &new_c)));
  int replaced_before = ipset_->replaced_sets();
  ASSERT_TRUE(controller_->Sync(SyncReason::kRequested).ok());
  EXPECT_EQ(Members(peer_set_), (std::set<IpsetEntry>{{"10.0.1.2"}, {"10.0.1.3"}}));
  EXPECT_EQ(ipset_->replaced_sets(), replaced_before);  // a delta, not a rebuild
  EXPECT_TRUE(iptables_->last_update().replace_chains.empty());
  EXPECT_TRUE(iptables_->last_update().delete_chains.empty());
}

TEST_F(ControllerTest, IrrelevantPodChangeRequestsNoSync) {
  auto a = *cluster_->pods.Get("x/a");
  auto b = a;
  b.meta.annotations["note"] = "x";
  b.meta.resource_version = "42";
  EXPECT_FALSE(controller_->OnUpdate(PodEvent(k8s::EventType::kUpdated, &a, &b)));
  b.phase = "Succeeded";
  EXPECT_TRUE(controller_->OnUpdate(PodEvent(k8s::EventType::kUpdated, &a, &b)));
}

TEST_F(ControllerTest, NewAndDeletedLocalPodsAddAndRemoveOnlyTheirChains) {
  ASSERT_TRUE(controller_->Sync(SyncReason::kStartup).ok());
  auto d = Pod("x", "d", "10.0.1.4", "node1", {{"pod", "a"}});
  Put(*cluster_, d);
  ASSERT_TRUE(controller_->Sync(SyncReason::kRequested).ok());
  EXPECT_TRUE(HasChain(PodChainName("x", "d")));
  std::set<std::string> rewritten;
  for (const auto& c : iptables_->last_update().replace_chains) rewritten.insert(c.name);
  // The new pod's chain and the top-level chains that jump to it; nothing else.
  EXPECT_EQ(rewritten, (std::set<std::string>{PodChainName("x", "d"), kInputChain, kForwardChain,
                                              kOutputChain}));
  EXPECT_EQ(Members(target_set_), (std::set<IpsetEntry>{{"10.0.1.1"}, {"10.0.1.4"}}));

  cluster_->pods.Remove("x/d");
  ASSERT_TRUE(controller_->Sync(SyncReason::kRequested).ok());
  EXPECT_FALSE(HasChain(PodChainName("x", "d")));
  EXPECT_EQ(Members(target_set_), (std::set<IpsetEntry>{{"10.0.1.1"}}));
}

TEST_F(ControllerTest, AnUpgradeRemovesChainsAndSetsLeftUnderTheOldAmbiguousNames) {
  // What kube-router (and this agent before HashedName) left: names hashing namespace + name
  // concatenated, wired as usual (jumps, --match-set references).
  const std::string old_pod = std::string(kPodChainPrefix) + NameDigest("xa", 16);
  const std::string old_policy = std::string(kPolicyChainPrefix) + NameDigest("xallow-bIPv4", 16);
  const std::string old_set = "KUBE-DST-" + NameDigest("xallow-bIPv4", 16);
  const std::string old_peers = "KUBE-SRC-" + NameDigest("xallow-bingressrule0IPv4pod", 16);
  netfilter::TableSnapshot filter = iptables_->table("filter");  // the built-in chains
  filter.chains["FORWARD"] = {"-m comment --comment \"kube-router netpol\" -j " +
                              std::string(kForwardChain)};
  filter.chains[kForwardChain] = {"-d 10.0.1.1/32 -j " + old_pod};
  filter.chains[old_pod] = {"-d 10.0.1.1/32 -j " + old_policy};
  filter.chains[old_policy] = {"-m set --match-set " + old_peers + " src -m set --match-set " +
                               old_set + " dst -j MARK --set-xmark 0x10000/0x10000"};
  std::map<std::string, netfilter::IpsetSet> sets;
  for (const auto& name : {old_set, old_peers}) {
    sets[name] = {name, netfilter::IpsetType::kHashIp, IpFamily::kV4, {{"10.0.1.1"}}};
  }
  StartController(&filter, &sets);
  auto synced = controller_->Sync(SyncReason::kStartup);
  ASSERT_TRUE(synced.ok()) << synced.message();
  for (const auto& name : {old_pod, old_policy}) EXPECT_FALSE(HasChain(name)) << name;
  for (const auto& name : {old_set, old_peers}) EXPECT_FALSE(ipset_->sets().contains(name)) << name;
  EXPECT_TRUE(HasChain(PodChainName("x", "a")));
  EXPECT_TRUE(HasChain(policy_chain_));
  EXPECT_EQ(Members(peer_set_), (std::set<IpsetEntry>{{"10.0.1.2"}}));
  for (const auto& rule : Chain(kForwardChain)) {
    EXPECT_EQ(rule.find(old_pod), std::string::npos) << rule;
  }
}

// Issue 16 item 7: other software's odd rules (a comment spanning lines, even one that jumps to
// our chain, lines iptables-save printed that nobody can parse) neither stop syncing nor get
// touched; a line of our own chain that cannot be parsed is an error.
TEST_F(ControllerTest, ForeignRulesThatSpanLinesOrCannotBeParsedDoNotStopSyncing) {
  const std::string odd = "-m comment --comment \"a\nb\" -j ACCEPT";
  const std::string odd_jump = "-m comment --comment \"x\ny\" -j " + std::string(kInputChain);
  Chain("INPUT") = {odd};
  iptables_->table("filter").unparsed_lines = 3;
  iptables_->table("filter").unparsed_chains = {"", "DOCKER"};
  iptables_->table("filter").first_unparsed = "garbage";
  ASSERT_TRUE(controller_->Sync(SyncReason::kStartup).ok());
  Chain("INPUT").push_back(odd_jump);  // someone copies our jump with an odd comment
  auto synced = controller_->Sync(SyncReason::kPeriodic);
  ASSERT_TRUE(synced.ok()) << synced.message();
  ASSERT_TRUE(controller_->Sync(SyncReason::kPeriodic).ok());
  const auto& input = Chain("INPUT");
  ASSERT_EQ(input.size(), 3u);
  EXPECT_NE(input[0].find("-j KUBE-ROUTER-INPUT"), std::string::npos);
  EXPECT_EQ(input[1], odd);
  EXPECT_EQ(input[2], odd_jump);
  EXPECT_TRUE(HasChain(policy_chain_));

  iptables_->table("filter").unparsed_chains.insert(kForwardChain);
  EXPECT_FALSE(controller_->Sync(SyncReason::kPeriodic).ok());
}

TEST_F(ControllerTest, PolicyDeletionRemovesItsChainAndSets) {
  ASSERT_TRUE(controller_->Sync(SyncReason::kStartup).ok());
  cluster_->network_policies.Remove("x/allow-b");
  ASSERT_TRUE(controller_->Sync(SyncReason::kRequested).ok());
  EXPECT_FALSE(HasChain(policy_chain_));
  EXPECT_TRUE(ipset_->sets().empty());
  // x/a is no longer isolated: both directions go to the default chain.
  int defaults = 0;
  for (const auto& rule : Chain(PodChainName("x", "a"))) {
    defaults += rule.find("-j KUBE-NWPLCY-DEFAULT") != std::string::npos;
  }
  EXPECT_EQ(defaults, 2);
}

TEST_F(ControllerTest, PeriodicSyncRepairsDrift) {
  ASSERT_TRUE(controller_->Sync(SyncReason::kStartup).ok());
  auto good = iptables_->table("filter");
  auto good_sets = ipset_->sets();
  // Someone deletes our jump, empties a pod chain and removes a set member.
  std::erase_if(Chain("FORWARD"), [](const std::string& r) {
    return r.find("KUBE-ROUTER-FORWARD") != std::string::npos;
  });
  Chain("FORWARD").insert(Chain("FORWARD").begin(), "-j DOCKER-USER");
  iptables_->table("filter").chains["DOCKER-USER"];
  Chain(PodChainName("x", "a")).clear();
  ipset_->sets()[peer_set_].entries.clear();
  ASSERT_TRUE(controller_->Sync(SyncReason::kPeriodic).ok());
  EXPECT_NE(Chain("FORWARD")[0].find("-j KUBE-ROUTER-FORWARD"), std::string::npos);
  EXPECT_EQ(Chain("FORWARD")[1], "-j DOCKER-USER");
  EXPECT_EQ(Chain(PodChainName("x", "a")), good.chains[PodChainName("x", "a")]);
  EXPECT_EQ(ipset_->sets(), good_sets);
}

TEST_F(ControllerTest, AFailedSyncIsRetriedAsAFullSync) {
  ASSERT_TRUE(controller_->Sync(SyncReason::kStartup).ok());
  Put(*cluster_, Pod("x", "e", "10.0.1.5", "node1", {{"pod", "b"}}));
  iptables_->FailNext();
  EXPECT_FALSE(controller_->Sync(SyncReason::kRequested).ok());
  EXPECT_FALSE(HasChain(PodChainName("x", "e")));
  int saves = iptables_->save_calls();
  ASSERT_TRUE(controller_->Sync(SyncReason::kRequested).ok());
  EXPECT_GT(iptables_->save_calls(), saves);  // full: it read the table again
  EXPECT_TRUE(HasChain(PodChainName("x", "e")));
  EXPECT_EQ(Members(peer_set_), (std::set<IpsetEntry>{{"10.0.1.2"}, {"10.0.1.5"}}));
}

TEST_F(ControllerTest, BadPolicyDoesNotStopSyncing) {
  Put(*cluster_, Policy("x", "broken", Labels({{"pod", "b"}}), true, false,
                        {{{BlockPeer("300.0.0.0/8")}, {}}}));
  ASSERT_TRUE(controller_->Sync(SyncReason::kStartup).ok());
  EXPECT_TRUE(HasChain(PolicyChainName("x", "broken", IpFamily::kV4, true)));
  EXPECT_TRUE(Chain(PolicyChainName("x", "broken", IpFamily::kV4, true)).empty());
  EXPECT_FALSE(Chain(policy_chain_).empty());
}

TEST_F(ControllerTest, CleanupRemovesExactlyOursAndLeavesDockerAndKubeProxy) {
  // Foreign state shaped like Docker's and kube-proxy's.
  auto& filter = iptables_->table("filter");
  filter.chains["DOCKER"] = {"-d 172.17.0.2/32 -p tcp --dport 80 -j ACCEPT"};
  filter.chains["DOCKER-USER"] = {"-j RETURN"};
  filter.chains["KUBE-SERVICES"] = {};
  filter.chains["KUBE-FIREWALL"] = {"-m mark --mark 0x8000/0x8000 -j DROP"};
  filter.chains["KUBE-ROUTER-SERVICES"] = {};
  filter.chains["FORWARD"] = {"-j DOCKER-USER", "-o docker0 -j DOCKER"};
  filter.chains["INPUT"] = {"-j KUBE-FIREWALL"};
  ipset_->sets()["KUBE-CLUSTER-IP"] = {
      "KUBE-CLUSTER-IP", netfilter::IpsetType::kHashIp, IpFamily::kV4, {{"10.96.0.1"}}};
  ipset_->sets()["docker-nets"] = {
      "docker-nets", netfilter::IpsetType::kHashNet, IpFamily::kV4, {{"172.17.0.0/16"}}};
  auto foreign = filter;
  auto foreign_sets = ipset_->sets();

  ASSERT_TRUE(controller_->Sync(SyncReason::kStartup).ok());
  EXPECT_NE(iptables_->table("filter"), foreign);
  auto removed = controller_->Cleanup();
  ASSERT_TRUE(removed.ok()) << removed.error();
  EXPECT_FALSE(removed->empty());
  EXPECT_EQ(iptables_->table("filter"), foreign);
  EXPECT_EQ(ipset_->sets(), foreign_sets);

  // Cleanup with nothing programmed is safe and removes nothing.
  removed = controller_->Cleanup();
  ASSERT_TRUE(removed.ok());
  EXPECT_TRUE(removed->empty());
}

// The other backend (cleanup_only) is cleaned before the sets, which its rules may still use;
// one that cannot be read is skipped; foreign chains and rules there stay.
TEST(ControllerCleanupTest, CleansOtherBackendsBeforeTheSetsAndSkipsUnreadableOnes) {
  auto cluster = k8s::MakeCluster();
  auto legacy = std::make_unique<FakeIptables>();
  auto broken = std::make_unique<FakeIptables>(IpFamily::kV6);
  auto ipset = std::make_unique<FakeIpset>();
  FakeIptables* legacy_ptr = legacy.get();
  FakeIpset* ipset_ptr = ipset.get();
  broken->FailNext(1);
  ipset->CheckReferencesIn(legacy_ptr);
  const std::string set = PodSetName(true, {PodSelectionKey("x", nullptr, nullptr)}, IpFamily::kV4);
  ipset->sets()[set] = {set, netfilter::IpsetType::kHashIp, IpFamily::kV4, {}};
  ipset->sets()["docker-nets"] = {"docker-nets", netfilter::IpsetType::kHashNet, IpFamily::kV4, {}};

  auto& filter = legacy->table("filter");
  filter.chains["DOCKER-USER"] = {"-j RETURN"};
  filter.chains["KUBE-ROUTER-SERVICES"] = {};
  filter.chains["FORWARD"] = {"-j DOCKER-USER"};
  auto foreign = filter;
  filter.chains[kForwardChain] = {"-d 10.0.1.1/32 -j KUBE-POD-FW-ABCDEFGHIJKLMNOP"};
  filter.chains["KUBE-POD-FW-ABCDEFGHIJKLMNOP"] = {"-m set --match-set " + set + " src -j ACCEPT"};
  filter.chains["FORWARD"].insert(filter.chains["FORWARD"].begin(),
                                  std::string("-m comment --comment \"kube-router netpol - X\" "
                                              "-j ") +
                                      kForwardChain);

  NetpolDataplane dataplane;
  dataplane.iptables_v4 = std::make_unique<FakeIptables>();
  dataplane.ipset = std::move(ipset);
  dataplane.sysctl = std::make_unique<netlink::FakeSysctl>();
  dataplane.cleanup_only.push_back({"IPv4 legacy", std::move(legacy)});
  dataplane.cleanup_only.push_back({"IPv6 legacy", std::move(broken)});
  NetworkPolicyController controller(NetpolConfig{}, cluster.get(), std::move(dataplane));

  auto removed = controller.Cleanup();
  ASSERT_TRUE(removed.ok()) << removed.error();
  EXPECT_EQ(legacy_ptr->table("filter"), foreign);
  EXPECT_FALSE(ipset_ptr->sets().contains(set));
  EXPECT_TRUE(ipset_ptr->sets().contains("docker-nets"));
  EXPECT_NE(std::find(removed->begin(), removed->end(),
                      std::string("chain IPv4 legacy ") + kForwardChain),
            removed->end());
}

// --netpol-default-deny: the controller reads its Node's pod CIDRs and keeps
// kube-router-local-pods to the pods whose chains the kernel holds.
class DefaultDenyControllerTest : public ControllerTest {
 protected:
  void SetUp() override {
    default_deny_ = true;
    ControllerTest::SetUp();
    PutNode("10.0.1.0/24", {});
  }

  void PutNode(const std::string& pod_cidr, k8s::Labels annotations,
               const std::string& name = "node1") {
    k8s::Node node;
    node.meta.name = name;
    node.meta.annotations = std::move(annotations);
    node.pod_cidr = pod_cidr;
    cluster_->nodes.Upsert(name, std::make_shared<const k8s::Node>(node));
  }

  k8s::Event NodeEvent(const k8s::Node& before, const k8s::Node& after) {
    k8s::Event e;
    e.kind = k8s::ResourceKind::kNode;
    e.type = k8s::EventType::kUpdated;
    e.old_object = std::make_shared<const k8s::Node>(before);
    e.new_object = std::make_shared<const k8s::Node>(after);
    return e;
  }

  // After every kernel write: each address in the local-pods set has its pod chain jumped to.
  void CheckEveryWrite() {
    auto check = [this] {
      auto sets = ipset_->sets();
      auto it = sets.find(kLocalPodsSet);
      if (it == sets.end()) return;
      for (const auto& entry : it->second.entries) {
        bool programmed = false;
        for (const auto& rule : Chain(kForwardChain)) {
          programmed |=
              rule.find("-d " + entry.address + " -j " + kPodChainPrefix) != std::string::npos;
        }
        EXPECT_TRUE(programmed) << entry.address << " is in " << kLocalPodsSet
                                << " before its pod chain is programmed";
        ++checked_;
      }
    };
    iptables_->AfterEachApply(check);
    ipset_->AfterEachApply(check);
  }

  int checked_ = 0;
};

TEST_F(DefaultDenyControllerTest, WatchesItsOwnNodesPodCidrs) {
  auto kinds = controller_->WatchedKinds();
  EXPECT_EQ(std::count(kinds.begin(), kinds.end(), k8s::ResourceKind::kNode), 1);
  k8s::Node a;
  a.meta.name = "node1";
  a.pod_cidr = "10.0.1.0/24";
  k8s::Node b = a;
  b.meta.resource_version = "2";
  b.meta.labels["heartbeat"] = "x";
  EXPECT_FALSE(controller_->OnUpdate(NodeEvent(a, b)));  // nothing default deny reads
  b.meta.annotations[k8s::kAnnotationPodCidr] = "10.0.9.0/24";
  EXPECT_TRUE(controller_->OnUpdate(NodeEvent(a, b)));
  a.meta.name = b.meta.name = "node2";  // another node's CIDRs are not ours to guard
  EXPECT_FALSE(controller_->OnUpdate(NodeEvent(a, b)));
}

TEST_F(DefaultDenyControllerTest, TailGuardsTheNodesPodCidrAndTheSetHoldsLocalPods) {
  ASSERT_TRUE(controller_->Sync(SyncReason::kStartup).ok());
  EXPECT_EQ(Members(kLocalPodsSet), (std::set<IpsetEntry>{{"10.0.1.1"}, {"10.0.1.2"}}));
  const auto& tail = Chain(kTailChain);
  ASSERT_EQ(tail.size(), 5u);
  EXPECT_NE(tail[0].find("-s 10.0.1.0/24 -m addrtype ! --src-type LOCAL -m set ! --match-set "
                         "kube-router-local-pods src -j REJECT"),
            std::string::npos);
  EXPECT_NE(tail[2].find("--mark 0x20000/0x20000 -j ACCEPT"), std::string::npos);

  // The annotation overrides spec.podCIDR; a bad value is ignored (and reported), not fatal.
  PutNode("10.0.1.0/24", {{k8s::kAnnotationPodCidrs, "10.0.7.0/24, 10.0.8.0/33"}});
  ASSERT_TRUE(controller_->Sync(SyncReason::kRequested).ok());
  EXPECT_EQ(Chain(kTailChain).size(), 5u);
  EXPECT_NE(Chain(kTailChain)[0].find("-s 10.0.7.0/24"), std::string::npos);
  EXPECT_EQ(iptables_->last_update().replace_chains.size(), 1u);  // only the tail changed

  // Without a pod CIDR nothing is guarded, and syncing goes on.
  cluster_->nodes.Remove("node1");
  ASSERT_TRUE(controller_->Sync(SyncReason::kRequested).ok());
  EXPECT_EQ(Chain(kTailChain).size(), 1u);
}

TEST_F(DefaultDenyControllerTest, APodJoinsTheSetOnlyAfterItsChainAndLeavesBeforeIt) {
  CheckEveryWrite();
  ASSERT_TRUE(controller_->Sync(SyncReason::kStartup).ok());
  Put(*cluster_, Pod("x", "d", "10.0.1.4", "node1", {{"pod", "a"}}));
  ASSERT_TRUE(controller_->Sync(SyncReason::kRequested).ok());
  EXPECT_EQ(Members(kLocalPodsSet),
            (std::set<IpsetEntry>{{"10.0.1.1"}, {"10.0.1.2"}, {"10.0.1.4"}}));
  cluster_->pods.Remove("x/a");
  ASSERT_TRUE(controller_->Sync(SyncReason::kRequested).ok());
  EXPECT_EQ(Members(kLocalPodsSet), (std::set<IpsetEntry>{{"10.0.1.2"}, {"10.0.1.4"}}));
  EXPECT_FALSE(HasChain(PodChainName("x", "a")));
  EXPECT_GT(checked_, 0);
}

TEST_F(DefaultDenyControllerTest, ARestartKeepsProgrammedPodsAndAddsNewOnesAfterTheirChains) {
  ASSERT_TRUE(controller_->Sync(SyncReason::kStartup).ok());
  auto filter = iptables_->table("filter");
  auto sets = ipset_->sets();
  // While the agent was down x/a went away and x/e came.
  cluster_->pods.Remove("x/a");
  Put(*cluster_, Pod("x", "e", "10.0.1.5", "node1", {{"pod", "b"}}));
  StartController(&filter, &sets);
  std::vector<std::set<IpsetEntry>> seen;
  ipset_->AfterEachApply([&] { seen.push_back(Members(kLocalPodsSet)); });
  ASSERT_TRUE(controller_->Sync(SyncReason::kStartup).ok());
  ASSERT_FALSE(seen.empty());
  // First write: x/b stays (its chain is in the kernel: no outage on restart); x/a, whose chain
  // is still there, is not wanted; x/e waits for its chain.
  EXPECT_EQ(seen.front(), (std::set<IpsetEntry>{{"10.0.1.2"}}));
  EXPECT_EQ(Members(kLocalPodsSet), (std::set<IpsetEntry>{{"10.0.1.2"}, {"10.0.1.5"}}));
}

// Run by the agent's runner with the informers' initial events queued (issue 11): the startup
// sync reads the caches, so it absorbs those events and no second sync follows for them.
TEST_F(ControllerTest, TheStartupSyncAbsorbsTheQueuedInitialEvents) {
  std::vector<k8s::Event> initial;
  auto add = [&](k8s::ResourceKind kind, const std::string& key, k8s::AnyObject object) {
    k8s::Event e;
    e.kind = kind;
    e.type = k8s::EventType::kAdded;
    e.key = key;
    e.new_object = std::move(object);
    initial.push_back(std::move(e));
  };
  for (const auto& key : cluster_->pods.Keys()) {
    add(k8s::ResourceKind::kPod, key, cluster_->pods.Get(key));
  }
  for (const auto& key : cluster_->namespaces.Keys()) {
    add(k8s::ResourceKind::kNamespace, key, cluster_->namespaces.Get(key));
  }
  for (const auto& key : cluster_->network_policies.Keys()) {
    add(k8s::ResourceKind::kNetworkPolicy, key, cluster_->network_policies.Get(key));
  }
  ControllerRunner runner(std::move(controller_), nullptr);
  for (const auto& e : initial) runner.Post(e);
  runner.Start();
  ASSERT_TRUE(kr::testing::WaitFor([&] { return runner.AbsorbedEvents() == initial.size(); },
                                   std::chrono::seconds(60)));
  runner.Stop();
  EXPECT_EQ(runner.SuccessfulSyncs(), 1u);
  EXPECT_TRUE(HasChain(policy_chain_));  // what the startup sync read is programmed
}

}  // namespace
}  // namespace kr::netpol::controller_test
