#include "kube_router/base/ip.h"

#include <gtest/gtest.h>

namespace kr {
namespace {

TEST(IpAddressTest, ParsesAndFormatsBothFamilies) {
  auto v4 = IpAddress::Parse("10.1.2.3");
  ASSERT_TRUE(v4);
  EXPECT_TRUE(v4->is_v4());
  EXPECT_EQ(v4->ToString(), "10.1.2.3");
  EXPECT_EQ(v4->v4_host_order(), 0x0a010203u);
  auto v6 = IpAddress::Parse("fd00:0:0::1");
  ASSERT_TRUE(v6);
  EXPECT_TRUE(v6->is_v6());
  EXPECT_EQ(v6->ToString(), "fd00::1");
}

TEST(IpAddressTest, RejectsMalformedText) {
  for (const char* bad :
       {"", "10.1.2", "10.1.2.256", "1.2.3.4.5", "fd00:::1", "abc", "1.2.3.4/8", " 1.2.3.4"}) {
    EXPECT_FALSE(IpAddress::Parse(bad)) << bad;
  }
}

TEST(IpPrefixTest, NormalisesAndContains) {
  auto p = IpPrefix::Parse("10.244.1.7/24");
  ASSERT_TRUE(p);
  EXPECT_EQ(p->ToString(), "10.244.1.0/24");
  EXPECT_TRUE(p->Contains(*IpAddress::Parse("10.244.1.200")));
  EXPECT_FALSE(p->Contains(*IpAddress::Parse("10.244.2.1")));
  EXPECT_FALSE(p->Contains(*IpAddress::Parse("fd00::1")));
  EXPECT_TRUE(IpPrefix::Parse("10.0.0.0/8")->Contains(*p));
  EXPECT_FALSE(p->Contains(*IpPrefix::Parse("10.0.0.0/8")));
  EXPECT_FALSE(IpPrefix::Parse("10.244.1.7/24", /*strict=*/true));
  EXPECT_EQ(IpPrefix::Parse("192.0.2.1")->length(), 32);
  EXPECT_EQ(IpPrefix::Parse("fd00::/63")->ToString(), "fd00::/63");
  EXPECT_EQ(IpPrefix::Parse("fd00::ffff/127")->ToString(), "fd00::fffe/127");
  EXPECT_EQ(IpPrefix::Parse("0.0.0.0/0")->ToString(), "0.0.0.0/0");
}

TEST(IpPrefixTest, RejectsBadLengths) {
  for (const char* bad : {"10.0.0.0/33", "10.0.0.0/", "10.0.0.0/a", "fd00::/129", "/8", "10/8"}) {
    EXPECT_FALSE(IpPrefix::Parse(bad)) << bad;
  }
}

}  // namespace
}  // namespace kr
