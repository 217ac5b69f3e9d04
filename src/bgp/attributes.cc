// SPDX-License-Identifier: Apache-2.0
// UPDATE path attributes: encoding, decoding with the RFC 7606 action for each malformation,
// AS paths (2- and 4-octet, the RFC 6793 AS4_PATH merge) and the prefix (NLRI) encoding that
// MP_REACH/MP_UNREACH share with the UPDATE body.
#include "attributes.h"

#include <algorithm>
#include <array>
#include <functional>
#include <set>
#include <string>

namespace kr::bgp::detail {
namespace {

// Attribute flags (RFC 4271 4.3).
constexpr uint8_t kOptional = 0x80;
constexpr uint8_t kTransitive = 0x40;
constexpr uint8_t kPartial = 0x20;
constexpr uint8_t kExtendedLength = 0x10;

// Attribute type codes.
enum AttrType : uint8_t {
  kOrigin = 1,
  kAsPath = 2,
  kNextHop = 3,
  kMed = 4,
  kLocalPref = 5,
  kAtomicAggregate = 6,
  kAggregator = 7,
  kCommunities = 8,
  kOriginatorId = 9,
  kClusterList = 10,
  kMpReach = 14,
  kMpUnreach = 15,
  kAs4Path = 17,
  kAs4Aggregator = 18,
  kExtendedCommunities = 16,
  kIpv6ExtendedCommunities = 25,
  kLargeCommunities = 32,
};

// What each known attribute must look like, and what RFC 7606 says to do when it does not:
// `on_malformed` for a bad value or (7606 3 c, 3 f) bad Optional/Transitive flags, `subcode`
// for the NOTIFICATION when the error ends in a reset after all (7606 5.2).
// `external_discard`: from an external peer the attribute is discarded whatever it holds
// (7606 7.5, 7.9, 7.10).
struct AttrRule {
  uint8_t type;
  const char* name;
  bool optional;
  bool transitive;
  ErrorAction on_malformed;
  uint8_t subcode;
  bool external_discard = false;
};
constexpr std::array<AttrRule, 17> kAttrRules = {{
    {kOrigin, "ORIGIN", false, true, ErrorAction::kTreatAsWithdraw, err::kInvalidOrigin},     // 7.1
    {kAsPath, "AS_PATH", false, true, ErrorAction::kTreatAsWithdraw, err::kMalformedAsPath},  // 7.2
    {kNextHop, "NEXT_HOP", false, true, ErrorAction::kTreatAsWithdraw, err::kAttrLength},     // 7.3
    {kMed, "MULTI_EXIT_DISC", true, false, ErrorAction::kTreatAsWithdraw, err::kAttrLength},  // 7.4
    {kLocalPref, "LOCAL_PREF", false, true, ErrorAction::kTreatAsWithdraw, err::kAttrLength,
     true},  // 7.5
    {kAtomicAggregate, "ATOMIC_AGGREGATE", false, true, ErrorAction::kAttributeDiscard,
     err::kAttrLength},  // 7.6
    {kAggregator, "AGGREGATOR", true, true, ErrorAction::kAttributeDiscard,
     err::kAttrLength},  // 7.7
    {kCommunities, "COMMUNITIES", true, true, ErrorAction::kTreatAsWithdraw,
     err::kOptionalAttr},  // 7.8
    {kOriginatorId, "ORIGINATOR_ID", true, false, ErrorAction::kTreatAsWithdraw, err::kAttrLength,
     true},  // 7.9
    {kClusterList, "CLUSTER_LIST", true, false, ErrorAction::kTreatAsWithdraw, err::kOptionalAttr,
     true},  // 7.10
    {kMpReach, "MP_REACH_NLRI", true, false, ErrorAction::kSessionReset,
     err::kOptionalAttr},  // 7.11, 5.3
    {kMpUnreach, "MP_UNREACH_NLRI", true, false, ErrorAction::kSessionReset,
     err::kOptionalAttr},  // 5.3
    {kExtendedCommunities, "EXTENDED_COMMUNITIES", true, true, ErrorAction::kTreatAsWithdraw,
     err::kOptionalAttr},  // 7.14
    {kAs4Path, "AS4_PATH", true, true, ErrorAction::kAttributeDiscard,
     err::kOptionalAttr},  // RFC 6793 6
    {kAs4Aggregator, "AS4_AGGREGATOR", true, true, ErrorAction::kAttributeDiscard,
     err::kOptionalAttr},  // RFC 6793 6
    {kIpv6ExtendedCommunities, "IPV6_EXTENDED_COMMUNITIES", true, true,
     ErrorAction::kTreatAsWithdraw, err::kOptionalAttr},  // 7.15
    {kLargeCommunities, "LARGE_COMMUNITIES", true, true, ErrorAction::kTreatAsWithdraw,
     err::kOptionalAttr},  // RFC 8092 6
}};

// RFC 4271 6.3: NEXT_HOP must be a valid host address; an unspecified, multicast or reserved
// (240/4, broadcast) one is "syntactically incorrect", handled as treat-as-withdraw
// (RFC 7606 3 e). The same goes for the MP_REACH next hop.
bool UsableNextHop(const IpAddress& a) {
  if (a.is_v4()) {
    const uint32_t first = a.v4_host_order() >> 24;
    return first != 0 && first < 224;
  }
  const auto& b = a.bytes();
  if (b[0] == 0xff) return false;  // multicast
  return std::any_of(b.begin(), b.end(), [](uint8_t x) { return x != 0; });
}

const AttrRule* FindRule(uint8_t type) {
  for (const auto& r : kAttrRules)
    if (r.type == type) return &r;
  return nullptr;
}

BgpError MakeError(uint8_t code, uint8_t subcode, std::string reason,
                   std::vector<uint8_t> data = {}) {
  return BgpError{code, subcode, std::move(data), std::move(reason)};
}

IpAddress V4From(uint32_t v) { return IpAddress::V4(v); }

// An attribute value that is a list of 32-bit values (COMMUNITIES, CLUSTER_LIST): appends them
// to `out`. Returns false, leaving `out` untouched, unless the length is a non-zero multiple
// of 4.
bool ReadU32List(std::span<const uint8_t> value, std::vector<uint32_t>& out) {
  if (value.empty() || value.size() % 4 != 0) return false;
  Reader r(value);
  for (uint32_t v = 0; r.U32(v);) out.push_back(v);
  return true;
}

// ---- AS paths ------------------------------------------------------------------------------

bool ReadAsPath(std::span<const uint8_t> data, bool four_octet, AsPath& out) {
  Reader r(data);
  while (!r.empty()) {
    uint8_t type = 0, count = 0;
    if (!r.U8(type) || !r.U8(count)) return false;
    // RFC 7606 7.2: unknown segment type or empty segment is malformed. Confederation
    // segments (3, 4) are not supported here and treated as malformed.
    if (type != 1 && type != 2) return false;
    if (count == 0) return false;
    AsPathSegment seg;
    seg.type = static_cast<AsSegmentType>(type);
    for (int i = 0; i < count; ++i) {
      if (four_octet) {
        uint32_t asn = 0;
        if (!r.U32(asn)) return false;
        seg.asns.push_back(asn);
      } else {
        uint16_t asn = 0;
        if (!r.U16(asn)) return false;
        seg.asns.push_back(asn);
      }
    }
    out.segments.push_back(std::move(seg));
  }
  return true;
}

void WriteAsPath(Writer& w, const AsPath& path, bool four_octet) {
  for (const auto& seg : path.segments) {
    // A segment holds at most 255 ASNs; longer ones are split (only sequences split cleanly,
    // and sets that long do not occur in practice).
    for (size_t start = 0; start < seg.asns.size(); start += 255) {
      size_t n = std::min<size_t>(255, seg.asns.size() - start);
      w.U8(static_cast<uint8_t>(seg.type));
      w.U8(static_cast<uint8_t>(n));
      for (size_t i = start; i < start + n; ++i) {
        uint32_t asn = seg.asns[i];
        if (four_octet) {
          w.U32(asn);
        } else {
          w.U16(asn > 0xFFFF ? kAsTrans : static_cast<uint16_t>(asn));
        }
      }
    }
  }
}

bool NeedsAs4(const AsPath& path) {
  for (const auto& seg : path.segments)
    for (uint32_t asn : seg.asns)
      if (asn > 0xFFFF) return true;
  return false;
}

// RFC 6793 4.2.3: number of ASNs as counted for the AS_PATH/AS4_PATH merge.
size_t MergeCount(const AsPath& p) {
  size_t n = 0;
  for (const auto& s : p.segments) n += s.type == AsSegmentType::kSet ? 1 : s.asns.size();
  return n;
}

// RFC 6793 4.2.3: keep the leading (|AS_PATH| - |AS4_PATH|) ASNs of AS_PATH, then AS4_PATH.
AsPath MergeAs4Path(const AsPath& as_path, const AsPath& as4_path) {
  size_t n2 = MergeCount(as_path), n4 = MergeCount(as4_path);
  if (n2 < n4) return as_path;
  size_t keep = n2 - n4;
  AsPath out;
  for (const auto& seg : as_path.segments) {
    if (keep == 0) break;
    if (seg.type == AsSegmentType::kSet) {
      out.segments.push_back(seg);
      --keep;
    } else {
      AsPathSegment part{seg.type, {}};
      for (uint32_t asn : seg.asns) {
        if (keep == 0) break;
        part.asns.push_back(asn);
        --keep;
      }
      out.segments.push_back(std::move(part));
    }
  }
  for (const auto& seg : as4_path.segments) out.segments.push_back(seg);
  return out;
}

// ---- attributes ----------------------------------------------------------------------------

void WriteAttr(Writer& w, uint8_t flags, uint8_t type, const std::vector<uint8_t>& value) {
  flags &= static_cast<uint8_t>(~kExtendedLength);
  if (value.size() > 255) flags |= kExtendedLength;
  w.U8(flags);
  w.U8(type);
  if (flags & kExtendedLength) {
    w.U16(static_cast<uint16_t>(value.size()));
  } else {
    w.U8(static_cast<uint8_t>(value.size()));
  }
  w.Bytes(value);
}

template <typename Fn>
void WriteAttrWith(Writer& w, uint8_t flags, uint8_t type, Fn&& fill) {
  Writer v;
  fill(v);
  WriteAttr(w, flags, type, v.bytes());
}

void WriteMpReach(Writer& w, const MpReach& mp) {
  WriteAttrWith(w, kOptional, kMpReach, [&](Writer& v) {
    v.U16(mp.afi_safi.afi);
    v.U8(mp.afi_safi.safi);
    const auto& nh = mp.next_hop.bytes();
    if (mp.next_hop.is_v4()) {
      v.U8(4);
      v.Bytes(std::span<const uint8_t>(nh.data(), 4));
    } else {
      v.U8(mp.link_local_next_hop ? 32 : 16);
      v.Bytes(nh);
      if (mp.link_local_next_hop) v.Bytes(mp.link_local_next_hop->bytes());
    }
    v.U8(0);  // reserved
    for (const auto& p : mp.nlri) WritePrefix(v, p);
  });
}

void WriteMpUnreach(Writer& w, const MpUnreach& mp) {
  WriteAttrWith(w, kOptional, kMpUnreach, [&](Writer& v) {
    v.U16(mp.afi_safi.afi);
    v.U8(mp.afi_safi.safi);
    for (const auto& p : mp.withdrawn) WritePrefix(v, p);
  });
}

}  // namespace

void WriteAttributes(Writer& w, const UpdateMessage& u, const CodecOptions& opt) {
  const PathAttributes& a = u.attrs;
  if (a.origin)
    WriteAttrWith(w, kTransitive, kOrigin, [&](Writer& v) { v.U8(uint8_t(*a.origin)); });
  if (a.as_path) {
    WriteAttrWith(w, kTransitive, kAsPath,
                  [&](Writer& v) { WriteAsPath(v, *a.as_path, opt.four_octet_as); });
  }
  if (a.next_hop) {
    WriteAttrWith(w, kTransitive, kNextHop, [&](Writer& v) { v.U32(a.next_hop->v4_host_order()); });
  }
  if (a.med) WriteAttrWith(w, kOptional, kMed, [&](Writer& v) { v.U32(*a.med); });
  if (a.local_pref)
    WriteAttrWith(w, kTransitive, kLocalPref, [&](Writer& v) { v.U32(*a.local_pref); });
  if (a.atomic_aggregate) WriteAttr(w, kTransitive, kAtomicAggregate, {});
  if (a.aggregator) {
    WriteAttrWith(w, kOptional | kTransitive, kAggregator, [&](Writer& v) {
      if (opt.four_octet_as) {
        v.U32(a.aggregator->asn);
      } else {
        v.U16(a.aggregator->asn > 0xFFFF ? kAsTrans : static_cast<uint16_t>(a.aggregator->asn));
      }
      v.U32(a.aggregator->address.v4_host_order());
    });
  }
  if (!a.communities.empty()) {
    WriteAttrWith(w, kOptional | kTransitive, kCommunities, [&](Writer& v) {
      for (uint32_t c : a.communities) v.U32(c);
    });
  }
  if (a.originator_id) {
    WriteAttrWith(w, kOptional, kOriginatorId,
                  [&](Writer& v) { v.U32(a.originator_id->v4_host_order()); });
  }
  if (!a.cluster_list.empty()) {
    WriteAttrWith(w, kOptional, kClusterList, [&](Writer& v) {
      for (uint32_t c : a.cluster_list) v.U32(c);
    });
  }
  if (u.mp_reach) WriteMpReach(w, *u.mp_reach);
  if (u.mp_unreach) WriteMpUnreach(w, *u.mp_unreach);
  // RFC 6793 4.2.2: towards a 2-octet speaker, the true path travels in AS4_PATH.
  if (!opt.four_octet_as && a.as_path && NeedsAs4(*a.as_path)) {
    WriteAttrWith(w, kOptional | kTransitive, kAs4Path,
                  [&](Writer& v) { WriteAsPath(v, *a.as_path, true); });
  }
  if (!opt.four_octet_as && a.aggregator && a.aggregator->asn > 0xFFFF) {
    WriteAttrWith(w, kOptional | kTransitive, kAs4Aggregator, [&](Writer& v) {
      v.U32(a.aggregator->asn);
      v.U32(a.aggregator->address.v4_host_order());
    });
  }
  if (!a.large_communities.empty()) {
    WriteAttrWith(w, kOptional | kTransitive, kLargeCommunities, [&](Writer& v) {
      for (const auto& c : a.large_communities) {
        v.U32(c.global_admin);
        v.U32(c.local_data1);
        v.U32(c.local_data2);
      }
    });
  }
  for (const auto& raw : a.unknown) WriteAttr(w, raw.flags, raw.type, raw.value);
}

namespace {

// The attribute as it appeared on the wire, for NOTIFICATION data (RFC 4271 6.3).
std::vector<uint8_t> AttrWire(uint8_t flags, uint8_t type, std::span<const uint8_t> value) {
  Writer w;
  w.U8(flags);
  w.U8(type);
  if (flags & kExtendedLength) {
    w.U16(static_cast<uint16_t>(value.size()));
  } else {
    w.U8(static_cast<uint8_t>(value.size()));
  }
  w.Bytes(value);
  return std::move(w.bytes());
}

// Decodes the value of one known attribute into `u`. Returns false when it is malformed.
// `unusable_next_hop` reports a well-formed attribute whose next hop cannot be used: the
// routes are withdrawn but the attribute (and so the NLRI in MP_REACH) is still known.
bool DecodeKnownAttr(uint8_t type, std::span<const uint8_t> value, const CodecOptions& opt,
                     UpdateMessage& u, std::optional<AsPath>& as4_path,
                     std::optional<Aggregator>& as4_aggregator, std::string& why,
                     const std::function<void(const IpAddress&)>& unusable_next_hop) {
  Reader r(value);
  PathAttributes& a = u.attrs;
  // NEXT_HOP, MULTI_EXIT_DISC, LOCAL_PREF, ORIGINATOR_ID: exactly one 32-bit value, handed to
  // `store`; anything else is malformed.
  auto one_u32 = [&](const char* name, auto&& store) {
    uint32_t v = 0;
    if (value.size() != 4 || !r.U32(v)) {
      why = std::string(name) + ": length is not 4";
      return false;
    }
    store(v);
    return true;
  };
  switch (type) {
    case kOrigin: {
      uint8_t o = 0;
      if (value.size() != 1 || !r.U8(o) || o > 2) {
        why = "ORIGIN: bad length or value";
        return false;
      }
      a.origin = static_cast<Origin>(o);
      return true;
    }
    case kAsPath: {
      AsPath p;
      if (!ReadAsPath(value, opt.four_octet_as, p)) {
        why = "AS_PATH: malformed segment";
        return false;
      }
      a.as_path = std::move(p);
      return true;
    }
    case kNextHop:
      return one_u32("NEXT_HOP", [&](uint32_t v) {
        a.next_hop = V4From(v);
        // Only the IPv4 NLRI field uses it (RFC 4760 3: ignored with MP_REACH alone).
        if (!u.nlri.empty() && !UsableNextHop(*a.next_hop)) unusable_next_hop(*a.next_hop);
      });
    case kMed:
      return one_u32("MULTI_EXIT_DISC", [&](uint32_t v) { a.med = v; });
    case kLocalPref:
      return one_u32("LOCAL_PREF", [&](uint32_t v) { a.local_pref = v; });
    case kAtomicAggregate:
      if (!value.empty()) {
        why = "ATOMIC_AGGREGATE: non-zero length";
        return false;
      }
      a.atomic_aggregate = true;
      return true;
    case kAggregator: {
      Aggregator ag;
      uint32_t addr = 0;
      if (opt.four_octet_as) {
        if (value.size() != 8 || !r.U32(ag.asn)) {
          why = "AGGREGATOR: length is not 8";
          return false;
        }
      } else {
        uint16_t asn = 0;
        if (value.size() != 6 || !r.U16(asn)) {
          why = "AGGREGATOR: length is not 6";
          return false;
        }
        ag.asn = asn;
      }
      r.U32(addr);
      ag.address = V4From(addr);
      a.aggregator = ag;
      return true;
    }
    case kCommunities:
      if (!ReadU32List(value, a.communities)) {
        why = "COMMUNITIES: length is not a non-zero multiple of 4";
        return false;
      }
      return true;
    case kLargeCommunities:
      if (value.empty() || value.size() % 12 != 0) {
        why = "LARGE_COMMUNITIES: length is not a non-zero multiple of 12";
        return false;
      }
      while (!r.empty()) {
        LargeCommunity c;
        r.U32(c.global_admin);
        r.U32(c.local_data1);
        r.U32(c.local_data2);
        a.large_communities.push_back(c);
      }
      return true;
    case kOriginatorId:
      return one_u32("ORIGINATOR_ID", [&](uint32_t v) { a.originator_id = V4From(v); });
    case kClusterList:
      if (!ReadU32List(value, a.cluster_list)) {
        why = "CLUSTER_LIST: length is not a non-zero multiple of 4";
        return false;
      }
      return true;
    case kMpReach: {
      MpReach mp;
      uint8_t nh_len = 0, reserved = 0;
      std::span<const uint8_t> nh;
      if (!r.U16(mp.afi_safi.afi) || !r.U8(mp.afi_safi.safi) || !r.U8(nh_len) ||
          !r.Bytes(nh_len, nh) || !r.U8(reserved)) {
        why = "MP_REACH_NLRI: truncated";
        return false;
      }
      bool v6 = mp.afi_safi.afi == static_cast<uint16_t>(Afi::kIpv6);
      if (mp.afi_safi != kIpv4Unicast && mp.afi_safi != kIpv6Unicast) {
        // RFC 4760 7: a family we did not negotiate is not an error worth a reset; skip it.
        u.errors.push_back("MP_REACH_NLRI: unsupported AFI/SAFI ignored");
        return true;
      }
      std::array<uint8_t, 16> b{};
      if (v6 && (nh_len == 16 || nh_len == 32)) {
        std::copy(nh.begin(), nh.begin() + 16, b.begin());
        mp.next_hop = IpAddress::V6(b);
        if (nh_len == 32) {
          std::copy(nh.begin() + 16, nh.end(), b.begin());
          mp.link_local_next_hop = IpAddress::V6(b);
        }
      } else if (!v6 && nh_len == 4) {
        mp.next_hop =
            V4From((static_cast<uint32_t>(nh[0]) << 24) | (nh[1] << 16) | (nh[2] << 8) | nh[3]);
      } else {
        why = "MP_REACH_NLRI: bad next hop length";
        return false;
      }
      if (!ReadPrefixes(r.Rest(), v6, mp.nlri)) {
        why = "MP_REACH_NLRI: malformed NLRI";
        return false;
      }
      if (!UsableNextHop(mp.next_hop)) unusable_next_hop(mp.next_hop);
      u.mp_reach = std::move(mp);
      return true;
    }
    case kMpUnreach: {
      MpUnreach mp;
      if (!r.U16(mp.afi_safi.afi) || !r.U8(mp.afi_safi.safi)) {
        why = "MP_UNREACH_NLRI: truncated";
        return false;
      }
      if (mp.afi_safi != kIpv4Unicast && mp.afi_safi != kIpv6Unicast) {
        u.errors.push_back("MP_UNREACH_NLRI: unsupported AFI/SAFI ignored");
        return true;
      }
      if (!ReadPrefixes(r.Rest(), mp.afi_safi == kIpv6Unicast, mp.withdrawn)) {
        why = "MP_UNREACH_NLRI: malformed withdrawn routes";
        return false;
      }
      u.mp_unreach = std::move(mp);
      return true;
    }
    case kAs4Path: {
      AsPath p;
      // RFC 7606 4: of the attributes here only AS_PATH and ATOMIC_AGGREGATE may be empty.
      if (value.empty() || !ReadAsPath(value, true, p)) {
        why = "AS4_PATH: malformed segment";
        return false;
      }
      as4_path = std::move(p);
      return true;
    }
    case kAs4Aggregator: {
      Aggregator ag;
      uint32_t addr = 0;
      if (value.size() != 8 || !r.U32(ag.asn) || !r.U32(addr)) {
        why = "AS4_AGGREGATOR: length is not 8";
        return false;
      }
      ag.address = V4From(addr);
      as4_aggregator = ag;
      return true;
    }
    case kExtendedCommunities:
    case kIpv6ExtendedCommunities: {
      // Validated (RFC 7606 7.14, 7.15), not interpreted: passed on like an unknown
      // transitive attribute. Unknown types and sub-types are not errors.
      const size_t unit = type == kExtendedCommunities ? 8 : 20;
      if (value.empty() || value.size() % unit != 0) {
        why = std::string(type == kExtendedCommunities ? "EXTENDED_COMMUNITIES"
                                                       : "IPV6_EXTENDED_COMMUNITIES") +
              ": length is not a non-zero multiple of " + std::to_string(unit);
        return false;
      }
      a.unknown.push_back(RawAttribute{static_cast<uint8_t>(kOptional | kTransitive), type,
                                       std::vector<uint8_t>(value.begin(), value.end())});
      return true;
    }
    default:
      return true;
  }
}
}  // namespace

size_t PrefixWireSize(const IpPrefix& p) { return 1 + (static_cast<size_t>(p.length()) + 7) / 8; }

void WritePrefix(Writer& w, const IpPrefix& p) {
  w.U8(static_cast<uint8_t>(p.length()));
  const auto& b = p.address().bytes();
  w.Bytes(std::span<const uint8_t>(b.data(), (static_cast<size_t>(p.length()) + 7) / 8));
}

// RFC 4271 4.3: length octet then the minimum number of octets holding that many bits.
bool ReadPrefixes(std::span<const uint8_t> data, bool v6, std::vector<IpPrefix>& out) {
  Reader r(data);
  const int max_bits = v6 ? 128 : 32;
  while (!r.empty()) {
    uint8_t len = 0;
    r.U8(len);
    if (len > max_bits) return false;
    std::span<const uint8_t> bits;
    if (!r.Bytes((len + 7u) / 8u, bits)) return false;
    std::array<uint8_t, 16> addr{};
    std::copy(bits.begin(), bits.end(), addr.begin());
    IpAddress a;
    if (v6) {
      a = IpAddress::V6(addr);
    } else {
      a = IpAddress::V4((static_cast<uint32_t>(addr[0]) << 24) | (addr[1] << 16) | (addr[2] << 8) |
                        addr[3]);
    }
    out.emplace_back(a, len);
  }
  return true;
}

std::optional<BgpError> DecodeAttributes(std::span<const uint8_t> attrs, const CodecOptions& opt,
                                         UpdateMessage& u) {
  std::optional<AsPath> as4_path;
  std::optional<Aggregator> as4_aggregator;
  std::set<uint8_t> seen;
  // The first error that withdraws: the NOTIFICATION if RFC 7606 5.2 turns it into a reset.
  std::optional<BgpError> first_withdraw;
  auto withdraw = [&](uint8_t subcode, const std::string& why, std::vector<uint8_t> data) {
    u.treat_as_withdraw = true;
    u.errors.push_back(why + " (treat-as-withdraw)");
    if (!first_withdraw) first_withdraw = MakeError(err::kUpdate, subcode, why, std::move(data));
  };
  bool other_than_unreach = false;  // RFC 7606 5.2
  Reader ar(attrs);
  while (!ar.empty()) {
    uint8_t flags = 0, type = 0;
    uint16_t len = 0;
    std::span<const uint8_t> value;
    bool header_ok = ar.U8(flags) && ar.U8(type);
    if (header_ok) {
      if (flags & kExtendedLength) {
        header_ok = ar.U16(len);
      } else {
        uint8_t l8 = 0;
        header_ok = ar.U8(l8);
        len = l8;
      }
    }
    if (!header_ok || !ar.Bytes(len, value)) {
      // RFC 7606 4: the list cannot be walked further; the NLRI field is still found through
      // the Total Path Attribute Length, so treat-as-withdraw (5.2 makes it a reset when no
      // NLRI is left to withdraw).
      other_than_unreach = true;
      withdraw(err::kMalformedAttrList, "attribute length overruns the attribute list", {});
      break;
    }
    if (type != kMpUnreach) other_than_unreach = true;
    const AttrRule* rule = FindRule(type);
    if (seen.count(type)) {
      // RFC 7606 3 g: repeated MP attributes reset, other repeats are discarded.
      if (type == kMpReach || type == kMpUnreach) {
        return MakeError(err::kUpdate, err::kMalformedAttrList, "repeated MP attribute");
      }
      u.errors.push_back("repeated attribute " + std::to_string(type) + " discarded");
      continue;
    }
    seen.insert(type);
    if (!rule) {
      if (!(flags & kOptional)) {
        return MakeError(err::kUpdate, err::kUnrecognizedWellKnown,
                         "unrecognized well-known attribute " + std::to_string(type),
                         AttrWire(flags, type, value));
      }
      // RFC 4271 5: optional transitive attributes are passed on, non-transitive dropped.
      if (flags & kTransitive) {
        u.attrs.unknown.push_back(RawAttribute{static_cast<uint8_t>(flags & ~kExtendedLength), type,
                                               std::vector<uint8_t>(value.begin(), value.end())});
      }
      continue;
    }
    if (rule->external_discard && opt.external_peer) {
      u.errors.push_back(std::string(rule->name) + " from an external peer (attribute discarded)");
      continue;
    }
    std::string why;
    bool flags_ok = (((flags & kOptional) != 0) == rule->optional) &&
                    (((flags & kTransitive) != 0) == rule->transitive);
    bool ok = flags_ok;
    if (!flags_ok) {
      why = std::string(rule->name) + ": wrong Optional/Transitive flags";
    } else {
      ok = DecodeKnownAttr(type, value, opt, u, as4_path, as4_aggregator, why,
                           [&](const IpAddress& next_hop) {
                             withdraw(err::kInvalidNextHop,
                                      std::string(rule->name) + ": next hop " +
                                          next_hop.ToString() + " is not a host address",
                                      AttrWire(flags, type, value));
                           });
    }
    if (ok) continue;
    switch (rule->on_malformed) {
      case ErrorAction::kSessionReset:
        return MakeError(err::kUpdate, flags_ok ? rule->subcode : err::kAttrFlags, why,
                         AttrWire(flags, type, value));
      case ErrorAction::kTreatAsWithdraw:
        withdraw(flags_ok ? rule->subcode : err::kAttrFlags, why, AttrWire(flags, type, value));
        break;
      case ErrorAction::kAttributeDiscard:
        u.errors.push_back(why + " (attribute discarded)");
        break;
    }
  }

  // RFC 7606 5.2: attributes (other than MP_UNREACH alone) with an error that is not an
  // attribute discard, and no NLRI it could withdraw: we cannot be sure the NLRI were found,
  // so the session is reset.
  const bool has_nlri = !u.nlri.empty() || seen.count(kMpReach);
  if (first_withdraw && !has_nlri && other_than_unreach) {
    first_withdraw->reason += " in an UPDATE without NLRI (session reset, RFC 7606 5.2)";
    return first_withdraw;
  }

  // RFC 6793 4.2.3: merge the 4-octet path from a 2-octet speaker; a NEW speaker ignores it.
  if (!opt.four_octet_as) {
    bool aggregator_ok =
        !u.attrs.aggregator || u.attrs.aggregator->asn == kAsTrans || !as4_aggregator;
    if (as4_aggregator && u.attrs.aggregator && u.attrs.aggregator->asn == kAsTrans) {
      u.attrs.aggregator = as4_aggregator;
    }
    if (as4_path && u.attrs.as_path && aggregator_ok) {
      u.attrs.as_path = MergeAs4Path(*u.attrs.as_path, *as4_path);
    }
  }

  // RFC 7606 3 d: missing mandatory attributes make the announced routes unusable.
  bool announces = !u.nlri.empty() || (u.mp_reach && !u.mp_reach->nlri.empty());
  if (announces && !u.treat_as_withdraw) {
    std::string missing;
    if (!u.attrs.origin) missing += " ORIGIN";
    if (!u.attrs.as_path) missing += " AS_PATH";
    if (!u.nlri.empty() && !u.attrs.next_hop) missing += " NEXT_HOP";
    if (!missing.empty()) {
      u.treat_as_withdraw = true;
      u.errors.push_back("missing well-known attribute(s):" + missing + " (treat-as-withdraw)");
    }
  }
  return std::nullopt;
}

}  // namespace kr::bgp::detail

