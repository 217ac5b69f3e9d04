#include "kube_router/base/log_text.h"

#include <gtest/gtest.h>
#include <spdlog/sinks/stdout_sinks.h>

#include "kube_router/base/log.h"

namespace kr::log {
namespace {

TEST(SafeForLog, ControlCharactersBecomeVisibleEscapes) {
  EXPECT_EQ(SafeForLog("demo/web-1"), "demo/web-1");
  EXPECT_EQ(SafeForLog("a\nE1206 12:00:00.000000 1 forged"), "a\\nE1206 12:00:00.000000 1 forged");
  EXPECT_EQ(SafeForLog("x\r\ty"), "x\\r\\ty");
  EXPECT_EQ(SafeForLog(std::string("\x1b[2J\x00\x7f", 6)), "\\x1b[2J\\x00\\x7f");
  // C1 controls (U+009B CSI, U+0085 NEL) and U+2028/U+2029 as UTF-8.
  EXPECT_EQ(SafeForLog("a\xc2\x9b"
                       "b\xc2\x85"
                       "c"),
            "a\\u009bb\\u0085c");
  EXPECT_EQ(SafeForLog("l\xe2\x80\xa8m\xe2\x80\xa9n"), "l\\u2028m\\u2029n");
  // Other UTF-8 passes untouched.
  EXPECT_EQ(SafeForLog("caf\xc3\xa9 \xe2\x82\xac"), "caf\xc3\xa9 \xe2\x82\xac");
}

TEST(SafeForLog, LongTextIsCappedAndSaysHowMuchWasCut) {
  std::string huge(300'000, 'a');
  std::string safe = SafeForLog(huge);
  EXPECT_LT(safe.size(), kMaxLogText + 64);
  EXPECT_NE(safe.find("...(295904 more bytes)"), std::string::npos) << safe.substr(4090);
  EXPECT_EQ(SafeForLog("abcdef", 3), "abc...(3 more bytes)");
}

// Every KR_LOG line goes through it: a forged line cannot appear, whatever the call site.
TEST(SafeForLog, LogMacrosEscapeWhatTheyFormat) {
  testing::internal::CaptureStderr();
  auto logger = spdlog::stderr_logger_st("log-text-test");
  auto previous = spdlog::default_logger();
  spdlog::set_default_logger(logger);
  logger->set_pattern("%v");
  KR_LOG_WARN("skipping {}", "demo/x\nE1206 forged line");
  spdlog::set_default_logger(previous);
  spdlog::drop("log-text-test");
  std::string err = testing::internal::GetCapturedStderr();
  EXPECT_EQ(err, "skipping demo/x\\nE1206 forged line\n");
}

}  // namespace
}  // namespace kr::log
