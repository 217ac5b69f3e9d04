// The README's sandbox quick start, word for word: its first command (install-deps + release
// build) is what CI itself runs first (scripts/test.sh, in a clean checkout); its second,
// `scripts/sandbox.sh up`, is run here as written, and then the commands `up` prints under
// "Try", as written, retried the way a user would until each has its effect. Only the sandbox's
// namespace prefix and state directory are set apart (environment, not words), so a user's
// sandbox on the same machine is never touched.
#include <gtest/gtest.h>
#include <unistd.h>

#include <regex>
#include <sstream>
#include <string>

#include "kube_router/base/exec.h"
#include "lib/files.h"
#include "lib/netns.h"

namespace kr {
namespace {

using namespace std::chrono_literals;
using testing::ReadFile;
using testing::TempDir;
using testing::WaitFor;

// The indented command lines of the first code block after "## Quick start".
std::vector<std::string> QuickStartCommands(const std::string& readme) {
  std::vector<std::string> out;
  size_t at = readme.find("## Quick start");
  if (at == std::string::npos) return out;
  std::istringstream lines(readme.substr(at));
  std::string line;
  bool in_block = false;
  while (std::getline(lines, line)) {
    if (line.rfind("    ", 0) == 0) {
      in_block = true;
      out.push_back(line.substr(4));
    } else if (in_block && !line.empty()) {
      break;
    }
  }
  return out;
}

class ReadmeQuickStartTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(testing::IsRoot()) << "the netns tier runs as root";
    env_ = {{"KRSB_PREFIX", "krq" + std::to_string(getpid() % 100000)},
            {"KRSB_DIR", dir_.path() + "/state"}};
  }
  void TearDown() override {
    auto down = Sh("scripts/sandbox.sh down --reap");
    EXPECT_EQ(down.exit_code, 0) << down.err;
  }
  ExecResult Sh(const std::string& command, std::chrono::milliseconds timeout = 60s) {
    ExecOptions options;
    options.env = env_;
    options.timeout = timeout;
    auto r = Exec({"bash", "-c", "cd " KR_SOURCE_DIR " && " + command}, "", options);
    return r.ok() ? *r : ExecResult{-1, "", r.error()};
  }

  TempDir dir_;
  std::vector<std::pair<std::string, std::string>> env_;
};

TEST_F(ReadmeQuickStartTest, TwoCommandsThenWhatUpSuggests) {
  auto commands = QuickStartCommands(ReadFile(KR_SOURCE_DIR "/README.md"));
  ASSERT_EQ(commands,
            (std::vector<std::string>{"scripts/install-deps.sh && scripts/build.sh release",
                                      "scripts/sandbox.sh up"}));
  // CI's first steps are the first command (installs, then the release build).
  std::string test_sh = ReadFile(KR_SOURCE_DIR "/scripts/test.sh");
  EXPECT_NE(test_sh.find("scripts/install-deps.sh"), std::string::npos);
  EXPECT_NE(test_sh.find("scripts/build.sh release"), std::string::npos);

  auto up = Sh(commands[1], 180s);
  ASSERT_EQ(up.exit_code, 0) << up.out << up.err;
  std::smatch m;
  ASSERT_TRUE(std::regex_search(up.out, m, std::regex("export KUBECONFIG=(\\S+)"))) << up.out;
  env_.emplace_back("KUBECONFIG", m[1]);

  // The "Try" lines, in order.
  std::vector<std::string> tries;
  std::istringstream lines(up.out.substr(up.out.find("Try")));
  std::string line;
  std::getline(lines, line);
  while (std::getline(lines, line) && line.rfind("  ", 0) == 0) tries.push_back(line.substr(2));
  ASSERT_EQ(tries.size(), 6u) << up.out;
  ASSERT_EQ(tries[0], "kubectl apply --validate=false -f examples/");
  auto applied = Sh(tries[0]);
  ASSERT_EQ(applied.exit_code, 0) << applied.err;
  // status shows the nodes and the BGP sessions once pods are there.
  EXPECT_TRUE(WaitFor(
      [&] {
        auto status = Sh(tries[1]);
        return status.exit_code == 0 && status.out.find("Established") != std::string::npos &&
               status.out.find("web-2") != std::string::npos;
      },
      60s))
      << Sh(tries[1]).out;
  // client -> web-2 answers with web-2's name (once the pods run).
  EXPECT_TRUE(WaitFor(
      [&] {
        auto r = Sh(tries[2]);
        return r.exit_code == 0 && r.out.rfind("web-2 ", 0) == 0;
      },
      60s))
      << Sh(tries[2]).out << Sh(tries[2]).err;
  auto policy = Sh(tries[3]);
  EXPECT_EQ(policy.exit_code, 0) << policy.err;
  // The stranger is refused once the policies are in force.
  EXPECT_TRUE(WaitFor([&] { return Sh(tries[4]).exit_code != 0; }, 60s)) << Sh(tries[4]).out;
  EXPECT_TRUE(WaitFor([&] { return Sh(tries[2]).out.rfind("web-2 ", 0) == 0; }, 60s))
      << "the client is let in";
  ASSERT_EQ(tries[5], "scripts/sandbox.sh down");
  auto down = Sh(tries[5]);
  EXPECT_EQ(down.exit_code, 0) << down.err;
  EXPECT_NE(down.out.find("removed"), std::string::npos) << down.out;
}

}  // namespace
}  // namespace kr
