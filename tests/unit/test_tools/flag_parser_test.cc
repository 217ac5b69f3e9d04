// tests/lib/flag_parser.h: what each kind of flag takes, and that every error names the
// argument it is about.
#include "lib/flag_parser.h"

#include <gtest/gtest.h>

#include <cstdint>
#include <string>
#include <vector>

namespace kr::testing {
namespace {

struct Parsed {
  std::string listen = "127.0.0.1:0";
  std::vector<std::string> manifests;
  int period_ms = 500;
  size_t history = 200000;
  bool gzip = false, verbose = false;
  std::vector<std::string> nodes;
};

Status Parse(std::vector<std::string> args, Parsed* out) {
  FlagParser parser;
  parser.Text("--listen", &out->listen)
      .List("--manifests", &out->manifests)
      .Number("--period-ms", &out->period_ms, 1, 60000)
      .Number("--history-limit", &out->history)
      .Switch("--gzip", &out->gzip)
      .Switch("--verbose", &out->verbose)
      .Alias("-v", "--verbose")
      .Custom("--node", "NAME,IP", [out](const std::string& v) {
        if (v.find(',') == std::string::npos) return false;
        out->nodes.push_back(v);
        return true;
      });
  std::vector<const char*> argv = {"tool"};
  for (const auto& a : args) argv.push_back(a.c_str());
  return parser.Parse(static_cast<int>(argv.size()), argv.data());
}

TEST(FlagParserTest, EveryKindTakesItsArguments) {
  Parsed p;
  ASSERT_TRUE(Parse({"--listen", "[::1]:6443", "--manifests", "a.yaml", "dir", "--gzip",
                     "--period-ms", "250", "-v", "--manifests", "b.json", "--history-limit",
                     "18446744073709551", "--node", "n1,10.0.0.1", "--node", "n2,10.0.0.2"},
                    &p)
                  .ok());
  EXPECT_EQ(p.listen, "[::1]:6443");
  EXPECT_EQ(p.manifests, (std::vector<std::string>{"a.yaml", "dir", "b.json"}));
  EXPECT_EQ(p.period_ms, 250);
  EXPECT_EQ(p.history, 18446744073709551u);
  EXPECT_TRUE(p.gzip);
  EXPECT_TRUE(p.verbose);
  EXPECT_EQ(p.nodes, (std::vector<std::string>{"n1,10.0.0.1", "n2,10.0.0.2"}));
}

TEST(FlagParserTest, DefaultsStayWithoutTheFlagsAndAListMayBeEmpty) {
  Parsed p;
  ASSERT_TRUE(Parse({"--manifests", "--gzip"}, &p).ok());
  EXPECT_TRUE(p.manifests.empty());
  EXPECT_TRUE(p.gzip);
  EXPECT_EQ(p.listen, "127.0.0.1:0");
  EXPECT_EQ(p.period_ms, 500);
  EXPECT_FALSE(p.verbose);
}

TEST(FlagParserTest, ErrorsNameTheArgument) {
  struct Case {
    std::vector<std::string> args;
    std::string error;
  };
  const std::vector<Case> cases = {
      {{"--gzip", "--nope"}, "unknown argument --nope"},
      {{"positional"}, "unknown argument positional"},
      {{"--listen=1.2.3.4:5"}, "unknown argument --listen=1.2.3.4:5"},
      {{"--gzip", "--listen"}, "--listen needs a value"},
      {{"--period-ms"}, "--period-ms needs a value"},
      {{"--period-ms", "12x"}, "--period-ms wants a whole number from 1 to 60000, got 12x"},
      {{"--period-ms", ""}, "--period-ms wants a whole number from 1 to 60000, got "},
      {{"--period-ms", "0"}, "--period-ms wants a whole number from 1 to 60000, got 0"},
      {{"--period-ms", "60001"}, "--period-ms wants a whole number from 1 to 60000, got 60001"},
      {{"--history-limit", "-1"},
       "--history-limit wants a whole number from 0 to 9223372036854775807, got -1"},
      {{"--history-limit", "99999999999999999999"},
       "--history-limit wants a whole number from 0 to 9223372036854775807, got "
       "99999999999999999999"},
      {{"--node", "n1"}, "--node wants NAME,IP, got n1"},
  };
  for (const auto& c : cases) {
    Parsed p;
    Status s = Parse(c.args, &p);
    EXPECT_FALSE(s.ok()) << c.error;
    EXPECT_EQ(s.message(), c.error);
  }
}

TEST(FlagParserTest, AValueIsTheNextArgumentEvenWhenItLooksLikeAFlag) {
  Parsed p;
  ASSERT_TRUE(Parse({"--listen", "--gzip"}, &p).ok());
  EXPECT_EQ(p.listen, "--gzip");
  EXPECT_FALSE(p.gzip);
}

}  // namespace
}  // namespace kr::testing
