#include "kube_router/net/sockaddr.h"

#include <arpa/inet.h>
#include <netinet/in.h>

#include <cstring>

namespace kr::net {

SocketAddress ToSockaddr(const IpAddress& ip, uint16_t port) {
  SocketAddress out;
  if (ip.is_v4()) {
    auto* a4 = reinterpret_cast<sockaddr_in*>(&out.storage);
    a4->sin_family = AF_INET;
    a4->sin_port = htons(port);
    std::memcpy(&a4->sin_addr, ip.bytes().data(), 4);
    out.length = sizeof(sockaddr_in);
  } else {
    auto* a6 = reinterpret_cast<sockaddr_in6*>(&out.storage);
    a6->sin6_family = AF_INET6;
    a6->sin6_port = htons(port);
    std::memcpy(&a6->sin6_addr, ip.bytes().data(), 16);
    out.length = sizeof(sockaddr_in6);
  }
  return out;
}

std::optional<std::pair<IpAddress, uint16_t>> FromSockaddr(const sockaddr* addr, socklen_t length) {
  if (addr == nullptr) return std::nullopt;
  if (addr->sa_family == AF_INET && length >= static_cast<socklen_t>(sizeof(sockaddr_in))) {
    const auto* a4 = reinterpret_cast<const sockaddr_in*>(addr);
    return std::make_pair(IpAddress::V4(ntohl(a4->sin_addr.s_addr)), ntohs(a4->sin_port));
  }
  if (addr->sa_family == AF_INET6 && length >= static_cast<socklen_t>(sizeof(sockaddr_in6))) {
    const auto* a6 = reinterpret_cast<const sockaddr_in6*>(addr);
    std::array<uint8_t, 16> bytes;
    std::memcpy(bytes.data(), &a6->sin6_addr, 16);
    static constexpr uint8_t kMapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    if (std::memcmp(bytes.data(), kMapped, sizeof(kMapped)) == 0) {
      uint32_t v4 = (uint32_t{bytes[12]} << 24) | (uint32_t{bytes[13]} << 16) |
                    (uint32_t{bytes[14]} << 8) | bytes[15];
      return std::make_pair(IpAddress::V4(v4), ntohs(a6->sin6_port));
    }
    return std::make_pair(IpAddress::V6(bytes), ntohs(a6->sin6_port));
  }
  return std::nullopt;
}

}  // namespace kr::net
