// Links: network interfaces and their addresses as plain values (IPIP tunnels for the overlay,
// kube-bridge for pods, kube-dummy-if for service VIPs). The real adapter uses rtnetlink via
// libnl-route; the fake keeps the links in memory.
//
// Threading: an instance is used by one thread at a time.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "kube_router/base/ip.h"
#include "kube_router/base/status.h"
#include "kube_router/netlink/route_table.h"

namespace kr::netlink {

inline constexpr const char* kKubeBridgeName = "kube-bridge";
inline constexpr const char* kKubeDummyName = "kube-dummy-if";

struct Link {
  std::string name;
  int index = 0;
  // The rtnetlink link kind: "ipip", "ip6tnl", "bridge", "dummy", "veth"; empty for hardware.
  std::string kind;
  uint32_t mtu = 0;
  bool up = false;  // administratively up (IFF_UP)
  // Tunnel end points, set for "ipip" and "ip6tnl" links.
  std::optional<IpAddress> tunnel_local;
  std::optional<IpAddress> tunnel_remote;

  auto operator<=>(const Link&) const = default;
};

// An IPv4-in-IPv4 tunnel ("ipip"), or IPv6-in-IPv6 ("ip6tnl", mode ip6ip6) when the end points
// are IPv6, as kube-router's overlay creates per remote node.
struct TunnelSpec {
  std::string name;  // see OverlayTunnelName
  IpAddress local;
  IpAddress remote;
  uint32_t mtu = 0;  // 0: the kernel's default (underlay MTU minus the encapsulation)
  uint8_t ttl = 0;   // 0: inherit
};

struct Address {
  std::string device;
  IpAddress address;
  int prefix_length = 32;
  Scope scope = Scope::kUniverse;

  auto operator<=>(const Address&) const = default;
  std::string ToString() const;  // "10.0.0.1/24 dev kube-bridge"
};

// The tunnel name for a remote node: HashedName("tun-", {canonical address text}, 11), 15
// characters (IFNAMSIZ - 1). kube-router hashes the text with '.' and ':' removed, which is
// ambiguous (10.1.23.4 and 10.12.3.4); see docs/parity.md.
std::string OverlayTunnelName(const IpAddress& next_hop);

class Links {
 public:
  virtual ~Links() = default;

  virtual Result<std::vector<Link>> List() = 0;
  // nullopt when no link has that name.
  virtual Result<std::optional<Link>> Get(const std::string& name) = 0;

  // Creation fails when a link of that name exists (callers compare with Get and recreate).
  virtual Status CreateTunnel(const TunnelSpec& spec) = 0;
  virtual Status CreateBridge(const std::string& name, uint32_t mtu) = 0;  // mtu 0: default
  virtual Status CreateDummy(const std::string& name) = 0;
  virtual Status Delete(const std::string& name) = 0;
  virtual Status SetUp(const std::string& name, bool up) = 0;
  virtual Status SetMtu(const std::string& name, uint32_t mtu) = 0;

  // Addresses of one device, or of every device when `device` is empty.
  virtual Result<std::vector<Address>> ListAddresses(const std::string& device) = 0;
  virtual Status AddAddress(const Address& address) = 0;  // fails when it exists
  virtual Status DeleteAddress(const Address& address) = 0;
};

}  // namespace kr::netlink
