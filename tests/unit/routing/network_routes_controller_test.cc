// The routes controller over the fakes in a single-stack (IPv4) cluster: peers, advertisements,
// learned routes and tunnels, routes-only syncs, policies, pod egress, CNI, cleanup, metrics.
// The fixture (this node n1, n2 on its subnet, n3 elsewhere) is routes_controller_fixture.h.
#include "kube_router/routing/network_routes_controller.h"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <functional>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "kube_router/routing/cni_config.h"
#include "kube_router/routing/pod_egress.h"
#include "kube_router/runtime/runner.h"
#include "lib/forwarding_controller.h"
#include "lib/netns.h"  // WaitFor
#include "unit/routing/routes_controller_fixture.h"

// In the fixture's namespace: its helpers (Ip, Cidr, MakeNode) need no using-declarations.
namespace kr::routing::testing {
namespace {

TEST_F(RoutesControllerTest, NodesInPeersAndPodCidrAdvertisementOut) {
  SyncOk(SyncReason::kStartup);
  ASSERT_NE(speaker_, nullptr);
  EXPECT_TRUE(speaker_->running());
  EXPECT_EQ(speaker_->config().local_asn, 64512u);
  EXPECT_EQ(speaker_->config().router_id, Ip("192.0.2.1"));
  ASSERT_EQ(speaker_->peers().size(), 2u);
  EXPECT_EQ(speaker_->peers().at(Ip("192.0.2.2")).remote_asn, 64512u);
  EXPECT_TRUE(speaker_->peers().count(Ip("198.51.100.3")));
  ASSERT_EQ(speaker_->paths().size(), 1u);
  const auto& path = speaker_->paths().begin()->second;
  EXPECT_EQ(path.prefix, Cidr("10.1.1.0/24"));
  EXPECT_EQ(path.next_hop, Ip("192.0.2.1"));
  // The export policy lets the pod CIDR through to iBGP peers.
  auto exported = speaker_->ExportedTo(Ip("192.0.2.2"));
  ASSERT_EQ(exported.size(), 1u);
  EXPECT_EQ(exported[0].prefix, Cidr("10.1.1.0/24"));
}

TEST_F(RoutesControllerTest, LearnedPathsBecomeKernelRoutesDirectOrThroughTunnel) {
  SyncOk();
  EXPECT_TRUE(speaker_->Announce(Ip("192.0.2.2"), Cidr("10.1.2.0/24"), Ip("192.0.2.2")));
  EXPECT_TRUE(speaker_->Announce(Ip("198.51.100.3"), Cidr("10.1.3.0/24"), Ip("198.51.100.3")));
  EXPECT_EQ(sync_requests_, 2);  // best-path events ask for a sync
  SyncOk();
  const std::string tunnel = TunnelName(Ip("198.51.100.3"));
  EXPECT_EQ(OurRoutes(),
            (std::vector<std::string>{"10.1.2.0/24 via 192.0.2.2", "10.1.3.0/24 dev " + tunnel}));
  EXPECT_EQ(Tunnels(), (std::vector<std::string>{tunnel + " up"}));
  const auto& link = links_.links().at(tunnel);
  EXPECT_EQ(link.tunnel_local, Ip("192.0.2.1"));
  EXPECT_EQ(link.tunnel_remote, Ip("198.51.100.3"));
  for (const auto& route : routes_.RoutesWithProtocol(kRouteProtocol)) {
    if (!route.gateway) {
      EXPECT_EQ(route.source, Ip("192.0.2.1"));
    }
  }
  // Foreign routes are untouched.
  EXPECT_EQ(routes_.routes().size(), 4u);
}

TEST_F(RoutesControllerTest, APathEventReprogramsRoutesAndTunnelsOnly) {
  SyncOk(SyncReason::kStartup);
  const uint64_t node_reads = cluster_->nodes.ListCalls();
  const int netfilter_calls = NetfilterCalls();
  ASSERT_GT(node_reads, 0u);
  ASSERT_GT(netfilter_calls, 0);
  auto keys = [](const auto& map) {
    std::vector<std::string> out;
    for (const auto& [key, value] : map) out.push_back(key.ToString());
    return out;
  };
  const auto peers = keys(speaker_->peers());
  const auto paths = keys(speaker_->paths());
  // The other nodes' annotations change in the cache, but their events have not arrived: a
  // sync for a path must not look.
  cluster_->nodes.Upsert("n2", MakeNode("n2", "192.0.2.22", "10.1.2.0/24"));

  speaker_->Announce(Ip("192.0.2.2"), Cidr("10.1.2.0/24"), Ip("192.0.2.2"));
  speaker_->Announce(Ip("198.51.100.3"), Cidr("10.1.3.0/24"), Ip("198.51.100.3"));
  SyncOk();  // what the best-path events requested
  const std::string tunnel = TunnelName(Ip("198.51.100.3"));
  EXPECT_EQ(OurRoutes(),
            (std::vector<std::string>{"10.1.2.0/24 via 192.0.2.2", "10.1.3.0/24 dev " + tunnel}));
  EXPECT_EQ(Tunnels(), (std::vector<std::string>{tunnel + " up"}));
  EXPECT_EQ(nlohmann::json::parse(Controller().StatusJson())["routes"].size(), 2u);

  speaker_->Withdraw(Cidr("10.1.3.0/24"));
  SyncOk();
  EXPECT_EQ(OurRoutes(), (std::vector<std::string>{"10.1.2.0/24 via 192.0.2.2"}));
  EXPECT_TRUE(Tunnels().empty());

  EXPECT_EQ(NetfilterCalls(), netfilter_calls);  // no ipset / iptables-save process
  EXPECT_EQ(cluster_->nodes.ListCalls(), node_reads);
  EXPECT_EQ(keys(speaker_->peers()), peers);  // n2 still peered on its old address
  EXPECT_EQ(keys(speaker_->paths()), paths);
}

// Run by the agent's runner with the informers' initial events queued (issue 11): the startup
// (full) sync reads every node from the caches, so it absorbs those events and no second full
// sync follows for them.
TEST_F(RoutesControllerTest, TheStartupSyncAbsorbsTheQueuedInitialEvents) {
  auto controller = std::make_unique<NetworkRoutesController>(
      config_, cluster_.get(),
      RoutingDataplane{&routes_, &links_, &counted_iptables_, &counted_ipset_, nullptr, iptables6_,
                       &fou_},
      [this](const bgp::GlobalConfig& global) {
        auto speaker = std::make_unique<FakeSpeaker>(global);
        speaker_ = speaker.get();
        return speaker;
      },
      &metrics_);
  ControllerRunner runner(std::move(controller), nullptr);
  size_t initial = 0;
  for (const auto& key : cluster_->nodes.Keys()) {
    k8s::Event e;
    e.kind = k8s::ResourceKind::kNode;
    e.type = k8s::EventType::kAdded;
    e.key = key;
    e.new_object = cluster_->nodes.Get(key);
    runner.Post(e);
    ++initial;
  }
  runner.Start();
  ASSERT_TRUE(kr::testing::WaitFor([&] { return runner.AbsorbedEvents() == initial; },
                                   std::chrono::seconds(60)));
  // What the startup sync read is programmed: the node peers (read before Stop, whose
  // Shutdown destroys the speaker).
  ASSERT_NE(speaker_, nullptr);
  EXPECT_EQ(speaker_->peers().size(), 2u);
  runner.Stop();
  EXPECT_EQ(initial, 3u);
  EXPECT_EQ(runner.SuccessfulSyncs(), 1u);
}

// Posts one event when the first periodic sync starts, before the controller sees it.
class PostOnPeriodicSync : public kr::testing::ForwardingController {
 public:
  PostOnPeriodicSync(std::unique_ptr<Controller> inner, std::function<void()> post)
      : ForwardingController(std::move(inner)), post_(std::move(post)) {}
  bool OnUpdate(const k8s::Event& event) override {
    if (event.key == "default/late") ++late_seen;
    return ForwardingController::OnUpdate(event);
  }
  Status Sync(SyncReason reason) override {
    if (reason == SyncReason::kPeriodic && post_) std::exchange(post_, nullptr)();
    return ForwardingController::Sync(reason);
  }
  std::atomic<int> late_seen{0};

