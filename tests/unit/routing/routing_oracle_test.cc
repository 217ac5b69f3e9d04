// A seeded random walk over the routes controller (fakes + FakeSpeaker), checked after every
// step against the independent model of docs/routing.md in routing_oracle_model.h: which iBGP
// and external peers the node has, what it advertises, which learned paths the import policy
// keeps, and which proto 17 routes, tun-* tunnels and FoU ports the kernel ends up with.
//
//   KR_ROUTING_ORACLE_SEED=N   first seed (default 1)
//   KR_ROUTING_ORACLE_SEEDS=K  how many seeds from there (default 40)
//   KR_ROUTING_ORACLE_STEPS=S  steps per seed (default 20)
// A failure prints the seed, the step and every action so far; rerun that one seed with
// KR_ROUTING_ORACLE_SEED=N KR_ROUTING_ORACLE_SEEDS=1.
#include <gtest/gtest.h>

#include <cstdlib>
#include <iostream>
#include <iterator>
#include <memory>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "kube_router/base/log.h"
#include "kube_router/netlink/fakes.h"
#include "kube_router/routing/network_routes_controller.h"
#include "unit/routing/fake_speaker.h"
#include "unit/routing/routing_oracle_model.h"

namespace kr::routing::oracle {
namespace {

using routing::testing::FakeSpeaker;

uint64_t EnvOr(const char* name, uint64_t fallback) {
  const char* value = std::getenv(name);
  if (value == nullptr || *value == '\0') return fallback;
  return std::strtoull(value, nullptr, 10);
}

// Drives the controller through one seed's walk: every change drawn in the World goes to the
// controller's Node cache or the speaker, then a sync, then the model and the fakes must agree.
class RoutingOracle {
 public:
  RoutingOracle(uint64_t seed, Coverage& coverage)
      : seed_(seed), world_(seed), rng_(world_.rng()), coverage_(coverage) {}

  // Runs the walk; returns an empty string, or what went wrong with the whole history.
  std::string Run(int steps) {
    Start();
    Log("start: " + world_.Describe());
    if (auto problem = SyncAndCheck(SyncReason::kStartup); !problem.empty()) return problem;
    for (int step = 1; step <= steps; ++step) {
      step_ = step;
      const int action = rng_.Below(100);
      if (action < 25) {
        ChangeNodes();
      } else if (action < 80) {
        const int count = 1 + rng_.Below(3);
        for (int i = 0; i < count; ++i) Announce();
      } else {
        Withdraw();
      }
      if (auto problem = SyncAndCheck(SyncReason::kRequested); !problem.empty()) return problem;
      // A full resync (the periodic repair) plans the same and writes nothing.
      const size_t route_writes = routes_.applied_changes();
      const auto links_before = links_.links();
      const auto ports_before = fou_.ports();
      if (auto problem = SyncAndCheck(SyncReason::kPeriodic); !problem.empty()) return problem;
      if (routes_.applied_changes() != route_writes || links_.links() != links_before ||
          fou_.ports() != ports_before) {
        return Failure("a full resync changed the kernel state of a routes-only sync");
      }
    }
    return "";
  }

 private:
  // The generated world into the fakes and a new controller.
  void Start() {
    world_.Generate();
    links_.Seed({"eth0", 0, "", 1500, true, std::nullopt, std::nullopt});
    for (const auto& route : world_.UnderlayRoutes()) routes_.Seed(route);
    for (const auto& [name, node] : world_.nodes()) {
      cluster_->nodes.Upsert(node.ToApi()->meta.Key(), node.ToApi());
    }
    controller_ = std::make_unique<NetworkRoutesController>(
        world_.Flags(), cluster_.get(),
        RoutingDataplane{&routes_, &links_, nullptr, nullptr, nullptr, nullptr, &fou_},
        [this](const bgp::GlobalConfig& global) {
          auto speaker = std::make_unique<FakeSpeaker>(global);
          speaker_ = speaker.get();
          return speaker;
        },
        nullptr);
    controller_->SetSyncRequester([] {});
    (void)controller_->Init();
  }

