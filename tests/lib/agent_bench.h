// What the real-binary benchmarks share (tests/bench/proxy, tests/bench/netpol): fake-apiserver
// started inside a node namespace from one manifest file, HTTP writes to it from that
// namespace without a process start inside the measurement, the agent's memory, percentiles.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include "lib/netns.h"

namespace kr::testing {

struct FakeApiServer {
  std::unique_ptr<Process> process;
  std::string kubeconfig;  // written by fake-apiserver (--kubeconfig-out)
  int port = 0;            // on 127.0.0.1 inside the namespace
};

// Writes `manifests_json` (a v1 List) to `dir`/manifests/cluster.json and starts `binary`
// (fake-apiserver) inside `netns` on a free loopback port, waiting up to `timeout` for its
// kubeconfig. Returns "" or what went wrong (with the server's log).
std::string StartFakeApiServer(const Netns& netns, const std::string& dir,
                               const std::string& manifests_json, const std::string& binary,
                               std::chrono::seconds timeout, FakeApiServer& out);

// One HTTP request to 127.0.0.1:`port` over a socket opened in `netns`; true on a 2xx answer.
bool HttpRequest(const Netns& netns, int port, const std::string& method, const std::string& path,
                 const std::string& content_type, const std::string& body);

// A field of /proc/<pid>/status in KiB ("VmRSS:", "VmHWM:"); -1 when missing.
long ProcStatusKib(pid_t pid, const char* field);

// The p-quantile (0..1) by nearest rank; 0 for no values.
double Percentile(std::vector<double> values, double p);

}  // namespace kr::testing
