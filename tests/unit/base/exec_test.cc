#include "kube_router/base/exec.h"

#include <gtest/gtest.h>
#include <signal.h>

#include <chrono>
#include <fstream>
#include <sstream>
#include <thread>

namespace kr {
namespace {

using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

bool ProcessExists(pid_t pid) { return kill(pid, 0) == 0; }

TEST(ExecTest, FeedsStdinAndCapturesBothStreams) {
  std::string big(1 << 20, 'x');
  auto r = Exec({"sh", "-c", "wc -c; echo oops >&2; exit 3"}, big);
  ASSERT_TRUE(r.ok()) << r.error();
  EXPECT_EQ(r->exit_code, 3);
  EXPECT_EQ(std::stoul(r->out), big.size());
  EXPECT_EQ(r->err, "oops\n");
}

// cat echoes while we still write: with a blocking stdin pipe we would stall in write() on a
// full pipe while cat stalls writing the stdout we are not reading.
TEST(ExecTest, StdinLargerThanPipeBufferWhileChildEchoesDoesNotDeadlock) {
  std::string big;
  for (int i = 0; big.size() < (8u << 20); ++i) big += "line " + std::to_string(i) + "\n";
  ExecOptions options;
  options.timeout = milliseconds(20'000);
  auto r = Exec({"cat"}, big, options);
  ASSERT_TRUE(r.ok()) << r.error();
  EXPECT_EQ(r->exit_code, 0);
  EXPECT_TRUE(r->out == big) << r->out.size() << " of " << big.size() << " bytes came back";
}

TEST(ExecTest, CheckedReportsProgramAndStderr) {
  auto r = ExecChecked({"sh", "-c", "echo bad thing >&2; exit 1"});
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().find("sh exited 1: bad thing"), std::string::npos) << r.error();
  auto ok = ExecChecked({"echo", "hi"});
  ASSERT_TRUE(ok.ok());
  EXPECT_EQ(*ok, "hi\n");
}

TEST(ExecTest, MissingProgramIsAnError) {
  auto r = Exec({"kr-no-such-program-xyz"});
  EXPECT_FALSE(r.ok());
}

TEST(ExecTest, HungChildIsKilledAtTheDeadline) {
  ExecOptions options;
  options.timeout = milliseconds(300);
  auto start = Clock::now();
  auto r = Exec({"sleep", "60"}, "", options);
  auto took = Clock::now() - start;
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().find("sleep timed out after 300 ms"), std::string::npos) << r.error();
  EXPECT_LT(took, std::chrono::seconds(5));
}

// SIGKILL, so a child ignoring SIGTERM ends too.
TEST(ExecTest, ChildIgnoringSigtermIsKilled) {
  ExecOptions options;
  options.timeout = milliseconds(500);
  std::string script = "trap '' TERM; while :; do sleep 1; done";
  auto r = Exec({"sh", "-c", script}, "", options);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().find("timed out"), std::string::npos) << r.error();
}

// The kill reaches the whole process group: a grandchild that holds no pipe would otherwise
// outlive the deadline.
TEST(ExecTest, GrandchildInTheGroupDiesWithTheChild) {
  ExecOptions options;
  options.timeout = milliseconds(500);
  // The grandchild's pid goes to a file: our stderr capture would not see it after the kill.
  char dir[] = "/tmp/kr-exec-test-XXXXXX";
  ASSERT_NE(mkdtemp(dir), nullptr);
  std::string pidfile = std::string(dir) + "/pid";
  std::string script = "trap '' TERM; sleep 60 </dev/null >/dev/null 2>&1 & echo $! > " + pidfile +
                       "; while :; do sleep 1; done";
  auto r = Exec({"sh", "-c", script}, "", options);
  ASSERT_FALSE(r.ok());
  std::ifstream in(pidfile);
  pid_t grandchild = 0;
  in >> grandchild;
  ASSERT_GT(grandchild, 0);
  auto deadline = Clock::now() + std::chrono::seconds(5);
  while (ProcessExists(grandchild) && Clock::now() < deadline)
    std::this_thread::sleep_for(milliseconds(10));
  // It is our grandchild, reparented to init (or a subreaper) which reaps it.
  std::ifstream stat("/proc/" + std::to_string(grandchild) + "/stat");
  std::string s;
  std::getline(stat, s);
  EXPECT_TRUE(!ProcessExists(grandchild) || s.find(") Z ") != std::string::npos)
      << "grandchild " << grandchild << " survived: " << s;
  std::remove(pidfile.c_str());
  rmdir(dir);
}

