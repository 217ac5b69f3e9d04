// Random endpoint churn against an oracle: after every event sync, what the incremental
// controller (and its firewall and metrics extensions) left in the stateful fakes must equal
// what a fresh controller programs from scratch into empty fakes. Services and EndpointSlices
// are generated and changed at random: endpoints added and removed, readiness flips,
// terminating endpoints, port renames, slices changing family, Services changing type, policy,
// scheduler and hairpin, Services deleted and re-created.
//
// Reproducible: KR_PROXY_ORACLE_SEED (default fixed) and KR_PROXY_ORACLE_STEPS (default 150)
// choose the run; a failure prints the seed and step.
#include <gtest/gtest.h>

#include <cstdlib>
#include <random>
#include <sstream>

#include "kube_router/netfilter/fakes.h"
#include "kube_router/netlink/fakes.h"
#include "kube_router/proxy/extensions.h"
#include "unit/proxy/proxy_test_util.h"

namespace kr::proxy::oracle_test {
namespace {

using namespace testing;  // NOLINT

uint64_t EnvOr(const char* name, uint64_t fallback) {
  const char* v = std::getenv(name);
  return v != nullptr && *v != '\0' ? std::strtoull(v, nullptr, 10) : fallback;
}

// One controller with its extensions over its own fakes.
struct Node {
  explicit Node(const k8s::Cluster* cluster, const ProxyConfig& config) {
    links.Seed({.name = "eth0", .kind = "", .mtu = 1500, .up = true});
    (void)links.AddAddress({"eth0", Ip("192.0.2.10"), 24, netlink::Scope::kUniverse});
    (void)links.AddAddress({"eth0", Ip("fd00:2::10"), 64, netlink::Scope::kUniverse});
    controller =
        std::make_unique<NetworkServicesController>(config, cluster, netlink_plane(), &registry);
    FirewallDeps deps{cluster, &links, &v4, &v6, &ipset, nullptr};
    controller->AddExtension(MakeFirewallExtension(config, deps));
    controller->AddExtension(MakeMetricsExtension(registry, ipvs));
  }
  ProxyDataplane netlink_plane() { return {&ipvs, &links, &routes}; }

  // Everything observable, as text (sorted where the kernel has no order).
  std::string State() {
    std::ostringstream out;
    auto services = ipvs.ListServices();
    std::vector<std::string> lines;
    for (const auto& s : *services) {
      std::string line = s.ToString() + " flags=" + std::to_string(s.flags) +
                         " timeout=" + std::to_string(s.timeout) + ":";
      auto dests = ipvs.ListDestinations(s);
      std::vector<std::string> ds;
      for (const auto& d : *dests) ds.push_back(" " + d.ToString());
      std::sort(ds.begin(), ds.end());
      for (const auto& d : ds) line += d;
      lines.push_back(line);
    }
    std::vector<std::string> addresses;
    for (const auto& a : links.addresses()) {
      if (a.device == netlink::kKubeDummyName) addresses.push_back("addr " + a.address.ToString());
    }
    std::vector<std::string> route_lines;
    for (const auto& r : routes.routes()) route_lines.push_back("route " + r.ToString());
    for (auto* list : {&lines, &addresses, &route_lines}) {
      std::sort(list->begin(), list->end());
      for (const auto& l : *list) out << l << "\n";
    }
    for (const auto& [name, set] : ipset.sets()) {
      out << "set " << name << ":";
      for (const auto& e : set.entries) out << " " << e.address;
      out << "\n";
    }
    for (auto* tables : {&v4, &v6}) {
      for (const char* table : {"filter", "nat"}) {
        for (const auto& [chain, rules] : tables->table(table).chains) {
          out << table << " " << chain << ":";
          for (const auto& r : rules) out << " [" << r << "]";
          out << "\n";
        }
      }
    }
    // Series in the order of the (fake) kernel's dump, which is not ours to choose.
    std::istringstream metrics(registry.Render());
    std::vector<std::string> series;
    for (std::string line; std::getline(metrics, line);) {
      if (line.starts_with("kube_router_service_")) series.push_back(line);
    }
    std::sort(series.begin(), series.end());
    for (const auto& l : series) out << l << "\n";
    return out.str();
  }

