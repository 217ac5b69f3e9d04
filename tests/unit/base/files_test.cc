#include "kube_router/base/files.h"

#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "lib/files.h"

namespace kr {
namespace {

namespace fs = std::filesystem;

class WriteFileAtomicallyTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/kr-files-test-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
  }
  void TearDown() override { fs::remove_all(dir_); }
  size_t Entries(const std::string& dir) {
    return std::distance(fs::directory_iterator(dir), fs::directory_iterator());
  }
  std::string dir_;
};

TEST_F(WriteFileAtomicallyTest, CreatesWithExactModeWhateverTheUmask) {
  mode_t old = umask(077);
  std::string path = dir_ + "/net.d/10-kuberouter.conflist";  // directory created on the way
  Status s = WriteFileAtomically(path, "{\"a\":1}", 0644);
  umask(old);
  ASSERT_TRUE(s.ok()) << s.message();
  EXPECT_EQ(testing::ReadFile(path), "{\"a\":1}");
  struct stat st {};
  ASSERT_EQ(stat(path.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 0644u);
  EXPECT_EQ(Entries(dir_ + "/net.d"), 1u) << "no temporary file is left behind";
}

TEST_F(WriteFileAtomicallyTest, ReplacesExistingContentAndMode) {
  std::string path = dir_ + "/conf";
  std::ofstream(path) << "old content that is longer";
  chmod(path.c_str(), 0600);
  ASSERT_TRUE(WriteFileAtomically(path, "new", 0644).ok());
  EXPECT_EQ(testing::ReadFile(path), "new");
  struct stat st {};
  ASSERT_EQ(stat(path.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 0644u);
  EXPECT_EQ(Entries(dir_), 1u);
}

// A symlink planted at the path is replaced, not written through: the file it points at stays.
TEST_F(WriteFileAtomicallyTest, SymlinkAtThePathIsReplacedNotFollowed) {
  std::string victim = dir_ + "/victim";
  std::ofstream(victim) << "precious";
  std::string path = dir_ + "/conf";
  ASSERT_EQ(symlink(victim.c_str(), path.c_str()), 0);
  ASSERT_TRUE(WriteFileAtomically(path, "config", 0644).ok());
  EXPECT_EQ(testing::ReadFile(victim), "precious");
  EXPECT_FALSE(fs::is_symlink(path));
  EXPECT_EQ(testing::ReadFile(path), "config");
}

TEST_F(WriteFileAtomicallyTest, FailureLeavesTheOldFileAndNoTemporary) {
  // A directory where the file should be: rename fails.
  std::string path = dir_ + "/conf";
  fs::create_directory(path);
  std::ofstream(path + "/inside") << "x";
  Status s = WriteFileAtomically(path, "config", 0644);
  EXPECT_FALSE(s.ok());
  EXPECT_NE(s.message().find(path), std::string::npos) << s.message();
  EXPECT_EQ(Entries(dir_), 1u) << "the temporary file was removed";
  EXPECT_EQ(testing::ReadFile(path + "/inside"), "x");
}

}  // namespace
}  // namespace kr
