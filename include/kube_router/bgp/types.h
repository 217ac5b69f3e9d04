// SPDX-License-Identifier: Apache-2.0
// Value types shared by the BGP codec, FSM, RIB and speaker API: path attributes and their
// parts, routes, session states.
// Plain data, no behaviour beyond comparison; safe to copy between threads.
#pragma once

#include <compare>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "kube_router/base/ip.h"

namespace kr::bgp {

// RFC 4271 4.3 ORIGIN values.
enum class Origin : uint8_t { kIgp = 0, kEgp = 1, kIncomplete = 2 };

// RFC 4271 4.3 AS_PATH segment types.
enum class AsSegmentType : uint8_t { kSet = 1, kSequence = 2 };

struct AsPathSegment {
  AsSegmentType type = AsSegmentType::kSequence;
  std::vector<uint32_t> asns;
  auto operator<=>(const AsPathSegment&) const = default;
};

// Always held with 4-octet ASNs; the codec converts to/from 2-octet form with AS4_PATH.
struct AsPath {
  std::vector<AsPathSegment> segments;
  // RFC 4271 9.1.2.2 a): an AS_SET counts as one, each AS_SEQUENCE member as one.
  size_t Length() const;
  // The neighbour AS: first ASN of a leading AS_SEQUENCE, 0 if none.
  uint32_t FirstAsn() const;
  bool Contains(uint32_t asn) const;
  // Adds `count` copies of `asn` to the front (merging into a leading AS_SEQUENCE).
  void Prepend(uint32_t asn, int count = 1);
  std::string ToString() const;  // "64512 64513 {1 2}"
  auto operator<=>(const AsPath&) const = default;
};

// RFC 8092 large community "global:local1:local2".
struct LargeCommunity {
  uint32_t global_admin = 0;
  uint32_t local_data1 = 0;
  uint32_t local_data2 = 0;
  auto operator<=>(const LargeCommunity&) const = default;
};

// RFC 1997 community as one 32-bit value (high 16 bits = AS, low 16 bits = value).
constexpr uint32_t Community(uint16_t asn, uint16_t value) {
  return (static_cast<uint32_t>(asn) << 16) | value;
}
inline constexpr uint32_t kNoExport = 0xFFFFFF01;     // RFC 1997
inline constexpr uint32_t kNoAdvertise = 0xFFFFFF02;  // RFC 1997

struct Aggregator {
  uint32_t asn = 0;
  IpAddress address;
  auto operator<=>(const Aggregator&) const = default;
};

// An attribute the codec does not interpret (optional transitive ones are passed on).
struct RawAttribute {
  uint8_t flags = 0;
  uint8_t type = 0;
  std::vector<uint8_t> value;
  auto operator<=>(const RawAttribute&) const = default;
};

// The path attributes of a route (without MP_REACH/MP_UNREACH, which carry NLRI and live in
// the UPDATE message). Absent optional attributes are std::nullopt / empty.
struct PathAttributes {
  std::optional<Origin> origin;
  std::optional<AsPath> as_path;
  std::optional<IpAddress> next_hop;  // the NEXT_HOP attribute (IPv4); MP next hops are in MpReach
  std::optional<uint32_t> med;
  std::optional<uint32_t> local_pref;
  bool atomic_aggregate = false;
  std::optional<Aggregator> aggregator;
  std::vector<uint32_t> communities;
  std::vector<LargeCommunity> large_communities;
  std::optional<IpAddress> originator_id;  // RFC 4456
  std::vector<uint32_t> cluster_list;      // RFC 4456, cluster IDs as host-order integers
  std::vector<RawAttribute> unknown;       // optional transitive attributes to pass on
  auto operator<=>(const PathAttributes&) const = default;
};

// RFC 4271 8.2.2 session states.
enum class PeerState : uint8_t {
  kIdle,
  kConnect,
  kActive,
  kOpenSent,
  kOpenConfirm,
  kEstablished,
};
const char* PeerStateName(PeerState state);

// One route as the RIB and the speaker see it, either locally originated or learned from a peer.
struct Route {
  IpPrefix prefix;
  IpAddress next_hop;
  PathAttributes attributes;
  std::optional<IpAddress> peer;  // unset for local paths
  uint32_t peer_asn = 0;          // 0 for local paths
  IpAddress peer_router_id;
  bool ibgp = false;   // learned over an iBGP session
  bool stale = false;  // kept across a peer's graceful restart, not yet refreshed
  bool local() const { return !peer.has_value(); }
};

}  // namespace kr::bgp
