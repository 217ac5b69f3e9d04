// The routes controller's unit-test fixture, shared by network_routes_controller_test.cc (the
// single-stack cases), dual_stack_controller_test.cc and overlay_encap_controller_test.cc: this
// node n1 on 192.0.2.1/24 (default route via 192.0.2.254), n2 on the same subnet and n3 on
// another, over the netlink and netfilter fakes and FakeSpeaker.
#pragma once

#include <gtest/gtest.h>
#include <spdlog/sinks/ostream_sink.h>
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <memory>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "kube_router/netfilter/fakes.h"
#include "kube_router/netlink/fakes.h"
#include "kube_router/routing/cni_config.h"
#include "kube_router/routing/network_routes_controller.h"
#include "lib/files.h"
#include "unit/routing/fake_speaker.h"

namespace kr::routing::testing {

inline IpAddress Ip(const std::string& text) { return *IpAddress::Parse(text); }
inline IpPrefix Cidr(const std::string& text) { return *IpPrefix::Parse(text); }

inline std::shared_ptr<const k8s::Node> MakeNode(const std::string& name, const std::string& ip,
                                                 const std::string& cidr,
                                                 k8s::Labels annotations = {}) {
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

// Captures what the code under test logs while it lives (spdlog's default logger).
class CapturedLog {
 public:
  CapturedLog() : previous_(spdlog::default_logger()) {
    spdlog::set_default_logger(std::make_shared<spdlog::logger>(
        "test", std::make_shared<spdlog::sinks::ostream_sink_mt>(out_)));
  }
  ~CapturedLog() { spdlog::set_default_logger(previous_); }
  CapturedLog(const CapturedLog&) = delete;
  CapturedLog& operator=(const CapturedLog&) = delete;

  std::string Text() const { return out_.str(); }
  // How many times `needle` was logged.
  size_t Count(const std::string& needle) const {
    const std::string text = out_.str();
    size_t n = 0;
    for (auto at = text.find(needle); at != std::string::npos; at = text.find(needle, at + 1)) ++n;
    return n;
  }

 private:
  std::ostringstream out_;
  std::shared_ptr<spdlog::logger> previous_;
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
    SeedUnderlay("192.0.2.1", "192.0.2.0/24", "192.0.2.254");

    AddNode(MakeNode("n1", "192.0.2.1", "10.1.1.0/24"));
    AddNode(MakeNode("n2", "192.0.2.2", "10.1.2.0/24"));
    AddNode(MakeNode("n3", "198.51.100.3", "10.1.3.0/24"));
  }
  // This node's address `ip` in `subnet` on eth0, the kernel's connected route for it and a
  // default route of that family via `gateway`.
  void SeedUnderlay(const std::string& ip, const std::string& subnet, const std::string& gateway) {
    const IpPrefix connected_subnet = Cidr(subnet);
    EXPECT_TRUE(
        links_.AddAddress({"eth0", Ip(ip), connected_subnet.length(), netlink::Scope::kUniverse})
            .ok());
    netlink::Route connected;
    connected.destination = connected_subnet;
    connected.device = "eth0";
    connected.protocol = netlink::kProtocolKernel;
    connected.scope = netlink::Scope::kLink;
    routes_.Seed(connected);
    netlink::Route fallback;
    fallback.destination = Cidr(connected_subnet.is_v4() ? "0.0.0.0/0" : "::/0");
    fallback.gateway = Ip(gateway);
    fallback.device = "eth0";
    fallback.protocol = netlink::kProtocolBoot;
    routes_.Seed(fallback);
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

  // A Service default/<name> in the cache with these cluster IPs (the first one also as its
  // clusterIP, as the API server fills it).
  void AddService(const std::string& name, const std::vector<std::string>& cluster_ips) {
    auto service = std::make_shared<k8s::Service>();
    service->meta.name = name;
    service->meta.namespace_ = "default";
    service->cluster_ips = k8s::AddressList(cluster_ips);
    cluster_->services.Upsert("default/" + name, service);
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

  // Our tunnels of one kind (ipip, ip6tnl) as "name up|down".
  std::vector<std::string> Tunnels(const std::string& kind = "ipip") {
    std::vector<std::string> out;
    for (const auto& [name, link] : links_.links()) {
      if (link.kind == kind) out.push_back(name + (link.up ? " up" : " down"));
    }
    return out;
  }

  // The CNI config file the controller wrote ("" when there is none).
  std::string CniConfText() const { return kr::testing::ReadFile(config_.cni_conf_file); }

  // The addresses on kube-bridge, as "10.1.1.1/24 dev kube-bridge".
  std::set<std::string> BridgeAddresses() {
    std::set<std::string> out;
    for (const auto& address : links_.addresses()) {
      if (address.device == kBridgeName) out.insert(address.ToString());
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

}  // namespace kr::routing::testing
