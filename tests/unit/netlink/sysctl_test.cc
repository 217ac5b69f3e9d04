#include "kube_router/netlink/sysctl.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

namespace kr::netlink::sysctl_test {
namespace {

class ProcSysctlTest : public ::testing::Test {
 protected:
  void SetUp() override {
    root_ = std::filesystem::temp_directory_path() /
            ("kr-sysctl-" + std::to_string(getpid()) + "-" +
             ::testing::UnitTest::GetInstance()->current_test_info()->name());
    std::filesystem::create_directories(root_ / "net/ipv4/conf/eth0.100");
    std::ofstream(root_ / "net/ipv4/ip_forward") << "0\n";
    std::ofstream(root_ / "net/ipv4/conf/eth0.100/rp_filter") << "1\n";
  }
  void TearDown() override { std::filesystem::remove_all(root_); }
  std::filesystem::path root_;
};

TEST(SysctlPath, DotsBecomeSlashesUnlessAPathIsGiven) {
  EXPECT_EQ(SysctlPath("net.ipv4.vs.conntrack"), "net/ipv4/vs/conntrack");
  EXPECT_EQ(SysctlPath("net/ipv4/conf/eth0.100/rp_filter"), "net/ipv4/conf/eth0.100/rp_filter");
}

TEST_F(ProcSysctlTest, ReadsTrimmedAndWritesValues) {
  auto sysctl = MakeProcSysctl(root_.string());
  auto value = sysctl->Get("net.ipv4.ip_forward");
  ASSERT_TRUE(value.ok()) << value.error();
  EXPECT_EQ(*value, "0");
  ASSERT_TRUE(sysctl->Set("net.ipv4.ip_forward", "1").ok());
  EXPECT_EQ(*sysctl->Get("net.ipv4.ip_forward"), "1");
  ASSERT_TRUE(sysctl->Set("net/ipv4/conf/eth0.100/rp_filter", "2").ok());
  EXPECT_EQ(*sysctl->Get("net/ipv4/conf/eth0.100/rp_filter"), "2");
}

TEST_F(ProcSysctlTest, MissingKeysAreErrorsAndNotCreated) {
  auto sysctl = MakeProcSysctl(root_.string());
  auto value = sysctl->Get("net.ipv4.vs.conntrack");
  ASSERT_FALSE(value.ok());
  EXPECT_NE(value.error().find("net.ipv4.vs.conntrack"), std::string::npos);
  EXPECT_FALSE(sysctl->Set("net.ipv4.vs.conntrack", "1").ok());
  EXPECT_FALSE(std::filesystem::exists(root_ / "net/ipv4/vs/conntrack"));
}

}  // namespace
}  // namespace kr::netlink::sysctl_test
