#include "kube_router/metrics/process.h"

#include <gtest/gtest.h>

#include <chrono>
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

}  // namespace
}  // namespace kr::metrics