  metrics::Registry registry;
  netlink::FakeIpvs ipvs;
  netlink::FakeLinks links;
  netlink::FakeRouteTable routes{&links};
  netfilter::FakeIptables v4{netfilter::IpFamily::kV4};
  netfilter::FakeIptables v6{netfilter::IpFamily::kV6};
  netfilter::FakeIpset ipset;
  std::unique_ptr<NetworkServicesController> controller;
};

class Churn {
 public:
  Churn(uint64_t seed, k8s::Cluster* cluster, Node* node)
      : random_(seed), cluster_(cluster), node_(node) {}

  void Step() {
    const int service = Pick(kServices);
    switch (Pick(10)) {
      case 0:
        ChangeService(service);
        break;
      case 1:
        if (Pick(4) == 0) {
          DeleteService(service);
        } else {
          ChangeService(service);
        }
        break;
      case 2:
        ChangeSliceFamilyOrPorts(service);
        break;
      default:
        ChangeEndpoints(service);
    }
  }

  static constexpr int kServices = 12;

  void CreateAll() {
    for (int i = 0; i < kServices; ++i) {
      ChangeService(i);
      for (int s = 0; s < 2; ++s) ChangeEndpoints(i, s);
    }
  }

 private:
  int Pick(int n) { return static_cast<int>(random_() % static_cast<uint32_t>(n)); }
  static std::string Name(int i) { return "svc" + std::to_string(i); }
  static std::string SliceName(int i, int s) { return Name(i) + "-" + std::to_string(s); }

  void ChangeService(int i) {
    k8s::Service svc;
    svc.meta.name = Name(i);
    svc.meta.namespace_ = i % 3 == 0 ? "kube-system" : "default";
    std::vector<std::string> cluster_ips = {"10.96.0." + std::to_string(10 + i)};
    if (Pick(3) == 0) cluster_ips.push_back("fd00:96::" + std::to_string(10 + i));
    svc.cluster_ips = k8s::AddressList(cluster_ips);
    const char* types[] = {"ClusterIP", "NodePort", "LoadBalancer"};
    svc.type = types[Pick(3)];
    const char* names[] = {"http", "https", "dns"};
    const char* protocols[] = {"TCP", "UDP", "TCP"};
    const int ports = 1 + Pick(2);
    for (int p = 0; p < ports; ++p) {
      const int which = (i + p) % 3;
      k8s::ServicePort port;
      port.name = names[which];
      port.port = 80 + which;
      port.protocol = protocols[which];
      if (svc.type != "ClusterIP") port.node_port = 30000 + i * 4 + p;
      svc.ports.push_back(port);
    }
    if (svc.type == "LoadBalancer") {
      svc.load_balancer_ingress = {{"203.0.113." + std::to_string(10 + Pick(4)), ""}};
      if (Pick(2) == 0) {
        svc.external_traffic_policy = "Local";
        svc.health_check_node_port = 32000 + i;
      }
    }
    if (Pick(4) == 0) svc.external_ips = {"198.51.100." + std::to_string(1 + Pick(3))};
    if (Pick(4) == 0) svc.internal_traffic_policy = "Local";
    if (Pick(4) == 0) svc.meta.annotations[kAnnotationScheduler] = Pick(2) ? "lc" : "sh";
    if (Pick(4) == 0) svc.meta.annotations[kAnnotationHairpin] = "";
    if (Pick(5) == 0) {
      svc.session_affinity = "ClientIP";
      svc.session_affinity_timeout_seconds = 100 + Pick(3);
    }
    Put(svc);
  }

  void DeleteService(int i) {
    const std::string key = (i % 3 == 0 ? "kube-system/" : "default/") + Name(i);
    auto old = cluster_->services.Remove(key);
    Post(k8s::ResourceKind::kService, key, old, std::shared_ptr<const k8s::Service>());
  }

