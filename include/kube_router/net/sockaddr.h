// The one conversion between our IpAddress and the kernel's socket addresses.
#pragma once

#include <sys/socket.h>

#include <cstdint>
#include <optional>
#include <utility>

#include "kube_router/base/ip.h"

namespace kr::net {

struct SocketAddress {
  sockaddr_storage storage{};
  socklen_t length = 0;

  int family() const { return storage.ss_family; }
  const sockaddr* get() const { return reinterpret_cast<const sockaddr*>(&storage); }
  sockaddr* get() { return reinterpret_cast<sockaddr*>(&storage); }
};

// sockaddr_in for IPv4, sockaddr_in6 for IPv6, port in network order.
SocketAddress ToSockaddr(const IpAddress& ip, uint16_t port);
// The address and port of an AF_INET/AF_INET6 sockaddr; an IPv4-mapped IPv6 address
// (::ffff:a.b.c.d, as a dual-stack listener reports IPv4 peers) comes back as IPv4.
// nullopt for other families or a short length.
std::optional<std::pair<IpAddress, uint16_t>> FromSockaddr(const sockaddr* addr, socklen_t length);

}  // namespace kr::net
