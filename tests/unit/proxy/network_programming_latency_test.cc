// The network-programming latency histogram for changes a full sync absorbed (docs/runtime.md):
// they never reach OnUpdate, so the runner tells the proxy of them after the sync, with when each
// reached the runner. One observation per Service, from its oldest absorbed change to the end of
// the sync that programmed it.
#include <gtest/gtest.h>

#include <atomic>
#include <cstdlib>
#include <string>
#include <vector>

#include "kube_router/proxy/network_services_controller.h"
#include "kube_router/runtime/runner.h"
#include "lib/forwarding_controller.h"
#include "lib/netns.h"  // WaitFor
#include "unit/proxy/network_services_controller_fixture.h"
#include "unit/proxy/proxy_test_util.h"

namespace kr::proxy {
namespace {

using namespace testing;  // NOLINT: builders and the fixture
using namespace std::chrono_literals;
using SteadyTime = std::chrono::steady_clock::time_point;

constexpr char kLatency[] = "kube_router_controller_network_programming_duration_seconds";

class ProgrammingLatencyTest : public ProxyControllerTest {
 protected:
  // The value of one rendered sample line of the histogram (`suffix` is e.g. `_count` or
  // `_bucket{le="0.25"}`); -1 when it is not rendered.
  double Sample(const std::string& suffix) {
    const std::string text = registry.Render();
    const std::string head = std::string(kLatency) + suffix + " ";
    auto at = text.find(head);
    if (at == std::string::npos) return -1;
    return std::strtod(text.c_str() + at + head.size(), nullptr);
  }
  k8s::Event ServiceAdded(const std::string& key) {
    return AddedEvent(k8s::ResourceKind::kService, key, cluster->services.Get(key));
  }
  k8s::Event SliceAdded(const std::string& key) {
    return AddedEvent(k8s::ResourceKind::kEndpointSlice, key, cluster->endpoint_slices.Get(key));
  }
};

// Exact figures: each Service observed once, from its oldest absorbed event; a slice's old
// trigger time is not used; events of other kinds are not observed.
TEST_F(ProgrammingLatencyTest, AbsorbedEventsAreObservedOncePerServiceFromTheirArrival) {
  StandardServices();
  auto web = Slice("web", "web-1", {{"10.1.0.1"}}, {{"http", 8080}});
  web.meta.annotations[kAnnotationLastChangeTriggerTime] = "2020-01-01T00:00:00Z";
  Upsert(web);
  ASSERT_TRUE(Controller().Sync(SyncReason::kStartup).ok());
  const SteadyTime t0 = std::chrono::steady_clock::now();
  auto arrived = [](k8s::Event event, SteadyTime when) {
    event.arrived = when;
    return event;
  };
  std::vector<k8s::Event> absorbed = {
      arrived(SliceAdded("default/web-1"), t0 + 30ms),
      arrived(ServiceAdded("default/web"), t0),              // web's oldest: 200 ms before the end
      arrived(ServiceAdded("kube-system/dns"), t0 + 192ms),  // 8 ms
      arrived(SliceAdded("kube-system/dns-1"), t0 + 195ms),
      arrived(AddedEvent(k8s::ResourceKind::kNode, "node-a", cluster->nodes.Get("node-a")), t0),
  };
  Controller().OnEventsAbsorbed(absorbed, t0 + 200ms);
  EXPECT_EQ(Sample("_count"), 2) << registry.Render();
  EXPECT_EQ(Sample("_bucket{le=\"0.005\"}"), 0);
  EXPECT_EQ(Sample("_bucket{le=\"0.01\"}"), 1);  // dns
  EXPECT_EQ(Sample("_bucket{le=\"0.1\"}"), 1);
  EXPECT_EQ(Sample("_bucket{le=\"0.25\"}"), 2);  // web
  EXPECT_NEAR(Sample("_sum"), 0.208, 1e-6);
}

// An event sync counts from when the event reached the runner (k8s::Event::arrived), so a wait
// in the inbox behind a running sync is part of the latency; an event without that stamp (a
// direct call) counts from when the controller saw it.
TEST_F(ProgrammingLatencyTest, AnEventCountsFromItsArrivalAtTheRunner) {
  StandardServices();
  ASSERT_TRUE(Controller().Sync(SyncReason::kStartup).ok());
  Upsert(Svc("web", "10.96.0.10", {Port("http", 80), Port("metrics", 9090)}));
  k8s::Event waited = ServiceAdded("default/web");
  waited.arrived = std::chrono::steady_clock::now() - 4s;  // queued behind a 4 s sync
  ASSERT_TRUE(Controller().OnUpdate(waited));
  ASSERT_TRUE(Controller().OnUpdate(ServiceAdded("kube-system/dns")));  // no stamp
  ASSERT_TRUE(Controller().Sync(SyncReason::kRequested).ok());
  EXPECT_EQ(Sample("_count"), 2) << registry.Render();
  EXPECT_EQ(Sample("_bucket{le=\"2.5\"}"), 1);  // dns: this sync alone; web: over 4 s
  EXPECT_GE(Sample("_sum"), 4.0);
}

// The proxy decorated as the tests and the bench decorate it, so the runner's call must pass
// through tests/lib's ForwardingController too.
class SyncTimingController : public kr::testing::ForwardingController {
 public:
  using ForwardingController::ForwardingController;
  Status Sync(SyncReason reason) override {
    ++syncs;
    return ForwardingController::Sync(reason);
  }
  std::atomic<int> syncs{0};
};

// The agent's start-up: the informers' initial events queued, the startup sync absorbs them.
// Each Service is observed once, with a latency no longer than the whole start-up took.
TEST_F(ProgrammingLatencyTest, TheStartupSyncObservesTheEventsItAbsorbed) {
  constexpr int kServices = 20;
  std::vector<k8s::Event> initial;
  for (int i = 0; i < kServices; ++i) {
    const std::string name = "s" + std::to_string(i);
    Upsert(Svc(name, "10.96.2." + std::to_string(i + 1), {Port("http", 80)}));
    Upsert(Slice(name, name + "-1", {{"10.1.2." + std::to_string(i + 1)}}, {{"http", 8080}}));
    initial.push_back(ServiceAdded("default/" + name));
    initial.push_back(SliceAdded("default/" + name + "-1"));
  }
  auto timed = std::make_unique<SyncTimingController>(std::make_unique<NetworkServicesController>(
      config, cluster.get(), ProxyDataplane{&ipvs, &links, &routes}, &registry));
  SyncTimingController* counted = timed.get();
  ControllerRunner runner(std::move(timed), nullptr);
  const SteadyTime started = std::chrono::steady_clock::now();
  for (const auto& e : initial) runner.Post(e);
  runner.Start();
  ASSERT_TRUE(kr::testing::WaitFor([&] { return runner.AbsorbedEvents() == initial.size(); }, 60s));
  runner.Stop();
  const double bound =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  EXPECT_EQ(counted->syncs, 1);
  EXPECT_EQ(Sample("_count"), kServices) << registry.Render();
  EXPECT_GE(Sample("_sum"), 0);
  EXPECT_LE(Sample("_sum"), kServices * bound);
}

}  // namespace
}  // namespace kr::proxy
