// Helpers for root-only tests: throwaway network namespaces, background processes inside them,
// and polling with a deadline (tests never sleep to wait for something).
#pragma once

#include <sys/types.h>

#include <chrono>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "kube_router/base/exec.h"

namespace kr::testing {

bool IsRoot();

// For failure messages comparing kernel state dumps line by line (as multisets): each distinct
// line `want` has more often than `have` ("missing"), and the reverse ("extra"), at most
// max_chars; "" exactly when both hold the same lines the same number of times and are equal.
// When the lines are the same but their order is not, it says where (OrderDifference).
std::string LineDifference(const std::string& want, const std::string& have, size_t max_chars);
// For two dumps with the same lines in another order: each iptables chain ("-A CHAIN" lines,
// per "*table") whose rules stand in another order, with both orders.
std::string OrderDifference(const std::string& want, const std::string& have);

// A network namespace named "<prefix>-<pid>-<n>", deleted (with every process still inside
// it killed) when the object is destroyed, even when the test fails.
class Netns {
 public:
  explicit Netns(const std::string& prefix);
  ~Netns();
  Netns(const Netns&) = delete;
  Netns& operator=(const Netns&) = delete;

  const std::string& name() const { return name_; }
  // Runs argv inside the namespace (`ip netns exec`).
  Result<ExecResult> Run(const std::vector<std::string>& argv, const std::string& input = "") const;
  // Runs a shell command line inside the namespace; returns stdout, error on non-zero exit.
  Result<std::string> Sh(const std::string& command_line) const;
  // argv prefixed so that it executes inside this namespace.
  std::vector<std::string> Wrap(const std::vector<std::string>& argv) const;

 private:
  std::string name_;
};

// A background process (optionally inside a namespace) whose stdout+stderr go to `log_path`.
// Destruction sends SIGTERM, then SIGKILL after a grace period, and reaps it.
class Process {
 public:
  Process(const std::vector<std::string>& argv, const std::string& log_path);
  ~Process();
  Process(const Process&) = delete;
  Process& operator=(const Process&) = delete;

  pid_t pid() const { return pid_; }
  bool Running();
  // Sends a signal now (e.g. SIGKILL to simulate a crash); the destructor still reaps.
  void Signal(int sig);
  // Waits up to `timeout` for exit; returns the exit code, or nullopt if still running.
  std::optional<int> Wait(std::chrono::milliseconds timeout);
  std::string Log() const;

 private:
  pid_t pid_ = -1;
  bool reaped_ = false;
  int exit_code_ = -1;
  std::string log_path_;
};

// Polls `condition` every `interval` until it is true or `timeout` passes. A condition that
// starts processes or lists over TLS (a kernel dump, an API server's state) takes a longer
// interval: at 20 ms its polls are most of a sanitized test's CPU.
bool WaitFor(const std::function<bool()>& condition, std::chrono::milliseconds timeout,
             std::chrono::milliseconds interval = std::chrono::milliseconds(20));

// A fresh temporary directory removed (recursively) on destruction.
class TempDir {
 public:
  TempDir();
  ~TempDir();
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

}  // namespace kr::testing
