// SPDX-License-Identifier: Apache-2.0
#include "socket_util.h"

#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace kr::bgp::net {

std::string ErrnoText(int err) { return std::strerror(err); }

sockaddr_storage ToSockaddr(const IpAddress& address, uint16_t port, socklen_t& length) {
  sockaddr_storage ss{};
  if (address.is_v4()) {
    auto* sin = reinterpret_cast<sockaddr_in*>(&ss);
    sin->sin_family = AF_INET;
    sin->sin_port = htons(port);
    std::memcpy(&sin->sin_addr, address.bytes().data(), 4);
    length = sizeof(sockaddr_in);
  } else {
    auto* sin6 = reinterpret_cast<sockaddr_in6*>(&ss);
    sin6->sin6_family = AF_INET6;
    sin6->sin6_port = htons(port);
    std::memcpy(&sin6->sin6_addr, address.bytes().data(), 16);
    length = sizeof(sockaddr_in6);
  }
  return ss;
}

IpAddress FromSockaddr(const sockaddr_storage& ss, uint16_t* port) {
  if (ss.ss_family == AF_INET) {
    const auto* sin = reinterpret_cast<const sockaddr_in*>(&ss);
    if (port) *port = ntohs(sin->sin_port);
    return IpAddress::V4(ntohl(sin->sin_addr.s_addr));
  }
  const auto* sin6 = reinterpret_cast<const sockaddr_in6*>(&ss);
  if (port) *port = ntohs(sin6->sin6_port);
  std::array<uint8_t, 16> b;
  std::memcpy(b.data(), &sin6->sin6_addr, 16);
  static const uint8_t kMapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
  if (std::memcmp(b.data(), kMapped, 12) == 0) {
    return IpAddress::V4((static_cast<uint32_t>(b[12]) << 24) | (b[13] << 16) | (b[14] << 8) |
                         b[15]);
  }
  return IpAddress::V6(b);
}

namespace {
Status Errno(const std::string& what) { return Status::Error(what + ": " + ErrnoText(errno)); }
}  // namespace

Result<int> Listen(const IpAddress& address, uint16_t port) {
  int family = address.is_v4() ? AF_INET : AF_INET6;
  int fd = socket(family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return Errno("socket");
  int one = 1;
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  if (family == AF_INET6) setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
  // SYN-ACKs leave with TTL 255, so a peer using GTSM (RFC 5082) can connect to us; the
  // accepted socket then gets the peer's own TTL.
  (void)SetTtl(fd, family == AF_INET6, 255);
  socklen_t len = 0;
  auto ss = ToSockaddr(address, port, len);
  if (bind(fd, reinterpret_cast<sockaddr*>(&ss), len) != 0 || listen(fd, 64) != 0) {
    Status s = Errno("bind/listen " + address.ToString() + ":" + std::to_string(port));
    close(fd);
    return s;
  }
  return fd;
}

Status SetMd5Key(int fd, const IpAddress& peer, const std::string& key) {
  tcp_md5sig sig{};
  socklen_t len = 0;
  auto ss = ToSockaddr(peer, 0, len);
  // A v4 peer on an IPv6 socket is keyed by its mapped address.
  sockaddr_storage probe{};
  socklen_t probe_len = sizeof(probe);
  if (getsockname(fd, reinterpret_cast<sockaddr*>(&probe), &probe_len) == 0 &&
      probe.ss_family == AF_INET6 && peer.is_v4()) {
    std::array<uint8_t, 16> mapped{};
    mapped[10] = mapped[11] = 0xff;
    std::memcpy(mapped.data() + 12, peer.bytes().data(), 4);
    ss = ToSockaddr(IpAddress::V6(mapped), 0, len);
  }
  std::memcpy(&sig.tcpm_addr, &ss, sizeof(ss));
  if (key.size() > TCP_MD5SIG_MAXKEYLEN) return Status::Error("TCP MD5 key longer than 80 bytes");
  sig.tcpm_keylen = static_cast<uint16_t>(key.size());
  std::memcpy(sig.tcpm_key, key.data(), key.size());
  if (setsockopt(fd, IPPROTO_TCP, TCP_MD5SIG, &sig, sizeof(sig)) != 0) {
    // Removing a key that was never set is fine.
    if (key.empty() && errno == ENOENT) return Status::Ok();
    return Errno("setsockopt(TCP_MD5SIG)");
  }
  return Status::Ok();
}

Status SetTtl(int fd, bool ipv6, int ttl) {
  int rc = ipv6 ? setsockopt(fd, IPPROTO_IPV6, IPV6_UNICAST_HOPS, &ttl, sizeof(ttl))
                : setsockopt(fd, IPPROTO_IP, IP_TTL, &ttl, sizeof(ttl));
  return rc == 0 ? Status::Ok() : Errno("setsockopt(TTL)");
}

Status SetMinTtl(int fd, bool ipv6, int min_ttl) {
  int rc = ipv6 ? setsockopt(fd, IPPROTO_IPV6, IPV6_MINHOPCOUNT, &min_ttl, sizeof(min_ttl))
                : setsockopt(fd, IPPROTO_IP, IP_MINTTL, &min_ttl, sizeof(min_ttl));
  return rc == 0 ? Status::Ok() : Errno("setsockopt(minimum TTL)");
}

Result<int> StartConnect(const IpAddress& remote, uint16_t port, const IpAddress* local,
                         const std::string& md5_key, int ttl, int min_ttl) {
  int family = remote.is_v4() ? AF_INET : AF_INET6;
  int fd = socket(family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return Errno("socket");
  auto fail = [&](Status s) -> Result<int> {
    close(fd);
    return s;
  };
  if (local) {
    socklen_t len = 0;
    auto ss = ToSockaddr(*local, 0, len);
    if (bind(fd, reinterpret_cast<sockaddr*>(&ss), len) != 0) {
      return fail(Errno("bind " + local->ToString()));
    }
  }
  if (!md5_key.empty()) {
    if (Status s = SetMd5Key(fd, remote, md5_key); !s.ok()) return fail(s);
  }
  if (Status s = SetTtl(fd, !remote.is_v4(), ttl); !s.ok()) return fail(s);
  if (min_ttl > 0) {
    if (Status s = SetMinTtl(fd, !remote.is_v4(), min_ttl); !s.ok()) return fail(s);
  }
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
  socklen_t len = 0;
  auto ss = ToSockaddr(remote, port, len);
  if (connect(fd, reinterpret_cast<sockaddr*>(&ss), len) != 0 && errno != EINPROGRESS) {
    return fail(Errno("connect " + remote.ToString()));
  }
  return fd;
}

int PendingError(int fd) {
  int err = 0;
  socklen_t len = sizeof(err);
  if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0) return errno;
  return err;
}

IpAddress LocalAddress(int fd) {
  sockaddr_storage ss{};
  socklen_t len = sizeof(ss);
  getsockname(fd, reinterpret_cast<sockaddr*>(&ss), &len);
  return FromSockaddr(ss);
}

}  // namespace kr::bgp::net
