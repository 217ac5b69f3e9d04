// The agent's window on the API server: connects (kubeconfig, --master, or in-cluster), runs one
// informer per resource kind (list + watch with client-go semantics), keeps the Cluster caches
// and delivers every change to the EventSink.
#pragma once

#include <atomic>
#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include "kube_router/base/status.h"
#include "kube_router/k8s/backoff.h"
#include "kube_router/k8s/store.h"
#include "kube_router/k8s/types.h"
#include "kube_router/metrics/registry.h"

namespace kr::k8s {

// client-go sets no limit on a plugin run; a minute is far beyond any real credential helper.
inline constexpr std::chrono::milliseconds kDefaultExecPluginTimeout{60'000};

struct ConnectionOptions {
  std::string master;      // --master: overrides the kubeconfig's server
  std::string kubeconfig;  // --kubeconfig; empty = in-cluster config
  // Where the in-cluster token, ca.crt and namespace files live (tests point it elsewhere).
  std::string service_account_dir = "/var/run/secrets/kubernetes.io/serviceaccount";
  // Informer list page size (client-go's pager uses 500).
  int list_page_size = 500;
  // Retry backoff of every informer (client-go's reflector numbers; fault tests shorten it).
  BackoffParams retry_backoff;
  // Bounds every run of a kubeconfig exec credential plugin (the agent passes its
  // --cache-sync-timeout), and ends a running one once `*cancel` is set (shutdown).
  std::chrono::milliseconds exec_plugin_timeout = kDefaultExecPluginTimeout;
  const std::atomic<bool>* cancel = nullptr;
  // Where the informers count what they skip (kube_router_k8s_malformed_objects_total), injected
  // like the controllers' registry: the agent passes the one it serves on /metrics. Null: a
  // registry of the Watcher's own that nobody serves (tests that do not look). Must outlive the
  // Watcher.
  metrics::Registry* registry = nullptr;
};

class Watcher {
 public:
  virtual ~Watcher() = default;

  // Validates the configuration (a bad kubeconfig fails here, naming the file and field) and
  // starts one informer thread per kind. `cluster` and `sink` must outlive the Watcher.
  static Result<std::unique_ptr<Watcher>> Start(const ConnectionOptions& options,
                                                const std::vector<ResourceKind>& kinds,
                                                Cluster* cluster, EventSink* sink);

  // Blocks until every informer has completed its first list, or fails naming the kinds that
  // have not synced within `timeout` (--cache-sync-timeout). Fails at once when Stop() is called
  // (from another thread) meanwhile.
  virtual Status WaitForSync(std::chrono::milliseconds timeout) = 0;
  // Caches that could not be refreshed (no open watch, no successful list) for longer than
  // `bound` while the server answers but refuses (401, 403, ERROR events...; an outage does
  // not count), with how long and the informer's last error. Empty before the first sync.
  struct StaleCache {
    ResourceKind kind;
    std::chrono::milliseconds stale_for;
    std::string last_error;
  };
  virtual std::vector<StaleCache> StaleCaches(std::chrono::milliseconds bound) const = 0;
  // Stops every informer thread and ends a pending WaitForSync; returns within a few seconds.
  virtual void Stop() = 0;
};

// --hostname-override, else $NODE_NAME, else the kernel's host name (no NSS lookup).
std::string ResolveNodeName(const std::string& hostname_override);

}  // namespace kr::k8s
