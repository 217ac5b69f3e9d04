// SPDX-License-Identifier: Apache-2.0
#include "kube_router/k8s/watcher.h"

#include <unistd.h>

#include <atomic>
#include <condition_variable>
#include <cstdlib>
#include <mutex>

#include "informer.h"
#include "kube_router/base/log.h"
#include "kube_router/k8s/api_client.h"
#include "kube_router/k8s/client_config.h"

namespace kr::k8s {
namespace {

class InformerWatcher : public Watcher {
 public:
  // `own_registry` (may be null) is where the informers count when no registry was injected.
  InformerWatcher(std::unique_ptr<metrics::Registry> own_registry,
                  std::vector<std::unique_ptr<Informer>> informers)
      : own_registry_(std::move(own_registry)), informers_(std::move(informers)) {
    for (auto& i : informers_) i->Start();
  }
  ~InformerWatcher() override { Stop(); }

  Status WaitForSync(std::chrono::milliseconds timeout) override {
    auto deadline = std::chrono::steady_clock::now() + timeout;
    for (;;) {
      if (stopped_) return Status::Error("stopped before the caches synced");
      std::string missing;
      for (const auto& i : informers_) {
        if (i->synced()) continue;
        missing += std::string(missing.empty() ? "" : ", ") + ResourceKindName(i->kind());
        std::string err = i->last_error();
        if (!err.empty()) missing += " (last error: " + err + ")";
      }
      if (missing.empty()) return Status::Ok();
      if (std::chrono::steady_clock::now() >= deadline)
        return Status::Error("caches not synced within " + std::to_string(timeout.count()) +
                             " ms (--cache-sync-timeout): " + missing);
      std::unique_lock lock(mu_);
      cv_.wait_for(lock, std::chrono::milliseconds(20), [this] { return stopped_.load(); });
    }
  }

  std::vector<StaleCache> StaleCaches(std::chrono::milliseconds bound) const override {
    std::vector<StaleCache> stale;
    for (const auto& i : informers_) {
      auto for_ = i->StaleFor();
      if (for_ > bound) stale.push_back({i->kind(), for_, i->last_error()});
    }
    return stale;
  }

  void Stop() override {
    {
      // Ends a WaitForSync on another thread at once instead of at its timeout.
      std::lock_guard lock(mu_);
      stopped_ = true;
    }
    cv_.notify_all();
    for (auto& i : informers_) i->Stop();
  }

 private:
  const std::unique_ptr<metrics::Registry> own_registry_;  // outlives the informers
  std::vector<std::unique_ptr<Informer>> informers_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::atomic<bool> stopped_{false};  // set under mu_ so that the wait cannot miss it
};

}  // namespace

Result<std::unique_ptr<Watcher>> Watcher::Start(const ConnectionOptions& options,
                                                const std::vector<ResourceKind>& kinds,
                                                Cluster* cluster, EventSink* sink) {
  auto config = LoadClientConfig(options);
  if (!config.ok()) return config.status();
  auto client = ApiClient::Create(*config);
  if (!client.ok()) return client.status();
  KR_LOG_INFO("API server {} ({})", config->server, config->source);
  if (config->insecure_skip_tls_verify)
    KR_LOG_WARN(
        "{} sets insecure-skip-tls-verify: the API server's certificate is not verified, so "
        "anyone on the path can impersonate it and feed this agent its rules",
        config->source);
  std::unique_ptr<metrics::Registry> own_registry;
  metrics::Registry* registry = options.registry;
  if (registry == nullptr) {
    own_registry = std::make_unique<metrics::Registry>();
    registry = own_registry.get();
  }
  std::vector<std::unique_ptr<Informer>> informers;
  for (ResourceKind kind : kinds) {
    informers.push_back(std::make_unique<Informer>(kind, *client, cluster, sink, *registry,
                                                   options.list_page_size, options.retry_backoff));
  }
  return std::unique_ptr<Watcher>(
      new InformerWatcher(std::move(own_registry), std::move(informers)));
}

std::string ResolveNodeName(const std::string& hostname_override) {
  if (!hostname_override.empty()) return hostname_override;
  if (const char* env = std::getenv("NODE_NAME"); env && *env) return env;
  char buf[256] = {};
  if (gethostname(buf, sizeof buf - 1) != 0) return "";
  return buf;
}

}  // namespace kr::k8s
