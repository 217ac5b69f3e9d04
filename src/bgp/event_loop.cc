// SPDX-License-Identifier: Apache-2.0
#include "event_loop.h"

#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <algorithm>
#include <memory>

namespace kr::bgp {

EventLoop::EventLoop()
    : epoll_fd_(epoll_create1(EPOLL_CLOEXEC)), wake_fd_(eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)) {
  if (ok()) {
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.fd = wake_fd_.get();
    epoll_ctl(epoll_fd_.get(), EPOLL_CTL_ADD, wake_fd_.get(), &ev);
  }
}

EventLoop::~EventLoop() = default;

bool EventLoop::Watch(int fd, uint32_t events, FdCallback callback) {
  epoll_event ev{};
  ev.events = events;
  ev.data.fd = fd;
  if (epoll_ctl(epoll_fd_.get(), EPOLL_CTL_ADD, fd, &ev) != 0) return false;
  fds_[fd] = std::make_shared<FdCallback>(std::move(callback));
  return true;
}

void EventLoop::Modify(int fd, uint32_t events) {
  epoll_event ev{};
  ev.events = events;
  ev.data.fd = fd;
  epoll_ctl(epoll_fd_.get(), EPOLL_CTL_MOD, fd, &ev);
}

void EventLoop::Unwatch(int fd) {
  if (fds_.erase(fd)) epoll_ctl(epoll_fd_.get(), EPOLL_CTL_DEL, fd, nullptr);
}

EventLoop::TimerId EventLoop::AddTimer(std::chrono::milliseconds delay,
                                       std::function<void()> callback) {
  TimerId id = next_timer_++;
  auto at = Clock::now() + delay;
  deadlines_.emplace(at, id);
  timers_.emplace(id, std::make_pair(at, std::move(callback)));
  return id;
}

void EventLoop::Cancel(TimerId id) {
  auto it = timers_.find(id);
  if (it == timers_.end()) return;
  auto range = deadlines_.equal_range(it->second.first);
  for (auto d = range.first; d != range.second; ++d) {
    if (d->second == id) {
      deadlines_.erase(d);
      break;
    }
  }
  timers_.erase(it);
}

bool EventLoop::Post(std::function<void()> task) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (finished_) return false;
    posted_.push_back(std::move(task));
  }
  uint64_t one = 1;
  [[maybe_unused]] auto n = write(wake_fd_.get(), &one, sizeof(one));
  return true;
}

void EventLoop::Stop() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  uint64_t one = 1;
  [[maybe_unused]] auto n = write(wake_fd_.get(), &one, sizeof(one));
}

int EventLoop::NextTimeoutMs() const {
  if (deadlines_.empty()) return 1000;
  auto wait = std::chrono::duration_cast<std::chrono::milliseconds>(deadlines_.begin()->first -
                                                                    Clock::now());
  // Round up so a timer never fires a millisecond early and spins.
  return static_cast<int>(std::clamp<int64_t>(wait.count() + 1, 0, 1000));
}

void EventLoop::RunDueTimers() {
  auto now = Clock::now();
  while (!deadlines_.empty() && deadlines_.begin()->first <= now) {
    TimerId id = deadlines_.begin()->second;
    deadlines_.erase(deadlines_.begin());
    auto it = timers_.find(id);
    if (it == timers_.end()) continue;
    auto callback = std::move(it->second.second);
    timers_.erase(it);
    callback();
  }
}

void EventLoop::RunPostedTasks() {
  std::vector<std::function<void()>> tasks;
  {
    std::lock_guard<std::mutex> lock(mu_);
    tasks.swap(posted_);
  }
  for (auto& t : tasks) t();
}

void EventLoop::Run() {
  std::vector<epoll_event> events(64);
  while (true) {
    int n = epoll_wait(epoll_fd_.get(), events.data(), static_cast<int>(events.size()),
                       NextTimeoutMs());
    for (int i = 0; i < n; ++i) {
      int fd = events[static_cast<size_t>(i)].data.fd;
      if (fd == wake_fd_.get()) {
        uint64_t count = 0;
        [[maybe_unused]] auto r = read(wake_fd_.get(), &count, sizeof(count));
        continue;
      }
      auto it = fds_.find(fd);
      if (it == fds_.end()) continue;  // removed by an earlier callback in this batch
      auto callback = it->second;      // keeps the callback alive if it unwatches itself
      (*callback)(events[static_cast<size_t>(i)].events);
    }
    RunPostedTasks();
    RunDueTimers();
    std::lock_guard<std::mutex> lock(mu_);
    if (stop_) break;
  }
  // Drain what was posted before Stop; later posts are refused (see Post).
  while (true) {
    std::vector<std::function<void()>> tasks;
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (posted_.empty()) {
        finished_ = true;
        return;
      }
      tasks.swap(posted_);
    }
    for (auto& t : tasks) t();
  }
}

}  // namespace kr::bgp
