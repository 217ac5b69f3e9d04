// SPDX-License-Identifier: Apache-2.0
// The two writes kube-router makes to the API server (shared reference kubernetes-api.md 1.0):
// the LoadBalancer allocator's Service status update with optimistic concurrency, and
// Lease-based leader election (client-go tools/leaderelection). Both work on raw JSON so that
// fields the agent does not model survive the round trip.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <functional>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>

#include "kube_router/base/status.h"
#include "kube_router/k8s/api_client.h"

namespace kr::k8s {

// GET the Service, let `mutate` change it (return false for "nothing to do"), PUT it to
// /status. A 409 Conflict re-reads and retries, as client-go's retry.RetryOnConflict with
// DefaultRetry (5 attempts, 10 ms apart, 10 % jitter).
Status UpdateServiceStatus(ApiClient& client, const std::string& ns, const std::string& name,
                           const std::function<bool(nlohmann::json& service)>& mutate);

struct LeaderElectionConfig {
  std::string lease_namespace;
  std::string lease_name;  // kube-router: "kube-router-lballoc"
  std::string identity;    // kube-router: $POD_NAME
  std::chrono::milliseconds lease_duration{15000};
  std::chrono::milliseconds renew_deadline{10000};
  std::chrono::milliseconds retry_period{2000};
};

// Runs the election on its own thread. The callbacks run on that thread.
class LeaderElector {
 public:
  LeaderElector(std::shared_ptr<ApiClient> client, LeaderElectionConfig config,
                std::function<void()> on_started_leading, std::function<void()> on_stopped_leading);
  ~LeaderElector();  // Stop()

  void Start();
  // Stops; a leader releases the lease (holderIdentity "", leaseDurationSeconds 1) so another
  // candidate takes over at once (client-go ReleaseOnCancel).
  void Stop();
  bool IsLeader() const { return leader_.load(); }

 private:
  void Run();
  // One acquire-or-renew round; true when we hold the lease afterwards.
  bool TryAcquireOrRenew();
  void Release();
  bool Sleep(std::chrono::milliseconds d);

  std::shared_ptr<ApiClient> client_;
  LeaderElectionConfig config_;
  std::function<void()> on_started_, on_stopped_;
  std::atomic<bool> leader_{false};
  std::atomic<bool> stop_{false};
  std::mutex mu_;
  std::condition_variable cv_;
  std::thread thread_;
  // The lease record as last observed and when it was observed (client-go judges expiry by
  // the local time a record was first seen, not by the holder's clock).
  std::string observed_record_;
  std::chrono::steady_clock::time_point observed_at_;
};

}  // namespace kr::k8s
