#include "kube_router/base/exec.h"

#include <gtest/gtest.h>

namespace kr {
namespace {

TEST(ExecTest, FeedsStdinAndCapturesBothStreams) {
  std::string big(1 << 20, 'x');  // larger than a pipe buffer: must not deadlock
  auto r = Exec({"sh", "-c", "wc -c; echo oops >&2; exit 3"}, big);
  ASSERT_TRUE(r.ok()) << r.error();
  EXPECT_EQ(r->exit_code, 3);
  EXPECT_EQ(std::stoul(r->out), big.size());
  EXPECT_EQ(r->err, "oops\n");
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

}  // namespace
}  // namespace kr
