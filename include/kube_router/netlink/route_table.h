// RouteTable: the kernel routing tables (IPv4 and IPv6) as plain values. The real adapter talks
// rtnetlink in-process and sends many requests per sendmsg (kernel-limits.md: ~3 us per route
// against ~9 us for `ip -batch`); the fake keeps an in-memory table for controller tests.
//
// Threading: an instance is used by one thread at a time (a controller's own thread).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "kube_router/base/ip.h"
#include "kube_router/base/status.h"

namespace kr::netlink {

// The route protocol kube-router marks its routes with (RTPROT_ZEBRA, 0x11): how our routes are
// told apart from everybody else's.
inline constexpr uint8_t kKubeRouterRouteProtocol = 17;
inline constexpr uint8_t kProtocolKernel = 2;  // RTPROT_KERNEL: routes the kernel made itself
inline constexpr uint8_t kProtocolBoot = 3;    // RTPROT_BOOT: `ip route add` without proto

inline constexpr uint32_t kMainTable = 254;
inline constexpr uint32_t kLocalTable = 255;
inline constexpr uint32_t kKubeRouterOverlayTable = 77;  // policy routing for the overlay
inline constexpr uint32_t kKubeRouterDsrTable = 78;

// rtnetlink scopes (RT_SCOPE_*), shared by routes and addresses.
enum class Scope : uint8_t { kUniverse = 0, kSite = 200, kLink = 253, kHost = 254, kNowhere = 255 };

enum class RouteType : uint8_t {
  kUnicast = 1,    // RTN_UNICAST
  kLocal = 2,      // RTN_LOCAL: an address of this host (service VIPs in the local table)
  kBlackhole = 6,  // RTN_BLACKHOLE
};

struct Route {
  IpPrefix destination;
  std::optional<IpAddress> gateway;  // "via"
  std::string device;                // "dev"; empty when the gateway alone decides
  std::optional<IpAddress> source;   // preferred source address ("src")
  uint32_t table = kMainTable;
  uint8_t protocol = kKubeRouterRouteProtocol;
  Scope scope = Scope::kUniverse;  // kube-router installs even device routes with universe scope
  RouteType type = RouteType::kUnicast;
  uint32_t metric = 0;  // "metric"/priority: part of the route's identity in the kernel
  bool onlink = false;  // gateway is reachable on `device` even outside its subnets

  auto operator<=>(const Route&) const = default;
  // "10.1.0.0/24 via 192.0.2.2 dev eth0 table 254 proto 17", for logs and test failures.
  std::string ToString() const;
};

// What List returns; every unset field matches everything.
struct RouteFilter {
  std::optional<IpAddress::Family> family;
  std::optional<uint32_t> table;
  std::optional<uint8_t> protocol;
  std::optional<std::string> device;

  bool Matches(const Route& route) const;
};

struct RouteChange {
  enum class Op : uint8_t {
    kAdd,      // fails when a route with the same identity exists
    kReplace,  // adds, or overwrites the route with the same identity
    kDelete,   // removes the route with the same identity (see below)
  };
  Op op;
  Route route;
};

// One change the kernel refused; `index` points into the batch.
struct RouteChangeError {
  size_t index;
  std::string message;
};

// A route's identity in the kernel is (table, destination, metric) (plus TOS, unused here).
// Delete additionally requires the protocol and type to match, so deleting one of our routes
// never removes somebody else's route to the same destination; gateway and device are not
// compared.
class RouteTable {
 public:
  virtual ~RouteTable() = default;

  virtual Result<std::vector<Route>> List(const RouteFilter& filter) = 0;
  // Applies every change in order (one failure does not stop the rest). The result lists the
  // refused changes; it is an error only when talking to the kernel failed as a whole.
  virtual Result<std::vector<RouteChangeError>> Apply(const std::vector<RouteChange>& changes) = 0;

  // Single-change conveniences over Apply.
  Status Add(const Route& route);
  Status Replace(const Route& route);
  Status Delete(const Route& route);
};

}  // namespace kr::netlink
