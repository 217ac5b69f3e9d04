// tests/lib/timestamp.h: the RFC 3339 UTC form Kubernetes writes.
#include "lib/timestamp.h"

#include <gtest/gtest.h>

namespace kr::testing {
namespace {

TEST(TimestampTest, WholeSecondsInUtc) {
  EXPECT_EQ(UtcTimestamp(0), "1970-01-01T00:00:00Z");
  EXPECT_EQ(UtcTimestamp(1796591987), "2026-12-06T21:19:47Z");
  EXPECT_EQ(UtcTimestamp(951825599), "2000-02-29T11:59:59Z");
}

}  // namespace
}  // namespace kr::testing
