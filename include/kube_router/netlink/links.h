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

// UDP encapsulation of a tunnel's packets (the kernel's TUNNEL_ENCAP_*): plain FoU puts the
// inner packet right after the UDP header, GUE adds a 4-byte header naming the inner protocol.
enum class TunnelEncapType : uint16_t { kNone = 0, kFou = 1, kGue = 2 };

struct TunnelEncap {
  TunnelEncapType type = TunnelEncapType::kNone;
  uint16_t source_port = 0;       // 0: chosen by the kernel per flow ("encap-sport auto")
  uint16_t destination_port = 0;  // the receiver's FoU port
  auto operator<=>(const TunnelEncap&) const = default;
};

struct Link {
  std::string name;
  int index = 0;
  // The rtnetlink link kind: "ipip", "ip6tnl", "bridge", "dummy", "veth"; empty for hardware.
  std::string kind;
  uint32_t mtu = 0;
  bool up = false;  // administratively up (IFF_UP)
  // Tunnel end points and UDP encapsulation, set for "ipip" and "ip6tnl" links.
  std::optional<IpAddress> tunnel_local;
  std::optional<IpAddress> tunnel_remote;
  TunnelEncap tunnel_encap;

  auto operator<=>(const Link&) const = default;
};

// An IPv4-in-IPv4 tunnel ("ipip"), or IPv6-in-IPv6 ("ip6tnl", mode ip6ip6) when the end points
// are IPv6, as kube-router's overlay creates per remote node; optionally inside UDP (FoU/GUE).
struct TunnelSpec {
  std::string name;  // see OverlayTunnelName
  IpAddress local;
  IpAddress remote;
  uint32_t mtu = 0;  // 0: the kernel's default (underlay MTU minus the encapsulation)
  uint8_t ttl = 0;   // 0: inherit
  TunnelEncap encap;
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

// A FoU receive port (`ip fou add port P gue`, `ip -6 fou add ...`): UDP packets arriving on it
// are decapsulated and handed to the tunnel of the inner protocol. One per (family, port).
enum class FouKind : uint8_t { kDirect = 1, kGue = 2 };  // FOU_ENCAP_DIRECT, FOU_ENCAP_GUE

struct FouPort {
  IpAddress::Family family = IpAddress::Family::kV4;
  uint16_t port = 0;
  FouKind kind = FouKind::kGue;
  uint8_t protocol = 0;  // the inner IP protocol, for kDirect only (GUE carries it per packet)
  auto operator<=>(const FouPort&) const = default;
  std::string ToString() const;  // "gue port 5555 (IPv4)"
};

// The kernel's FoU ports (generic netlink family "fou").
class FouPorts {
 public:
  virtual ~FouPorts() = default;
  // Empty when the kernel has no FoU support loaded (then there are no ports either).
  virtual Result<std::vector<FouPort>> List() = 0;
  // Loads the fou module (and fou6 for IPv6, which IPv6 tunnels with UDP encapsulation need)
  // when the kernel lacks them. Fails when the port exists.
  virtual Status Add(const FouPort& port) = 0;
  virtual Status Delete(const FouPort& port) = 0;
};

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
  // Adds every address (one refusal does not stop the rest) with few round trips: the netlink
  // adapter packs the requests into batched sendmsg calls, each with its own ack, as
  // RouteTable::Apply does. The result lists the refused ones (index into `addresses`, the
  // kernel's text, e.g. an existing address); it is an error only when talking to the kernel
  // failed as a whole. Default: one AddAddress after another.
  struct AddressError {
    size_t index;
    std::string message;
  };
  virtual Result<std::vector<AddressError>> AddAddresses(const std::vector<Address>& addresses);
};

}  // namespace kr::netlink
