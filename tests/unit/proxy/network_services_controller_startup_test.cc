// The service proxy run by the agent's ControllerRunner over the stateful fakes, started the way
// the agent starts it: the caches full and one event per object queued before the runner starts
// (issue 11). The startup sync reads every Service from the caches, so those events must not
// rebuild every Service a second time; a change made while that sync runs must still be
// programmed.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <atomic>
#include <functional>
#include <mutex>

#include "kube_router/netlink/fakes.h"
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
using ::testing::ElementsAre;

// The proxy as the runner sees it, counting what the runner asks of it.
class CountingController : public kr::testing::ForwardingController {
 public:
  using ForwardingController::ForwardingController;
  bool OnUpdate(const k8s::Event& event) override {
    ++updates;
    return ForwardingController::OnUpdate(event);
  }
  Status Sync(SyncReason reason) override {
    Status s = ForwardingController::Sync(reason);
    {
      std::lock_guard lock(mu_);
      reasons_.push_back(reason);
    }
    ++syncs;
    return s;
  }
  std::vector<SyncReason> reasons() {
    std::lock_guard lock(mu_);
    return reasons_;
  }

  std::atomic<int> updates{0}, syncs{0};

 private:
  std::mutex mu_;
  std::vector<SyncReason> reasons_;
};

// A fake kernel that runs a hook on the first read of the IPVS services: inside the startup
// sync, after it read the caches.
class HookedIpvs : public netlink::FakeIpvs {
 public:
  Result<std::vector<netlink::IpvsService>> ListServices() override {
    if (hook) std::exchange(hook, nullptr)();
    return FakeIpvs::ListServices();
  }
  std::function<void()> hook;
};

constexpr int kServices = 50;

std::string Name(int i) { return "s" + std::to_string(i); }
std::string Vip(int i) { return "10.96.1." + std::to_string(i + 1); }

class ProxyStartupTest : public ProxyControllerTest {
 protected:
  // The informers' initial list: the caches, and one Added per object for the runner.
  void FillCaches() {
    for (int i = 0; i < kServices; ++i) {
      Upsert(Svc(Name(i), Vip(i), {Port("http", 80)}));
      Upsert(
          Slice(Name(i), Name(i) + "-1", {{"10.1.1." + std::to_string(i + 1)}}, {{"http", 8080}}));
    }
    initial.push_back(AddedEvent(k8s::ResourceKind::kNode, "node-a", cluster->nodes.Get("node-a")));
    for (const auto& key : cluster->services.Keys()) {
      initial.push_back(AddedEvent(k8s::ResourceKind::kService, key, cluster->services.Get(key)));
    }
    for (const auto& key : cluster->endpoint_slices.Keys()) {
      initial.push_back(
          AddedEvent(k8s::ResourceKind::kEndpointSlice, key, cluster->endpoint_slices.Get(key)));
    }
  }

  // Starts the proxy under a runner as the agent does; `during_startup_sync` runs inside the
  // startup sync after its cache reads.
  void Start(std::function<void(ControllerRunner&)> during_startup_sync) {
    auto proxy = std::make_unique<NetworkServicesController>(
        config, cluster.get(), ProxyDataplane{&kernel, &links, &routes}, &registry);
    auto extension = std::make_unique<RecordingExtension>();
    recorder = extension.get();
    proxy->AddExtension(std::move(extension));
    auto counting = std::make_unique<CountingController>(std::move(proxy));
    counted = counting.get();
    runner = std::make_unique<ControllerRunner>(std::move(counting), nullptr);
    for (const auto& e : initial) runner->Post(e);
    if (during_startup_sync)
      kernel.hook = [this, during_startup_sync] { during_startup_sync(*runner); };
    runner->Start();
  }

