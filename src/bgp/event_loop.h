// SPDX-License-Identifier: Apache-2.0
// A small epoll loop with one-shot timers and a thread-safe task queue. Everything except
// Post() and Stop() must be called on the loop thread (inside Run or before it starts).
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <unordered_map>
#include <vector>

#include "kube_router/base/unique_fd.h"

namespace kr::bgp {

class EventLoop {
 public:
  using Clock = std::chrono::steady_clock;
  using FdCallback = std::function<void(uint32_t epoll_events)>;
  using TimerId = uint64_t;

  EventLoop();
  ~EventLoop();
  EventLoop(const EventLoop&) = delete;
  EventLoop& operator=(const EventLoop&) = delete;

  bool ok() const { return epoll_fd_ && wake_fd_; }

  // Registers/changes/removes interest in `fd`. The callback may remove any fd, itself too.
  bool Watch(int fd, uint32_t events, FdCallback callback);
  void Modify(int fd, uint32_t events);
  void Unwatch(int fd);

  // One-shot timer; returns an id for Cancel (cancelling a fired or unknown id is a no-op).
  TimerId AddTimer(std::chrono::milliseconds delay, std::function<void()> callback);
  void Cancel(TimerId id);

  // Thread-safe: runs `task` on the loop thread soon. Returns false (and drops the task) once
  // Run has returned, so a caller waiting for an answer knows none will come.
  bool Post(std::function<void()> task);
  // Thread-safe: makes Run return after the current iteration.
  void Stop();
  // Runs until Stop(); tasks posted before Stop() still run.
  void Run();

 private:
  void RunDueTimers();
  void RunPostedTasks();
  int NextTimeoutMs() const;

  UniqueFd epoll_fd_;
  UniqueFd wake_fd_;
  std::unordered_map<int, std::shared_ptr<FdCallback>> fds_;
  std::multimap<Clock::time_point, TimerId> deadlines_;
  std::unordered_map<TimerId, std::pair<Clock::time_point, std::function<void()>>> timers_;
  TimerId next_timer_ = 1;

  std::mutex mu_;
  std::vector<std::function<void()>> posted_;  // guarded by mu_
  bool stop_ = false;                          // guarded by mu_
  bool finished_ = false;                      // guarded by mu_: Run returned
};

}  // namespace kr::bgp
