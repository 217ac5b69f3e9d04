// SPDX-License-Identifier: Apache-2.0
#include "socket_util.h"

#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "kube_router/base/unique_fd.h"
#include "kube_router/net/sockaddr.h"

namespace kr::bgp::net {

std::string ErrnoText(int err) { return std::strerror(err); }

namespace {
Status Errno(const std::string& what) { return Status::Error(what + ": " + ErrnoText(errno)); }
}  // namespace

Result<int> Listen(const IpAddress& address, uint16_t port) {
  int family = address.is_v4() ? AF_INET : AF_INET6;
  UniqueFd owned(socket(family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
  if (!owned) return Errno("socket");
  const int fd = owned.get();
  int one = 1;
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  if (family == AF_INET6) setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
  // SYN-ACKs leave with TTL 255, so a peer using GTSM (RFC 5082) can connect to us; the
  // accepted socket then gets the peer's own TTL.
  (void)SetTtl(fd, family == AF_INET6, 255);
  const auto where = kr::net::ToSockaddr(address, port);
  if (bind(fd, where.get(), where.length) != 0 || listen(fd, 64) != 0) {
    return Errno("bind/listen " + address.ToString() + ":" + std::to_string(port));
  }
  return owned.release();
}

Status SetMd5Key(int fd, const IpAddress& peer, const std::string& key) {
  tcp_md5sig sig{};
  auto where = kr::net::ToSockaddr(peer, 0);
  // A v4 peer on an IPv6 socket is keyed by its mapped address.
  sockaddr_storage probe{};
  socklen_t probe_len = sizeof(probe);
  if (getsockname(fd, reinterpret_cast<sockaddr*>(&probe), &probe_len) == 0 &&
      probe.ss_family == AF_INET6 && peer.is_v4()) {
    std::array<uint8_t, 16> mapped{};
    mapped[10] = mapped[11] = 0xff;
    std::memcpy(mapped.data() + 12, peer.bytes().data(), 4);
    where = kr::net::ToSockaddr(IpAddress::V6(mapped), 0);
  }
  std::memcpy(&sig.tcpm_addr, &where.storage, sizeof(where.storage));
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
  UniqueFd owned(socket(family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
  if (!owned) return Errno("socket");
  const int fd = owned.get();
  if (local) {
    const auto where = kr::net::ToSockaddr(*local, 0);
    if (bind(fd, where.get(), where.length) != 0) return Errno("bind " + local->ToString());
  }
  if (!md5_key.empty()) {
    if (Status s = SetMd5Key(fd, remote, md5_key); !s.ok()) return s;
  }
  if (Status s = SetTtl(fd, !remote.is_v4(), ttl); !s.ok()) return s;
  if (min_ttl > 0) {
    if (Status s = SetMinTtl(fd, !remote.is_v4(), min_ttl); !s.ok()) return s;
  }
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
  const auto where = kr::net::ToSockaddr(remote, port);
  if (connect(fd, where.get(), where.length) != 0 && errno != EINPROGRESS) {
    return Errno("connect " + remote.ToString());
  }
  return owned.release();
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
  if (getsockname(fd, reinterpret_cast<sockaddr*>(&ss), &len) != 0) return IpAddress();
  auto address = kr::net::FromSockaddr(reinterpret_cast<const sockaddr*>(&ss), len);
  return address ? address->first : IpAddress();
}

}  // namespace kr::bgp::net