  void Put(const WorldNode& node) {
    auto api = node.ToApi();
    const bool existed = cluster_->nodes.Upsert(api->meta.Key(), api) != nullptr;
    Event(existed ? k8s::EventType::kUpdated : k8s::EventType::kAdded, api->meta.Key());
  }
  void Event(k8s::EventType type, const std::string& key) {
    k8s::Event event;
    event.kind = k8s::ResourceKind::kNode;
    event.type = type;
    event.key = key;
    controller_->OnUpdate(event);
  }

  void ChangeNodes() {
    auto& nodes = world_.nodes();
    const int what = rng_.Below(4);
    const auto others = world_.OtherNodes();
    if (what == 0 || others.empty()) {
      world_.AddRandomNode();
      for (const auto& [name, node] : nodes) {
        if (!cluster_->nodes.Get(name)) {
          Put(node);
          Log("add " + World::Describe(node));
        }
      }
    } else if (what == 1) {
      const std::string name = rng_.Pick(others);
      nodes.erase(name);
      cluster_->nodes.Remove(name);
      Event(k8s::EventType::kDeleted, name);
      Log("remove " + name);
    } else if (what == 2) {
      WorldNode& node = nodes[rng_.Pick(others)];
      world_.RandomizeNode(node);
      Put(node);
      Log("change " + World::Describe(node));
    } else {
      WorldNode& self = nodes[World::SelfName()];
      world_.RandomPodCidrs(self, 0);
      Put(self);
      Log("change this node " + World::Describe(self));
    }
  }

  void Announce() {
    const auto announcement = world_.RandomAnnouncement();
    if (!announcement) return;
    const auto& [from, prefix, next_hop] = *announcement;
    const bool accepted = speaker_->Announce(from, prefix, next_hop);
    if (world_.ExpectAccepted(from, prefix, next_hop)) {
      world_.rib()[prefix] = {from, next_hop};
    } else {
      ++coverage_.refused;
    }
    Log("announce " + prefix.ToString() + " via " + next_hop.ToString() + " from " +
        from.ToString() + (accepted ? "" : " (refused)"));
  }

  void Withdraw() {
    auto& rib = world_.rib();
    if (rib.empty()) return Announce();
    auto it = rib.begin();
    std::advance(it, rng_.Below(static_cast<int>(rib.size())));
    Log("withdraw " + it->first.ToString());
    speaker_->Withdraw(it->first);
    rib.erase(it);
    ++coverage_.withdrawn;
  }

  Expected Observe() const {
    Expected seen;
    for (const auto& [address, peer] : speaker_->peers()) {
      seen.peers.insert(address.ToString() +
                        (peer.description == "external" ? " external" : " node"));
    }
    for (const auto& [prefix, path] : speaker_->paths()) {
      seen.advertised.insert(prefix.ToString() + " via " +
                             (path.next_hop ? path.next_hop->ToString() : "self"));
    }
    for (const auto& route : speaker_->BestPaths()) {
      seen.rib.insert(route.prefix.ToString() + " via " + route.next_hop.ToString());
    }
    for (const auto& route : routes_.RoutesWithProtocol(kRouteProtocol)) {
      std::string text = route.destination.ToString();
      if (route.gateway) text += " via " + route.gateway->ToString();
      if (!route.device.empty() && !route.gateway) text += " dev " + route.device;
      if (route.source) text += " src " + route.source->ToString();
      if (route.metric != 0) text += " metric " + std::to_string(route.metric);
      if (route.table != netlink::kMainTable) text += " table " + std::to_string(route.table);
      seen.routes.insert(text);
    }
    for (const auto& [name, link] : links_.links()) {
      if (link.kind != "ipip" && link.kind != "ip6tnl") continue;
      std::string text = name + " " + link.kind + " " +
                         (link.tunnel_local ? link.tunnel_local->ToString() : "?") + " -> " +
                         (link.tunnel_remote ? link.tunnel_remote->ToString() : "?");
      const auto& encap = link.tunnel_encap;
      if (encap.type == netlink::TunnelEncapType::kGue && encap.source_port == 0) {
        text += " gue:" + std::to_string(encap.destination_port);
      } else if (encap.type != netlink::TunnelEncapType::kNone) {
        text += " other-encap";
      }
      seen.tunnels.insert(text + (link.up ? " up" : " down"));
    }
    for (const auto& port : fou_.ports()) {
      seen.fou_ports.insert(std::string(port.family == Family::kV4 ? "ipv4" : "ipv6") +
                            (port.kind == netlink::FouKind::kGue ? " gue " : " direct ") +
                            std::to_string(port.port));
    }
    return seen;
  }

