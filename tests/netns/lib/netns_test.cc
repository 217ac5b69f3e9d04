// Proves the namespace helpers the other netns tests rely on: creation, isolation, cleanup.
#include "lib/netns.h"

#include <gtest/gtest.h>

namespace kr::testing {
namespace {

TEST(NetnsHelperTest, CreatesIsolatedNamespaceAndRemovesIt) {
  ASSERT_TRUE(IsRoot()) << "the netns tier runs as root";
  std::string name;
  {
    Netns ns("kr-lib");
    name = ns.name();
    auto links = ns.Sh("ip -o link show");
    ASSERT_TRUE(links.ok()) << links.error();
    EXPECT_NE(links->find("lo:"), std::string::npos);
    EXPECT_EQ(links->find("eth0"), std::string::npos);  // no host links inside
    Process sleeper(ns.Wrap({"sleep", "600"}), "/dev/null");
    EXPECT_TRUE(sleeper.Running());
  }
  auto list = ExecChecked({"ip", "netns", "list"});
  ASSERT_TRUE(list.ok());
  EXPECT_EQ(list->find(name), std::string::npos);
}

TEST(NetnsHelperTest, WaitForPollsUntilTrueOrDeadline) {
  int calls = 0;
  EXPECT_TRUE(WaitFor([&] { return ++calls == 3; }, std::chrono::seconds(5)));
  EXPECT_FALSE(WaitFor([] { return false; }, std::chrono::milliseconds(50)));
}

}  // namespace
}  // namespace kr::testing
