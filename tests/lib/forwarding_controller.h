// A Controller that hands every call to the controller it wraps. Tests derive from it to watch
// or steer what a runner asks of a real controller, overriding only the calls they change.
#pragma once

#include <chrono>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "kube_router/runtime/controller.h"

namespace kr::testing {

class ForwardingController : public Controller {
 public:
  explicit ForwardingController(std::unique_ptr<Controller> inner) : inner_(std::move(inner)) {}

  std::string Name() const override { return inner_->Name(); }
  std::chrono::milliseconds SyncPeriod() const override { return inner_->SyncPeriod(); }
  std::vector<k8s::ResourceKind> WatchedKinds() const override { return inner_->WatchedKinds(); }
  void SetSyncRequester(std::function<void()> request_sync) override {
    inner_->SetSyncRequester(std::move(request_sync));
  }
  // The wrapped controller marks its own full reads: the marker must reach it, not this base.
  void SetFullReadMarker(std::function<void()> mark_full_read) override {
    inner_->SetFullReadMarker(std::move(mark_full_read));
  }
  void OnEventsAbsorbed(const std::vector<k8s::Event>& absorbed,
                        std::chrono::steady_clock::time_point programmed) override {
    inner_->OnEventsAbsorbed(absorbed, programmed);
  }
  Status Init() override { return inner_->Init(); }
  bool OnUpdate(const k8s::Event& event) override { return inner_->OnUpdate(event); }
  Status Sync(SyncReason reason) override { return inner_->Sync(reason); }
  bool SyncContinues() const override { return inner_->SyncContinues(); }
  void Shutdown() override { inner_->Shutdown(); }
  Result<std::vector<std::string>> Cleanup() override { return inner_->Cleanup(); }

 private:
  std::unique_ptr<Controller> inner_;
};

}  // namespace kr::testing
