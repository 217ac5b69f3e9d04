// UniqueFd closes its descriptor exactly once: when it goes away, on reset and when another is
// moved over it; release gives the descriptor up open; a moved-from one owns nothing.
#include "kube_router/base/unique_fd.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <cerrno>
#include <utility>

namespace kr {
namespace {

bool IsOpen(int fd) { return fcntl(fd, F_GETFD) != -1 || errno != EBADF; }

// Two fresh descriptors (a pipe's ends), unowned.
std::pair<int, int> Pipe() {
  int fds[2];
  EXPECT_EQ(pipe2(fds, O_CLOEXEC), 0);
  return {fds[0], fds[1]};
}

TEST(UniqueFdTest, ClosesWhenItGoesAway) {
  auto [r, w] = Pipe();
  {
    UniqueFd a(r);
    UniqueFd b(w);
    EXPECT_TRUE(a.valid());
    EXPECT_EQ(a.get(), r);
    EXPECT_TRUE(IsOpen(r));
  }
  EXPECT_FALSE(IsOpen(r));
  EXPECT_FALSE(IsOpen(w));
}

TEST(UniqueFdTest, ResetClosesTheOldAndOwnsTheNew) {
  auto [r, w] = Pipe();
  UniqueFd fd(r);
  fd.reset(w);
  EXPECT_FALSE(IsOpen(r));
  EXPECT_TRUE(IsOpen(w));
  fd.reset();
  EXPECT_FALSE(IsOpen(w));
  EXPECT_FALSE(fd);
  fd.reset();  // nothing owned: nothing closed, no error
  EXPECT_EQ(fd.get(), -1);
}

TEST(UniqueFdTest, ReleaseLeavesItOpen) {
  auto [r, w] = Pipe();
  UniqueFd a(r);
  UniqueFd b(w);
  EXPECT_EQ(a.release(), r);
  EXPECT_FALSE(a.valid());
  a.reset();
  EXPECT_TRUE(IsOpen(r));
  close(r);
}

TEST(UniqueFdTest, MovesTransferOwnership) {
  auto [r, w] = Pipe();
  UniqueFd a(r);
  UniqueFd b(std::move(a));
  EXPECT_FALSE(a.valid());  // NOLINT(bugprone-use-after-move): the moved-from state is the test
  EXPECT_EQ(b.get(), r);
  UniqueFd c(w);
  c = std::move(b);  // closes w, takes r
  EXPECT_FALSE(IsOpen(w));
  EXPECT_TRUE(IsOpen(r));
  EXPECT_EQ(c.get(), r);
}

}  // namespace
}  // namespace kr
