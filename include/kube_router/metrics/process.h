// The standard Prometheus process collector's names, for the agent's /metrics.
#pragma once

#include "kube_router/metrics/registry.h"

namespace kr::metrics {

// Sets process_resident_memory_bytes (from /proc/self/statm) and process_start_time_seconds
// (Unix time, from /proc/self/stat and the boot time in /proc/stat) in `registry`. Call before
// each render; a value that cannot be read is left as it was.
// Also sets the heap gauges below.
void UpdateProcessMetrics(Registry* registry);

// kube_router_heap_in_use_bytes and kube_router_heap_free_bytes from the allocator that serves
// malloc: glibc's (mallinfo2) in the shipped build, the sanitizer's under ASan/TSan (which replace
// malloc; mallinfo2 reads zero there).
void UpdateHeapMetrics(Registry* registry);

}  // namespace kr::metrics
