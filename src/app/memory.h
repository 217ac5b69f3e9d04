// How the agent keeps glibc's allocator from holding memory it no longer uses
// (docs/memory.md): few arenas for a daemon with a handful of busy threads, and free pages
// handed back to the kernel once a cold start's temporaries (list pages, parsed JSON, first
// compilations) are gone.
#pragma once

#include <chrono>
#include <functional>
#include <mutex>
#include <set>
#include <string>

#include "kube_router/runtime/runner.h"

namespace kr::app {

// Blocks from this size up are mapped on their own (ConfigureAllocator).
inline constexpr int kLargeBlock = 4 << 20;

// The agent's arenas (ConfigureAllocator): one. Its threads (informers, controllers, servers)
// are mostly idle and glibc's per-thread caches serve their small blocks without the arena's
// lock; with one arena the cold start's temporaries of every thread (list pages, queued events,
// first syncs) leave their holes in one heap, where later allocations refill them, instead of
// in several (docs/memory.md, "One arena": the whole agent in the guest 94.3 -> 90.8 MiB).
inline constexpr int kAgentArenas = 1;

// Caps glibc's arenas at `max_arenas` (M_ARENA_MAX) and maps blocks from kLargeBlock up on
// their own (M_MMAP_THRESHOLD), each unless MALLOC_ARENA_MAX / MALLOC_MMAP_THRESHOLD_ is set in
// the environment (an operator's setting wins). Call before the first thread starts.
void ConfigureAllocator(int max_arenas);

// malloc_trim(0): returns free pages of every arena to the kernel. Returns the bytes of
// resident memory given back (from /proc/self/statm; 0 if it could not be read or grew).
long ReturnFreeMemory();

// Trims after each controller's first successful sync (the end of the cold start) and after
// later full (periodic) syncs, at most once per `min_interval`.
class TrimAfterSync : public SyncObserver {
 public:
  // `trim` returns the bytes it gave back (ReturnFreeMemory; tests count calls).
  explicit TrimAfterSync(std::chrono::seconds min_interval,
                         std::function<long()> trim = ReturnFreeMemory)
      : min_interval_(min_interval), trim_(std::move(trim)) {}
  void OnSyncSucceeded(const std::string& controller, SyncReason reason,
                       std::chrono::nanoseconds took) override;
  void OnSyncFailed(const std::string&, SyncReason, const Status&) override {}

 private:
  const std::chrono::seconds min_interval_;
  const std::function<long()> trim_;
  std::mutex mu_;
  std::set<std::string> synced_once_;
  std::chrono::steady_clock::time_point last_trim_{};
};

}  // namespace kr::app
