#include "kube_router/metrics/process.h"

#include <malloc.h>
#include <unistd.h>

#include <fstream>
#include <optional>
#include <sstream>
#include <string>

#include "kube_router/base/sanitizers.h"

#if KR_ASAN() || KR_TSAN()
// The sanitizers replace malloc, and glibc's mallinfo2 then reports zeros: ask their allocator.
extern "C" size_t __sanitizer_get_current_allocated_bytes();
extern "C" size_t __sanitizer_get_free_bytes();
#endif

namespace kr::metrics {
namespace {

std::optional<double> ResidentBytes() {
  std::ifstream statm("/proc/self/statm");
  long size = 0, resident = 0;
  if (!(statm >> size >> resident)) return std::nullopt;
  return static_cast<double>(resident) * static_cast<double>(sysconf(_SC_PAGESIZE));
}

std::optional<double> StartTimeSeconds() {
  std::ifstream stat_file("/proc/self/stat");
  std::string stat((std::istreambuf_iterator<char>(stat_file)), std::istreambuf_iterator<char>());
  // Field 2 (comm) may hold spaces and parentheses: the fields after it follow the last ')'.
  auto close = stat.rfind(')');
  if (close == std::string::npos) return std::nullopt;
  std::istringstream rest(stat.substr(close + 1));
  std::string field;
  unsigned long long start_ticks = 0;
  for (int index = 3; rest >> field; ++index) {  // field 22 is starttime, in clock ticks
    if (index == 22) {
      start_ticks = std::stoull(field);
      break;
    }
  }
  if (start_ticks == 0) return std::nullopt;
  std::ifstream proc_stat("/proc/stat");
  std::string line;
  while (std::getline(proc_stat, line)) {
    if (line.rfind("btime ", 0) == 0) {
      double boot = std::stod(line.substr(6));
      return boot + static_cast<double>(start_ticks) / static_cast<double>(sysconf(_SC_CLK_TCK));
    }
  }
  return std::nullopt;
}

}  // namespace

void UpdateHeapMetrics(Registry* registry) {
  // Whichever allocator serves malloc: glibc's mallinfo2 sums every arena (bytes in chunks handed
  // out, small ones plus mmapped large ones, and bytes it holds free); under the sanitizers their
  // allocator's own counters. The HELP texts name neither, so they stay true for both. Free bytes
  // that stay high after a sync are fragmentation the process keeps resident (docs/memory.md).
#if KR_ASAN() || KR_TSAN()
  const double in_use = static_cast<double>(__sanitizer_get_current_allocated_bytes());
  const double free_bytes = static_cast<double>(__sanitizer_get_free_bytes());
#else
  struct mallinfo2 info = mallinfo2();
  const double in_use = static_cast<double>(info.uordblks + info.hblkhd);
  const double free_bytes = static_cast<double>(info.fordblks);
#endif
  registry
      ->GetGauge("kube_router_heap_in_use_bytes",
                 "Bytes of heap the agent has allocated, as its malloc reports them.")
      .Set(in_use);
  registry
      ->GetGauge("kube_router_heap_free_bytes", "Bytes the agent's malloc holds free for reuse.")
      .Set(free_bytes);
}

void UpdateProcessMetrics(Registry* registry) {
  UpdateHeapMetrics(registry);
  if (auto rss = ResidentBytes()) {
    registry->GetGauge("process_resident_memory_bytes", "Resident memory size in bytes.").Set(*rss);
  }
  if (auto start = StartTimeSeconds()) {
    registry
        ->GetGauge("process_start_time_seconds",
                   "Start time of the process since unix epoch in seconds.")
        .Set(*start);
  }
}

}  // namespace kr::metrics
