// scripts/sandbox.sh refuses clearly before it makes anything: not root, a missing tool (named
// with its Debian package), an unknown controller, the API port in use. (A half-made sandbox is
// refused in the e2e test, which has one at hand.)
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <filesystem>
#include <string>

#include "kube_router/base/exec.h"
#include "lib/binaries.h"
#include "lib/netns.h"

namespace kr {
namespace {

using testing::TempDir;

class SandboxErrorsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(testing::IsRoot()) << "the netns tier runs as root";
    prefix_ = "krx" + std::to_string(getpid() % 100000);
  }
  void TearDown() override {
    // Nothing was made: no namespace with our prefix, no state directory.
    for (const auto& e : std::filesystem::directory_iterator("/run/netns"))
      EXPECT_NE(e.path().filename().string().rfind(prefix_ + "-", 0), 0u) << e.path();
    EXPECT_FALSE(std::filesystem::exists(dir_.path() + "/state"));
  }
  ExecResult Up(const std::string& prefix_command, const std::string& args = "") {
    return Run(prefix_command, "up " + args);
  }
  // For a test whose `up` wrongly succeeded: leaves nothing behind for the next test.
  void DownIfUp(const ExecResult& up) {
    if (up.exit_code == 0) Run("", "down --reap");
  }
  ExecResult Run(const std::string& prefix_command, const std::string& command) {
    ExecOptions options;
    options.env = {{"KRSB_PREFIX", prefix_},
                   {"KRSB_DIR", dir_.path() + "/state"},
                   {"KR_BUILD_DIR", KR_BINARY_DIR},
                   {"KR_FAKE_APISERVER", testing::kFakeApiServerBinary}};
    options.timeout = std::chrono::seconds(60);
    auto r =
        Exec({"bash", "-c", prefix_command + " " KR_SOURCE_DIR "/scripts/sandbox.sh " + command},
             "", options);
    return r.ok() ? *r : ExecResult{-1, "", r.error()};
  }

  TempDir dir_;
  std::string prefix_;
};

TEST_F(SandboxErrorsTest, NotRoot) {
  auto r = Up("setpriv --reuid=65534 --regid=65534 --clear-groups");
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.err.find("must run as root"), std::string::npos) << r.err;
}

TEST_F(SandboxErrorsTest, MissingToolsAreNamedWithTheirPackages) {
  // A PATH holding every tool the script uses except bird/birdc and socat.
  std::string bin = dir_.path() + "/bin";
  std::filesystem::create_directory(bin);
  for (const char* tool : {"ip", "nsenter", "kubectl", "iptables", "ipset", "curl", "ss", "bash",
                           "id", "awk", "grep", "sed", "cat", "mkdir", "tr", "dirname", "env"}) {
    auto where = Exec({"sh", "-c", std::string("command -v ") + tool});
    ASSERT_TRUE(where.ok() && where->exit_code == 0) << tool;
    std::string path = where->out.substr(0, where->out.find('\n'));
    std::filesystem::create_symlink(path, bin + "/" + tool);
  }
  auto r = Up("PATH=" + bin);
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.err.find("bird (apt-get install bird2)"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("birdc (apt-get install bird2)"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("socat (apt-get install socat)"), std::string::npos) << r.err;
  EXPECT_EQ(r.err.find("kubectl ("), std::string::npos) << r.err;
}

TEST_F(SandboxErrorsTest, UnknownController) {
  auto r = Up("", "--controllers router,bogus");
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.err.find("--controllers takes router,firewall,proxy; got bogus"), std::string::npos)
      << r.err;
}

TEST_F(SandboxErrorsTest, ApiPortInUse) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof a;
  ASSERT_EQ(bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
  ASSERT_EQ(listen(fd, 1), 0);
  getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
  std::string port = std::to_string(ntohs(a.sin_port));
  auto r = Up("", "--api-port " + port);
  close(fd);
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.err.find("port " + port + " on 127.0.0.1 is in use: pass --api-port PORT"),
            std::string::npos)
      << r.err;
}

// KR_BUILD_DIR names the build whose agent runs: one without kube-router is refused, never made
// up for by another build's (an ASan run would silently test the release agent; sandbox.sh fell
// back to build/ before).
TEST_F(SandboxErrorsTest, BuildDirWithoutTheAgentIsRefusedNotReplaced) {
  std::string build = dir_.path() + "/build-other";
  std::filesystem::create_directory(build);
  std::filesystem::create_symlink(KR_BINARY_DIR "/sandbox-node", build + "/sandbox-node");
  std::filesystem::create_symlink(testing::kFakeApiServerBinary, build + "/fake-apiserver");
  auto r = Up("KR_BUILD_DIR=" + build + " KR_FAKE_APISERVER=");
  DownIfUp(r);
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.err.find("KR_BUILD_DIR=" + build + " has no kube-router: build it there"),
            std::string::npos)
      << r.err;
}

// The same for fake-apiserver, whether named on its own (KR_FAKE_APISERVER) or not.
TEST_F(SandboxErrorsTest, MissingFakeApiServerIsRefusedNotReplaced) {
  std::string missing = dir_.path() + "/no-such-fake-apiserver";
  auto named = Up("KR_FAKE_APISERVER=" + missing);
  DownIfUp(named);
  EXPECT_NE(named.exit_code, 0);
  EXPECT_NE(named.err.find("KR_FAKE_APISERVER=" + missing + " is not an executable"),
            std::string::npos)
      << named.err;

  std::string build = dir_.path() + "/build-other";
  std::filesystem::create_directory(build);
  std::filesystem::create_symlink(testing::kAgentBinary, build + "/kube-router");
  std::filesystem::create_symlink(KR_BINARY_DIR "/sandbox-node", build + "/sandbox-node");
  auto r = Up("KR_BUILD_DIR=" + build + " KR_FAKE_APISERVER=");
  DownIfUp(r);
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.err.find("KR_BUILD_DIR=" + build + " has no fake-apiserver: build it there"),
            std::string::npos)
      << r.err;
}

}  // namespace
}  // namespace kr
