// Small RAII and conversion helpers shared by the libnl adapters (private to src/netlink).
#pragma once

#include <netlink/addr.h>
#include <netlink/cache.h>
#include <netlink/msg.h>
#include <netlink/netlink.h>
#include <netlink/socket.h>

#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "kube_router/base/ip.h"
#include "kube_router/base/status.h"

namespace kr::netlink::detail {

struct SocketDeleter {
  void operator()(nl_sock* sock) const { nl_socket_free(sock); }
};
struct MsgDeleter {
  void operator()(nl_msg* msg) const { nlmsg_free(msg); }
};
struct CacheDeleter {
  void operator()(nl_cache* cache) const { nl_cache_free(cache); }
};
struct AddrDeleter {
  void operator()(nl_addr* addr) const { nl_addr_put(addr); }
};
using SocketPtr = std::unique_ptr<nl_sock, SocketDeleter>;
using MsgPtr = std::unique_ptr<nl_msg, MsgDeleter>;
using CachePtr = std::unique_ptr<nl_cache, CacheDeleter>;
using AddrPtr = std::unique_ptr<nl_addr, AddrDeleter>;

// libnl's text for one of its (negative) error codes, e.g. "Object exists".
std::string NlError(int error);

// A connected socket of `protocol` (NETLINK_ROUTE, NETLINK_GENERIC) in the calling thread's
// network namespace.
Result<SocketPtr> Connect(int protocol);

// Sends `requests` (index in the caller's list, complete request) packed into one sendmsg, each
// asking for an ack under our own sequence number (`seq` is the caller's counter: libnl checks
// replies to its own requests against its counter, which must not move under it), and reads
// until every one is acknowledged. A refused request gives (index, the kernel's error text) in
// `errors`; the others are not affected. The caller bounds the batch (the socket buffers hold
// 4 MiB).
Status SendBatch(nl_sock* sock, const std::vector<std::pair<size_t, MsgPtr>>& requests,
                 uint32_t& seq, std::vector<std::pair<size_t, std::string>>& errors);

// Reads the answers to the request just sent on `sock`, calling `on_valid` with `arg` for each
// message; the socket's own callbacks (libnl's sequence check, the final ack) stay in force.
// Returns libnl's (negative) error code, or 0.
int ReceiveAnswers(nl_sock* sock, nl_recvmsg_msg_cb_t on_valid, void* arg);

int FamilyOf(const IpAddress& address);  // AF_INET / AF_INET6
AddrPtr ToNlAddr(const IpAddress& address, int prefix_length);
// nullopt for anything that is not a well-formed IPv4/IPv6 address.
std::optional<IpAddress> FromNlAddr(const nl_addr* addr);

}  // namespace kr::netlink::detail
