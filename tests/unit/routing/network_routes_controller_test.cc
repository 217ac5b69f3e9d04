#include "kube_router/routing/network_routes_controller.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "kube_router/netfilter/fakes.h"
#include "kube_router/netlink/fakes.h"
#include "kube_router/routing/cni_config.h"
#include "kube_router/routing/pod_egress.h"
#include "unit/routing/fake_speaker.h"

namespace kr::routing {
namespace {

using routing::testing::FakeSpeaker;

IpAddress Ip(const std::string& text) { return *IpAddress::Parse(text); }
IpPrefix Cidr(const std::string& text) { return *IpPrefix::Parse(text); }

std::shared_ptr<const k8s::Node> MakeNode(const std::string& name, const std::string& ip,
                                          const std::string& cidr, k8s::Labels annotations = {}) {
  auto node = std::make_shared<k8s::Node>();
  node->meta.name = name;
  node->meta.annotations = std::move(annotations);
  node->addresses = {{"InternalIP", ip}};
  node->pod_cidr = cidr;
  return node;
}

// Counts every call the controller makes (each one starts an iptables-save/-restore or ipset
// process in production) and passes it on to the fake.
class CountingIptables : public netfilter::Iptables {
 public:
  explicit CountingIptables(netfilter::Iptables* inner) : inner_(inner) {}
  netfilter::IpFamily family() const override { return inner_->family(); }
  Result<netfilter::TableSnapshot> Save(const std::string& table) override {
    ++calls;
    return inner_->Save(table);
  }
  Status Apply(const netfilter::TableUpdate& update) override {
    ++calls;
    return inner_->Apply(update);
  }
  int calls = 0;

 private:
  netfilter::Iptables* inner_;
};

class CountingIpset : public netfilter::Ipset {
 public:
  explicit CountingIpset(netfilter::Ipset* inner) : inner_(inner) {}
  Result<std::vector<std::string>> ListNames() override {
    ++calls;
    return inner_->ListNames();
  }
  Result<std::map<std::string, netfilter::IpsetSet>> List() override {
    ++calls;
    return inner_->List();
  }
  Status Apply(const netfilter::IpsetUpdate& update) override {
    ++calls;
    return inner_->Apply(update);
  }
  int calls = 0;

 private:
  netfilter::Ipset* inner_;
};

class RoutesControllerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() /
           ("routing-unit-" + std::to_string(::getpid()) + "-" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    std::filesystem::create_directories(dir_);
    config_.node_name = "n1";
    config_.cni_conf_file = (dir_ / "net.d" / "10-kuberouter.conflist").string();

    // This node: 192.0.2.1/24 on eth0 with a default route via 192.0.2.254.
    links_.Seed({"eth0", 0, "", 1500, true, std::nullopt, std::nullopt});
    EXPECT_TRUE(links_.AddAddress({"eth0", Ip("192.0.2.1"), 24, netlink::Scope::kUniverse}).ok());
    netlink::Route connected;
    connected.destination = Cidr("192.0.2.0/24");
    connected.device = "eth0";
    connected.protocol = netlink::kProtocolKernel;
    connected.scope = netlink::Scope::kLink;
    routes_.Seed(connected);
    netlink::Route fallback;
    fallback.destination = Cidr("0.0.0.0/0");
    fallback.gateway = Ip("192.0.2.254");
    fallback.device = "eth0";
    fallback.protocol = netlink::kProtocolBoot;
    routes_.Seed(fallback);

    AddNode(MakeNode("n1", "192.0.2.1", "10.1.1.0/24"));
    AddNode(MakeNode("n2", "192.0.2.2", "10.1.2.0/24"));
    AddNode(MakeNode("n3", "198.51.100.3", "10.1.3.0/24"));
  }
  void TearDown() override {
    controller_.reset();
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
  }