  std::string SyncAndCheck(SyncReason reason) {
    Status status = controller_->Sync(reason);
    if (!status.ok()) return Failure("Sync failed: " + status.message());
    return Check();
  }

  std::string Check() {
    // The model's peers follow the Nodes of the last full sync; every Node change here is
    // followed by a sync, so that is now.
    coverage_.peer_gone += world_.SyncPeers();
    const Expected expected = world_.Expect(&coverage_);
    const Expected seen = Observe();
    std::string diff;
    auto compare = [&](const char* what, const std::set<std::string>& want,
                       const std::set<std::string>& have) {
      if (want == have) return;
      diff += std::string("  ") + what + ": expected\n" + Join(want) + "  got\n" + Join(have);
    };
    compare("peers", expected.peers, seen.peers);
    compare("advertised", expected.advertised, seen.advertised);
    compare("learned paths", expected.rib, seen.rib);
    compare("routes", expected.routes, seen.routes);
    compare("tunnels", expected.tunnels, seen.tunnels);
    compare("fou ports", expected.fou_ports, seen.fou_ports);
    return diff.empty() ? "" : Failure(diff);
  }

  std::string Failure(const std::string& what) const {
    std::ostringstream out;
    out << "routing oracle: seed " << seed_ << " failed at step " << step_
        << " (rerun: KR_ROUTING_ORACLE_SEED=" << seed_ << " KR_ROUTING_ORACLE_SEEDS=1)\n"
        << what << (what.empty() || what.back() == '\n' ? "" : "\n") << "history:\n";
    for (const auto& line : history_) out << "  " << line << "\n";
    return out.str();
  }

  void Log(const std::string& line) { history_.push_back(std::to_string(step_) + ": " + line); }

  const uint64_t seed_;
  World world_;
  Rng& rng_;
  Coverage& coverage_;
  int step_ = 0;
  std::vector<std::string> history_;

  std::unique_ptr<k8s::Cluster> cluster_ = k8s::MakeCluster();
  netlink::FakeLinks links_;
  netlink::FakeRouteTable routes_{&links_};
  netlink::FakeFouPorts fou_;
  FakeSpeaker* speaker_ = nullptr;
  std::unique_ptr<NetworkRoutesController> controller_;
};

TEST(RoutingOracleTest, RandomWalksMatchTheModel) {
  const uint64_t first = EnvOr("KR_ROUTING_ORACLE_SEED", 1);
  const uint64_t seeds = EnvOr("KR_ROUTING_ORACLE_SEEDS", 40);
  const int steps = static_cast<int>(EnvOr("KR_ROUTING_ORACLE_STEPS", 20));
  // Thousands of syncs: only errors are worth printing.
  spdlog::set_level(spdlog::level::err);
  Coverage coverage;
  std::string problem;
  for (uint64_t seed = first; seed < first + seeds && problem.empty(); ++seed) {
    RoutingOracle oracle(seed, coverage);
    problem = oracle.Run(steps);
  }
  spdlog::set_level(spdlog::level::info);
  ASSERT_TRUE(problem.empty()) << problem;
  std::cout << "routing oracle: seeds " << first << ".." << first + seeds - 1 << ", " << steps
            << " steps each: " << coverage.ToString() << "\n";
  if (seeds * static_cast<uint64_t>(steps) >= 200) {
    for (int count : {coverage.direct, coverage.tunnel4, coverage.tunnel6, coverage.gateway,
                      coverage.unroutable, coverage.fou, coverage.refused, coverage.withdrawn,
                      coverage.peer_gone}) {
      EXPECT_GT(count, 0) << "a branch of the model was never exercised: " << coverage.ToString();
    }
  }
}

}  // namespace
}  // namespace kr::routing::oracle