namespace kr::bgp {

// ---- AsPath helpers --------------------------------------------------------------------------

size_t AsPath::Length() const { return detail::MergeCount(*this); }

uint32_t AsPath::FirstAsn() const {
  if (segments.empty() || segments[0].type != AsSegmentType::kSequence || segments[0].asns.empty())
    return 0;
  return segments[0].asns[0];
}

bool AsPath::Contains(uint32_t asn) const {
  for (const auto& s : segments)
    if (std::find(s.asns.begin(), s.asns.end(), asn) != s.asns.end()) return true;
  return false;
}

void AsPath::Prepend(uint32_t asn, int count) {
  if (count <= 0) return;
  if (segments.empty() || segments[0].type != AsSegmentType::kSequence)
    segments.insert(segments.begin(), AsPathSegment{AsSegmentType::kSequence, {}});
  auto& asns = segments[0].asns;
  asns.insert(asns.begin(), static_cast<size_t>(count), asn);
}

std::string AsPath::ToString() const {
  std::string out;
  for (const auto& s : segments) {
    if (!out.empty()) out += ' ';
    if (s.type == AsSegmentType::kSet) out += '{';
    for (size_t i = 0; i < s.asns.size(); ++i) {
      if (i) out += ' ';
      out += std::to_string(s.asns[i]);
    }
    if (s.type == AsSegmentType::kSet) out += '}';
  }
  return out;
}

}  // namespace kr::bgp
