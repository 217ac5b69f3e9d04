#include "kube_router/proxy/network_services_controller.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "kube_router/netlink/fakes.h"
#include "unit/proxy/proxy_test_util.h"

namespace kr::proxy {
namespace {

using namespace testing;  // NOLINT
using netlink::IpvsDestination;
using netlink::IpvsService;
using ::testing::ElementsAre;
using ::testing::IsEmpty;

// Records what the controller tells its extensions.
class RecordingExtension : public ProxyExtension {
 public:
  explicit RecordingExtension(bool dsr = false) : dsr_(dsr) {}
  std::string Name() const override { return "recorder"; }
  Status Apply(const ProxySnapshot& snapshot) override {
    ++applies;
    last_changed = snapshot.changed;
    last_full = snapshot.full;
    last_services = snapshot.services->size();
    last_programmed = snapshot.programmed->services.size();
    last_touched = snapshot.touched;
    last_ipvs_services = snapshot.ipvs_services;
    dsr_services.clear();
    for (const auto& [name, svc] : *snapshot.services) {
      for (const auto& vs : svc.virtual_services) {
        if (vs.dsr) dsr_services.push_back(vs.vs.id().ToString());
      }
    }
    return Status::Ok();
  }
  void OnDestinationRemoved(const IpvsService& s, const IpvsDestination& d) override {
    removed.push_back(VirtualServiceId::Of(s).ToString() + " " +
                      DestinationId{d.address, d.port}.ToString());
  }
  bool HandlesDsr() const override { return dsr_; }
  Result<std::vector<std::string>> Cleanup() override {
    ++cleanups;
    return std::vector<std::string>{"recorder state"};
  }
  int applies = 0, cleanups = 0;
  bool last_full = false;
  size_t last_services = 0, last_programmed = 0, last_ipvs_services = 0;
  std::set<VirtualServiceId> last_touched;
  std::set<ServiceName> last_changed;
  std::vector<std::string> removed, dsr_services;

 private:
  bool dsr_;
};

class ProxyControllerTest : public ::testing::Test {
 protected:
  ProxyControllerTest() {
    links.Seed({.name = "eth0", .kind = "", .mtu = 1500, .up = true});
    links.Seed({.name = "lo", .kind = "", .mtu = 65536, .up = true});
    (void)links.AddAddress({"eth0", Ip("192.0.2.10"), 24, netlink::Scope::kUniverse});
    (void)links.AddAddress({"lo", Ip("127.0.0.1"), 8, netlink::Scope::kHost});
    Upsert(NodeObj("node-a", {"192.0.2.10"}));
    config = Config("node-a");
    ResetCounts();  // the set-up above is not the controller's
  }

  std::unique_ptr<NetworkServicesController> Make() {
    auto c = std::make_unique<NetworkServicesController>(
        config, cluster.get(), ProxyDataplane{&ipvs, &links, &routes}, &registry);
    c->SetClock([this] { return now; });
    return c;
  }
  NetworkServicesController& Controller() {
    if (!controller) controller = Make();
    return *controller;
  }

  void Upsert(const k8s::Node& n) {
    std::shared_ptr<const k8s::Node> p = std::make_shared<k8s::Node>(n);
    auto old = cluster->nodes.Upsert(n.meta.name, p);
    Post(k8s::ResourceKind::kNode, n.meta.name, old, p);
  }
  void Upsert(const k8s::Service& s) {
    std::shared_ptr<const k8s::Service> p = std::make_shared<k8s::Service>(s);
    auto old = cluster->services.Upsert(s.meta.Key(), p);
    Post(k8s::ResourceKind::kService, s.meta.Key(), old, p);
  }
  void Upsert(const k8s::EndpointSlice& s) {
    std::shared_ptr<const k8s::EndpointSlice> p = std::make_shared<k8s::EndpointSlice>(s);
    auto old = cluster->endpoint_slices.Upsert(s.meta.Key(), p);
    Post(k8s::ResourceKind::kEndpointSlice, s.meta.Key(), old, p);
  }
  void RemoveService(const std::string& key) {
    auto old = cluster->services.Remove(key);
    Post(k8s::ResourceKind::kService, key, old, std::shared_ptr<const k8s::Service>());
  }
  void Upsert(const k8s::Pod& pod) {
    cluster->pods.Upsert(pod.meta.Key(), std::make_shared<k8s::Pod>(pod));
  }

  template <typename T>
  void Post(k8s::ResourceKind kind, const std::string& key, std::shared_ptr<const T> old_obj,
            std::shared_ptr<const T> new_obj) {
    if (!controller) return;  // before the controller exists its first sync reads the caches
    k8s::Event e;
    e.kind = kind;
    e.key = key;
    e.type = !old_obj ? k8s::EventType::kAdded
                      : (new_obj ? k8s::EventType::kUpdated : k8s::EventType::kDeleted);
    if (old_obj) e.old_object = old_obj;
    if (new_obj) e.new_object = new_obj;
    controller->OnUpdate(e);
  }

  // Kernel writes and reads, counted by the fakes themselves.
  int Writes() const {
    return ipvs.failures().Calls(netlink::FakeIpvs::kWrites) +
           links.failures().Calls(netlink::FakeLinks::kWrites) +
           static_cast<int>(routes.applied_changes());
  }
  int IpvsReads() const {
    using Op = netlink::FakeIpvs::Op;
    return ipvs.failures().Calls({Op::kListServices, Op::kListDestinations});
  }
  int Flushes() const { return ipvs.failures().Calls({netlink::FakeIpvs::Op::kFlush}); }
  void ResetCounts() {
    ipvs.failures().ResetCalls();
    links.failures().ResetCalls();
    routes.ResetCounts();
  }

