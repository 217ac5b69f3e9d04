// Ipvs: IPVS virtual services and their real servers (destinations) as plain values. The real
// adapter speaks the kernel's generic-netlink family "IPVS" (linux/ip_vs.h) through libnl-genl;
// the fake keeps the tables in memory.
//
// Threading: an instance is used by one thread at a time.
#pragma once

#include <compare>
#include <cstdint>
#include <string>
#include <vector>

#include "kube_router/base/ip.h"
#include "kube_router/base/status.h"

namespace kr::netlink {

enum class IpvsProtocol : uint16_t { kTcp = 6, kUdp = 17, kSctp = 132 };

// Service flags (IP_VS_SVC_F_*). kHashed is kernel-internal and never reported by List.
namespace ipvs_flags {
inline constexpr uint32_t kPersistent = 0x0001;
inline constexpr uint32_t kOnePacket = 0x0004;
inline constexpr uint32_t kSchedFlag1 = 0x0008;  // mh: fallback; sh: fallback
inline constexpr uint32_t kSchedFlag2 = 0x0010;  // mh/sh: hash on the source port too
inline constexpr uint32_t kSchedFlag3 = 0x0020;
}  // namespace ipvs_flags

// How a real server is reached (IP_VS_CONN_F_MASQ / TUNNEL / DROUTE).
enum class IpvsForward : uint32_t { kMasquerade = 0, kTunnel = 2, kRoute = 3 };

// Identifies a virtual service: either (address, protocol, port), or a firewall mark (when
// `fwmark` is non-zero, `address` only gives the family and protocol/port are ignored; List
// reports such a service with the zero address of its family, kTcp and port 0).
struct IpvsService {
  IpAddress address;
  IpvsProtocol protocol = IpvsProtocol::kTcp;
  uint16_t port = 0;
  uint32_t fwmark = 0;
  // Attributes (compared by UpdateService and by reconcilers, not part of the identity).
  std::string scheduler = "rr";  // rr, wrr, lc, wlc, sh, dh, mh, ...
  uint32_t flags = 0;            // ipvs_flags
  uint32_t timeout = 0;          // persistence timeout in seconds (with kPersistent)

  bool is_v6() const { return address.is_v6(); }
  bool SameIdentity(const IpvsService& other) const;
  auto operator<=>(const IpvsService&) const = default;
  std::string ToString() const;  // "TCP 10.96.0.1:443 rr" or "FWM 17 IPv4 rr"
};

struct IpvsDestination {
  IpAddress address;
  uint16_t port = 0;
  IpvsForward forward = IpvsForward::kMasquerade;
  uint32_t weight = 1;
  uint32_t upper_threshold = 0;  // 0: unlimited
  uint32_t lower_threshold = 0;
  // Reported by ListDestinations (graceful termination waits for them); ignored on writes.
  uint32_t active_connections = 0;
  uint32_t inactive_connections = 0;

  // Identity within a service: address and port.
  bool SameIdentity(const IpvsDestination& other) const {
    return address == other.address && port == other.port;
  }
  // The writable attributes equal (connection counts ignored).
  bool SameConfig(const IpvsDestination& other) const;
  auto operator<=>(const IpvsDestination&) const = default;
  std::string ToString() const;
};

// Traffic counters of a service (kube_router_service_* metrics): the kernel's totals since the
// service was created and its rate estimates (per second, averaged over a few seconds).
struct IpvsStats {
  uint64_t connections = 0;
  uint64_t packets_in = 0;
  uint64_t packets_out = 0;
  uint64_t bytes_in = 0;
  uint64_t bytes_out = 0;
  uint64_t connections_per_second = 0;
  uint64_t packets_in_per_second = 0;
  uint64_t packets_out_per_second = 0;
  uint64_t bytes_in_per_second = 0;
  uint64_t bytes_out_per_second = 0;

  auto operator<=>(const IpvsStats&) const = default;
};

struct IpvsServiceStats {
  IpvsService service;
  IpvsStats stats;
};

// Global connection timeouts in seconds (ipvsadm --set); 0 keeps the kernel's value.
struct IpvsTimeouts {
  uint32_t tcp = 0;
  uint32_t tcp_fin = 0;
  uint32_t udp = 0;
};

// One write of a batch (Ipvs::Apply).
struct IpvsWrite {
  enum class Op {
    kAddService,
    kUpdateService,
    kDeleteService,
    kAddDestination,
    kUpdateDestination,
    kDeleteDestination,
  };
  Op op = Op::kAddService;
  IpvsService service;
  IpvsDestination destination;  // destination ops only
};

// A write of a batch the kernel refused: its index in the batch and the reason (strerror text,
// e.g. "File exists", "No such process").
struct IpvsWriteError {
  size_t index = 0;
  std::string message;
};

class Ipvs {
 public:
  virtual ~Ipvs() = default;

  virtual Result<std::vector<IpvsService>> ListServices() = 0;
  // Every service with its counters (one dump; for metrics on scrape).
  virtual Result<std::vector<IpvsServiceStats>> ListServiceStats() = 0;
  // Add fails when the service exists; Update and Delete fail when it does not.
  virtual Status AddService(const IpvsService& service) = 0;
  virtual Status UpdateService(const IpvsService& service) = 0;
  virtual Status DeleteService(const IpvsService& service) = 0;

  virtual Result<std::vector<IpvsDestination>> ListDestinations(const IpvsService& service) = 0;
  virtual Status AddDestination(const IpvsService& service, const IpvsDestination& dest) = 0;
  virtual Status UpdateDestination(const IpvsService& service, const IpvsDestination& dest) = 0;
  virtual Status DeleteDestination(const IpvsService& service, const IpvsDestination& dest) = 0;

  // Many writes in order with as few round trips as the adapter can make: the netlink adapter
  // packs up to 256 requests per sendmsg and matches the acks by sequence number (as
  // RouteTable::Apply). A refused write does not stop the others (one that depends on it, e.g. a
  // destination of a service that could not be added, fails too). Returns the refused ones in
  // batch order; an error only when the transport failed (then any prefix may have been applied).
  // The default does them one call at a time (fakes, wrappers).
  virtual Result<std::vector<IpvsWriteError>> Apply(const std::vector<IpvsWrite>& writes);

  // Removes every service (kube-router's --cleanup-config; the agent's own cleanup should
  // delete only services it owns).
  virtual Status Flush() = 0;
  virtual Status SetTimeouts(const IpvsTimeouts& timeouts) = 0;
};

}  // namespace kr::netlink
