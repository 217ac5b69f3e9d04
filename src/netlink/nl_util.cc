#include "nl_util.h"

#include <netlink/errno.h>
#include <sys/socket.h>

#include <array>
#include <cstdlib>
#include <cstring>
#include <map>

namespace kr::netlink::detail {

std::string NlError(int error) { return nl_geterror(error); }

int ReceiveAnswers(nl_sock* sock, nl_recvmsg_msg_cb_t on_valid, void* arg) {
  // nl_socket_get_cb hands out a reference of its own: drop it once cloned.
  nl_cb* socket_cb = nl_socket_get_cb(sock);
  nl_cb* cb = nl_cb_clone(socket_cb);
  nl_cb_put(socket_cb);
  if (cb == nullptr) return -NLE_NOMEM;
  nl_cb_set(cb, NL_CB_VALID, NL_CB_CUSTOM, on_valid, arg);
  int err = nl_recvmsgs(sock, cb);
  nl_cb_put(cb);
  return err;
}

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

Status SendBatch(nl_sock* sock, const std::vector<std::pair<size_t, MsgPtr>>& requests,
                 uint32_t& seq, std::vector<std::pair<size_t, std::string>>& errors) {
  if (requests.empty()) return Status::Ok();
  std::string buffer;
  std::map<uint32_t, size_t> pending;  // seq -> index
  for (const auto& [index, msg] : requests) {
    nlmsghdr* hdr = nlmsg_hdr(msg.get());
    // Without NLM_F_REQUEST the kernel acks the message without acting on it.
    hdr->nlmsg_flags |= NLM_F_REQUEST | NLM_F_ACK;
    hdr->nlmsg_seq = seq++;
    hdr->nlmsg_pid = 0;
    pending[hdr->nlmsg_seq] = index;
    buffer.append(reinterpret_cast<const char*>(hdr), NLMSG_ALIGN(hdr->nlmsg_len));
  }
  if (int err = nl_sendto(sock, buffer.data(), buffer.size()); err < 0) {
    return Status::Error("cannot send netlink requests: " + NlError(err));
  }
  while (!pending.empty()) {
    sockaddr_nl peer{};
    unsigned char* data = nullptr;
    int n = nl_recv(sock, &peer, &data, nullptr);
    if (n <= 0) {
      free(data);
      return Status::Error("cannot read netlink acks: " + NlError(n == 0 ? -NLE_FAILURE : n));
    }
    int remaining = n;
    for (auto* hdr = reinterpret_cast<nlmsghdr*>(data); nlmsg_ok(hdr, remaining);
         hdr = nlmsg_next(hdr, &remaining)) {
      if (hdr->nlmsg_type != NLMSG_ERROR) continue;
      auto it = pending.find(hdr->nlmsg_seq);
      if (it == pending.end()) continue;  // not ours (a stale answer)
      if (hdr->nlmsg_len >= NLMSG_LENGTH(sizeof(nlmsgerr))) {
        const auto* ack = static_cast<const nlmsgerr*>(nlmsg_data(hdr));
        if (ack->error != 0) errors.emplace_back(it->second, strerror(-ack->error));
      } else {
        errors.emplace_back(it->second, "truncated netlink ack");
      }
      pending.erase(it);
    }
    free(data);
  }
  return Status::Ok();
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
