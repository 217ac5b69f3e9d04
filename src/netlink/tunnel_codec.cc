#include "tunnel_codec.h"

#include <arpa/inet.h>
#include <linux/if_link.h>
#include <linux/if_tunnel.h>
#include <linux/rtnetlink.h>
#include <netinet/in.h>
#include <netlink/attr.h>
#include <netlink/msg.h>

#include <array>
#include <cstring>

namespace kr::netlink::detail {
namespace {

std::optional<IpAddress> AddressAttribute(nlattr* attr) {
  if (attr == nullptr) return std::nullopt;
  if (nla_len(attr) == 4) {
    std::array<uint8_t, 4> b;
    std::memcpy(b.data(), nla_data(attr), 4);
    return IpAddress::V4(uint32_t{b[0]} << 24 | uint32_t{b[1]} << 16 | uint32_t{b[2]} << 8 | b[3]);
  }
  if (nla_len(attr) == 16) {
    std::array<uint8_t, 16> b;
    std::memcpy(b.data(), nla_data(attr), 16);
    return IpAddress::V6(b);
  }
  return std::nullopt;
}

}  // namespace

Result<MsgPtr> BuildTunnelRequest(const TunnelSpec& spec) {
  if (spec.local.family() != spec.remote.family()) {
    return Status::Error("local and remote families differ");
  }
  if (spec.name.empty() || spec.name.size() >= IFNAMSIZ) {
    return Status::Error("invalid link name '" + spec.name + "'");
  }
  if (spec.encap.type != TunnelEncapType::kNone && spec.encap.destination_port == 0) {
    return Status::Error("UDP encapsulation without a destination port");
  }
  const bool v6 = spec.local.is_v6();
  MsgPtr msg(nlmsg_alloc_simple(RTM_NEWLINK, NLM_F_CREATE | NLM_F_EXCL));
  if (!msg) return Status::Error("out of memory");
  ifinfomsg header{};
  header.ifi_family = AF_UNSPEC;
  const size_t address_size = v6 ? 16 : 4;
  bool ok = nlmsg_append(msg.get(), &header, sizeof(header), NLMSG_ALIGNTO) == 0 &&
            nla_put_string(msg.get(), IFLA_IFNAME, spec.name.c_str()) == 0 &&
            (spec.mtu == 0 || nla_put_u32(msg.get(), IFLA_MTU, spec.mtu) == 0);
  nlattr* info = ok ? nla_nest_start(msg.get(), IFLA_LINKINFO) : nullptr;
  ok = info != nullptr && nla_put_string(msg.get(), IFLA_INFO_KIND, v6 ? "ip6tnl" : "ipip") == 0;
  nlattr* data = ok ? nla_nest_start(msg.get(), IFLA_INFO_DATA) : nullptr;
  ok = data != nullptr &&
       nla_put(msg.get(), IFLA_IPTUN_LOCAL, address_size, spec.local.bytes().data()) == 0 &&
       nla_put(msg.get(), IFLA_IPTUN_REMOTE, address_size, spec.remote.bytes().data()) == 0 &&
       nla_put_u8(msg.get(), IFLA_IPTUN_TTL, spec.ttl) == 0;
  if (ok && v6) ok = nla_put_u8(msg.get(), IFLA_IPTUN_PROTO, IPPROTO_IPV6) == 0;  // ip6ip6
  if (ok && spec.encap.type != TunnelEncapType::kNone) {
    uint16_t flags = v6 ? TUNNEL_ENCAP_FLAG_CSUM6 : 0;
    ok = nla_put_u16(msg.get(), IFLA_IPTUN_ENCAP_TYPE, static_cast<uint16_t>(spec.encap.type)) ==
             0 &&
         nla_put_u16(msg.get(), IFLA_IPTUN_ENCAP_FLAGS, flags) == 0 &&
         nla_put_u16(msg.get(), IFLA_IPTUN_ENCAP_SPORT, htons(spec.encap.source_port)) == 0 &&
         nla_put_u16(msg.get(), IFLA_IPTUN_ENCAP_DPORT, htons(spec.encap.destination_port)) == 0;
  }
  if (!ok) return Status::Error("tunnel request does not fit a netlink message");
  nla_nest_end(msg.get(), data);
  nla_nest_end(msg.get(), info);
  return msg;
}

void ParseTunnelInfo(nlmsghdr* message, Link& link) {
  nlattr* top[IFLA_MAX + 1] = {};
  if (nlmsg_parse(message, sizeof(ifinfomsg), top, IFLA_MAX, nullptr) < 0) return;
  if (top[IFLA_LINKINFO] == nullptr) return;
  nlattr* info[IFLA_INFO_MAX + 1] = {};
  if (nla_parse_nested(info, IFLA_INFO_MAX, top[IFLA_LINKINFO], nullptr) < 0) return;
  if (info[IFLA_INFO_KIND] == nullptr || info[IFLA_INFO_DATA] == nullptr) return;
  std::string kind(static_cast<const char*>(nla_data(info[IFLA_INFO_KIND])),
                   strnlen(static_cast<const char*>(nla_data(info[IFLA_INFO_KIND])),
                           nla_len(info[IFLA_INFO_KIND])));
  if (kind != "ipip" && kind != "ip6tnl") return;
  nlattr* data[IFLA_IPTUN_MAX + 1] = {};
  if (nla_parse_nested(data, IFLA_IPTUN_MAX, info[IFLA_INFO_DATA], nullptr) < 0) return;
  link.kind = kind;
  link.tunnel_local = AddressAttribute(data[IFLA_IPTUN_LOCAL]);
  link.tunnel_remote = AddressAttribute(data[IFLA_IPTUN_REMOTE]);
  auto u16 = [&](int type) -> uint16_t {
    return data[type] != nullptr && nla_len(data[type]) >= 2 ? nla_get_u16(data[type]) : 0;
  };
  link.tunnel_encap.type = static_cast<TunnelEncapType>(u16(IFLA_IPTUN_ENCAP_TYPE));
  link.tunnel_encap.source_port = ntohs(u16(IFLA_IPTUN_ENCAP_SPORT));
  link.tunnel_encap.destination_port = ntohs(u16(IFLA_IPTUN_ENCAP_DPORT));
}

}  // namespace kr::netlink::detail
