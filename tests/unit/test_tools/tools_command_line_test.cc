// fake-apiserver and sandbox-node parse their command lines with lib/flag_parser.h: a bad
// argument exits with status 2, one line naming it and the usage, before anything starts.
#include <gtest/gtest.h>

#include <chrono>
#include <string>
#include <vector>

#include "kube_router/base/exec.h"
#include "lib/binaries.h"

namespace kr::testing {
namespace {

const std::string kSandboxNode = KR_BINARY_DIR "/sandbox-node";

struct Rejected {
  std::vector<std::string> args;
  std::string line;  // what the tool says before its usage
};

// Runs `binary` (whose messages start with `name`) with each case's arguments. A tool that does
// not stop at a bad argument starts serving: the deadline ends it.
void ExpectEachRejected(const std::string& binary, const std::string& name,
                        const std::vector<Rejected>& cases) {
  ExecOptions options;
  options.timeout = std::chrono::seconds(30);
  for (const Rejected& c : cases) {
    std::vector<std::string> argv = {binary};
    argv.insert(argv.end(), c.args.begin(), c.args.end());
    auto r = Exec(argv, "", options);
    ASSERT_TRUE(r.ok()) << r.error();
    EXPECT_EQ(r->exit_code, 2) << r->err;
    EXPECT_EQ(r->err.rfind(name + ": " + c.line + "\nusage: " + name, 0), 0u) << r->err;
  }
}

TEST(ToolsCommandLineTest, FakeApiServerNamesTheBadArgument) {
  ExpectEachRejected(
      kFakeApiServerBinary, "fake-apiserver",
      {{{"--bogus"}, "unknown argument --bogus"},
       {{"--gzip", "--listen"}, "--listen needs a value"},
       {{"--history-limit", "lots"},
        "--history-limit wants a whole number from 0 to 9223372036854775807, got lots"}});
}

TEST(ToolsCommandLineTest, SandboxNodeNamesTheBadArgument) {
  ExpectEachRejected(
      kSandboxNode, "sandbox-node",
      {{{"--bogus"}, "unknown argument --bogus"},
       {{"--state-dir"}, "--state-dir needs a value"},
       {{"--node", "n1,ns"}, "--node wants NAME,NETNS,NODE_IP,CNI_CONF_FILE, got n1,ns"},
       {{"--period-ms", "1s"}, "--period-ms wants a whole number from 0 to 2147483647, got 1s"},
       {{"--kubeconfig", "k", "--state-dir", "s"},
        "--kubeconfig, --state-dir and at least one --node are required"}});
}

}  // namespace
}  // namespace kr::testing
