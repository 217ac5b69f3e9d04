#include <gtest/gtest.h>

#include "kube_router/netlink/links.h"

namespace kr::netlink::naming_test {
namespace {

TEST(OverlayTunnelName, HashesTheCanonicalAddressText) {
  // Expected name computed independently (Python): "tun-" + base32(sha256(b"4:tun-8:10.0.0.1"))
  // [:11], the length-prefixed encoding of base/hashed_name.h.
  EXPECT_EQ(OverlayTunnelName(*IpAddress::Parse("10.0.0.1")), "tun-PQ5C4ZFSGXK");
  EXPECT_EQ(OverlayTunnelName(*IpAddress::Parse("10.0.0.1")).size(), 15u);  // IFNAMSIZ - 1
}

}  // namespace
}  // namespace kr::netlink::naming_test
