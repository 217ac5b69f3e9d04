#include "nl_util.h"

#include <netlink/errno.h>
#include <sys/socket.h>

#include <array>
#include <cstring>

namespace kr::netlink::detail {

std::string NlError(int error) { return nl_geterror(error); }

Result<SocketPtr> Connect(int protocol) {
  SocketPtr sock(nl_socket_alloc());
  if (!sock) return Status::Error("cannot allocate a netlink socket");
  if (int err = nl_connect(sock.get(), protocol); err < 0) {
    return Status::Error("cannot open netlink socket: " + NlError(err));
  }
  // Large buffers: a batch of route requests is answered by as many acks, and a dump of 100k
  // routes arrives in one burst.
  if (int err = nl_socket_set_buffer_size(sock.get(), 4 << 20, 4 << 20); err < 0) {
    return Status::Error("cannot size netlink socket buffers: " + NlError(err));
  }
  return sock;
}

int FamilyOf(const IpAddress& address) { return address.is_v4() ? AF_INET : AF_INET6; }

AddrPtr ToNlAddr(const IpAddress& address, int prefix_length) {
  const int size = address.is_v4() ? 4 : 16;
  AddrPtr addr(nl_addr_build(FamilyOf(address), address.bytes().data(), size));
  if (addr) nl_addr_set_prefixlen(addr.get(), prefix_length);
  return addr;
}

std::optional<IpAddress> FromNlAddr(const nl_addr* addr) {
  if (addr == nullptr) return std::nullopt;
  const int family = nl_addr_get_family(addr);
  const unsigned int length = nl_addr_get_len(addr);
  const auto* bytes = static_cast<const uint8_t*>(nl_addr_get_binary_addr(addr));
  // A default route arrives without RTA_DST: libnl gives an empty address of the family.
  if (length == 0 && family == AF_INET) return IpAddress::V4(0);
  if (length == 0 && family == AF_INET6) return IpAddress::V6({});
  if (family == AF_INET && length == 4) {
    uint32_t host =
        uint32_t{bytes[0]} << 24 | uint32_t{bytes[1]} << 16 | uint32_t{bytes[2]} << 8 | bytes[3];
    return IpAddress::V4(host);
  }
  if (family == AF_INET6 && length == 16) {
    std::array<uint8_t, 16> v6;
    std::memcpy(v6.data(), bytes, 16);
    return IpAddress::V6(v6);
  }
  return std::nullopt;
}

}  // namespace kr::netlink::detail
