// Conntrack: the kernel's connection-tracking table (ctnetlink) as plain values, for the service
// proxy's UDP/SCTP cleanup. The real adapter speaks ctnetlink through libnl-nf; the fake keeps
// flows in memory.
//
// A flow has two tuples: `original` as the client sent it (for a service: client -> VIP:port or
// node IP:NodePort) and `reply` as the answer comes back (for IPVS masquerading: backend ->
// client). "Flows whose reply source is that backend" is how a gone backend is found.
//
// Threading: an instance is used by one thread at a time.
#pragma once

#include <compare>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "kube_router/base/ip.h"
#include "kube_router/base/status.h"

namespace kr::netlink {

// IP protocol numbers (IPPROTO_*) a flow or filter names.
namespace ip_protocol {
inline constexpr uint8_t kTcp = 6;
inline constexpr uint8_t kUdp = 17;
inline constexpr uint8_t kSctp = 132;
}  // namespace ip_protocol

struct ConntrackTuple {
  IpAddress source;
  IpAddress destination;
  uint16_t source_port = 0;
  uint16_t destination_port = 0;

  auto operator<=>(const ConntrackTuple&) const = default;
};

struct ConntrackFlow {
  uint8_t protocol = ip_protocol::kUdp;
  ConntrackTuple original;
  ConntrackTuple reply;
  uint16_t zone = 0;

  IpAddress::Family family() const { return original.source.family(); }
  auto operator<=>(const ConntrackFlow&) const = default;
  // "udp 192.0.2.9:5000->10.96.0.10:53 reply 10.244.1.5:53->192.0.2.9:5000", for logs.
  std::string ToString() const;
};

// Selects flows of one family and protocol. Unset fields match everything, but a filter must
// set at least one of them: Delete refuses a filter that would match the whole protocol (the
// kernel's own "no tuple" delete is a flush, which we never want).
struct ConntrackFilter {
  IpAddress::Family family = IpAddress::Family::kV4;
  uint8_t protocol = ip_protocol::kUdp;
  std::optional<IpAddress> original_destination;
  std::optional<uint16_t> original_destination_port;
  std::optional<IpAddress> reply_source;
  std::optional<uint16_t> reply_source_port;
  // Only flows nobody translated (reply source == original destination): what a UDP client's
  // packets to a service without endpoints leave behind.
  bool only_untranslated = false;

  bool Narrow() const {
    return original_destination || original_destination_port || reply_source || reply_source_port;
  }
  bool Matches(const ConntrackFlow& flow) const;
  auto operator<=>(const ConntrackFilter&) const = default;
  // "udp dst 10.96.0.10:53 reply-src 10.244.1.5", for logs.
  std::string ToString() const;
};

class Conntrack {
 public:
  virtual ~Conntrack() = default;

  // Every flow of `family` (one dump).
  virtual Result<std::vector<ConntrackFlow>> List(IpAddress::Family family) = 0;
  // Deletes every flow that matches at least one of `filters`: one dump per family the filters
  // name, then one delete per matching flow. Returns how many flows were deleted; a flow that
  // expired between the dump and its delete is not an error. Fails without deleting anything
  // when a filter is not Narrow().
  virtual Result<size_t> Delete(const std::vector<ConntrackFilter>& filters) = 0;
};

}  // namespace kr::netlink