  std::vector<std::string> Services() {
    std::vector<std::string> out;
    auto list = ipvs.ListServices();
    for (const auto& s : *list) out.push_back(VirtualServiceId::Of(s).ToString());
    return out;
  }
  std::vector<std::string> Dests(const std::string& vip, uint16_t port,
                                 netlink::IpvsProtocol proto = netlink::IpvsProtocol::kTcp) {
    IpvsService s;
    s.address = Ip(vip);
    s.port = port;
    s.protocol = proto;
    auto list = ipvs.ListDestinations(s);
    if (!list.ok()) return {"<" + list.error() + ">"};
    std::vector<std::string> out;
    for (const auto& d : *list) {
      out.push_back(DestinationId{d.address, d.port}.ToString() + " w" + std::to_string(d.weight));
    }
    std::sort(out.begin(), out.end());
    return out;
  }
  std::vector<std::string> DummyAddresses() {
    std::vector<std::string> out;
    for (const auto& a : links.addresses()) {
      if (a.device == netlink::kKubeDummyName) out.push_back(a.address.ToString());
    }
    std::sort(out.begin(), out.end());
    return out;
  }
  const netlink::Route* VipRoute(const std::string& vip) {
    for (const auto& r : routes.routes()) {
      if (r.table == netlink::kLocalTable && r.destination.address() == Ip(vip)) return &r;
    }
    return nullptr;
  }

  void StandardServices() {
    Upsert(Svc("web", "10.96.0.10", {Port("http", 80)}));
    Upsert(Slice("web", "web-1", {{"10.1.0.1"}, {"10.1.0.2"}}, {{"http", 8080}}));
    Upsert(Svc("dns", "10.96.0.53", {Port("dns", 53, "UDP")}, "kube-system"));
    Upsert(Slice("dns", "dns-1", {{"10.1.0.3"}}, {{"dns", 5353}}, "kube-system"));
    Upsert(Svc("api", "10.96.0.1", {Port("https", 443)}));
    Upsert(Slice("api", "api-1", {{"10.1.0.4"}}, {{"https", 6443}}));
  }

