#include "memory.h"

#include <gtest/gtest.h>

#include <memory>
#include <vector>

namespace kr::app {
namespace {

using namespace std::chrono_literals;

// The end of each controller's cold start always trims; later full syncs trim at most once
// per interval; requested (event-driven) syncs never do.
TEST(TrimAfterSync, TrimsAfterFirstSyncsAndRateLimitsPeriodicOnes) {
  int trims = 0;
  TrimAfterSync trim(1h, [&] {
    ++trims;
    return 0L;
  });
  trim.OnSyncSucceeded("NetworkPolicy", SyncReason::kStartup, 1s);
  EXPECT_EQ(trims, 1);
  trim.OnSyncSucceeded("NetworkRoutes", SyncReason::kStartup, 1s);
  EXPECT_EQ(trims, 2);  // another controller's first sync
  trim.OnSyncSucceeded("NetworkPolicy", SyncReason::kRequested, 1s);
  trim.OnSyncSucceeded("NetworkPolicy", SyncReason::kPeriodic, 1s);  // within the hour
  trim.OnSyncFailed("NetworkRoutes", SyncReason::kPeriodic, Status::Error("x"));
  EXPECT_EQ(trims, 2);

  TrimAfterSync eager(0s, [&] {
    ++trims;
    return 0L;
  });
  eager.OnSyncSucceeded("NetworkPolicy", SyncReason::kRequested, 1s);  // a first sync
  eager.OnSyncSucceeded("NetworkPolicy", SyncReason::kPeriodic, 1s);
  eager.OnSyncSucceeded("NetworkPolicy", SyncReason::kRequested, 1s);
  EXPECT_EQ(trims, 4);
}

// Free pages between live blocks (what a cold start leaves) go back to the kernel.
TEST(ReturnFreeMemory, GivesBackFreePagesBetweenLiveBlocks) {
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
  GTEST_SKIP() << "the sanitizers' allocators do not implement malloc_trim";
#else
  ReturnFreeMemory();
  // 64 MiB in 1 KiB blocks, written so they are resident; keep every 32nd block.
  std::vector<std::unique_ptr<char[]> > blocks(64 * 1024);
  for (auto& b : blocks) {
    b.reset(new char[1024]);
    std::fill_n(b.get(), 1024, 'x');
  }
  for (size_t i = 0; i < blocks.size(); ++i) {
    if (i % 32 != 0) blocks[i].reset();
  }
  long returned = ReturnFreeMemory();
  EXPECT_GT(returned, 32L << 20) << "returned " << returned << " bytes";
#endif
}

}  // namespace
}  // namespace kr::app