  std::shared_ptr<const k8s::EndpointSlice> CurrentSlice(int i, int s) {
    const std::string ns = i % 3 == 0 ? "kube-system/" : "default/";
    return cluster_->endpoint_slices.Get(ns + SliceName(i, s));
  }

  // Adds, removes, flips readiness/serving/terminating, moves endpoints between nodes.
  void ChangeEndpoints(int i, int s = -1) {
    if (s < 0) s = Pick(2);
    auto current = CurrentSlice(i, s);
    k8s::EndpointSlice slice = current ? *current : FreshSlice(i, s, false);
    const bool v6 = slice.address_type == "IPv6";
    const int edits = 1 + Pick(3);
    for (int e = 0; e < edits; ++e) {
      const int what = Pick(5);
      if (what == 0 || slice.endpoints.empty()) {
        k8s::Endpoint ep;
        const int host = 1 + Pick(20);
        ep.addresses = {v6 ? "fd00:244::" + std::to_string(i * 32 + host)
                           : "10.244." + std::to_string(i) + "." + std::to_string(host)};
        ep.node_name = Pick(2) ? "node-a" : "node-b";
        slice.endpoints.push_back(ep);
      } else if (what == 1) {
        slice.endpoints.erase(slice.endpoints.begin() +
                              Pick(static_cast<int>(slice.endpoints.size())));
      } else {
        auto& ep =
            slice.endpoints[static_cast<size_t>(Pick(static_cast<int>(slice.endpoints.size())))];
        switch (Pick(4)) {
          case 0:
            ep.ready = !ep.ready;
            break;
          case 1:
            ep.terminating = !ep.terminating;
            if (ep.terminating) ep.ready = false;
            break;
          case 2:
            ep.serving = !ep.serving;
            break;
          default:
            ep.node_name = ep.node_name == "node-a" ? "node-b" : "node-a";
        }
      }
    }
    Put(slice);
  }

  // Port renames (a name no Service port has), new target ports, a slice changing family,
  // or the slice deleted.
  void ChangeSliceFamilyOrPorts(int i) {
    const int s = Pick(2);
    switch (Pick(4)) {
      case 0: {
        auto current = CurrentSlice(i, s);
        k8s::EndpointSlice slice = FreshSlice(i, s, !current || current->address_type == "IPv4");
        Put(slice);
        ChangeEndpoints(i, s);
        break;
      }
      case 1: {
        auto current = CurrentSlice(i, s);
        if (!current) return;
        k8s::EndpointSlice slice = *current;
        auto& port = slice.ports[static_cast<size_t>(Pick(static_cast<int>(slice.ports.size())))];
        port.name = port.name == "http" ? "web" : (port.name == "web" ? "http" : port.name);
        Put(slice);
        break;
      }
      case 2: {
        auto current = CurrentSlice(i, s);
        if (!current) return;
        k8s::EndpointSlice slice = *current;
        for (auto& port : slice.ports) port.port = 8000 + Pick(3);
        Put(slice);
        break;
      }
      default: {
        const std::string key = (i % 3 == 0 ? "kube-system/" : "default/") + SliceName(i, s);
        auto old = cluster_->endpoint_slices.Remove(key);
        Post(k8s::ResourceKind::kEndpointSlice, key, old,
             std::shared_ptr<const k8s::EndpointSlice>());
      }
    }
  }

  k8s::EndpointSlice FreshSlice(int i, int s, bool v6) {
    k8s::EndpointSlice slice = testing::Slice(
        Name(i), SliceName(i, s), {}, {{"http", 8080}, {"https", 8443}, {"dns", 5353}},
        i % 3 == 0 ? "kube-system" : "default", v6 ? "IPv6" : "IPv4");
    slice.ports[2].protocol = "UDP";
    return slice;
  }