  std::unique_ptr<k8s::Cluster> cluster = k8s::MakeCluster();
  netlink::FakeIpvs ipvs;
  netlink::FakeLinks links;
  netlink::FakeRouteTable routes{&links};
  metrics::Registry registry;
  ProxyConfig config;
  std::chrono::steady_clock::time_point now =
      std::chrono::steady_clock::time_point{} + std::chrono::hours(1);
  std::unique_ptr<NetworkServicesController> controller;
};

TEST_F(ProxyControllerTest, ColdStartProgramsDummyLinkVipRouteServicesAndDestinations) {
  StandardServices();
  ASSERT_TRUE(Controller().Sync(SyncReason::kStartup).ok());
  auto dummy = links.links().find(netlink::kKubeDummyName);
  ASSERT_NE(dummy, links.links().end());
  EXPECT_TRUE(dummy->second.up);
  EXPECT_EQ(dummy->second.kind, "dummy");
  EXPECT_THAT(DummyAddresses(), ElementsAre("10.96.0.1", "10.96.0.10", "10.96.0.53"));
  const auto* route = VipRoute("10.96.0.10");
  ASSERT_NE(route, nullptr);
  EXPECT_EQ(route->source, Ip("192.0.2.10"));
  EXPECT_EQ(route->type, netlink::RouteType::kLocal);
  EXPECT_EQ(route->scope, netlink::Scope::kHost);
  EXPECT_EQ(route->device, netlink::kKubeDummyName);
  EXPECT_THAT(Services(), ::testing::UnorderedElementsAre("TCP 10.96.0.10:80", "UDP 10.96.0.53:53",
                                                          "TCP 10.96.0.1:443"));
  EXPECT_THAT(Dests("10.96.0.10", 80), ElementsAre("10.1.0.1:8080 w1", "10.1.0.2:8080 w1"));
  EXPECT_THAT(Dests("10.96.0.53", 53, netlink::IpvsProtocol::kUdp),
              ElementsAre("10.1.0.3:5353 w1"));
  EXPECT_EQ(registry.GetGauge("kube_router_controller_ipvs_services", "").Value(), 3);
}

// The kernel gives an IPv6-enabled kube-dummy-if its own fe80:: address. It is not a VIP of
// ours: a sync must neither treat it as stale nor try to delete it (the kernel refuses that, and
// every sync on a dual-stack node failed).
// A cold start sends every IPVS change in one batch (the netlink adapter packs it into few
// round trips), not one call per object; an event is one batch too.
TEST_F(ProxyControllerTest, IpvsChangesAreWrittenAsOneBatchPerSync) {
  StandardServices();
  ASSERT_TRUE(Controller().Sync(SyncReason::kStartup).ok());
  using Op = netlink::FakeIpvs::Op;
  EXPECT_EQ(ipvs.failures().Calls({Op::kApply}), 1);
  EXPECT_EQ(ipvs.failures().Calls({Op::kAddService}), 3);  // inside that batch
  EXPECT_EQ(ipvs.failures().Calls({Op::kAddDestination}), 4);
  ResetCounts();
  Upsert(Slice("web", "web-1", {{"10.1.0.7"}}, {{"http", 8080}}));
  ASSERT_TRUE(Controller().Sync(SyncReason::kRequested).ok());
  EXPECT_EQ(ipvs.failures().Calls({Op::kApply}), 1);
  EXPECT_EQ(Writes(), 3);  // one destination in, two out
}

// The VIP addresses of a sync are one batch too (AddAddresses: the netlink adapter packs them
// like RouteTable::Apply), not one AddAddress round trip each; a refused address fails only its
// VIP, and the next (full) sync adds it in one batch again.
TEST_F(ProxyControllerTest, VipAddressesAreAddedAsOneBatchPerSync) {
  StandardServices();
  using LinkOp = netlink::FakeLinks::Op;
  links.failures().FailNext(LinkOp::kAddAddress, "No space left on device");
  EXPECT_FALSE(Controller().Sync(SyncReason::kStartup).ok());
  EXPECT_EQ(links.failures().Calls({LinkOp::kAddAddresses}), 1);
  EXPECT_EQ(links.failures().Calls({LinkOp::kAddAddress}), 3);  // inside that batch
  EXPECT_EQ(DummyAddresses().size(), 2u);  // the refused VIP is missing, the others are in
  EXPECT_EQ(Services().size(), 3u);
  ResetCounts();
  ASSERT_TRUE(Controller().Sync(SyncReason::kRequested).ok());  // full: repairs the VIP
  EXPECT_THAT(DummyAddresses(), ElementsAre("10.96.0.1", "10.96.0.10", "10.96.0.53"));
  EXPECT_EQ(links.failures().Calls({LinkOp::kAddAddresses}), 1);
  EXPECT_EQ(links.failures().Calls({LinkOp::kAddAddress}), 1);
}

// A write the kernel refuses inside a batch fails only itself: the rest of the batch is in, the
// sync reports the error and the next (full) sync repairs it.
TEST_F(ProxyControllerTest, ARefusedWriteInABatchFailsOnlyItself) {
  StandardServices();
  ipvs.failures().FailNext(netlink::FakeIpvs::Op::kAddDestination, "No space left on device");
  EXPECT_FALSE(Controller().Sync(SyncReason::kStartup).ok());
  EXPECT_EQ(Services().size(), 3u);
  int dests = 0;
  for (const auto& [vip, port] :
       std::vector<std::pair<std::string, uint16_t>>{{"10.96.0.10", 80}, {"10.96.0.1", 443}}) {
    dests += static_cast<int>(Dests(vip, port).size());
  }
  dests += static_cast<int>(Dests("10.96.0.53", 53, netlink::IpvsProtocol::kUdp).size());
  EXPECT_EQ(dests, 3);                                          // four wanted, one refused
  ASSERT_TRUE(Controller().Sync(SyncReason::kRequested).ok());  // full: the image is untrusted
  EXPECT_THAT(Dests("10.96.0.10", 80), ElementsAre("10.1.0.1:8080 w1", "10.1.0.2:8080 w1"));
}

TEST_F(ProxyControllerTest, TheKernelsLinkLocalAddressOnTheDummyLinkIsNotAStaleVip) {
  StandardServices();
  ASSERT_TRUE(Controller().Sync(SyncReason::kStartup).ok());
  ASSERT_TRUE(links
                  .AddAddress({.device = netlink::kKubeDummyName,
                               .address = Ip("fe80::c8a1:5eff:fe4b:1"),
                               .prefix_length = 64,
                               .scope = netlink::Scope::kLink})
                  .ok());
  ResetCounts();
  ASSERT_TRUE(Controller().Sync(SyncReason::kPeriodic).ok());
  EXPECT_EQ(Writes(), 0);
  EXPECT_THAT(DummyAddresses(),
              ElementsAre("10.96.0.1", "10.96.0.10", "10.96.0.53", "fe80::c8a1:5eff:fe4b:1"));
}

TEST_F(ProxyControllerTest, AnExistingDownDummyLinkIsBroughtUp) {
  links.Seed({.name = netlink::kKubeDummyName, .kind = "dummy", .mtu = 1500, .up = false});
  StandardServices();
  ASSERT_TRUE(Controller().Sync(SyncReason::kStartup).ok());
  EXPECT_TRUE(links.links().at(netlink::kKubeDummyName).up);
}

TEST_F(ProxyControllerTest, AnEventWritesOnlyWhatItsServiceChanged) {
  StandardServices();
  ASSERT_TRUE(Controller().Sync(SyncReason::kStartup).ok());
  ResetCounts();
  Upsert(Slice("web", "web-1", {{"10.1.0.1"}, {"10.1.0.2"}, {"10.1.0.9"}}, {{"http", 8080}}));
  ASSERT_TRUE(Controller().Sync(SyncReason::kRequested).ok());
  EXPECT_EQ(Writes(), 1);     // one AddDestination
  EXPECT_EQ(IpvsReads(), 0);  // no kernel dump on the event path
  EXPECT_THAT(Dests("10.96.0.10", 80),
              ElementsAre("10.1.0.1:8080 w1", "10.1.0.2:8080 w1", "10.1.0.9:8080 w1"));

  ResetCounts();
  Upsert(Slice("web", "web-1", {{"10.1.0.9"}}, {{"http", 8080}}));
  ASSERT_TRUE(Controller().Sync(SyncReason::kRequested).ok());
  EXPECT_EQ(Writes(), 2);  // two DeleteDestination
  EXPECT_THAT(Dests("10.96.0.10", 80), ElementsAre("10.1.0.9:8080 w1"));

  // An event that changes nothing programmed writes nothing.
  ResetCounts();
  auto web = Svc("web", "10.96.0.10", {Port("http", 80)});
  web.meta.labels["app"] = "web";
  Upsert(web);
  ASSERT_TRUE(Controller().Sync(SyncReason::kRequested).ok());
  EXPECT_EQ(Writes(), 0);
}

TEST_F(ProxyControllerTest, ServiceDeletionRemovesItsServiceVipAndRouteOnly) {
  StandardServices();
  ASSERT_TRUE(Controller().Sync(SyncReason::kStartup).ok());
  RemoveService("default/web");
  ASSERT_TRUE(Controller().Sync(SyncReason::kRequested).ok());
  EXPECT_THAT(Services(),
              ::testing::UnorderedElementsAre("UDP 10.96.0.53:53", "TCP 10.96.0.1:443"));
  EXPECT_THAT(DummyAddresses(), ElementsAre("10.96.0.1", "10.96.0.53"));
  EXPECT_EQ(VipRoute("10.96.0.10"), nullptr);
  EXPECT_NE(VipRoute("10.96.0.1"), nullptr);
}

TEST_F(ProxyControllerTest, RestartAdoptsTheKernelStateWithoutWriting) {
  StandardServices();
  ASSERT_TRUE(Controller().Sync(SyncReason::kStartup).ok());
  ResetCounts();
  ASSERT_TRUE(Controller().Sync(SyncReason::kPeriodic).ok());
  EXPECT_EQ(Writes(), 0) << "a no-op periodic sync writes nothing";

  auto restarted = Make();  // a new process: no memory, same kernel
  ASSERT_TRUE(restarted->Init().ok());
  ASSERT_TRUE(restarted->Sync(SyncReason::kStartup).ok());
  EXPECT_EQ(Writes(), 0) << "restart adopts existing state";
  EXPECT_EQ(Flushes(), 0);
  EXPECT_EQ(restarted->programmed().services.size(), 3u);
}

TEST_F(ProxyControllerTest, PeriodicSyncRepairsDrift) {
  StandardServices();
  ASSERT_TRUE(Controller().Sync(SyncReason::kStartup).ok());
  IpvsService web;
  web.address = Ip("10.96.0.10");
  web.port = 80;
  IpvsDestination gone;
  gone.address = Ip("10.1.0.1");
  gone.port = 8080;
  ASSERT_TRUE(ipvs.DeleteDestination(web, gone).ok());
  web.scheduler = "lc";
  ASSERT_TRUE(ipvs.UpdateService(web).ok());
  IpvsService dns;
  dns.address = Ip("10.96.0.53");
  dns.port = 53;
  dns.protocol = netlink::IpvsProtocol::kUdp;
  ASSERT_TRUE(ipvs.DeleteService(dns).ok());
  auto bad_route = *VipRoute("10.96.0.1");
  bad_route.source = Ip("10.96.0.1");
  ASSERT_TRUE(routes.Replace(bad_route).ok());

  ASSERT_TRUE(Controller().Sync(SyncReason::kPeriodic).ok());
  EXPECT_THAT(Dests("10.96.0.10", 80), ElementsAre("10.1.0.1:8080 w1", "10.1.0.2:8080 w1"));
  EXPECT_THAT(Dests("10.96.0.53", 53, netlink::IpvsProtocol::kUdp),
              ElementsAre("10.1.0.3:5353 w1"));
  auto listed = ipvs.ListServices();
  for (const auto& s : *listed) EXPECT_EQ(s.scheduler, "rr") << s.ToString();
  EXPECT_EQ(VipRoute("10.96.0.1")->source, Ip("192.0.2.10"));
}

TEST_F(ProxyControllerTest, ForeignStateSurvivesSyncsRestartAndCleanup) {
  config.excluded_cidrs = {*IpPrefix::Parse("10.96.255.0/24")};
  // Someone else's: a keepalived VIP, an SSH balancer on the node IP, a service on an
  // excluded address, a fwmark service and an address on another link.
  IpvsService keepalived;
  keepalived.address = Ip("192.0.2.200");
  keepalived.port = 80;
  IpvsService ssh;
  ssh.address = Ip("192.0.2.10");
  ssh.port = 22;
  IpvsService excluded;
  excluded.address = Ip("10.96.255.1");
  excluded.port = 80;
  IpvsService fwmark;
  fwmark.address = Ip("0.0.0.0");
  fwmark.fwmark = 99;
  // A port inside the NodePort range, but on an address that is not this node's.
  IpvsService remote_range;
  remote_range.address = Ip("198.51.100.77");
  remote_range.port = 30500;
  for (const auto& s : {keepalived, ssh, excluded, fwmark, remote_range}) {
    ASSERT_TRUE(ipvs.AddService(s).ok());
  }
  IpvsDestination real;
  real.address = Ip("192.0.2.201");
  real.port = 80;
  real.forward = netlink::IpvsForward::kRoute;
  ASSERT_TRUE(ipvs.AddDestination(keepalived, real).ok());
  ASSERT_TRUE(links.AddAddress({"eth0", Ip("192.0.2.200"), 32, netlink::Scope::kUniverse}).ok());
  const std::vector<std::string> foreign = {"TCP 192.0.2.200:80", "TCP 192.0.2.10:22",
                                            "TCP 10.96.255.1:80", "FWM 99 IPv4",
                                            "TCP 198.51.100.77:30500"};

  StandardServices();
  ASSERT_TRUE(Controller().Sync(SyncReason::kStartup).ok());
  ASSERT_TRUE(Controller().Sync(SyncReason::kPeriodic).ok());
  RemoveService("default/web");
  ASSERT_TRUE(Controller().Sync(SyncReason::kRequested).ok());
  auto restarted = Make();
  ASSERT_TRUE(restarted->Sync(SyncReason::kStartup).ok());
  for (const auto& f : foreign) EXPECT_THAT(Services(), ::testing::Contains(f));
  EXPECT_EQ(Services().size(), foreign.size() + 2);

  auto removed = restarted->Cleanup();
  ASSERT_TRUE(removed.ok()) << removed.error();
  EXPECT_THAT(Services(), ::testing::UnorderedElementsAreArray(foreign));
  EXPECT_THAT(Dests("192.0.2.200", 80), ElementsAre("192.0.2.201:80 w1"));
  EXPECT_FALSE(links.Has(netlink::kKubeDummyName));
  EXPECT_EQ(VipRoute("10.96.0.1"), nullptr);
  bool foreign_address = false;
  for (const auto& a : links.addresses()) foreign_address |= a.address == Ip("192.0.2.200");
  EXPECT_TRUE(foreign_address);

  // Idempotent: a second cleanup (a fresh process, empty caches) finds nothing of ours.
  auto empty_cluster = k8s::MakeCluster();
  NetworkServicesController fresh(config, empty_cluster.get(),
                                  ProxyDataplane{&ipvs, &links, &routes}, nullptr);
  auto again = fresh.Cleanup();
  ASSERT_TRUE(again.ok()) << again.error();
  EXPECT_THAT(*again, IsEmpty());
  EXPECT_THAT(Services(), ::testing::UnorderedElementsAreArray(foreign));
  EXPECT_EQ(Flushes(), 0);
}

TEST_F(ProxyControllerTest, CleanupRemovesNodePortsOfServicesDeletedWhileDown) {
  auto np = Svc("np", "10.96.0.30", {Port("", 80, "TCP", 30080)});
  np.type = "NodePort";
  Upsert(np);
  ASSERT_TRUE(Controller().Sync(SyncReason::kStartup).ok());
  EXPECT_THAT(Services(), ::testing::Contains("TCP 192.0.2.10:30080"));
  // The Service is deleted while the agent is down: the restarted agent still knows the
  // NodePort service is its own (a local address, a port in the NodePort range).
  cluster->services.Remove("default/np");
  auto restarted = Make();
  ASSERT_TRUE(restarted->Sync(SyncReason::kStartup).ok());
  EXPECT_THAT(Services(), IsEmpty());
}

TEST_F(ProxyControllerTest, SessionAffinityAndSchedulerSwitchInPlace) {
  StandardServices();
  ASSERT_TRUE(Controller().Sync(SyncReason::kStartup).ok());
  ResetCounts();
  auto web = Svc("web", "10.96.0.10", {Port("http", 80)});
  web.session_affinity = "ClientIP";
  web.session_affinity_timeout_seconds = 10;
  web.meta.annotations[kAnnotationScheduler] = "sh";
  Upsert(web);
  ASSERT_TRUE(Controller().Sync(SyncReason::kRequested).ok());
  EXPECT_EQ(Writes(), 1);  // one UpdateService: no delete, connections survive
  auto listed = ipvs.ListServices();
  for (const auto& s : *listed) {
    if (s.port != 80) continue;
    EXPECT_EQ(s.scheduler, "sh");
    EXPECT_EQ(s.flags, netlink::ipvs_flags::kPersistent);
    EXPECT_EQ(s.timeout, 10u);
  }
  EXPECT_THAT(Dests("10.96.0.10", 80), ElementsAre("10.1.0.1:8080 w1", "10.1.0.2:8080 w1"));
}

TEST_F(ProxyControllerTest, LocalPolicyWithoutLocalEndpointKeepsAnEmptyServiceAndItsVip) {
  auto svc = Svc("loc", "10.96.0.40", {Port("", 80)});
  svc.internal_traffic_policy = "Local";
  Upsert(svc);
  Upsert(Slice("loc", "loc-1", {{"10.1.0.1", "node-b"}}, {{"", 8080}}));
  ASSERT_TRUE(Controller().Sync(SyncReason::kStartup).ok());
  EXPECT_THAT(Services(), ElementsAre("TCP 10.96.0.40:80"));
  EXPECT_THAT(Dests("10.96.0.40", 80), IsEmpty());
  EXPECT_THAT(DummyAddresses(), ElementsAre("10.96.0.40"));
  Upsert(Slice("loc", "loc-1", {{"10.1.0.1", "node-b"}, {"10.1.0.5", "node-a"}}, {{"", 8080}}));
  ASSERT_TRUE(Controller().Sync(SyncReason::kRequested).ok());
  EXPECT_THAT(Dests("10.96.0.40", 80), ElementsAre("10.1.0.5:8080 w1"));
}

TEST_F(ProxyControllerTest, BadInputSkipsOnlyItsItem) {
  StandardServices();
  auto bad = Svc("bad", "10.96.0.50", {Port("p", 80), Port("q", 81, "ICMP")});
  bad.meta.annotations[kAnnotationScheduler] = "nope";
  bad.external_ips = {"192.0.2.99", "not-an-ip"};
  bad.session_affinity = "ClientIP";
  bad.session_affinity_timeout_seconds = -5;
  Upsert(bad);
  Upsert(Slice("bad", "bad-1", {{"10.1.0.7"}, {"fd00::7"}}, {{"p", 8080}}));
  auto garbage = Svc("garbage", "not-an-ip", {Port("", 80)});
  Upsert(garbage);
  ASSERT_TRUE(Controller().Sync(SyncReason::kStartup).ok());
  EXPECT_THAT(Services(),
              ::testing::UnorderedElementsAre("TCP 10.96.0.10:80", "UDP 10.96.0.53:53",
                                              "TCP 10.96.0.1:443", "TCP 10.96.0.50:80"));
  EXPECT_THAT(Dests("10.96.0.50", 80), ElementsAre("10.1.0.7:8080 w1"));
  const auto& svc = Controller().services().at({"default", "bad"});
  EXPECT_EQ(svc.problems.size(), 6u);
}

TEST_F(ProxyControllerTest, NodePortFollowsAddressChangesWithBindOnAllIp) {
  config.nodeport_bindon_all_ip = true;
  auto np = Svc("np", "10.96.0.30", {Port("", 80, "TCP", 30080)});
  np.type = "NodePort";
  Upsert(np);
  ASSERT_TRUE(Controller().Sync(SyncReason::kStartup).ok());
  EXPECT_THAT(Services(), ::testing::UnorderedElementsAre(
                              "TCP 10.96.0.30:80", "TCP 192.0.2.10:30080", "TCP 127.0.0.1:30080"));
  ASSERT_TRUE(links.AddAddress({"eth0", Ip("192.0.2.11"), 24, netlink::Scope::kUniverse}).ok());
  ASSERT_TRUE(Controller().Sync(SyncReason::kRequested).ok());
  EXPECT_THAT(Services(), ::testing::Contains("TCP 192.0.2.11:30080"));
  ASSERT_TRUE(links.DeleteAddress({"eth0", Ip("192.0.2.11"), 24, netlink::Scope::kUniverse}).ok());
  ASSERT_TRUE(Controller().Sync(SyncReason::kRequested).ok());
  EXPECT_THAT(Services(), ::testing::Not(::testing::Contains("TCP 192.0.2.11:30080")));
  // The dummy link's VIPs never get NodePorts.
  EXPECT_THAT(Services(), ::testing::Not(::testing::Contains("TCP 10.96.0.30:30080")));
}

TEST_F(ProxyControllerTest, GracefulTerminationDrainsThenDeletes) {
  config.graceful_termination = true;
  config.graceful_period = std::chrono::seconds(30);
  auto ext = std::make_unique<RecordingExtension>();
  auto* recorder = ext.get();
  Controller().AddExtension(std::move(ext));
  StandardServices();
  k8s::Pod pod;
  pod.meta.name = "web-2";
  pod.meta.namespace_ = "default";
  pod.pod_ip = "10.1.0.2";
  pod.pod_ips = {"10.1.0.2"};
  pod.termination_grace_period_seconds = 60;
  Upsert(pod);
  ASSERT_TRUE(Controller().Sync(SyncReason::kStartup).ok());
  IpvsService web;
  web.address = Ip("10.96.0.10");
  web.port = 80;
  IpvsDestination two;
  two.address = Ip("10.1.0.2");
  two.port = 8080;

  // The endpoint goes while it holds connections: weight 0, still there.
  ASSERT_TRUE(ipvs.SetConnections(web, two, 3, 1).ok());
  Upsert(Slice("web", "web-1", {{"10.1.0.1"}}, {{"http", 8080}}));
  ASSERT_TRUE(Controller().Sync(SyncReason::kRequested).ok());
  EXPECT_THAT(Dests("10.96.0.10", 80), ElementsAre("10.1.0.1:8080 w1", "10.1.0.2:8080 w0"));
  EXPECT_EQ(Controller().draining(), 1u);
  EXPECT_THAT(recorder->removed, IsEmpty());

  // It comes back during the drain: weight 1 again and never deleted later.
  Upsert(Slice("web", "web-1", {{"10.1.0.1"}, {"10.1.0.2"}}, {{"http", 8080}}));
  ASSERT_TRUE(Controller().Sync(SyncReason::kRequested).ok());
  EXPECT_EQ(Controller().draining(), 0u);
  now += std::chrono::minutes(5);
  ASSERT_TRUE(Controller().Sync(SyncReason::kRequested).ok());
  EXPECT_THAT(Dests("10.96.0.10", 80), ElementsAre("10.1.0.1:8080 w1", "10.1.0.2:8080 w1"));

  // Gone again; a restart in between rebuilds the drain from the kernel's weight 0.
  Upsert(Slice("web", "web-1", {{"10.1.0.1"}}, {{"http", 8080}}));
  ASSERT_TRUE(Controller().Sync(SyncReason::kRequested).ok());
  ASSERT_TRUE(ipvs.SetConnections(web, two, 3, 1).ok());
  controller.reset();
  auto restarted = Make();
  ASSERT_TRUE(restarted->Sync(SyncReason::kStartup).ok());
  EXPECT_EQ(restarted->draining(), 1u);
  EXPECT_THAT(Dests("10.96.0.10", 80), ElementsAre("10.1.0.1:8080 w1", "10.1.0.2:8080 w0"));
  // Connections still open, pod grace (60 s) not over: kept.
  now += std::chrono::seconds(59);
  ASSERT_TRUE(restarted->Sync(SyncReason::kRequested).ok());
  EXPECT_EQ(restarted->draining(), 1u);
  // The grace period ends: deleted although connections remain.
  now += std::chrono::seconds(2);
  ASSERT_TRUE(restarted->Sync(SyncReason::kRequested).ok());
  EXPECT_EQ(restarted->draining(), 0u);
  EXPECT_THAT(Dests("10.96.0.10", 80), ElementsAre("10.1.0.1:8080 w1"));

  // Drained connections end the wait early.
  IpvsDestination one;
  one.address = Ip("10.1.0.1");
  one.port = 8080;
  ASSERT_TRUE(ipvs.SetConnections(web, one, 1, 0).ok());
  Upsert(Slice("web", "web-1", {}, {{"http", 8080}}));
  ASSERT_TRUE(restarted->Sync(SyncReason::kPeriodic).ok());
  EXPECT_THAT(Dests("10.96.0.10", 80), ElementsAre("10.1.0.1:8080 w0"));
  ASSERT_TRUE(ipvs.SetConnections(web, one, 0, 0).ok());
  ASSERT_TRUE(restarted->Sync(SyncReason::kRequested).ok());
  EXPECT_THAT(Dests("10.96.0.10", 80), IsEmpty());
}

TEST_F(ProxyControllerTest, ExtensionsSeeChangesRemovalsAndDsr) {
  auto ext = std::make_unique<RecordingExtension>(/*dsr=*/true);
  auto* recorder = ext.get();
  Controller().AddExtension(std::move(ext));
  StandardServices();
  auto dsr = Svc("dsr", "10.96.0.60", {Port("", 80)});
  dsr.external_ips = {"198.51.100.60"};
  dsr.meta.annotations[kAnnotationDsr] = "tunnel";
  Upsert(dsr);
  ASSERT_TRUE(Controller().Init().ok());
  ASSERT_TRUE(Controller().Sync(SyncReason::kStartup).ok());
  EXPECT_TRUE(recorder->last_full);
  EXPECT_EQ(recorder->last_changed.size(), 4u);
  EXPECT_THAT(recorder->dsr_services, ElementsAre("TCP 198.51.100.60:80"));
  // The DSR extension programs it: the plain path leaves its external IP alone.
  EXPECT_THAT(Services(), ::testing::Not(::testing::Contains("TCP 198.51.100.60:80")));
  EXPECT_THAT(DummyAddresses(), ::testing::Not(::testing::Contains("198.51.100.60")));

  Upsert(Slice("web", "web-1", {{"10.1.0.1"}}, {{"http", 8080}}));
  ASSERT_TRUE(Controller().Sync(SyncReason::kRequested).ok());
  EXPECT_FALSE(recorder->last_full);
  EXPECT_THAT(recorder->last_changed, ElementsAre(ServiceName{"default", "web"}));
  EXPECT_THAT(recorder->removed, ElementsAre("TCP 10.96.0.10:80 10.1.0.2:8080"));

  auto removed = Controller().Cleanup();
  ASSERT_TRUE(removed.ok());
  EXPECT_EQ(recorder->cleanups, 1);
  EXPECT_THAT(*removed, ::testing::Contains("recorder state"));
}

// The work an event costs the extensions (firewall, health checks, metrics, conntrack, DSR) is
// bounded by what it touched: at N Services one endpoint change shows them one Service and its
// one virtual service, not N (the snapshot is all they can read).
TEST_F(ProxyControllerTest, AnEventShowsTheExtensionsOnlyWhatItTouched) {
  auto ext = std::make_unique<RecordingExtension>();
  auto* recorder = ext.get();
  Controller().AddExtension(std::move(ext));
  constexpr int kServices = 300;
  auto vip = [](int i) {
    return "10.96." + std::to_string(i / 250) + "." + std::to_string(i % 250 + 1);
  };
  for (int i = 0; i < kServices; ++i) {
    const std::string name = "s" + std::to_string(i);
    Upsert(Svc(name, vip(i), {Port("http", 80)}));
    Upsert(Slice(name, name + "-1", {{"10.1.0.1"}, {"10.1.0.2"}}, {{"http", 8080}}));
  }
  ASSERT_TRUE(Controller().Sync(SyncReason::kStartup).ok());
  EXPECT_TRUE(recorder->last_full);
  EXPECT_EQ(recorder->last_services, static_cast<size_t>(kServices));
  EXPECT_EQ(recorder->last_programmed, static_cast<size_t>(kServices));

  ResetCounts();
  Upsert(Slice("s7", "s7-1", {{"10.1.0.1"}, {"10.1.0.3"}}, {{"http", 8080}}));
  ASSERT_TRUE(Controller().Sync(SyncReason::kRequested).ok());
  EXPECT_EQ(Writes(), 2);  // one destination in, one out
  EXPECT_FALSE(recorder->last_full);
  EXPECT_EQ(recorder->last_services, 1u);
  EXPECT_EQ(recorder->last_programmed, 1u);
  EXPECT_EQ(recorder->last_touched.size(), 1u);
  EXPECT_EQ(recorder->last_ipvs_services, static_cast<size_t>(kServices));

  // A deleted Service: shown as touched but no longer programmed.
  RemoveService("default/s9");
  ASSERT_TRUE(Controller().Sync(SyncReason::kRequested).ok());
  EXPECT_EQ(recorder->last_services, 0u);
  EXPECT_EQ(recorder->last_programmed, 0u);
  EXPECT_EQ(recorder->last_touched.size(), 1u);
  EXPECT_EQ(recorder->last_ipvs_services, static_cast<size_t>(kServices - 1));
}

TEST_F(ProxyControllerTest, PodsAreWatchedOnlyWhenGracefulTerminationOrDsrNeedThem) {
  auto watches_pods = [](const NetworkServicesController& c) {
    auto kinds = c.WatchedKinds();
    return std::find(kinds.begin(), kinds.end(), k8s::ResourceKind::kPod) != kinds.end();
  };
  EXPECT_FALSE(watches_pods(*Make()));
  auto dsr = Make();
  dsr->AddExtension(std::make_unique<RecordingExtension>(/*dsr=*/true));
  EXPECT_TRUE(watches_pods(*dsr));
  config.graceful_termination = true;
  EXPECT_TRUE(watches_pods(*Make()));
}

TEST_F(ProxyControllerTest, WithoutADsrExtensionDsrServicesAreProgrammedNormally) {
  auto dsr = Svc("dsr", "10.96.0.60", {Port("", 80)});
  dsr.external_ips = {"198.51.100.60"};
  dsr.meta.annotations[kAnnotationDsr] = "tunnel";
  Upsert(dsr);
  ASSERT_TRUE(Controller().Sync(SyncReason::kStartup).ok());
  EXPECT_THAT(Services(), ::testing::Contains("TCP 198.51.100.60:80"));
  EXPECT_THAT(DummyAddresses(), ::testing::Contains("198.51.100.60"));
}

TEST_F(ProxyControllerTest, AKernelFailureIsRetriedByAFullSync) {
  StandardServices();
  ASSERT_TRUE(Controller().Sync(SyncReason::kStartup).ok());
  ipvs.failures().FailNext(netlink::FakeIpvs::Op::kAddDestination, "Cannot allocate memory");
  Upsert(Slice("web", "web-1", {{"10.1.0.1"}, {"10.1.0.2"}, {"10.1.0.9"}}, {{"http", 8080}}));
  Upsert(Slice("dns", "dns-1", {{"10.1.0.3"}, {"10.1.0.8"}}, {{"dns", 5353}}, "kube-system"));
  EXPECT_FALSE(Controller().Sync(SyncReason::kRequested).ok());
  // The other service's change went in regardless.
  EXPECT_THAT(Dests("10.96.0.53", 53, netlink::IpvsProtocol::kUdp),
              ElementsAre("10.1.0.3:5353 w1", "10.1.0.8:5353 w1"));
  EXPECT_EQ(Dests("10.96.0.10", 80).size(), 2u);
  ASSERT_TRUE(Controller().Sync(SyncReason::kRequested).ok());  // becomes a full sync
  EXPECT_THAT(Dests("10.96.0.10", 80),
              ElementsAre("10.1.0.1:8080 w1", "10.1.0.2:8080 w1", "10.1.0.9:8080 w1"));
  EXPECT_THAT(Dests("10.96.0.53", 53, netlink::IpvsProtocol::kUdp),
              ElementsAre("10.1.0.3:5353 w1", "10.1.0.8:5353 w1"));
}

TEST_F(ProxyControllerTest, MissingNodeFailsTheSyncWithoutWriting) {
  cluster->nodes.Remove("node-a");
  StandardServices();
  auto status = Controller().Sync(SyncReason::kStartup);
  EXPECT_FALSE(status.ok());
  EXPECT_THAT(status.message(), ::testing::HasSubstr("node-a"));
  EXPECT_EQ(Writes(), 0);
}

TEST_F(ProxyControllerTest, NetworkProgrammingLatencyIsObserved) {
  StandardServices();
  ASSERT_TRUE(Controller().Sync(SyncReason::kStartup).ok());
  auto slice = Slice("web", "web-1", {{"10.1.0.7"}}, {{"http", 8080}});
  slice.meta.annotations[kAnnotationLastChangeTriggerTime] = "2020-01-01T00:00:00Z";
  Upsert(slice);
  ASSERT_TRUE(Controller().Sync(SyncReason::kRequested).ok());
  auto& h =
      registry.GetHistogram("kube_router_controller_network_programming_duration_seconds", "", {});
  EXPECT_EQ(h.Count(), 1u);
  EXPECT_THAT(registry.Render(),
              ::testing::HasSubstr("kube_router_controller_network_programming_duration_seconds_"
                                   "bucket{le=\"+Inf\"} 1"));
  auto t = ParseRfc3339("2026-12-06T05:17:17.250Z");
  ASSERT_TRUE(t.has_value());
  EXPECT_EQ(
      std::chrono::duration_cast<std::chrono::milliseconds>(t->time_since_epoch()).count() % 1000,
      250);
  EXPECT_FALSE(ParseRfc3339("yesterday").has_value());
}

}  // namespace
}  // namespace kr::proxy
