#include <gtest/gtest.h>

#include "kube_router/options/options.h"

namespace kr {
namespace {

TEST(GoDuration, ParsesGoSyntax) {
  struct Case {
    std::string text;
    int64_t nanos;
  };
  const Case cases[] = {
      {"0", 0},
      {"300ms", 300'000'000},
      {"5s", 5'000'000'000},
      {"1m", 60'000'000'000},
      {"1m0s", 60'000'000'000},
      {"2h22m", (2 * 3600 + 22 * 60) * 1'000'000'000LL},
      {"1.5s", 1'500'000'000},
      {".5s", 500'000'000},
      {"1h0m0.25s", 3600'250'000'000LL},
      {"10us", 10'000},
      {"10\xC2\xB5s", 10'000},
      {"7ns", 7},
      {"-3s", -3'000'000'000},
      {"+3s", 3'000'000'000},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.text);
    auto got = ParseGoDurationNanos(c.text);
    ASSERT_TRUE(got.ok()) << got.error();
    EXPECT_EQ(*got, c.nanos);
  }
}

TEST(GoDuration, RejectsBadSyntax) {
  for (const char* text : {"", "5", "1x", "s", "1m5", "abc", "1.s.", "-", "99999999999h"}) {
    SCOPED_TRACE(text);
    EXPECT_FALSE(ParseGoDurationNanos(text).ok());
  }
}

TEST(GoDuration, FormatsLikeGo) {
  using std::chrono::milliseconds;
  EXPECT_EQ(FormatGoDuration(milliseconds(0)), "0s");
  EXPECT_EQ(FormatGoDuration(milliseconds(300)), "300ms");
  EXPECT_EQ(FormatGoDuration(milliseconds(5000)), "5s");
  EXPECT_EQ(FormatGoDuration(milliseconds(60'000)), "1m0s");
  EXPECT_EQ(FormatGoDuration(milliseconds(90'000)), "1m30s");
  EXPECT_EQ(FormatGoDuration(milliseconds(1500)), "1.5s");
  EXPECT_EQ(FormatGoDuration(milliseconds(3'600'000)), "1h0m0s");
  EXPECT_EQ(FormatGoDuration(milliseconds(65'535'000)), "18h12m15s");
}

TEST(GoBool, AcceptsStrconvSpellings) {
  for (const char* t : {"1", "t", "T", "true", "TRUE", "True"}) EXPECT_TRUE(*ParseGoBool(t)) << t;
  for (const char* f : {"0", "f", "F", "false", "FALSE", "False"}) {
    EXPECT_FALSE(*ParseGoBool(f)) << f;
  }
  for (const char* bad : {"", "yes", "tRUE", "2"}) EXPECT_FALSE(ParseGoBool(bad).ok()) << bad;
}

}  // namespace
}  // namespace kr
