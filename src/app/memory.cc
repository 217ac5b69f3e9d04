#include "memory.h"

#include <malloc.h>
#include <unistd.h>

#include <cstdlib>
#include <fstream>

#include "kube_router/base/log.h"

namespace kr::app {
namespace {

long ResidentBytes() {
  std::ifstream statm("/proc/self/statm");
  long size = 0, resident = 0;
  if (!(statm >> size >> resident)) return -1;
  return resident * sysconf(_SC_PAGESIZE);
}

}  // namespace

void ConfigureAllocator(int max_arenas) {
  if (std::getenv("MALLOC_ARENA_MAX") == nullptr) mallopt(M_ARENA_MAX, max_arenas);
  // A fixed threshold (glibc otherwise raises it to the largest block freed, up to 32 MiB):
  // blocks from kLargeBlock up are mapped and unmapped on free, so a /metrics response at 10k
  // Services (12-25 MiB) goes back to the kernel when the server has written it, with no trim.
  if (std::getenv("MALLOC_MMAP_THRESHOLD_") == nullptr) mallopt(M_MMAP_THRESHOLD, kLargeBlock);
}

long ReturnFreeMemory() {
  long before = ResidentBytes();
  malloc_trim(0);
  long after = ResidentBytes();
  return before < 0 || after < 0 || after > before ? 0 : before - after;
}

void TrimAfterSync::OnSyncSucceeded(const std::string& controller, SyncReason reason,
                                    std::chrono::nanoseconds /*took*/) {
  std::lock_guard lock(mu_);
  bool first = synced_once_.insert(controller).second;
  auto now = std::chrono::steady_clock::now();
  // The first sync of each controller ends its share of the cold start: always trim then.
  if (!first && (reason != SyncReason::kPeriodic || now - last_trim_ < min_interval_)) return;
  last_trim_ = now;
  long returned = trim_();
  KR_VLOG(1, "{}: {} sync done, returned {:.1f} MiB of free heap to the kernel", controller,
          first ? "first" : "periodic", static_cast<double>(returned) / (1 << 20));
}

}  // namespace kr::app