 private:
  std::function<void()> post_;
};

// A routes-only sync (a tick of --injected-routes-sync-period) lists no Node: it marks no full
// read, so an event pending while it runs is still delivered (and makes the next sync full).
TEST_F(RoutesControllerTest, ARoutesOnlySyncAbsorbsNothing) {
  config_.injected_routes_sync_period = std::chrono::milliseconds(50);
  ControllerRunner* runner_ptr = nullptr;
  auto wrapped = std::make_unique<PostOnPeriodicSync>(
      std::make_unique<NetworkRoutesController>(
          config_, cluster_.get(),
          RoutingDataplane{&routes_, &links_, &counted_iptables_, &counted_ipset_, nullptr,
                           iptables6_, &fou_},
          [](const bgp::GlobalConfig& global) { return std::make_unique<FakeSpeaker>(global); },
          &metrics_),
      [&] {
        k8s::Event e;
        e.kind = k8s::ResourceKind::kService;
        e.type = k8s::EventType::kUpdated;
        e.key = "default/late";
        runner_ptr->Post(e);
      });
  auto* controller = wrapped.get();
  ControllerRunner runner(std::move(wrapped), nullptr);
  runner_ptr = &runner;
  runner.Start();
  ASSERT_TRUE(
      kr::testing::WaitFor([&] { return controller->late_seen == 1; }, std::chrono::seconds(60)));
  runner.Stop();
  EXPECT_EQ(runner.AbsorbedEvents(), 0u);
}

TEST_F(RoutesControllerTest, PeriodicAndApiEventSyncsStayFull) {
  SyncOk(SyncReason::kStartup);
  speaker_->Announce(Ip("192.0.2.2"), Cidr("10.1.2.0/24"), Ip("192.0.2.2"));
  SyncOk();
  const int netfilter_calls = NetfilterCalls();
  const uint64_t per_full_sync = cluster_->nodes.ListCalls();  // the startup sync's
  // One read of the Node list serves peers, routes, pod egress and the import filter.
  ASSERT_EQ(per_full_sync, 1u);

  // Periodic: nodes re-read, ipsets listed, nat table read, even with nothing to change.
  ipset_.sets()[kNodeIpsSet].entries.clear();  // drift only a full sync repairs
  SyncOk(SyncReason::kPeriodic);
  EXPECT_EQ(cluster_->nodes.ListCalls(), 2 * per_full_sync);
  EXPECT_GE(counted_ipset_.calls + counted_iptables_.calls, netfilter_calls + 3);
  EXPECT_TRUE(ipset_.sets()[kNodeIpsSet].entries.count({"198.51.100.3", false}));

  // An API event makes the next requested sync full.
  AddNode(MakeNode("n4", "192.0.2.4", "10.1.4.0/24"));
  SyncOk();
  EXPECT_EQ(cluster_->nodes.ListCalls(), 3 * per_full_sync);
  EXPECT_TRUE(speaker_->peers().count(Ip("192.0.2.4")));
  EXPECT_TRUE(ipset_.sets()[kPodSubnetsSet].entries.count({"10.1.4.0/24", false}));

  // ... and only that one: the next path event is routes only again.
  int calls = NetfilterCalls();
  speaker_->Announce(Ip("192.0.2.4"), Cidr("10.1.4.0/24"), Ip("192.0.2.4"));
  SyncOk();
  EXPECT_EQ(NetfilterCalls(), calls);
  EXPECT_EQ(cluster_->nodes.ListCalls(), 3 * per_full_sync);
  EXPECT_EQ(OurRoutes().size(), 2u);

  // A full sync that failed is repeated in full by the next request, not skipped.
  AddNode(MakeNode("n5", "192.0.2.5", "10.1.5.0/24"));
  ipset_.FailNext();
  EXPECT_FALSE(Controller().Sync(SyncReason::kRequested).ok());
  speaker_->Withdraw(Cidr("10.1.4.0/24"));
  calls = NetfilterCalls();
  SyncOk();
  EXPECT_GT(NetfilterCalls(), calls);
  EXPECT_EQ(cluster_->nodes.ListCalls(), 5 * per_full_sync);
  EXPECT_TRUE(ipset_.sets()[kPodSubnetsSet].entries.count({"10.1.5.0/24", false}));
  EXPECT_EQ(OurRoutes(), (std::vector<std::string>{"10.1.2.0/24 via 192.0.2.2"}));
}

TEST_F(RoutesControllerTest, AnUpgradeReplacesTunnelsLeftUnderKubeRoutersNames) {
  // kube-router (and this agent before the unambiguous names) called the tunnel to
  // 198.51.100.3 "tun-" + 11 hex digits of sha256("198511003").
  const std::string old_name = "tun-9a1c2e3f4b5";
  ASSERT_TRUE(links_.CreateTunnel({old_name, Ip("192.0.2.1"), Ip("198.51.100.3")}).ok());
  SyncOk();
  speaker_->Announce(Ip("198.51.100.3"), Cidr("10.1.3.0/24"), Ip("198.51.100.3"));
  SyncOk();
  EXPECT_FALSE(links_.Has(old_name));
  EXPECT_EQ(Tunnels(), (std::vector<std::string>{TunnelName(Ip("198.51.100.3")) + " up"}));
}

TEST_F(RoutesControllerTest, WithdrawAndNodeDeletionRemoveRoutesAndTunnels) {
  SyncOk();
  speaker_->Announce(Ip("192.0.2.2"), Cidr("10.1.2.0/24"), Ip("192.0.2.2"));
  speaker_->Announce(Ip("198.51.100.3"), Cidr("10.1.3.0/24"), Ip("198.51.100.3"));
  SyncOk();
  ASSERT_EQ(OurRoutes().size(), 2u);

  speaker_->Withdraw(Cidr("10.1.2.0/24"));
  SyncOk();
  EXPECT_EQ(OurRoutes().size(), 1u);

  RemoveNode("n3");
  SyncOk();  // removes the peer; its routes go with it
  EXPECT_FALSE(speaker_->peers().count(Ip("198.51.100.3")));
  SyncOk();
  EXPECT_TRUE(OurRoutes().empty());
  EXPECT_TRUE(Tunnels().empty());
}

TEST_F(RoutesControllerTest, PeriodicSyncRepairsDrift) {
  SyncOk();
  speaker_->Announce(Ip("198.51.100.3"), Cidr("10.1.3.0/24"), Ip("198.51.100.3"));
  speaker_->Announce(Ip("192.0.2.2"), Cidr("10.1.2.0/24"), Ip("192.0.2.2"));
  SyncOk();
  const std::string tunnel = TunnelName(Ip("198.51.100.3"));
  ASSERT_TRUE(links_.Delete(tunnel).ok());
  netlink::Route ours;
  ours.destination = Cidr("10.1.2.0/24");
  ASSERT_TRUE(routes_.Delete(ours).ok());
  // Someone left a stale route of ours for a node that no longer exists.
  netlink::Route stale;
  stale.destination = Cidr("10.1.99.0/24");
  stale.gateway = Ip("192.0.2.99");
  routes_.Seed(stale);
  SyncOk(SyncReason::kPeriodic);
  EXPECT_EQ(OurRoutes(),
            (std::vector<std::string>{"10.1.2.0/24 via 192.0.2.2", "10.1.3.0/24 dev " + tunnel}));
  EXPECT_EQ(Tunnels(), (std::vector<std::string>{tunnel + " up"}));
}

TEST_F(RoutesControllerTest, NoOverlayRoutesViaGateway) {
  config_.enable_overlay = false;
  SyncOk();
  speaker_->Announce(Ip("198.51.100.3"), Cidr("10.1.3.0/24"), Ip("198.51.100.3"));
  SyncOk();
  EXPECT_EQ(OurRoutes(), (std::vector<std::string>{"10.1.3.0/24 via 192.0.2.254"}));
  EXPECT_TRUE(Tunnels().empty());
}

TEST_F(RoutesControllerTest, ImportPolicyRejectsDefaultRouteAndServiceVips) {
  AddService("web", {"10.96.0.10"});
  SyncOk();
  EXPECT_FALSE(speaker_->Announce(Ip("192.0.2.2"), Cidr("0.0.0.0/0"), Ip("192.0.2.2")));
  EXPECT_FALSE(speaker_->Announce(Ip("192.0.2.2"), Cidr("10.96.0.10/32"), Ip("192.0.2.2")));
  EXPECT_TRUE(speaker_->Announce(Ip("192.0.2.2"), Cidr("10.1.2.0/24"), Ip("192.0.2.2")));
  SyncOk();
  EXPECT_EQ(OurRoutes(), (std::vector<std::string>{"10.1.2.0/24 via 192.0.2.2"}));
}

// Issue 16 item 9: what a node or an external router may route here.
TEST_F(RoutesControllerTest, ImportFilterRefusesForeignAndSpecialPrefixesAndCountsThem) {
  PeerSpec router;
  router.address = Ip("192.0.2.254");
  router.asn = 65000;
  router.external = true;
  config_.global_peers = {router};
  config_.service_ranges = {Cidr("10.96.0.0/12")};
  SyncOk();
  // A node: its own pod CIDR via itself, nothing else (not another node's, not more).
  EXPECT_TRUE(speaker_->Announce(Ip("192.0.2.2"), Cidr("10.1.2.0/24"), Ip("192.0.2.2")));
  EXPECT_FALSE(speaker_->Announce(Ip("192.0.2.2"), Cidr("10.1.3.0/24"), Ip("192.0.2.2")));
  EXPECT_FALSE(speaker_->Announce(Ip("192.0.2.2"), Cidr("172.31.0.0/16"), Ip("192.0.2.2")));
  // The external router: routable prefixes, but not link-local, loopback, the service range
  // or anything covering the node subnet.
  EXPECT_TRUE(speaker_->Announce(Ip("192.0.2.254"), Cidr("172.31.0.0/16"), Ip("192.0.2.254")));
  EXPECT_FALSE(
      speaker_->Announce(Ip("192.0.2.254"), Cidr("169.254.169.254/32"), Ip("192.0.2.254")));
  EXPECT_FALSE(speaker_->Announce(Ip("192.0.2.254"), Cidr("169.254.169.0/24"), Ip("192.0.2.254")));
  EXPECT_FALSE(speaker_->Announce(Ip("192.0.2.254"), Cidr("127.0.0.0/8"), Ip("192.0.2.254")));
  EXPECT_FALSE(speaker_->Announce(Ip("192.0.2.254"), Cidr("10.96.0.0/16"), Ip("192.0.2.254")));
  EXPECT_FALSE(speaker_->Announce(Ip("192.0.2.254"), Cidr("192.0.0.0/16"), Ip("192.0.2.254")));
  SyncOk();
  EXPECT_EQ(OurRoutes(), (std::vector<std::string>{"10.1.2.0/24 via 192.0.2.2",
                                                   "172.31.0.0/16 via 192.0.2.254"}));
  std::string text = metrics_.Render();
  EXPECT_NE(text.find("kube_router_bgp_import_rejected_total{peer=\"192.0.2.254\","
                      "reason=\"link-local\"} 2"),
            std::string::npos)
      << text;
  EXPECT_NE(text.find("kube_router_bgp_import_rejected_total{peer=\"192.0.2.2\","
                      "reason=\"not the announcing node's pod CIDR\"} 2"),
            std::string::npos)
      << text;
}

// --bgp-ttl-security: GTSM only towards peers on a directly connected subnet, never by default.
TEST_F(RoutesControllerTest, TtlSecurityOnlyForDirectlyConnectedPeers) {
  SyncOk();
  EXPECT_FALSE(speaker_->peers().at(Ip("192.0.2.2")).ttl_security);  // off by default
  config_.ttl_security = true;
  controller_.reset();  // a new controller with the flag
  speaker_ = nullptr;
  SyncOk();
  EXPECT_TRUE(speaker_->peers().at(Ip("192.0.2.2")).ttl_security);      // on-link node
  EXPECT_FALSE(speaker_->peers().at(Ip("198.51.100.3")).ttl_security);  // behind a router
}

TEST_F(RoutesControllerTest, ServiceVipsAdvertisedToExternalPeersOnlyAndWithdrawn) {
  config_.advertise_cluster_ip = true;
  PeerSpec router;
  router.address = Ip("192.0.2.254");
  router.asn = 65000;
  router.external = true;
  config_.global_peers = {router};
  AddNode(MakeNode("n1", "192.0.2.1", "10.1.1.0/24",
                   {{kAnnotationCommunities, "65000:7"},
                    {kAnnotationPrependAs, "64512"},
                    {kAnnotationPrependRepeat, "2"}}));
  AddService("web", {"10.96.0.10"});
  SyncOk();
  ASSERT_TRUE(speaker_->paths().count(Cidr("10.96.0.10/32")));
  EXPECT_EQ(speaker_->peers().size(), 3u);

  auto to_node = speaker_->ExportedTo(Ip("192.0.2.2"));
  ASSERT_EQ(to_node.size(), 1u);  // the pod CIDR only
  EXPECT_TRUE(to_node[0].attributes.communities.empty());
  auto to_router = speaker_->ExportedTo(Ip("192.0.2.254"));
  ASSERT_EQ(to_router.size(), 2u);  // pod CIDR and VIP
  for (const auto& route : to_router) {
    EXPECT_EQ(route.attributes.communities, std::vector<uint32_t>{(65000u << 16) | 7});
    ASSERT_TRUE(route.attributes.as_path);
    EXPECT_EQ(route.attributes.as_path->ToString(), "64512 64512");
  }

  RemoveService("default/web");
  SyncOk();
  EXPECT_FALSE(speaker_->paths().count(Cidr("10.96.0.10/32")));
  std::string text = metrics_.Render();
  EXPECT_NE(text.find("kube_router_controller_bgp_advertisements_sent{type=\"withdraw-vip\"} 1"),
            std::string::npos)
      << text;
}

TEST_F(RoutesControllerTest, BadAnnotationsDoNotStopTheRest) {
  AddNode(MakeNode("n2", "192.0.2.2", "10.1.2.0/24",
                   {{kAnnotationNodeAsn, "banana"}, {kAnnotationPeers, "- remoteip: [oops"}}));
  AddNode(MakeNode("n4", "192.0.2.4", ""));  // no pod CIDR: skipped
  auto broken = std::make_shared<k8s::Node>();
  broken->meta.name = "n5";  // no address at all
  broken->pod_cidr = "10.1.5.0/24";
  AddNode(broken);
  SyncOk();
  ASSERT_EQ(speaker_->peers().size(), 2u);
  EXPECT_TRUE(speaker_->peers().count(Ip("192.0.2.2")));
  EXPECT_FALSE(speaker_->peers().count(Ip("192.0.2.4")));
  // Traffic from pods to that node is still not masqueraded.
  EXPECT_TRUE(ipset_.sets()[kNodeIpsSet].entries.count({"192.0.2.4", false}));
}

TEST_F(RoutesControllerTest, MissingSelfNodeIsAnErrorNamingIt) {
  cluster_->nodes.Remove("n1");
  Status status = Controller().Sync(SyncReason::kStartup);
  ASSERT_FALSE(status.ok());
  EXPECT_NE(status.message().find("n1"), std::string::npos);
}

TEST_F(RoutesControllerTest, RouteReflectorClientPeersOnlyWithServers) {
  AddNode(MakeNode("n1", "192.0.2.1", "10.1.1.0/24", {{kAnnotationRrClient, "1"}}));
  AddNode(MakeNode("n2", "192.0.2.2", "10.1.2.0/24", {{kAnnotationRrServer, "1"}}));
  SyncOk();
  ASSERT_EQ(speaker_->peers().size(), 1u);
  EXPECT_FALSE(speaker_->peers().begin()->second.route_reflector_client);
}

TEST_F(RoutesControllerTest, RouteReflectorServerMarksClientsAndSetsClusterId) {
  AddNode(MakeNode("n1", "192.0.2.1", "10.1.1.0/24", {{kAnnotationRrServer, "7"}}));
  AddNode(MakeNode("n2", "192.0.2.2", "10.1.2.0/24", {{kAnnotationRrClient, "7"}}));
  SyncOk();
  EXPECT_TRUE(speaker_->peers().at(Ip("192.0.2.2")).route_reflector_client);
  EXPECT_FALSE(speaker_->peers().at(Ip("198.51.100.3")).route_reflector_client);
  EXPECT_EQ(speaker_->config().cluster_id, IpAddress::V4(7));
}

TEST_F(RoutesControllerTest, PodEgressMasqueradeAndIpsets) {
  SyncOk();
  auto& sets = ipset_.sets();
  ASSERT_TRUE(sets.count(kPodSubnetsSet));
  ASSERT_TRUE(sets.count(kNodeIpsSet));
  EXPECT_EQ(sets[kPodSubnetsSet].entries.size(), 3u);
  EXPECT_TRUE(sets[kPodSubnetsSet].entries.count({"10.1.3.0/24", false}));
  EXPECT_TRUE(sets[kNodeIpsSet].entries.count({"198.51.100.3", false}));
  auto& nat = iptables_.table("nat");
  EXPECT_EQ(nat.chains[kPodEgressChain], std::vector<std::string>{PodEgressRule()});
  EXPECT_EQ(nat.chains["POSTROUTING"].front(), std::string("-j ") + kPodEgressChain);

  // A node going away leaves the sets by delta, without a rebuild.
  const int rebuilt = ipset_.replaced_sets();
  RemoveNode("n3");
  SyncOk();
  EXPECT_EQ(ipset_.sets()[kPodSubnetsSet].entries.size(), 2u);
  EXPECT_EQ(ipset_.replaced_sets(), rebuilt);
  const int applies = iptables_.apply_calls();
  SyncOk();
  EXPECT_EQ(iptables_.apply_calls(), applies);  // nothing to change, nothing written
}

TEST_F(RoutesControllerTest, PodEgressDisabledRemovesOurRules) {
  SyncOk();
  controller_.reset();
  config_.enable_pod_egress = false;
  SyncOk();
  auto& nat = iptables_.table("nat");
  EXPECT_FALSE(nat.chains.count(kPodEgressChain));
  EXPECT_TRUE(nat.chains["POSTROUTING"].empty());
}

TEST_F(RoutesControllerTest, CniConfigAndKubeBridge) {
  SyncOk();
  const std::string text = CniConfText();
  ASSERT_FALSE(text.empty());
  auto conf = nlohmann::json::parse(text);
  EXPECT_EQ(conf["plugins"][0]["ipam"]["ranges"][0][0]["subnet"], "10.1.1.0/24");
  EXPECT_EQ(conf["plugins"][0]["mtu"], 1480);  // 1500 minus the IPIP header
  ASSERT_TRUE(links_.Has(kBridgeName));
  EXPECT_TRUE(links_.links().at(kBridgeName).up);
  EXPECT_EQ(links_.links().at(kBridgeName).mtu, 1480u);
  EXPECT_TRUE(BridgeAddresses().count("10.1.1.1/24 dev kube-bridge"));
}

TEST_F(RoutesControllerTest, KernelFailureIsReportedAndRetried) {
  SyncOk();
  speaker_->Announce(Ip("192.0.2.2"), Cidr("10.1.2.0/24"), Ip("192.0.2.2"));
  routes_.RejectDestination(Cidr("10.1.2.0/24"), "Network is unreachable");
  Status status = Controller().Sync(SyncReason::kRequested);
  ASSERT_FALSE(status.ok());
  EXPECT_NE(status.message().find("10.1.2.0/24"), std::string::npos);
  routes_.ClearRejections();
  SyncOk();
  EXPECT_EQ(OurRoutes(), (std::vector<std::string>{"10.1.2.0/24 via 192.0.2.2"}));
}

TEST_F(RoutesControllerTest, CleanupRemovesOnlyWhatWeOwn) {
  SyncOk();
  speaker_->Announce(Ip("198.51.100.3"), Cidr("10.1.3.0/24"), Ip("198.51.100.3"));
  SyncOk();
  netfilter::IpsetSet foreign{
      "someone-elses-set", netfilter::IpsetType::kHashIp, netfilter::IpFamily::kV4, {}};
  ipset_.sets()[foreign.name] = foreign;
  links_.Seed({"tunl0", 0, "ipip", 1480, false, std::nullopt, std::nullopt});
  controller_->Shutdown();

  auto removed = Controller().Cleanup();
  ASSERT_TRUE(removed.ok()) << removed.error();
  EXPECT_TRUE(OurRoutes().empty());
  EXPECT_EQ(routes_.routes().size(), 2u);  // the connected route and the default route
  EXPECT_TRUE(links_.Has("tunl0"));
  EXPECT_FALSE(links_.Has(TunnelName(Ip("198.51.100.3"))));
  EXPECT_TRUE(ipset_.sets().count("someone-elses-set"));
  EXPECT_FALSE(ipset_.sets().count(kPodSubnetsSet));
  EXPECT_FALSE(iptables_.table("nat").chains.count(kPodEgressChain));
  // A second cleanup finds nothing left.
  auto again = Controller().Cleanup();
  ASSERT_TRUE(again.ok());
  EXPECT_TRUE(again->empty());
}

TEST_F(RoutesControllerTest, MetricsAndStatusView) {
  SyncOk();
  std::string text = metrics_.Render();
  EXPECT_NE(text.find("kube_router_bgp_peer_info{address=\"192.0.2.2\",asn=\"64512\","
                      "state=\"Established\",type=\"internal\"} 1"),
            std::string::npos)
      << text;
  EXPECT_NE(text.find("kube_router_controller_bgp_advertisements_sent{type=\"pod-route\"} 1"),
            std::string::npos);
  auto status = nlohmann::json::parse(Controller().StatusJson());
  EXPECT_EQ(status["node"], "n1");
  EXPECT_EQ(status["local_asn"], 64512);
  EXPECT_EQ(status["peers"].size(), 2u);
  EXPECT_EQ(status["advertised"][0]["prefix"], "10.1.1.0/24");
}

TEST_F(RoutesControllerTest, StatusViewSourceServesThisControllersJson) {
  SyncOk();
  auto source = StatusViewSource(&Controller());
  ASSERT_TRUE(source);
  auto status = nlohmann::json::parse(source());
  EXPECT_EQ(status["peers"].size(), 2u);
  EXPECT_EQ(status["peers"][0]["state"], "Established");
}

// --injected-routes-sync-period: between full syncs, periodic ticks re-install learned routes
// only (no Node read, no iptables/ipset process).
TEST_F(RoutesControllerTest, InjectedRoutesSyncPeriodReinstallsLearnedRoutesCheaply) {
  config_.routes_sync_period = std::chrono::hours(1);
  config_.injected_routes_sync_period = std::chrono::seconds(15);
  EXPECT_EQ(Controller().SyncPeriod(), std::chrono::seconds(15));
  SyncOk(SyncReason::kStartup);
  speaker_->Announce(Ip("192.0.2.2"), Cidr("10.1.2.0/24"), Ip("192.0.2.2"));
  SyncOk();
  ASSERT_EQ(OurRoutes(), (std::vector<std::string>{"10.1.2.0/24 via 192.0.2.2"}));
  netlink::Route ours;
  ours.destination = Cidr("10.1.2.0/24");
  ASSERT_TRUE(routes_.Delete(ours).ok());
  const uint64_t node_reads = cluster_->nodes.ListCalls();
  const int netfilter_calls = NetfilterCalls();
  SyncOk(SyncReason::kPeriodic);
  EXPECT_EQ(OurRoutes(), (std::vector<std::string>{"10.1.2.0/24 via 192.0.2.2"}));
  EXPECT_EQ(cluster_->nodes.ListCalls(), node_reads);
  EXPECT_EQ(NetfilterCalls(), netfilter_calls);
  // Without the flag the period is the routes sync's, and every periodic sync is full.
  controller_.reset();
  config_.injected_routes_sync_period = std::chrono::milliseconds(0);
  EXPECT_EQ(Controller().SyncPeriod(), std::chrono::hours(1));
}

}  // namespace
}  // namespace kr::routing::testing