  // Changes the cache as an informer does: the store first, then the event, which the runner
  // hands to OnUpdate before the Sync it asks for.
  void AddNode(std::shared_ptr<const k8s::Node> node) {
    const bool existed = cluster_->nodes.Upsert(node->meta.Key(), node) != nullptr;
    Notify(k8s::ResourceKind::kNode, existed ? k8s::EventType::kUpdated : k8s::EventType::kAdded,
           node->meta.Key());
  }
  void RemoveNode(const std::string& name) {
    cluster_->nodes.Remove(name);
    Notify(k8s::ResourceKind::kNode, k8s::EventType::kDeleted, name);
  }
  void RemoveService(const std::string& key) {
    cluster_->services.Remove(key);
    Notify(k8s::ResourceKind::kService, k8s::EventType::kDeleted, key);
  }
  void Notify(k8s::ResourceKind kind, k8s::EventType type, const std::string& key) {
    if (!controller_) return;  // a new controller starts with a full sync anyway
    k8s::Event event;
    event.kind = kind;
    event.type = type;
    event.key = key;
    EXPECT_TRUE(controller_->OnUpdate(event));
  }
  int NetfilterCalls() const { return counted_iptables_.calls + counted_ipset_.calls; }

  NetworkRoutesController& Controller() {
    if (!controller_) {
      controller_ = std::make_unique<NetworkRoutesController>(
          config_, cluster_.get(),
          RoutingDataplane{&routes_, &links_, &counted_iptables_, &counted_ipset_, nullptr,
                           iptables6_, &fou_},
          [this](const bgp::GlobalConfig& global) {
            auto speaker = std::make_unique<FakeSpeaker>(global);
            speaker_ = speaker.get();
            return speaker;
          },
          &metrics_);
      controller_->SetSyncRequester([this] { ++sync_requests_; });
      EXPECT_TRUE(controller_->Init().ok());
    }
    return *controller_;
  }

  void SyncOk(SyncReason reason = SyncReason::kRequested) {
    Status status = Controller().Sync(reason);
    ASSERT_TRUE(status.ok()) << status.message();
  }

  std::vector<std::string> OurRoutes() {
    std::vector<std::string> out;
    for (const auto& route : routes_.RoutesWithProtocol(kRouteProtocol)) {
      out.push_back(route.destination.ToString() + " " +
                    (route.gateway ? "via " + route.gateway->ToString() : "dev " + route.device));
    }
    std::sort(out.begin(), out.end());
    return out;
  }

  std::vector<std::string> Tunnels() {
    std::vector<std::string> out;
    for (const auto& [name, link] : links_.links()) {
      if (link.kind == "ipip") out.push_back(name + (link.up ? " up" : " down"));
    }
    return out;
  }

  std::filesystem::path dir_;
  RoutingConfig config_;
  std::unique_ptr<k8s::Cluster> cluster_ = k8s::MakeCluster();
  netlink::FakeLinks links_;
  netlink::FakeRouteTable routes_{&links_};
  netlink::FakeFouPorts fou_;
  netfilter::FakeIptables iptables_;
  netfilter::FakeIpset ipset_;
  CountingIptables counted_iptables_{&iptables_};
  CountingIpset counted_ipset_{&ipset_};
  netfilter::Iptables* iptables6_ = nullptr;  // the dual-stack tests set it
  metrics::Registry metrics_;
  FakeSpeaker* speaker_ = nullptr;
  int sync_requests_ = 0;
  std::unique_ptr<NetworkRoutesController> controller_;
};

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
  auto service = std::make_shared<k8s::Service>();
  service->meta.name = "web";
  service->meta.namespace_ = "default";
  service->cluster_ip = "10.96.0.10";
  service->cluster_ips = {"10.96.0.10"};
  cluster_->services.Upsert("default/web", service);
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
  auto service = std::make_shared<k8s::Service>();
  service->meta.name = "web";
  service->meta.namespace_ = "default";
  service->cluster_ip = "10.96.0.10";
  service->cluster_ips = {"10.96.0.10"};
  cluster_->services.Upsert("default/web", service);
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
  std::ifstream in(config_.cni_conf_file);
  ASSERT_TRUE(in.good());
  std::stringstream text;
  text << in.rdbuf();
  auto conf = nlohmann::json::parse(text.str());
  EXPECT_EQ(conf["plugins"][0]["ipam"]["ranges"][0][0]["subnet"], "10.1.1.0/24");
  EXPECT_EQ(conf["plugins"][0]["mtu"], 1480);  // 1500 minus the IPIP header
  ASSERT_TRUE(links_.Has(kBridgeName));
  EXPECT_TRUE(links_.links().at(kBridgeName).up);
  EXPECT_EQ(links_.links().at(kBridgeName).mtu, 1480u);
  bool gateway = false;
  for (const auto& address : links_.addresses()) {
    gateway |= address.device == kBridgeName && address.address == Ip("10.1.1.1") &&
               address.prefix_length == 24;
  }
  EXPECT_TRUE(gateway);
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

}  // namespace
}  // namespace kr::routing

