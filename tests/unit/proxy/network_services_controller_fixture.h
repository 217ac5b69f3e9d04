// The fixture of the NetworkServicesController tests (network_services_controller_*_test.cc):
// a controller on node-a over the stateful IPVS, link and route fakes, with the cluster's caches
// fed through Upsert (which also posts the event once the controller exists), the fakes' own
// write and read counters, and an extension that records what the controller shows it.
#pragma once

#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "kube_router/k8s/store.h"
#include "kube_router/metrics/registry.h"
#include "kube_router/netlink/fakes.h"
#include "kube_router/proxy/network_services_controller.h"
#include "unit/proxy/proxy_test_util.h"

namespace kr::proxy::testing {

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
  void OnDestinationRemoved(const netlink::IpvsService& s,
                            const netlink::IpvsDestination& d) override {
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
    netlink::IpvsService s;
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

  // The IPVS service of web's port 80 (TCP 10.96.0.10:80), as StandardServices program it.
  static netlink::IpvsService WebPort80() {
    netlink::IpvsService web;
    web.address = Ip("10.96.0.10");
    web.port = 80;
    return web;
  }

  // Changes the kernel behind the controller's back once StandardServices are programmed: web
  // loses its backend 10.1.0.1 and gets scheduler lc, the dns service goes, the api VIP's route
  // gets a source. A full reconcile repairs all of it. Call through ASSERT_NO_FATAL_FAILURE.
  void DriftStandardServices() {
    netlink::IpvsService web = WebPort80();
    netlink::IpvsDestination gone;
    gone.address = Ip("10.1.0.1");
    gone.port = 8080;
    ASSERT_TRUE(ipvs.DeleteDestination(web, gone).ok());
    web.scheduler = "lc";
    ASSERT_TRUE(ipvs.UpdateService(web).ok());
    netlink::IpvsService dns;
    dns.address = Ip("10.96.0.53");
    dns.port = 53;
    dns.protocol = netlink::IpvsProtocol::kUdp;
    ASSERT_TRUE(ipvs.DeleteService(dns).ok());
    const netlink::Route* api_route = VipRoute("10.96.0.1");
    ASSERT_NE(api_route, nullptr);
    netlink::Route bad_route = *api_route;
    bad_route.source = Ip("10.96.0.1");
    ASSERT_TRUE(routes.Replace(bad_route).ok());
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

}  // namespace kr::proxy::testing