  template <typename T>
  void Put(const T& object) {
    std::shared_ptr<const T> p = std::make_shared<T>(object);
    std::shared_ptr<const T> old;
    if constexpr (std::is_same_v<T, k8s::Service>) {
      old = cluster_->services.Upsert(object.meta.Key(), p);
      Post(k8s::ResourceKind::kService, object.meta.Key(), old, p);
    } else {
      old = cluster_->endpoint_slices.Upsert(object.meta.Key(), p);
      Post(k8s::ResourceKind::kEndpointSlice, object.meta.Key(), old, p);
    }
  }

  template <typename T>
  void Post(k8s::ResourceKind kind, const std::string& key, std::shared_ptr<const T> old_obj,
            std::shared_ptr<const T> new_obj) {
    k8s::Event e;
    e.kind = kind;
    e.key = key;
    e.type = !old_obj ? k8s::EventType::kAdded
                      : (new_obj ? k8s::EventType::kUpdated : k8s::EventType::kDeleted);
    if (old_obj) e.old_object = old_obj;
    if (new_obj) e.new_object = new_obj;
    node_->controller->OnUpdate(e);
  }

  std::mt19937 random_;
  k8s::Cluster* cluster_;
  Node* node_;
};

TEST(ProxyOracle, IncrementalSyncsEqualAFreshFullBuildUnderRandomChurn) {
  const uint64_t seed = EnvOr("KR_PROXY_ORACLE_SEED", 20261206);
  const uint64_t steps = EnvOr("KR_PROXY_ORACLE_STEPS", 150);
  SCOPED_TRACE("KR_PROXY_ORACLE_SEED=" + std::to_string(seed));
  ProxyConfig config = Config("node-a");
  // The periodic verification in steps of 3 items: its steps run between the event syncs below,
  // which must still leave exactly what a fresh controller programs.
  config.verify_step_items = 3;
  // Full syncs (the start-up, every fresh build) diff and write in chunks of 2 virtual
  // services: chunked, they must program what the event syncs do.
  config.full_sync_chunk = 2;
  config.enable_ipv6 = true;
  auto cluster = k8s::MakeCluster();
  auto node_object = NodeObj("node-a", {"192.0.2.10", "fd00:2::10"});
  node_object.pod_cidrs = {"10.244.1.0/24", "fd00:244:1::/64"};
  cluster->nodes.Upsert("node-a", std::make_shared<k8s::Node>(node_object));

  Node incremental(cluster.get(), config);
  Churn churn(seed, cluster.get(), &incremental);
  churn.CreateAll();
  ASSERT_TRUE(incremental.controller->Sync(SyncReason::kStartup).ok());
  int event_syncs = 0;
  for (uint64_t step = 0; step < steps; ++step) {
    SCOPED_TRACE("step " + std::to_string(step));
    const int changes = 1 + static_cast<int>(step % 3);
    for (int c = 0; c < changes; ++c) churn.Step();
    auto synced = incremental.controller->Sync(SyncReason::kRequested);
    ASSERT_TRUE(synced.ok()) << synced.message();
    ++event_syncs;

    Node fresh(cluster.get(), config);
    auto built = fresh.controller->Sync(SyncReason::kStartup);
    ASSERT_TRUE(built.ok()) << built.message();
    ASSERT_EQ(incremental.State(), fresh.State());
    ASSERT_EQ(incremental.controller->programmed(), fresh.controller->programmed());

    // Now and then the periodic sync: it verifies against the fakes and finds nothing to write.
    if (step % 25 == 24) {
      const int netfilter_writes = incremental.ipset.apply_calls() + incremental.v4.apply_calls() +
                                   incremental.v6.apply_calls();
      const std::string before = incremental.State();
      ASSERT_TRUE(incremental.controller->Sync(SyncReason::kPeriodic).ok());
      EXPECT_EQ(incremental.State(), before);
      EXPECT_EQ(incremental.ipset.apply_calls() + incremental.v4.apply_calls() +
                    incremental.v6.apply_calls(),
                netfilter_writes);
    }
  }
  EXPECT_EQ(event_syncs, static_cast<int>(steps));
}

}  // namespace
}  // namespace kr::proxy::oracle_test
