#include <gtest/gtest.h>

#include "kube_router/base/sha256.h"
#include "kube_router/netlink/links.h"

namespace kr::netlink {
namespace {

std::string Hex(const std::array<uint8_t, 32>& digest) {
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  for (uint8_t b : digest) {
    out += kHex[b >> 4];
    out += kHex[b & 0xf];
  }
  return out;
}

TEST(Sha256, MatchesPublishedVectors) {
  // FIPS 180-4 examples: one block, two blocks, and the empty message.
  EXPECT_EQ(Hex(Sha256("abc")), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  EXPECT_EQ(Hex(Sha256("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq")),
            "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
  EXPECT_EQ(Hex(Sha256("")), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  // Longer than one block and not block aligned (value from Python's hashlib).
  EXPECT_EQ(Hex(Sha256(std::string(1000, 'a'))),
            "41edece42d63e8d9bf515a9ba6932e1c20cbc9f5a5d134645adb5db1b9737ea3");
}

TEST(OverlayTunnelName, FollowsKubeRouterScheme) {
  // Expected names computed independently: "tun-" + sha256(ip without '.'/':')[:11].
  EXPECT_EQ(OverlayTunnelName(*IpAddress::Parse("10.0.0.1")), "tun-e443169117a");
  EXPECT_EQ(OverlayTunnelName(*IpAddress::Parse("192.168.1.10")), "tun-28c98c87e81");
  EXPECT_EQ(OverlayTunnelName(*IpAddress::Parse("fd00::1")), "tun-5393ee7fb5c");
  EXPECT_EQ(OverlayTunnelName(*IpAddress::Parse("10.0.0.1")).size(), 15u);  // IFNAMSIZ - 1
}

}  // namespace
}  // namespace kr::netlink
