#include "memory.h"

#include <gtest/gtest.h>
#include <malloc.h>

#include <algorithm>
#include <barrier>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>
#include <thread>
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

// How many arenas glibc has made: malloc_info lists each as a <heap nr="N">.
[[maybe_unused]] int Arenas() {  // unused where the sanitizers skip the test
  char* text = nullptr;
  size_t size = 0;
  FILE* out = open_memstream(&text, &size);
  if (out == nullptr) return -1;
  malloc_info(0, out);
  std::fclose(out);
  const std::string xml(text, size);
  std::free(text);
  int arenas = 0;
  for (size_t at = xml.find("<heap nr="); at != std::string::npos;
       at = xml.find("<heap nr=", at + 1)) {
    ++arenas;
  }
  return arenas;
}

// The agent's threads allocate in kAgentArenas arenas, however many of them allocate at once
// (glibc would give each new thread an arena of its own, up to eight per core). Checked in a
// fresh process (a death test's re-executed child), which no earlier test's threads have given
// arenas already.
TEST(ConfigureAllocator, ThreadsAllocatingAtOnceShareTheAgentsArenas) {
#if KR_ASAN() || KR_TSAN()
  GTEST_SKIP() << "the sanitizers replace malloc: glibc's arenas are not used";
#else
  if (std::getenv("MALLOC_ARENA_MAX") != nullptr) GTEST_SKIP() << "set by the environment";
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  const std::string reported = "arenas: " + std::to_string(kAgentArenas) + "\n";
  EXPECT_EXIT(
      {
        ConfigureAllocator(kAgentArenas);
        constexpr int kThreads = 4;
        std::barrier all_allocated(kThreads);
        std::vector<std::thread> threads;
        for (int i = 0; i < kThreads; ++i) {
          threads.emplace_back([&] {
            auto block = std::make_unique<std::vector<char> >(1000, 'x');
            all_allocated.arrive_and_wait();  // every thread holds its block at once
            if (block->back() != 'x') std::abort();
          });
        }
        for (auto& t : threads) t.join();
        const int arenas = Arenas();
        std::fprintf(stderr, "arenas: %d\n", arenas);
        std::_Exit(arenas == kAgentArenas ? 0 : 1);
      },
      ::testing::ExitedWithCode(0), reported.c_str());
#endif
}

}  // namespace
}  // namespace kr::app
