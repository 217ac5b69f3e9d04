// What the real-binary benchmarks share (tests/bench/proxy, tests/bench/netpol): fake-apiserver
// started inside a node namespace from one manifest file, HTTP writes to it from that
// namespace without a process start inside the measurement, the agent's memory, percentiles.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstddef>
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

// What one HTTP exchange gave: the raw answer (status line, headers, body) or what went wrong.
struct HttpAnswer {
  std::string raw;    // as received, cut at the size bound
  std::string error;  // "" when the server answered and closed within the bounds
  bool ok() const { return error.empty(); }
  bool Status2xx() const { return ok() && raw.rfind("HTTP/1.1 2", 0) == 0; }
};

// Sends `request` (a whole HTTP/1.1 request with "Connection: close") to 127.0.0.1:`port` over
// a socket opened in `netns` and reads the answer until the server closes. Bounded: at most
// `max_answer` bytes (more is an error) and `deadline` for the whole exchange, so a hung server
// fails the caller with a message instead of hanging it.
HttpAnswer HttpExchange(const Netns& netns, int port, const std::string& request, size_t max_answer,
                        std::chrono::milliseconds deadline);

// One HTTP request to 127.0.0.1:`port` over a socket opened in `netns`; true on a 2xx answer.
// A failure (no answer within `deadline`, refused, not 2xx) is written to stderr with the
// method, path and port.
bool HttpRequest(const Netns& netns, int port, const std::string& method, const std::string& path,
                 const std::string& content_type, const std::string& body,
                 std::chrono::milliseconds deadline = std::chrono::seconds(30));

// A field of /proc/<pid>/status in KiB ("VmRSS:", "VmHWM:"); -1 when missing.
long ProcStatusKib(pid_t pid, const char* field);

// Where a process's resident memory lives (KiB), from its /proc/<pid>/smaps: what RSS alone
// cannot tell apart (the heap the allocator keeps, thread stacks, the binary's pages).
struct ResidentByMapping {
  long binary_kib = 0;      // the executable's own file mappings (code, data)
  long brk_heap_kib = 0;    // [heap]: glibc's main arena
  long arenas_kib = 0;      // anonymous, starting at a 64 MiB boundary: glibc's other arenas
  long stacks_kib = 0;      // [stack] and anonymous mappings right above a guard page
  long other_anon_kib = 0;  // other anonymous memory (blocks above the mmap threshold, ...)
  long other_kib = 0;       // other files and kernel pages (a dynamic build's libraries, vdso)
  int thread_stacks = 0;    // guarded anonymous mappings counted in stacks_kib
  long total_kib() const {
    return binary_kib + brk_heap_kib + arenas_kib + stacks_kib + other_anon_kib + other_kib;
  }
};

// Sorts the mappings of an smaps text (`smaps`, as the kernel writes it, mappings in address
// order) into ResidentByMapping; `executable` is the binary's path as the mappings name it.
ResidentByMapping ParseSmaps(const std::string& smaps, const std::string& executable);
// ParseSmaps of the running process `pid`; all zero when it cannot be read.
ResidentByMapping ReadResidentByMapping(pid_t pid);

// The p-quantile (0..1) by nearest rank; 0 for no values.
double Percentile(std::vector<double> values, double p);

}  // namespace kr::testing
