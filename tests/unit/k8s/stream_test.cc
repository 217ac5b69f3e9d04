// Watch-stream framing and backoff (the HTTP client's URL parsing is tested in
// tests/unit/net/http_client_test.cc, host resolution in tests/unit/net/dns_test.cc).
#include <gtest/gtest.h>

#include <random>

#include "kube_router/k8s/backoff.h"
#include "kube_router/k8s/watch_stream.h"

namespace kr::k8s::stream_test {
namespace {

using namespace std::chrono_literals;

// A stream with every event type, strings holding braces, quotes and escapes, a line split
// inside an escape, whitespace and newlines between values, and a malformed event.
const std::string kStream =
    R"({"type":"ADDED","object":{"metadata":{"name":"a{}\"]","resourceVersion":"1"}}})"
    "\n"
    R"({"type":"MODIFIED","object":{"metadata":{"name":"b","annotations":{"x":"\\\"}{"}}}})"
    "\n\n  "
    R"({"type":"BOOKMARK","object":{"metadata":{"resourceVersion":"7"}}})"
    R"({"type":"DELETED","object":{"metadata":{"name":"c"},"spec":{"list":[1,[2,{"z":[]}]]}}})"
    "\r\n"
    R"({"type":"UNKNOWN","object":{}})"
    "\n"
    R"({"type":"ERROR","object":{"kind":"Status","code":410,"reason":"Expired"}})"
    "\n";

// Type names, or "error", of what the decoder produced.
std::vector<std::string> Summarise(const std::vector<Result<WatchEvent>>& events) {
  std::vector<std::string> out;
  for (const auto& e : events) {
    if (!e.ok()) {
      out.push_back("error");
      continue;
    }
    out.push_back(std::to_string(static_cast<int>(e->type)) + ":" + e->object.dump());
  }
  return out;
}

TEST(WatchStreamTest, DecodesEveryEventType) {
  WatchStreamDecoder d;
  std::vector<Result<WatchEvent>> out;
  d.Feed(kStream, &out);
  ASSERT_EQ(out.size(), 6u);
  EXPECT_EQ(out[0]->type, WatchEventType::kAdded);
  EXPECT_EQ(out[0]->object["metadata"]["name"], "a{}\"]");
  EXPECT_EQ(out[1]->type, WatchEventType::kModified);
  EXPECT_EQ(out[2]->type, WatchEventType::kBookmark);
  EXPECT_EQ(out[3]->type, WatchEventType::kDeleted);
  EXPECT_FALSE(out[4].ok());
  EXPECT_NE(out[4].error().find("UNKNOWN"), std::string::npos);
  EXPECT_EQ(out[5]->type, WatchEventType::kError);
  EXPECT_EQ(out[5]->object["code"], 410);
  EXPECT_EQ(d.pending(), 0u);
}

TEST(WatchStreamTest, SameEventsHoweverTheBytesAreSplit) {
  WatchStreamDecoder whole;
  std::vector<Result<WatchEvent>> want;
  whole.Feed(kStream, &want);
  std::mt19937 rng(42);
  for (int round = 0; round < 500; ++round) {
    WatchStreamDecoder d;
    std::vector<Result<WatchEvent>> got;
    size_t pos = 0;
    while (pos < kStream.size()) {
      size_t n = 1 + rng() % (round % 3 == 0 ? 3 : 40);
      d.Feed(std::string_view(kStream).substr(pos, n), &got);
      pos += n;
    }
    ASSERT_EQ(Summarise(got), Summarise(want)) << "round " << round;
  }
}

TEST(WatchStreamTest, GarbageIsReportedAndTheStreamRecovers) {
  WatchStreamDecoder d;
  std::vector<Result<WatchEvent>> out;
  d.Feed("oops not json\n", &out);
  d.Feed(R"({"type":"ADDED"})"
         "\n",
         &out);  // no object
  d.Feed(R"({"type":"ADDED","object":{"metadata":{"name":"ok"}}})", &out);
  ASSERT_EQ(out.size(), 3u);
  EXPECT_FALSE(out[0].ok());
  EXPECT_FALSE(out[1].ok());
  ASSERT_TRUE(out[2].ok());
  EXPECT_EQ(out[2]->object["metadata"]["name"], "ok");
}

TEST(WatchStreamTest, OversizedEventIsSkipped) {
  WatchStreamDecoder d(/*max_event_bytes=*/64);
  std::vector<Result<WatchEvent>> out;
  d.Feed(R"({"type":"ADDED","object":{"big":")" + std::string(200, 'x') + "\"}}\n", &out);
  d.Feed(R"({"type":"ADDED","object":{}})", &out);
  ASSERT_EQ(out.size(), 2u);
  EXPECT_FALSE(out[0].ok());
  EXPECT_TRUE(out[1].ok());
}

TEST(WatchStreamTest, TruncatedEventStaysPending) {
  WatchStreamDecoder d;
  std::vector<Result<WatchEvent>> out;
  d.Feed(R"({"type":"ADDED","object":{"metadata")", &out);
  EXPECT_TRUE(out.empty());
  EXPECT_GT(d.pending(), 0u);
}

TEST(BackoffTest, ClientGoNumbers) {
  BackoffParams no_jitter;
  no_jitter.jitter = 0;
  Backoff b(no_jitter, 1);
  auto t = Backoff::Clock::now();
  std::vector<int64_t> got;
  for (int i = 0; i < 8; ++i) got.push_back(b.Next(t += 1s).count());
  EXPECT_EQ(got, (std::vector<int64_t>{800, 1600, 3200, 6400, 12800, 25600, 30000, 30000}));
  // Two quiet minutes reset it.
  EXPECT_EQ(b.Next(t += 121s).count(), 800);

  Backoff jittered({}, 7);
  auto t2 = Backoff::Clock::now();
  for (int i = 0; i < 20; ++i) {
    auto d = jittered.Next(t2 += 1s).count();
    int64_t base = std::min<int64_t>(800LL << std::min(i, 6), 30000);
    EXPECT_GE(d, base);
    EXPECT_LE(d, 2 * base);
  }
}

}  // namespace
}  // namespace kr::k8s::stream_test
