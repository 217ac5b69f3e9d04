// SPDX-License-Identifier: Apache-2.0
// BGP-4 messages as plain values (RFC 4271 4.x) and the NOTIFICATION codes. The codec that
// turns them into bytes and back is in codec.h.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <variant>
#include <vector>

#include "kube_router/base/ip.h"
#include "kube_router/bgp/types.h"

namespace kr::bgp {

inline constexpr size_t kHeaderSize = 19;
inline constexpr size_t kMaxMessageSize = 4096;
inline constexpr uint16_t kAsTrans = 23456;  // RFC 6793

enum class MessageType : uint8_t {
  kOpen = 1,
  kUpdate = 2,
  kNotification = 3,
  kKeepalive = 4,
  kRouteRefresh = 5,
};

// AFI/SAFI pairs we speak (RFC 4760).
enum class Afi : uint16_t { kIpv4 = 1, kIpv6 = 2 };
enum class Safi : uint8_t { kUnicast = 1 };
struct AfiSafi {
  uint16_t afi = 1;
  uint8_t safi = 1;
  auto operator<=>(const AfiSafi&) const = default;
};
inline constexpr AfiSafi kIpv4Unicast{1, 1};
inline constexpr AfiSafi kIpv6Unicast{2, 1};

// RFC 4724 graceful restart capability.
struct GracefulRestartCap {
  bool restarting = false;  // R bit
  uint16_t restart_time_s = 0;
  struct Family {
    AfiSafi afi_safi;
    bool forwarding_preserved = false;  // F bit
    auto operator<=>(const Family&) const = default;
  };
  std::vector<Family> families;
  auto operator<=>(const GracefulRestartCap&) const = default;
};

// RFC 5492 capabilities carried in OPEN optional parameter 2.
struct Capabilities {
  std::vector<AfiSafi> multiprotocol;                  // code 1
  bool route_refresh = false;                          // code 2
  std::optional<uint32_t> four_octet_asn;              // code 65
  std::optional<GracefulRestartCap> graceful_restart;  // code 64
  std::vector<RawAttribute> unknown;  // other capabilities (flags unused), kept for logs
  auto operator<=>(const Capabilities&) const = default;
};

struct OpenMessage {
  uint8_t version = 4;
  uint16_t my_as = 0;  // AS_TRANS when the real ASN needs 4 octets
  uint16_t hold_time_s = 0;
  IpAddress bgp_id;
  Capabilities caps;
  // The effective ASN: the 4-octet capability if present, else my_as.
  uint32_t Asn() const { return caps.four_octet_asn.value_or(my_as); }
  auto operator<=>(const OpenMessage&) const = default;
};

struct MpReach {
  AfiSafi afi_safi;
  IpAddress next_hop;
  std::optional<IpAddress> link_local_next_hop;  // IPv6 only (32-byte next hop)
  std::vector<IpPrefix> nlri;
  auto operator<=>(const MpReach&) const = default;
};

struct MpUnreach {
  AfiSafi afi_safi;
  std::vector<IpPrefix> withdrawn;
  auto operator<=>(const MpUnreach&) const = default;
};

struct UpdateMessage {
  std::vector<IpPrefix> withdrawn;  // IPv4
  PathAttributes attrs;
  std::optional<MpReach> mp_reach;
  std::optional<MpUnreach> mp_unreach;
  std::vector<IpPrefix> nlri;  // IPv4
  // RFC 7606 outcome of decoding: treat every announced prefix as withdrawn.
  bool treat_as_withdraw = false;
  // Human-readable notes on attributes that were discarded or caused treat-as-withdraw.
  std::vector<std::string> errors;

  // RFC 4724 2: an UPDATE with nothing in it is the IPv4 End-of-RIB; an UPDATE whose only
  // attribute is an empty MP_UNREACH is the End-of-RIB of that family.
  std::optional<AfiSafi> EndOfRib() const;
  bool operator==(const UpdateMessage&) const = default;
};

struct NotificationMessage {
  uint8_t code = 0;
  uint8_t subcode = 0;
  std::vector<uint8_t> data;
  auto operator<=>(const NotificationMessage&) const = default;
};

struct KeepaliveMessage {
  auto operator<=>(const KeepaliveMessage&) const = default;
};

struct RouteRefreshMessage {
  AfiSafi afi_safi;
  uint8_t subtype = 0;  // RFC 7313 reserved byte
  auto operator<=>(const RouteRefreshMessage&) const = default;
};

using Message = std::variant<OpenMessage, UpdateMessage, NotificationMessage, KeepaliveMessage,
                             RouteRefreshMessage>;

// RFC 4271 4.5 / 6 NOTIFICATION codes.
namespace err {
inline constexpr uint8_t kHeader = 1;
inline constexpr uint8_t kOpen = 2;
inline constexpr uint8_t kUpdate = 3;
inline constexpr uint8_t kHoldTimerExpired = 4;
inline constexpr uint8_t kFsm = 5;
inline constexpr uint8_t kCease = 6;
inline constexpr uint8_t kSendHoldTimerExpired = 8;  // RFC 9687
// header subcodes
inline constexpr uint8_t kNotSynchronized = 1;
inline constexpr uint8_t kBadLength = 2;
inline constexpr uint8_t kBadType = 3;
// OPEN subcodes
inline constexpr uint8_t kUnsupportedVersion = 1;
inline constexpr uint8_t kBadPeerAs = 2;
inline constexpr uint8_t kBadBgpId = 3;
inline constexpr uint8_t kUnsupportedOptParam = 4;
inline constexpr uint8_t kUnacceptableHoldTime = 6;
// UPDATE subcodes
inline constexpr uint8_t kMalformedAttrList = 1;
inline constexpr uint8_t kUnrecognizedWellKnown = 2;
inline constexpr uint8_t kMissingWellKnown = 3;
inline constexpr uint8_t kAttrFlags = 4;
inline constexpr uint8_t kAttrLength = 5;
inline constexpr uint8_t kInvalidOrigin = 6;
inline constexpr uint8_t kInvalidNextHop = 8;
inline constexpr uint8_t kOptionalAttr = 9;
inline constexpr uint8_t kInvalidNetwork = 10;
inline constexpr uint8_t kMalformedAsPath = 11;
// Cease subcodes (RFC 4486)
inline constexpr uint8_t kMaxPrefixes = 1;
inline constexpr uint8_t kPeerDeconfigured = 3;
inline constexpr uint8_t kAdminShutdown = 2;
inline constexpr uint8_t kConnectionRejected = 5;
inline constexpr uint8_t kOtherConfigChange = 6;
inline constexpr uint8_t kCollisionResolution = 7;
inline constexpr uint8_t kOutOfResources = 8;
}  // namespace err

}  // namespace kr::bgp
