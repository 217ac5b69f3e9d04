#include "kube_router/metrics/process.h"

#include <gtest/gtest.h>

#include <chrono>
#include <memory>
#include <string>
#include <vector>

namespace kr::metrics {
namespace {

TEST(ProcessMetrics, ResidentMemoryFollowsTheProcess) {
  Registry r;
  UpdateProcessMetrics(&r);
  Gauge& rss = r.GetGauge("process_resident_memory_bytes", "");
  double before = rss.Value();
  EXPECT_GT(before, 1 << 20);              // a gtest binary is more than 1 MiB resident
  std::vector<char> touched(64 << 20, 1);  // 64 MiB, written so it is resident
  UpdateProcessMetrics(&r);
  EXPECT_GT(rss.Value(), before + (48 << 20)) << touched[touched.size() / 2];
}

TEST(ProcessMetrics, StartTimeIsThisProcessesStart) {
  Registry r;
  UpdateProcessMetrics(&r);
  double start = r.GetGauge("process_start_time_seconds", "").Value();
  double now =
      std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
  EXPECT_LE(start, now + 1);
  EXPECT_GT(start, now - 600);  // this test binary started moments ago
  std::string text = r.Render();
  EXPECT_NE(text.find("# TYPE process_start_time_seconds gauge"), std::string::npos) << text;
  EXPECT_NE(text.find("# TYPE process_resident_memory_bytes gauge"), std::string::npos);
}

// The gauges read whichever allocator serves malloc (glibc's, or the sanitizer's under ASan/TSan,
// where mallinfo2 reads zero), and their HELP text names neither.
TEST(ProcessMetrics, HeapInUseFollowsAllocationsInEveryFlavour) {
  Registry r;
  UpdateHeapMetrics(&r);
  Gauge& in_use = r.GetGauge("kube_router_heap_in_use_bytes", "");
  const double before = in_use.Value();
  EXPECT_GT(before, 0);
  auto block = std::make_unique<std::vector<char>>(64 << 20, 1);
  UpdateHeapMetrics(&r);
  EXPECT_GT(in_use.Value(), before + (48 << 20)) << (*block)[block->size() / 2];
  EXPECT_GE(r.GetGauge("kube_router_heap_free_bytes", "").Value(), 0);
  const std::string text = r.Render();
  EXPECT_NE(text.find("# HELP kube_router_heap_in_use_bytes Bytes of heap"), std::string::npos)
      << text;
  EXPECT_EQ(text.find("mallinfo"), std::string::npos) << text;
}

}  // namespace
}  // namespace kr::metrics