  std::vector<std::string> Destinations(const std::string& vip) {
    netlink::IpvsService s;
    s.address = Ip(vip);
    s.port = 80;
    std::vector<std::string> out;
    auto list = kernel.ListDestinations(s);
    if (!list.ok()) return {"<" + list.error() + ">"};
    for (const auto& d : *list) out.push_back(DestinationId{d.address, d.port}.ToString());
    return out;
  }
  bool HasService(const std::string& vip) {
    // (The Result is kept: a range-for over `*temporary` would outlive the temporary.)
    auto services = kernel.FakeIpvs::ListServices();
    for (const auto& s : *services) {
      if (s.address == Ip(vip)) return true;
    }
    return false;
  }

  HookedIpvs kernel;
  std::vector<k8s::Event> initial;
  RecordingExtension* recorder = nullptr;
  CountingController* counted = nullptr;
  std::unique_ptr<ControllerRunner> runner;
};

// After the startup sync the queued initial events are absorbed: no OnUpdate, no second sync
// (which used to rebuild every Service); the first change after start is one Service's.
TEST_F(ProxyStartupTest, InitialEventsDoNotRebuildEveryServiceAgain) {
  FillCaches();
  Start(nullptr);
  ASSERT_TRUE(
      kr::testing::WaitFor([&] { return runner->AbsorbedEvents() == initial.size(); }, 60s));
  EXPECT_EQ(counted->updates, 0);
  // The first change after start: programmed by a sync that rebuilds that one Service.
  Upsert(Slice(Name(7), Name(7) + "-1", {{"10.2.0.7"}}, {{"http", 8080}}));
  runner->Post(AddedEvent(k8s::ResourceKind::kEndpointSlice, "default/s7-1",
                          cluster->endpoint_slices.Get("default/s7-1")));
  ASSERT_TRUE(kr::testing::WaitFor([&] { return counted->syncs == 2; }, 60s));
  runner->Stop();  // the fakes are read from here on, off the controller's thread
  EXPECT_EQ(counted->updates, 1);
  EXPECT_THAT(counted->reasons(), ElementsAre(SyncReason::kStartup, SyncReason::kRequested));
  EXPECT_THAT(recorder->last_changed, ElementsAre(ServiceName{"default", Name(7)}));
  EXPECT_THAT(Destinations(Vip(7)), ElementsAre("10.2.0.7:8080"));
}

// The race: a slice changed and a Service deleted while the startup sync runs, after it read
// the caches. Both events are delivered and programmed (the deletion although the Service's
// Added was queued before the read); every other initial event is absorbed.
TEST_F(ProxyStartupTest, ChangesDuringTheStartupSyncAreProgrammed) {
  FillCaches();
  Start([this](ControllerRunner& r) {
    Upsert(Slice(Name(7), Name(7) + "-1", {{"10.2.0.7"}}, {{"http", 8080}}));
    k8s::Event changed = AddedEvent(k8s::ResourceKind::kEndpointSlice, "default/s7-1",
                                    cluster->endpoint_slices.Get("default/s7-1"));
    changed.type = k8s::EventType::kUpdated;
    r.Post(changed);
    k8s::Event gone;
    gone.kind = k8s::ResourceKind::kService;
    gone.type = k8s::EventType::kDeleted;
    gone.key = "default/" + Name(3);
    gone.old_object = cluster->services.Remove(gone.key);
    r.Post(gone);
  });
  ASSERT_TRUE(kr::testing::WaitFor([&] { return counted->syncs == 2; }, 60s));
  runner->Stop();
  EXPECT_EQ(counted->updates, 2);
  EXPECT_EQ(runner->AbsorbedEvents(), initial.size() - 2);
  EXPECT_THAT(recorder->last_changed,
              ElementsAre(ServiceName{"default", Name(3)}, ServiceName{"default", Name(7)}));
  EXPECT_THAT(Destinations(Vip(7)), ElementsAre("10.2.0.7:8080"));
  EXPECT_FALSE(HasService(Vip(3)));
  EXPECT_TRUE(HasService(Vip(4)));
}

}  // namespace
}  // namespace kr::proxy