namespace kr::routing {
namespace {

std::shared_ptr<const k8s::Node> DualNode(const std::string& name, const std::string& ipv4,
                                          const std::string& ipv6, std::vector<std::string> cidrs) {
  auto node = std::make_shared<k8s::Node>();
  node->meta.name = name;
  if (!ipv4.empty()) node->addresses.push_back({"InternalIP", ipv4});
  if (!ipv6.empty()) node->addresses.push_back({"InternalIP", ipv6});
  node->pod_cidrs = std::move(cidrs);
  return node;
}

// Issue 15: three dual-stack nodes; n1 and n2 share both underlay subnets, n3 is elsewhere.
class DualStackControllerTest : public RoutesControllerTest {
 protected:
  void SetUp() override {
    RoutesControllerTest::SetUp();
    config_.enable_ipv6 = true;
    iptables6_ = &v6_;
    EXPECT_TRUE(links_.AddAddress({"eth0", Ip("2001:db8::1"), 64, netlink::Scope::kUniverse}).ok());
    netlink::Route connected;
    connected.destination = Cidr("2001:db8::/64");
    connected.device = "eth0";
    connected.protocol = netlink::kProtocolKernel;
    connected.scope = netlink::Scope::kLink;
    routes_.Seed(connected);
    netlink::Route fallback;
    fallback.destination = Cidr("::/0");
    fallback.gateway = Ip("2001:db8::fe");
    fallback.device = "eth0";
    fallback.protocol = netlink::kProtocolBoot;
    routes_.Seed(fallback);
    AddNode(DualNode("n1", "192.0.2.1", "2001:db8::1", {"10.1.1.0/24", "fd00:1::/64"}));
    AddNode(DualNode("n2", "192.0.2.2", "2001:db8::2", {"10.1.2.0/24", "fd00:2::/64"}));
    AddNode(DualNode("n3", "198.51.100.3", "2001:db8:3::3", {"10.1.3.0/24", "fd00:3::/64"}));
  }

  std::vector<std::string> V6Tunnels() {
    std::vector<std::string> out;
    for (const auto& [name, link] : links_.links()) {
      if (link.kind == "ip6tnl") out.push_back(name + (link.up ? " up" : " down"));
    }
    return out;
  }

