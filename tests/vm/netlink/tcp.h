// Minimal TCP helpers for vm tests: sockets are opened in the calling thread's network
// namespace (use with InNetns) and keep working there after the thread switches back.
#pragma once

#include <arpa/inet.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "kube_router/base/ip.h"

namespace kr::netlink {

// A TCP listener bound in the calling thread's namespace; port 0 picks a free port.
inline int Listen(const IpAddress& address, uint16_t* port) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in sa{};
  sa.sin_family = AF_INET;
  std::memcpy(&sa.sin_addr, address.bytes().data(), 4);
  socklen_t len = sizeof(sa);
  if (fd < 0 || bind(fd, reinterpret_cast<sockaddr*>(&sa), sizeof(sa)) != 0 || listen(fd, 1) != 0 ||
      getsockname(fd, reinterpret_cast<sockaddr*>(&sa), &len) != 0) {
    if (fd >= 0) close(fd);
    return -1;
  }
  *port = ntohs(sa.sin_port);
  return fd;
}

// Connects from `source` (0.0.0.0: any) to `to:port` with a deadline; true when the handshake
// completed.
inline bool Connects(const IpAddress& source, const IpAddress& to, uint16_t port) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (fd < 0) return false;
  sockaddr_in local{}, remote{};
  local.sin_family = remote.sin_family = AF_INET;
  std::memcpy(&local.sin_addr, source.bytes().data(), 4);
  std::memcpy(&remote.sin_addr, to.bytes().data(), 4);
  remote.sin_port = htons(port);
  bool ok = bind(fd, reinterpret_cast<sockaddr*>(&local), sizeof(local)) == 0;
  if (ok && connect(fd, reinterpret_cast<sockaddr*>(&remote), sizeof(remote)) != 0) {
    pollfd p{fd, POLLOUT, 0};
    int error = 0;
    socklen_t len = sizeof(error);
    ok = errno == EINPROGRESS && poll(&p, 1, 20000) == 1 &&
         getsockopt(fd, SOL_SOCKET, SO_ERROR, &error, &len) == 0 && error == 0;
  }
  close(fd);
  return ok;
}

// Accepts one connection within the deadline; true when one arrived.
inline bool AcceptsOne(int listener) {
  pollfd p{listener, POLLIN, 0};
  if (poll(&p, 1, 20000) != 1) return false;
  int fd = accept4(listener, nullptr, nullptr, SOCK_CLOEXEC);
  if (fd < 0) return false;
  close(fd);
  return true;
}

}  // namespace kr::netlink
