// The speaker's event loop: timers fire in deadline order and can be cancelled, tasks posted
// from other threads run on the loop thread, fds are watched, and posts after the loop
// finished are refused.
#include "event_loop.h"

#include <gtest/gtest.h>
#include <sys/epoll.h>
#include <unistd.h>

#include <thread>
#include <vector>

namespace kr::bgp::event_loop_test {
namespace {

using namespace std::chrono_literals;

TEST(EventLoopTest, TimersTasksAndFds) {
  EventLoop loop;
  ASSERT_TRUE(loop.ok());
  std::vector<int> timers;
  bool fd_seen = false;
  std::thread::id task_thread;
  int pipe_fds[2];
  ASSERT_EQ(pipe(pipe_fds), 0);
  // Stops once both the last timer and the fd callback have run, in whichever order.
  auto maybe_stop = [&] {
    if (fd_seen && timers.size() == 2) loop.Stop();
  };

  loop.AddTimer(30ms, [&] {
    timers.push_back(3);
    maybe_stop();
  });
  loop.AddTimer(10ms, [&] { timers.push_back(1); });
  auto cancelled = loop.AddTimer(20ms, [&] { timers.push_back(99); });
  loop.Cancel(cancelled);
  loop.Cancel(12345);  // unknown: no-op
  loop.Watch(pipe_fds[0], EPOLLIN, [&](uint32_t) {
    char c;
    ASSERT_EQ(read(pipe_fds[0], &c, 1), 1);
    fd_seen = c == 'x';
    loop.Unwatch(pipe_fds[0]);
    maybe_stop();
  });
  std::thread runner([&] { loop.Run(); });
  const std::thread::id runner_id = runner.get_id();
  std::thread poster([&] {
    loop.Post([&] {
      task_thread = std::this_thread::get_id();
      ASSERT_EQ(write(pipe_fds[1], "x", 1), 1);
    });
  });
  poster.join();
  runner.join();
  EXPECT_EQ(task_thread, runner_id);
  EXPECT_TRUE(fd_seen);
  EXPECT_EQ(timers, (std::vector<int>{1, 3}));
  EXPECT_FALSE(loop.Post([] {}));  // finished: nobody would run it
  close(pipe_fds[0]);
  close(pipe_fds[1]);
}

}  // namespace
}  // namespace kr::bgp::event_loop_test