TEST(ExecTest, FloodingChildIsKilledAtTheOutputCap) {
  ExecOptions options;
  options.max_output = 1 << 20;
  options.timeout = milliseconds(20'000);
  auto start = Clock::now();
  auto r = Exec({"yes"}, "", options);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().find("output exceeded 1048576 bytes"), std::string::npos) << r.error();
  EXPECT_LT(Clock::now() - start, std::chrono::seconds(10));
}

TEST(ExecTest, StderrFloodIsDrainedAndTruncated) {
  auto r = Exec({"sh", "-c", "head -c 2000000 /dev/zero | tr '\\0' e >&2; echo done"});
  ASSERT_TRUE(r.ok()) << r.error();
  EXPECT_EQ(r->out, "done\n");
  EXPECT_EQ(r->err.size(), kExecStderrKept);
}

TEST(ExecTest, CancelKillsTheChild) {
  std::atomic<bool> cancel{false};
  ExecOptions options;
  options.cancel = &cancel;
  std::thread canceller([&] {
    std::this_thread::sleep_for(milliseconds(200));
    cancel = true;
  });
  auto start = Clock::now();
  auto r = Exec({"sleep", "60"}, "", options);
  canceller.join();
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().find("cancelled"), std::string::npos) << r.error();
  EXPECT_LT(Clock::now() - start, std::chrono::seconds(5));
}

// The agent blocks SIGTERM/SIGINT in every thread and ignores SIGPIPE; exec keeps both the
// mask and ignored dispositions, so without a reset an iptables child could not be stopped by
// SIGTERM and would not die of a broken pipe.
TEST(ExecTest, ChildStartsWithDefaultSignalsAndEmptyMask) {
  sigset_t block, old;
  sigemptyset(&block);
  sigaddset(&block, SIGTERM);
  sigaddset(&block, SIGINT);
  ASSERT_EQ(pthread_sigmask(SIG_BLOCK, &block, &old), 0);
  auto old_pipe = signal(SIGPIPE, SIG_IGN);
  auto old_hup = signal(SIGHUP, SIG_IGN);
  auto r = Exec({"grep", "-E", "^Sig(Blk|Ign):", "/proc/self/status"});
  signal(SIGPIPE, old_pipe);
  signal(SIGHUP, old_hup);
  pthread_sigmask(SIG_SETMASK, &old, nullptr);
  ASSERT_TRUE(r.ok()) << r.error();
  EXPECT_EQ(r->out, "SigBlk:\t0000000000000000\nSigIgn:\t0000000000000000\n");
}

TEST(ExecTest, ChildRunsInItsOwnProcessGroup) {
  auto r = Exec({"sh", "-c", "ps -o pgid= -p $$; echo $$"});
  ASSERT_TRUE(r.ok()) << r.error();
  std::istringstream in(r->out);
  long pgid = 0, pid = 0;
  in >> pgid >> pid;
  EXPECT_EQ(pgid, pid);
  EXPECT_NE(pgid, static_cast<long>(getpgrp()));
}

// Values reach the child verbatim through its environment: nothing is parsed as `env` would
// (an argument with '=' stays an argument, one starting with '-' is not an option).
TEST(ExecTest, EnvironmentAndArgvAreNotReparsed) {
  ExecOptions options;
  options.env = {{"KR_TEST_VALUE", "a b=c -u PATH"}, {"HOME", "/kr-home"}};
  auto r = Exec({"sh", "-c", "printf '%s|%s|%s|%s' \"$KR_TEST_VALUE\" \"$HOME\" \"$1\" \"$2\"",
                 "sh", "X=1", "-i"},
                "", options);
  ASSERT_TRUE(r.ok()) << r.error();
  EXPECT_EQ(r->out, "a b=c -u PATH|/kr-home|X=1|-i");
}

TEST(ExecTest, ChildClosingItsOutputsButRunningOnIsStillBounded) {
  ExecOptions options;
  options.timeout = milliseconds(300);
  auto r = Exec({"sh", "-c", "exec >&- 2>&-; sleep 60"}, "", options);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().find("timed out"), std::string::npos) << r.error();
}

}  // namespace
}  // namespace kr
