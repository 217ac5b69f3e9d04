// Runs a helper program (iptables-restore, ipset, an exec credential plugin, ...) without a
// shell: argv is passed as is, stdin is fed from a string, stdout and stderr are captured.
//
// Every run is bounded: a deadline after which the child's whole process group is killed
// (SIGKILL, so a child ignoring SIGTERM still ends), a cap on captured output (a child that
// floods is killed), and an optional cancel flag (agent shutdown). Children start in their own
// process group with default signal dispositions and an empty signal mask, whatever the agent
// blocks or ignores in its threads (SIGTERM/SIGINT are blocked, SIGPIPE ignored).
#pragma once

#include <atomic>
#include <chrono>
#include <cstddef>
#include <string>
#include <utility>
#include <vector>

#include "kube_router/base/status.h"

namespace kr {

// iptables-restore --wait may queue behind another writer's xtables lock; two minutes covers
// that with a wide margin while still ending a wedged helper.
inline constexpr std::chrono::milliseconds kDefaultExecTimeout{120'000};
// iptables-save of a large cluster runs to tens of MiB; far beyond that is a runaway child.
inline constexpr size_t kDefaultExecMaxOutput = 256u << 20;
// Only the first part of stderr is kept (it is for error messages); the rest is drained.
inline constexpr size_t kExecStderrKept = 64u << 10;

struct ExecOptions {
  std::chrono::milliseconds timeout = kDefaultExecTimeout;
  size_t max_output = kDefaultExecMaxOutput;  // stdout bytes; more kills the child
  // Extra environment entries ("NAME", "value"), set on top of the agent's environment.
  std::vector<std::pair<std::string, std::string>> env;
  // Checked every 100 ms; when it becomes true the child is killed and the run fails.
  const std::atomic<bool>* cancel = nullptr;
};

struct ExecResult {
  int exit_code = -1;  // -1 when the program was killed by a signal
  std::string out;
  std::string err;  // the first kExecStderrKept bytes
};

// Starts argv[0] (looked up in PATH), writes `input` to its stdin, waits for it to exit.
// Fails when the program cannot be started, times out, floods or is cancelled (the error says
// which); a non-zero exit is reported in exit_code.
Result<ExecResult> Exec(const std::vector<std::string>& argv, const std::string& input = "",
                        const ExecOptions& options = {});

// Like Exec, but a non-zero exit becomes an error naming the program and its stderr.
Result<std::string> ExecChecked(const std::vector<std::string>& argv, const std::string& input = "",
                                const ExecOptions& options = {});

}  // namespace kr
