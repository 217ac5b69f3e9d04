// The standard Prometheus process collector's names, for the agent's /metrics.
#pragma once

#include "kube_router/metrics/registry.h"

namespace kr::metrics {

// Sets process_resident_memory_bytes (from /proc/self/statm) and process_start_time_seconds
// (Unix time, from /proc/self/stat and the boot time in /proc/stat) in `registry`. Call before
// each render; a value that cannot be read is left as it was.
void UpdateProcessMetrics(Registry* registry);

}  // namespace kr::metrics