  netfilter::FakeIptables v6_{netfilter::IpFamily::kV6};
};

TEST_F(DualStackControllerTest, BothFamiliesAdvertisedOverOneSessionPerNodeAndRouted) {
  SyncOk(SyncReason::kStartup);
  // One iBGP session per node, on the IPv4 addresses; the speaker listens on both.
  ASSERT_EQ(speaker_->peers().size(), 2u);
  EXPECT_TRUE(speaker_->peers().count(Ip("192.0.2.2")));
  const auto& listen = speaker_->config().listen_addresses;
  EXPECT_NE(std::find(listen.begin(), listen.end(), Ip("2001:db8::1")), listen.end());
  ASSERT_EQ(speaker_->paths().size(), 2u);
  EXPECT_EQ(speaker_->paths().at(Cidr("fd00:1::/64")).next_hop, Ip("2001:db8::1"));
  EXPECT_EQ(speaker_->paths().at(Cidr("10.1.1.0/24")).next_hop, Ip("192.0.2.1"));
  EXPECT_EQ(speaker_->ExportedTo(Ip("192.0.2.2")).size(), 2u);

  // The nodes' IPv6 pod CIDRs with their IPv6 next hops pass the import filter.
  EXPECT_TRUE(speaker_->Announce(Ip("192.0.2.2"), Cidr("fd00:2::/64"), Ip("2001:db8::2")));
  EXPECT_TRUE(speaker_->Announce(Ip("198.51.100.3"), Cidr("fd00:3::/64"), Ip("2001:db8:3::3")));
  EXPECT_TRUE(speaker_->Announce(Ip("192.0.2.2"), Cidr("10.1.2.0/24"), Ip("192.0.2.2")));
  // A node announcing its IPv6 pod CIDR with another node's next hop is refused.
  EXPECT_FALSE(speaker_->Announce(Ip("192.0.2.2"), Cidr("fd00:3::/64"), Ip("2001:db8::2")));
  SyncOk();
  const std::string tunnel = TunnelName(Ip("2001:db8:3::3"));
  EXPECT_EQ(OurRoutes(),
            (std::vector<std::string>{"10.1.2.0/24 via 192.0.2.2", "fd00:2::/64 via 2001:db8::2",
                                      "fd00:3::/64 dev " + tunnel}));
  // The cross-subnet IPv6 route goes through an ip6tnl tunnel from our IPv6 address.
  EXPECT_EQ(V6Tunnels(), (std::vector<std::string>{tunnel + " up"}));
  EXPECT_EQ(links_.links().at(tunnel).tunnel_local, Ip("2001:db8::1"));
  for (const auto& route : routes_.RoutesWithProtocol(kRouteProtocol)) {
    if (route.device == tunnel) {
      EXPECT_EQ(route.source, Ip("2001:db8::1"));
    }
  }

  // Withdrawal removes the IPv6 route and the tunnel.
  speaker_->Withdraw(Cidr("fd00:3::/64"));
  SyncOk();
  EXPECT_EQ(OurRoutes(),
            (std::vector<std::string>{"10.1.2.0/24 via 192.0.2.2", "fd00:2::/64 via 2001:db8::2"}));
  EXPECT_TRUE(V6Tunnels().empty());
}

TEST_F(DualStackControllerTest, Ipv6ServiceVipsGoToExternalPeersWithTheIpv6NextHop) {
  config_.advertise_cluster_ip = true;
  config_.global_peers = {PeerSpec{Ip("2001:db8::100"), 65000}, PeerSpec{Ip("192.0.2.100"), 65000}};
  auto service = std::make_shared<k8s::Service>();
  service->meta.name = "web";
  service->meta.namespace_ = "default";
  service->cluster_ips = {"10.96.0.10", "fd00:96::10"};
  cluster_->services.Upsert("default/web", service);
  SyncOk();
  ASSERT_TRUE(speaker_->peers().count(Ip("2001:db8::100")));
  EXPECT_EQ(speaker_->peers().at(Ip("2001:db8::100")).local_address, Ip("2001:db8::1"));
  std::map<std::string, std::string> exported;
  for (const auto& route : speaker_->ExportedTo(Ip("2001:db8::100"))) {
    exported[route.prefix.ToString()] = route.next_hop.ToString();
  }
  EXPECT_EQ(exported["fd00:96::10/128"], "2001:db8::1");
  EXPECT_EQ(exported["fd00:1::/64"], "2001:db8::1");
  EXPECT_EQ(exported["10.96.0.10/32"], "192.0.2.1");
  // Not to the other nodes.
  for (const auto& route : speaker_->ExportedTo(Ip("192.0.2.2"))) {
    EXPECT_NE(route.prefix, Cidr("fd00:96::10/128"));
  }
  // An IPv6 route refused as a VIP on the way in.
  EXPECT_FALSE(
      speaker_->Announce(Ip("2001:db8::100"), Cidr("fd00:96::10/128"), Ip("2001:db8::100")));
}

TEST_F(DualStackControllerTest, OverrideNexthopKeepsTheIpv6NextHopOverAnIpv4Session) {
  config_.override_nexthop = true;
  config_.global_peers = {PeerSpec{Ip("192.0.2.100"), 65000}};
  SyncOk();
  std::map<std::string, std::string> exported;
  for (const auto& route : speaker_->ExportedTo(Ip("192.0.2.100"))) {
    exported[route.prefix.ToString()] = route.next_hop.ToString();
  }
  EXPECT_EQ(exported["fd00:1::/64"], "2001:db8::1");
  EXPECT_EQ(exported["10.1.1.0/24"], "192.0.2.1");
}

TEST_F(DualStackControllerTest, PodEgressCniAndBridgeCoverBothFamilies) {
  SyncOk();
  auto& sets = ipset_.sets();
  ASSERT_TRUE(sets.count("inet6:kube-router-pod-subnets"));
  EXPECT_EQ(sets["inet6:kube-router-pod-subnets"].family, netfilter::IpFamily::kV6);
  EXPECT_EQ(sets["inet6:kube-router-pod-subnets"].entries.size(), 3u);
  EXPECT_TRUE(sets["inet6:kube-router-node-ips"].entries.count({"2001:db8:3::3", false}));
  EXPECT_EQ(sets[kPodSubnetsSet].entries.size(), 3u);
  EXPECT_TRUE(sets[kPodSubnetsSet].entries.count({"10.1.2.0/24", false}));
  auto& nat6 = v6_.table("nat");
  EXPECT_EQ(nat6.chains[kPodEgressChain],
            std::vector<std::string>{PodEgressRule(netfilter::IpFamily::kV6)});
  EXPECT_EQ(nat6.chains["POSTROUTING"].front(), std::string("-j ") + kPodEgressChain);
  EXPECT_EQ(iptables_.table("nat").chains[kPodEgressChain],
            std::vector<std::string>{PodEgressRule()});

  std::ifstream in(config_.cni_conf_file);
  std::stringstream text;
  text << in.rdbuf();
  auto conf = nlohmann::json::parse(text.str());
  const auto& ranges = conf["plugins"][0]["ipam"]["ranges"];
  ASSERT_EQ(ranges.size(), 2u) << text.str();
  EXPECT_EQ(ranges[0][0]["subnet"], "10.1.1.0/24");
  EXPECT_EQ(ranges[1][0]["subnet"], "fd00:1::/64");
  std::set<std::string> gateways;
  for (const auto& address : links_.addresses()) {
    if (address.device == kBridgeName) gateways.insert(address.ToString());
  }
  EXPECT_TRUE(gateways.count("10.1.1.1/24 dev kube-bridge")) << gateways.size();
  EXPECT_TRUE(gateways.count("fd00:1::1/64 dev kube-bridge"));

  // Egress off: the IPv6 chain goes too.
  controller_.reset();
  config_.enable_pod_egress = false;
  SyncOk();
  EXPECT_FALSE(v6_.table("nat").chains.count(kPodEgressChain));
  EXPECT_TRUE(v6_.table("nat").chains["POSTROUTING"].empty());
}

TEST_F(DualStackControllerTest, WithIpv6DisabledNothingIpv6IsTouched) {
  config_.enable_ipv6 = false;
  SyncOk();
  ASSERT_EQ(speaker_->paths().size(), 1u);
  EXPECT_TRUE(speaker_->paths().count(Cidr("10.1.1.0/24")));
  // IPv6 pod CIDRs are not the cluster's here: refused on import, never routed.
  EXPECT_FALSE(speaker_->Announce(Ip("192.0.2.2"), Cidr("fd00:2::/64"), Ip("2001:db8::2")));
  SyncOk();
  EXPECT_TRUE(OurRoutes().empty());
  EXPECT_FALSE(ipset_.sets().count("inet6:kube-router-pod-subnets"));
  EXPECT_EQ(v6_.apply_calls(), 0);
  std::ifstream in(config_.cni_conf_file);
  std::stringstream text;
  text << in.rdbuf();
  EXPECT_EQ(text.str().find("fd00:"), std::string::npos) << text.str();
}

TEST_F(DualStackControllerTest, BadInputSkipsOnlyTheItem) {
  // n4 has an IPv6 pod CIDR but no IPv6 address; n5 has IPv6 only.
  AddNode(DualNode("n4", "192.0.2.4", "", {"10.1.4.0/24", "fd00:4::/64"}));
  AddNode(DualNode("n5", "", "2001:db8::5", {"fd00:5::/64"}));
  // An IPv6 peer whose local address is IPv4, and a good one.
  PeerSpec mismatched{Ip("2001:db8::101"), 65001};
  mismatched.local_address = Ip("192.0.2.1");
  config_.global_peers = {mismatched, PeerSpec{Ip("2001:db8::100"), 65000}};
  SyncOk();
  EXPECT_TRUE(speaker_->peers().count(Ip("192.0.2.4")));
  EXPECT_FALSE(speaker_->peers().count(Ip("2001:db8::101")));
  EXPECT_TRUE(speaker_->peers().count(Ip("2001:db8::100")));
  // n4's IPv4 half is routed and masqueraded as usual; its IPv6 CIDR has no next hop.
  EXPECT_TRUE(ipset_.sets()[kPodSubnetsSet].entries.count({"10.1.4.0/24", false}));
  EXPECT_FALSE(
      ipset_.sets()["inet6:kube-router-pod-subnets"].entries.count({"fd00:4::/64", false}));
  // n5 (IPv6 only) is not an IPv4 session peer, but its pod CIDR is a pod subnet.
  EXPECT_FALSE(speaker_->peers().count(Ip("2001:db8::5")));
  EXPECT_TRUE(ipset_.sets()["inet6:kube-router-pod-subnets"].entries.count({"fd00:5::/64", false}));
  // Every other node's IPv6 routes still work.
  EXPECT_TRUE(speaker_->Announce(Ip("192.0.2.2"), Cidr("fd00:2::/64"), Ip("2001:db8::2")));
  SyncOk();
  EXPECT_EQ(OurRoutes(), (std::vector<std::string>{"fd00:2::/64 via 2001:db8::2"}));
}

TEST_F(DualStackControllerTest, CleanupRemovesTheIpv6StateToo) {
  SyncOk();
  speaker_->Announce(Ip("192.0.2.2"), Cidr("fd00:2::/64"), Ip("2001:db8::2"));
  speaker_->Announce(Ip("198.51.100.3"), Cidr("fd00:3::/64"), Ip("2001:db8:3::3"));
  SyncOk();
  ASSERT_EQ(OurRoutes().size(), 2u);
  ASSERT_EQ(V6Tunnels().size(), 1u);
  controller_->Shutdown();
  auto removed = Controller().Cleanup();
  ASSERT_TRUE(removed.ok()) << removed.error();
  EXPECT_TRUE(OurRoutes().empty());
  EXPECT_TRUE(V6Tunnels().empty());
  EXPECT_FALSE(ipset_.sets().count("inet6:kube-router-pod-subnets"));
  EXPECT_FALSE(ipset_.sets().count("inet6:kube-router-node-ips"));
  EXPECT_FALSE(v6_.table("nat").chains.count(kPodEgressChain));
  EXPECT_TRUE(v6_.table("nat").chains["POSTROUTING"].empty());
  for (const auto& address : links_.addresses()) {
    EXPECT_NE(address.device, kBridgeName) << address.ToString();
  }
}

TEST_F(DualStackControllerTest, Ipv6OnlySessionsAndRoutesWithIpv4Disabled) {
  config_.enable_ipv4 = false;
  config_.generate_router_id = true;  // an IPv6 session address needs a router ID
  config_.global_peers = {PeerSpec{Ip("192.0.2.100"), 65000}, PeerSpec{Ip("2001:db8::100"), 65000}};
  SyncOk();
  // Sessions move to the IPv6 addresses; the IPv4 peer is skipped.
  std::vector<std::string> peers;
  for (const auto& [address, peer] : speaker_->peers()) peers.push_back(address.ToString());
  std::sort(peers.begin(), peers.end());
  EXPECT_EQ(peers, (std::vector<std::string>{"2001:db8:3::3", "2001:db8::100", "2001:db8::2"}));
  EXPECT_EQ(speaker_->peers().at(Ip("2001:db8::2")).local_address, Ip("2001:db8::1"));
  EXPECT_EQ(speaker_->config().listen_addresses, std::vector<IpAddress>{Ip("2001:db8::1")});
  ASSERT_EQ(speaker_->paths().size(), 1u);
  EXPECT_EQ(speaker_->paths().begin()->first, Cidr("fd00:1::/64"));
  EXPECT_TRUE(speaker_->Announce(Ip("2001:db8::2"), Cidr("fd00:2::/64"), Ip("2001:db8::2")));
  SyncOk();
  EXPECT_EQ(OurRoutes(), (std::vector<std::string>{"fd00:2::/64 via 2001:db8::2"}));
  EXPECT_FALSE(iptables_.table("nat").chains.count(kPodEgressChain));  // no IPv4 egress
  EXPECT_TRUE(v6_.table("nat").chains.count(kPodEgressChain));
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

const netlink::FouPort kGue4{IpAddress::Family::kV4, 5555, netlink::FouKind::kGue, 0};
// Somebody else's: a plain FoU port for IPIP on another port.
const netlink::FouPort kForeign{IpAddress::Family::kV4, 7777, netlink::FouKind::kDirect, 4};

class OverlayEncapControllerTest : public RoutesControllerTest {
 protected:
  // A fresh agent with `encap` (as after a restart with other flags) that learns n3's CIDR.
  void RunWith(OverlayEncap encap) {
    controller_.reset();
    config_.overlay_encap = encap;
    SyncOk();
    speaker_->Announce(Ip("198.51.100.3"), Cidr("10.1.3.0/24"), Ip("198.51.100.3"));
    SyncOk();
  }
  const netlink::Link& Tunnel() { return links_.links().at(TunnelName(Ip("198.51.100.3"))); }
};

TEST_F(OverlayEncapControllerTest, FouOpensTheGuePortAndEncapsulatesTheTunnels) {
  fou_.Seed(kForeign);
  RunWith(OverlayEncap::kFou);
  EXPECT_EQ(fou_.ports(), (std::vector<netlink::FouPort>{kGue4, kForeign}));
  EXPECT_EQ(Tunnel().kind, "ipip");
  EXPECT_EQ(Tunnel().tunnel_encap, (netlink::TunnelEncap{netlink::TunnelEncapType::kGue, 0, 5555}));
  EXPECT_TRUE(Tunnel().up);
  EXPECT_EQ(OurRoutes(), (std::vector<std::string>{"10.1.3.0/24 dev " + Tunnel().name}));
  // Steady state: the next sync writes nothing.
  fou_.failures().ResetCalls();
  links_.failures().ResetCalls();
  SyncOk(SyncReason::kPeriodic);
  EXPECT_EQ(fou_.failures().Calls(netlink::FakeFouPorts::kWrites), 0);
  EXPECT_EQ(links_.failures().Calls(netlink::FakeLinks::kWrites), 0);
}

TEST_F(OverlayEncapControllerTest, SwitchingEncapRecreatesTunnelsAndRemovesOnlyOurPort) {
  fou_.Seed(kForeign);
  RunWith(OverlayEncap::kFou);
  RunWith(OverlayEncap::kIpip);
  EXPECT_EQ(Tunnel().tunnel_encap, netlink::TunnelEncap{});
  EXPECT_EQ(fou_.ports(), (std::vector<netlink::FouPort>{kForeign}));
  RunWith(OverlayEncap::kFou);
  EXPECT_EQ(Tunnel().tunnel_encap.type, netlink::TunnelEncapType::kGue);
  EXPECT_EQ(fou_.ports(), (std::vector<netlink::FouPort>{kGue4, kForeign}));
}

TEST_F(OverlayEncapControllerTest, TheLastTunnelGoneClosesThePort) {
  RunWith(OverlayEncap::kFou);
  ASSERT_EQ(fou_.ports().size(), 1u);
  speaker_->Withdraw(Cidr("10.1.3.0/24"));
  SyncOk();
  EXPECT_TRUE(Tunnels().empty());
  EXPECT_TRUE(fou_.ports().empty());
}

TEST_F(OverlayEncapControllerTest, AForeignPortOnOurNumberIsReportedAndLeftAlone) {
  netlink::FouPort direct{IpAddress::Family::kV4, 5555, netlink::FouKind::kDirect, 4};
  fou_.Seed(direct);
  config_.overlay_encap = OverlayEncap::kFou;
  SyncOk();
  speaker_->Announce(Ip("198.51.100.3"), Cidr("10.1.3.0/24"), Ip("198.51.100.3"));
  Status status = Controller().Sync(SyncReason::kRequested);
  ASSERT_FALSE(status.ok());
  EXPECT_NE(status.message().find("FoU port 5555 is taken by a foreign fou ipproto 4 port 5555"),
            std::string::npos)
      << status.message();
  EXPECT_EQ(fou_.ports(), (std::vector<netlink::FouPort>{direct}));
  // The rest of the kernel sync still happened.
  EXPECT_EQ(OurRoutes(), (std::vector<std::string>{"10.1.3.0/24 dev " + Tunnel().name}));
}

TEST_F(OverlayEncapControllerTest, AFailedPortAddIsRetried) {
  fou_.failures().FailNext(netlink::FakeFouPorts::Op::kAdd, "modprobe fou: not found");
  config_.overlay_encap = OverlayEncap::kFou;
  SyncOk();
  speaker_->Announce(Ip("198.51.100.3"), Cidr("10.1.3.0/24"), Ip("198.51.100.3"));
  Status status = Controller().Sync(SyncReason::kRequested);
  EXPECT_NE(status.message().find("modprobe fou"), std::string::npos) << status.message();
  SyncOk();
  EXPECT_EQ(fou_.ports(), (std::vector<netlink::FouPort>{kGue4}));
}

TEST_F(OverlayEncapControllerTest, CleanupRemovesTunnelsAndOurFouPortsOfBothFamilies) {
  fou_.Seed(kForeign);
  RunWith(OverlayEncap::kFou);
  controller_->Shutdown();
  // As an IPv6 tunnel's port would be (a sync without IPv6 tunnels closes it).
  fou_.Seed({IpAddress::Family::kV6, 5555, netlink::FouKind::kGue, 0});
  auto removed = Controller().Cleanup();
  ASSERT_TRUE(removed.ok()) << removed.error();
  EXPECT_FALSE(links_.Has(TunnelName(Ip("198.51.100.3"))));
  EXPECT_EQ(fou_.ports(), (std::vector<netlink::FouPort>{kForeign}));
  EXPECT_NE(std::find(removed->begin(), removed->end(), "FoU gue port 5555 (IPv6)"),
            removed->end());
}

TEST_F(OverlayEncapControllerTest, FouMtuLeavesRoomForUdpAndGue) {
  config_.overlay_encap = OverlayEncap::kFou;
  SyncOk();
  EXPECT_EQ(links_.links().at(kBridgeName).mtu, 1500u - 32u);
}

}  // namespace
}  // namespace kr::routing
