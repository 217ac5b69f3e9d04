#include "memory.h"

#include <gtest/gtest.h>
#include <malloc.h>

#include <algorithm>
#include <cstdlib>
#include <memory>
#include <vector>

#include "kube_router/base/sanitizers.h"

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
#if KR_ASAN() || KR_TSAN()
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

// A large block (a /metrics response at 10k Services) goes back to the kernel when freed, even
// after a larger one was freed (which, left alone, raises glibc's threshold to its size).
TEST(ConfigureAllocator, LargeBlocksLeaveNoFreeHeapBehind) {
#if KR_ASAN() || KR_TSAN()
  // Cannot hold there: the sanitizers replace malloc with their own allocator, which maps
  // large blocks itself and keeps freed ones in a quarantine (ASan); libasan makes mallopt a
  // no-op, and mallinfo2 reads glibc's unused arena, so the check would pass whatever the
  // code did.
  GTEST_SKIP() << "the sanitizers' allocators have no M_MMAP_THRESHOLD";
#else
  if (std::getenv("MALLOC_MMAP_THRESHOLD_") != nullptr) GTEST_SKIP() << "set by the environment";
  ConfigureAllocator(2);
  auto fill = [](size_t bytes) {
    auto block = std::make_unique<char[]>(bytes);
    std::fill_n(block.get(), bytes, 'x');
    return block;
  };
  fill(24 << 20).reset();
  const auto free_before = mallinfo2().fordblks;
  fill(16 << 20).reset();
  EXPECT_LT(mallinfo2().fordblks, free_before + (1 << 20))
      << "a freed 16 MiB block stayed in the heap";
#endif
}

}  // namespace
}  // namespace kr::app
