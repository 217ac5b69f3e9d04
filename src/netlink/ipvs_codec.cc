#include "ipvs_codec.h"

#include <arpa/inet.h>
#include <linux/ip_vs.h>
#include <netlink/attr.h>
#include <netlink/genl/genl.h>

#include <array>
#include <cstring>

namespace kr::netlink::detail {
namespace {

constexpr int kNetmaskV4 = -1;  // 0xffffffff: one address per service

// nf_inet_addr: 16 bytes, IPv4 in the first four.
std::array<uint8_t, 16> InetAddr(const IpAddress& ip) {
  std::array<uint8_t, 16> out{};
  std::memcpy(out.data(), ip.bytes().data(), ip.is_v4() ? 4 : 16);
  return out;
}

Status PutService(nl_msg* msg, const IpvsService& s, bool full) {
  nlattr* nest = nla_nest_start(msg, IPVS_CMD_ATTR_SERVICE);
  if (nest == nullptr) return Status::Error("message too small");
  int err = nla_put_u16(msg, IPVS_SVC_ATTR_AF, static_cast<uint16_t>(FamilyOf(s.address)));
  if (s.fwmark != 0) {
    err = err ? err : nla_put_u32(msg, IPVS_SVC_ATTR_FWMARK, s.fwmark);
  } else {
    auto addr = InetAddr(s.address);
    err = err ? err : nla_put_u16(msg, IPVS_SVC_ATTR_PROTOCOL, static_cast<uint16_t>(s.protocol));
    err = err ? err : nla_put(msg, IPVS_SVC_ATTR_ADDR, addr.size(), addr.data());
    err = err ? err : nla_put_u16(msg, IPVS_SVC_ATTR_PORT, htons(s.port));
  }
  if (full) {
    ip_vs_flags flags{s.flags, ~0u};
    err = err ? err : nla_put_string(msg, IPVS_SVC_ATTR_SCHED_NAME, s.scheduler.c_str());
    err = err ? err : nla_put(msg, IPVS_SVC_ATTR_FLAGS, sizeof(flags), &flags);
    err = err ? err : nla_put_u32(msg, IPVS_SVC_ATTR_TIMEOUT, s.timeout);
    err = err ? err
              : nla_put_u32(msg, IPVS_SVC_ATTR_NETMASK,
                            s.address.is_v4() ? static_cast<uint32_t>(kNetmaskV4) : 128);
  }
  if (err < 0) return Status::Error("cannot build IPVS service: " + NlError(err));
  nla_nest_end(msg, nest);
  return Status::Ok();
}

Status PutDestination(nl_msg* msg, const IpvsDestination& d, bool full) {
  nlattr* nest = nla_nest_start(msg, IPVS_CMD_ATTR_DEST);
  if (nest == nullptr) return Status::Error("message too small");
  auto addr = InetAddr(d.address);
  int err = nla_put(msg, IPVS_DEST_ATTR_ADDR, addr.size(), addr.data());
  err = err ? err : nla_put_u16(msg, IPVS_DEST_ATTR_PORT, htons(d.port));
  err = err ? err
            : nla_put_u16(msg, IPVS_DEST_ATTR_ADDR_FAMILY,
                          static_cast<uint16_t>(FamilyOf(d.address)));
  if (full) {
    err = err ? err : nla_put_u32(msg, IPVS_DEST_ATTR_FWD_METHOD, static_cast<uint32_t>(d.forward));
    err = err ? err : nla_put_u32(msg, IPVS_DEST_ATTR_WEIGHT, d.weight);
    err = err ? err : nla_put_u32(msg, IPVS_DEST_ATTR_U_THRESH, d.upper_threshold);
    err = err ? err : nla_put_u32(msg, IPVS_DEST_ATTR_L_THRESH, d.lower_threshold);
  }
  if (err < 0) return Status::Error("cannot build IPVS destination: " + NlError(err));
  nla_nest_end(msg, nest);
  return Status::Ok();
}

// Attribute readers that check the payload size first.
template <typename T>
std::optional<T> Read(const nlattr* attr) {
  if (attr == nullptr || nla_len(attr) < static_cast<int>(sizeof(T))) return std::nullopt;
  T value;
  std::memcpy(&value, nla_data(attr), sizeof(T));
  return value;
}

std::optional<IpAddress> ReadAddress(const nlattr* attr, int family) {
  if (attr == nullptr) return std::nullopt;
  const int need = family == AF_INET ? 4 : 16;
  if ((family != AF_INET && family != AF_INET6) || nla_len(attr) < need) return std::nullopt;
  const auto* b = static_cast<const uint8_t*>(nla_data(attr));
  if (family == AF_INET) {
    return IpAddress::V4(uint32_t{b[0]} << 24 | uint32_t{b[1]} << 16 | uint32_t{b[2]} << 8 | b[3]);
  }
  std::array<uint8_t, 16> v6;
  std::memcpy(v6.data(), b, 16);
  return IpAddress::V6(v6);
}

}  // namespace

Result<MsgPtr> BuildIpvsRequest(int family, uint8_t command, int nl_flags,
                                const IpvsService* service, const IpvsDestination* dest,
                                bool full) {
  MsgPtr msg(nlmsg_alloc());
  if (!msg) return Status::Error("out of memory");
  if (genlmsg_put(msg.get(), NL_AUTO_PORT, NL_AUTO_SEQ, family, 0, nl_flags, command,
                  IPVS_GENL_VERSION) == nullptr) {
    return Status::Error("cannot build IPVS header");
  }
  if (service != nullptr) {
    // A destination command names its service by identity only.
    if (Status s = PutService(msg.get(), *service, full && dest == nullptr); !s.ok()) return s;
  }
  if (dest != nullptr) {
    if (Status s = PutDestination(msg.get(), *dest, full); !s.ok()) return s;
  }
  return msg;
}

Result<MsgPtr> BuildIpvsTimeouts(int family, const IpvsTimeouts& timeouts) {
  MsgPtr msg(nlmsg_alloc());
  if (!msg) return Status::Error("out of memory");
  if (genlmsg_put(msg.get(), NL_AUTO_PORT, NL_AUTO_SEQ, family, 0, 0, IPVS_CMD_SET_CONFIG,
                  IPVS_GENL_VERSION) == nullptr) {
    return Status::Error("cannot build IPVS header");
  }
  int err = 0;
  if (timeouts.tcp != 0) err = nla_put_u32(msg.get(), IPVS_CMD_ATTR_TIMEOUT_TCP, timeouts.tcp);
  if (!err && timeouts.tcp_fin != 0) {
    err = nla_put_u32(msg.get(), IPVS_CMD_ATTR_TIMEOUT_TCP_FIN, timeouts.tcp_fin);
  }
  if (!err && timeouts.udp != 0)
    err = nla_put_u32(msg.get(), IPVS_CMD_ATTR_TIMEOUT_UDP, timeouts.udp);
  if (err < 0) return Status::Error("cannot build IPVS timeouts: " + NlError(err));
  return msg;
}

Result<IpvsService> ParseIpvsService(const nlattr* nested) {
  if (nested == nullptr) return Status::Error("IPVS answer without a service");
  nlattr* tb[IPVS_SVC_ATTR_MAX + 1] = {};
  if (int err = nla_parse_nested(tb, IPVS_SVC_ATTR_MAX, const_cast<nlattr*>(nested), nullptr);
      err < 0) {
    return Status::Error("malformed IPVS service: " + NlError(err));
  }
  auto af = Read<uint16_t>(tb[IPVS_SVC_ATTR_AF]);
  if (!af || (*af != AF_INET && *af != AF_INET6)) {
    return Status::Error("IPVS service without a valid address family");
  }
  IpvsService s;
  s.address = *af == AF_INET ? IpAddress::V4(0) : IpAddress::V6({});
  if (auto mark = Read<uint32_t>(tb[IPVS_SVC_ATTR_FWMARK]); mark && *mark != 0) {
    s.fwmark = *mark;
  } else {
    auto protocol = Read<uint16_t>(tb[IPVS_SVC_ATTR_PROTOCOL]);
    auto address = ReadAddress(tb[IPVS_SVC_ATTR_ADDR], *af);
    auto port = Read<uint16_t>(tb[IPVS_SVC_ATTR_PORT]);
    if (!protocol || !address || !port) {
      return Status::Error("IPVS service without protocol, address or port");
    }
    s.protocol = static_cast<IpvsProtocol>(*protocol);
    s.address = *address;
    s.port = ntohs(*port);
  }
  if (tb[IPVS_SVC_ATTR_SCHED_NAME] != nullptr && nla_len(tb[IPVS_SVC_ATTR_SCHED_NAME]) > 0) {
    const char* name = static_cast<const char*>(nla_data(tb[IPVS_SVC_ATTR_SCHED_NAME]));
    s.scheduler.assign(name, strnlen(name, nla_len(tb[IPVS_SVC_ATTR_SCHED_NAME])));
  }
  if (auto flags = Read<ip_vs_flags>(tb[IPVS_SVC_ATTR_FLAGS])) {
    s.flags = flags->flags & ~uint32_t{IP_VS_SVC_F_HASHED};
  }
  s.timeout = Read<uint32_t>(tb[IPVS_SVC_ATTR_TIMEOUT]).value_or(0);
  return s;
}

Result<IpvsStats> ParseIpvsServiceStats(const nlattr* nested) {
  if (nested == nullptr) return Status::Error("IPVS answer without a service");
  nlattr* tb[IPVS_SVC_ATTR_MAX + 1] = {};
  if (int err = nla_parse_nested(tb, IPVS_SVC_ATTR_MAX, const_cast<nlattr*>(nested), nullptr);
      err < 0) {
    return Status::Error("malformed IPVS service: " + NlError(err));
  }
  IpvsStats stats;
  if (tb[IPVS_SVC_ATTR_STATS64] == nullptr) return stats;
  nlattr* st[IPVS_STATS_ATTR_MAX + 1] = {};
  if (int err = nla_parse_nested(st, IPVS_STATS_ATTR_MAX, tb[IPVS_SVC_ATTR_STATS64], nullptr);
      err < 0) {
    return Status::Error("malformed IPVS service counters: " + NlError(err));
  }
  auto get = [&](int attr) { return Read<uint64_t>(st[attr]).value_or(0); };
  stats.connections = get(IPVS_STATS_ATTR_CONNS);
  stats.packets_in = get(IPVS_STATS_ATTR_INPKTS);
  stats.packets_out = get(IPVS_STATS_ATTR_OUTPKTS);
  stats.bytes_in = get(IPVS_STATS_ATTR_INBYTES);
  stats.bytes_out = get(IPVS_STATS_ATTR_OUTBYTES);
  stats.connections_per_second = get(IPVS_STATS_ATTR_CPS);
  stats.packets_in_per_second = get(IPVS_STATS_ATTR_INPPS);
  stats.packets_out_per_second = get(IPVS_STATS_ATTR_OUTPPS);
  stats.bytes_in_per_second = get(IPVS_STATS_ATTR_INBPS);
  stats.bytes_out_per_second = get(IPVS_STATS_ATTR_OUTBPS);
  return stats;
}

Result<IpvsDestination> ParseIpvsDestination(const nlattr* nested, IpAddress::Family family) {
  if (nested == nullptr) return Status::Error("IPVS answer without a destination");
  nlattr* tb[IPVS_DEST_ATTR_MAX + 1] = {};
  if (int err = nla_parse_nested(tb, IPVS_DEST_ATTR_MAX, const_cast<nlattr*>(nested), nullptr);
      err < 0) {
    return Status::Error("malformed IPVS destination: " + NlError(err));
  }
  // Destinations may differ in family from their service (kernel >= 3.18 reports it).
  int af = family == IpAddress::Family::kV4 ? AF_INET : AF_INET6;
  if (auto reported = Read<uint16_t>(tb[IPVS_DEST_ATTR_ADDR_FAMILY])) af = *reported;
  auto address = ReadAddress(tb[IPVS_DEST_ATTR_ADDR], af);
  auto port = Read<uint16_t>(tb[IPVS_DEST_ATTR_PORT]);
  if (!address || !port) return Status::Error("IPVS destination without address or port");
  IpvsDestination d;
  d.address = *address;
  d.port = ntohs(*port);
  const uint32_t method =
      Read<uint32_t>(tb[IPVS_DEST_ATTR_FWD_METHOD]).value_or(0) & IP_VS_CONN_F_FWD_MASK;
  d.forward = static_cast<IpvsForward>(method);
  d.weight = Read<uint32_t>(tb[IPVS_DEST_ATTR_WEIGHT]).value_or(0);
  d.upper_threshold = Read<uint32_t>(tb[IPVS_DEST_ATTR_U_THRESH]).value_or(0);
  d.lower_threshold = Read<uint32_t>(tb[IPVS_DEST_ATTR_L_THRESH]).value_or(0);
  d.active_connections = Read<uint32_t>(tb[IPVS_DEST_ATTR_ACTIVE_CONNS]).value_or(0);
  d.inactive_connections = Read<uint32_t>(tb[IPVS_DEST_ATTR_INACT_CONNS]).value_or(0);
  return d;
}

}  // namespace kr::netlink::detail
