// SPDX-License-Identifier: Apache-2.0
// Thin wrappers over the socket calls the speaker needs: listening, non-blocking connects,
// TCP MD5 keys (RFC 2385) and TTLs. Errors come back as Status with errno text. Addresses convert
// through the net module's ToSockaddr/FromSockaddr (kube_router/net/sockaddr.h).
#pragma once

#include <sys/socket.h>

#include <cstdint>
#include <string>

#include "kube_router/base/ip.h"
#include "kube_router/base/status.h"

namespace kr::bgp::net {

// A non-blocking listening TCP socket bound to address:port (IPv6 sockets are v6-only); it
// answers SYNs with TTL 255. The caller owns the descriptor (closed here on failure).
Result<int> Listen(const IpAddress& address, uint16_t port);
// Starts a non-blocking connect; the socket is ready once writable. `local` (if not the
// unspecified address) is bound first. The key and TTL are applied before connecting.
Result<int> StartConnect(const IpAddress& remote, uint16_t port, const IpAddress* local,
                         const std::string& md5_key, int ttl, int min_ttl = 0);
// Sets (or with an empty key removes) the TCP MD5 key for `peer` on `fd` (listening sockets
// keep one key per peer).
Status SetMd5Key(int fd, const IpAddress& peer, const std::string& key);
Status SetTtl(int fd, bool ipv6, int ttl);
// RFC 5082 (GTSM): the kernel drops segments that arrive with a lower TTL / hop limit
// (IP_MINTTL, IPV6_MINHOPCOUNT).
Status SetMinTtl(int fd, bool ipv6, int min_ttl);
// Pending error of a connecting socket (SO_ERROR); 0 when connected.
int PendingError(int fd);
IpAddress LocalAddress(int fd);
std::string ErrnoText(int err);

}  // namespace kr::bgp::net
