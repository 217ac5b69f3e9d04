// SPDX-License-Identifier: Apache-2.0
// BGP-4 message codec: RFC 4271 (framing, OPEN, UPDATE, NOTIFICATION, KEEPALIVE), RFC 4760
// (MP_REACH/MP_UNREACH), RFC 6793 (4-octet ASNs, AS4_PATH), RFC 2918 (ROUTE-REFRESH),
// RFC 4724 (graceful restart capability), RFC 1997/8092 communities, RFC 4456 attributes and
// RFC 7606 revised error handling.
#include <algorithm>
#include <array>
#include <set>
#include <string>

#include "bytes.h"
#include "kube_router/bgp/message.h"

namespace kr::bgp {
namespace {

using detail::Reader;
using detail::Writer;

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
  kLargeCommunities = 32,
};

// Capability codes (IANA).
constexpr uint8_t kCapMultiprotocol = 1;
constexpr uint8_t kCapRouteRefresh = 2;
constexpr uint8_t kCapGracefulRestart = 64;
constexpr uint8_t kCapFourOctetAs = 65;

// What each known attribute must look like, and what RFC 7606 says to do when it does not.
struct AttrRule {
  uint8_t type;
  bool optional;
  bool transitive;
  ErrorAction on_malformed;
};
constexpr std::array<AttrRule, 15> kAttrRules = {{
    {kOrigin, false, true, ErrorAction::kTreatAsWithdraw},            // 7606 7.1
    {kAsPath, false, true, ErrorAction::kTreatAsWithdraw},            // 7606 7.2
    {kNextHop, false, true, ErrorAction::kTreatAsWithdraw},           // 7606 7.3
    {kMed, true, false, ErrorAction::kTreatAsWithdraw},               // 7606 7.4
    {kLocalPref, false, true, ErrorAction::kTreatAsWithdraw},         // 7606 7.5
    {kAtomicAggregate, false, true, ErrorAction::kAttributeDiscard},  // 7606 7.6
    {kAggregator, true, true, ErrorAction::kAttributeDiscard},        // 7606 7.7
    {kCommunities, true, true, ErrorAction::kTreatAsWithdraw},        // 7606 7.8
    {kOriginatorId, true, false, ErrorAction::kTreatAsWithdraw},      // 7606 7.9
    {kClusterList, true, false, ErrorAction::kTreatAsWithdraw},       // 7606 7.10
    {kMpReach, true, false, ErrorAction::kSessionReset},              // 7606 7.11
    {kMpUnreach, true, false, ErrorAction::kSessionReset},            // 7606 7.11
    {kAs4Path, true, true, ErrorAction::kAttributeDiscard},           // 6793 6
    {kAs4Aggregator, true, true, ErrorAction::kAttributeDiscard},     // 6793 6
    {kLargeCommunities, true, true, ErrorAction::kTreatAsWithdraw},   // 8092 6
}};

const AttrRule* FindRule(uint8_t type) {
  for (const auto& r : kAttrRules)
    if (r.type == type) return &r;
  return nullptr;
}

BgpError MakeError(uint8_t code, uint8_t subcode, std::string reason,
                   std::vector<uint8_t> data = {}) {
  return BgpError{code, subcode, std::move(data), std::move(reason)};
}

// ---- prefixes ------------------------------------------------------------------------------

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
bool DecodeKnownAttr(uint8_t type, std::span<const uint8_t> value, const CodecOptions& opt,
                     UpdateMessage& u, std::optional<AsPath>& as4_path,
                     std::optional<Aggregator>& as4_aggregator, std::string& why) {
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
      return one_u32("NEXT_HOP", [&](uint32_t v) { a.next_hop = V4From(v); });
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
      if (!ReadAsPath(value, true, p)) {
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
    default:
      return true;
  }
}

std::variant<Message, BgpError> DecodeUpdate(std::span<const uint8_t> body,
                                             const CodecOptions& opt) {
  Reader r(body);
  UpdateMessage u;
  uint16_t withdrawn_len = 0, attr_len = 0;
  std::span<const uint8_t> withdrawn, attrs;
  if (!r.U16(withdrawn_len) || !r.Bytes(withdrawn_len, withdrawn) || !r.U16(attr_len) ||
      !r.Bytes(attr_len, attrs)) {
    return MakeError(err::kUpdate, err::kMalformedAttrList,
                     "UPDATE: withdrawn or path attribute length exceeds the message");
  }
  // RFC 7606 5.3: an NLRI field that cannot be parsed resets the session.
  if (!ReadPrefixes(withdrawn, false, u.withdrawn)) {
    return MakeError(err::kUpdate, err::kInvalidNetwork, "UPDATE: malformed withdrawn routes");
  }
  if (!ReadPrefixes(r.Rest(), false, u.nlri)) {
    return MakeError(err::kUpdate, err::kInvalidNetwork, "UPDATE: malformed NLRI");
  }

  std::optional<AsPath> as4_path;
  std::optional<Aggregator> as4_aggregator;
  std::set<uint8_t> seen;
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
      // RFC 7606 4: the attribute list cannot be walked further. Without MP attributes the
      // NLRI is still known, so treat-as-withdraw; an MP attribute might hide behind it, which
      // only a reset can handle safely.
      if (!u.mp_reach && !u.mp_unreach && seen.count(kMpReach) == 0) {
        u.treat_as_withdraw = true;
        u.errors.push_back("attribute length overruns the attribute list");
        break;
      }
      return MakeError(err::kUpdate, err::kMalformedAttrList,
                       "attribute length overruns the attribute list");
    }
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
    std::string why;
    bool flags_ok = (((flags & kOptional) != 0) == rule->optional) &&
                    (((flags & kTransitive) != 0) == rule->transitive);
    bool ok = flags_ok;
    if (!flags_ok) {
      why = "attribute " + std::to_string(type) + ": wrong flags";
    } else {
      ok = DecodeKnownAttr(type, value, opt, u, as4_path, as4_aggregator, why);
    }
    if (ok) continue;
    switch (rule->on_malformed) {
      case ErrorAction::kSessionReset:
        return MakeError(err::kUpdate, flags_ok ? err::kOptionalAttr : err::kAttrFlags, why,
                         AttrWire(flags, type, value));
      case ErrorAction::kTreatAsWithdraw:
        u.treat_as_withdraw = true;
        u.errors.push_back(why + " (treat-as-withdraw)");
        break;
      case ErrorAction::kAttributeDiscard:
        u.errors.push_back(why + " (attribute discarded)");
        break;
    }
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
  return Message(std::move(u));
}

// ---- OPEN ----------------------------------------------------------------------------------

bool ReadCapabilities(std::span<const uint8_t> data, Capabilities& caps) {
  Reader r(data);
  while (!r.empty()) {
    uint8_t code = 0, len = 0;
    std::span<const uint8_t> v;
    if (!r.U8(code) || !r.U8(len) || !r.Bytes(len, v)) return false;
    Reader cr(v);
    switch (code) {
      case kCapMultiprotocol: {
        AfiSafi as;
        uint8_t reserved = 0;
        if (len != 4 || !cr.U16(as.afi) || !cr.U8(reserved) || !cr.U8(as.safi)) return false;
        if (std::find(caps.multiprotocol.begin(), caps.multiprotocol.end(), as) ==
            caps.multiprotocol.end()) {
          caps.multiprotocol.push_back(as);
        }
        break;
      }
      case kCapRouteRefresh:
        if (len != 0) return false;
        caps.route_refresh = true;
        break;
      case kCapFourOctetAs: {
        uint32_t asn = 0;
        if (len != 4 || !cr.U32(asn)) return false;
        caps.four_octet_asn = asn;
        break;
      }
      case kCapGracefulRestart: {
        uint16_t head = 0;
        if (len < 2 || (len - 2) % 4 != 0 || !cr.U16(head)) return false;
        GracefulRestartCap gr;
        gr.restarting = (head & 0x8000) != 0;
        gr.restart_time_s = head & 0x0FFF;
        while (!cr.empty()) {
          GracefulRestartCap::Family f;
          uint8_t fl = 0;
          cr.U16(f.afi_safi.afi);
          cr.U8(f.afi_safi.safi);
          cr.U8(fl);
          f.forwarding_preserved = (fl & 0x80) != 0;
          gr.families.push_back(f);
        }
        caps.graceful_restart = std::move(gr);
        break;
      }
      default:
        caps.unknown.push_back(RawAttribute{0, code, std::vector<uint8_t>(v.begin(), v.end())});
    }
  }
  return true;
}

void WriteCapabilities(Writer& w, const Capabilities& caps) {
  auto cap = [&](uint8_t code, const std::vector<uint8_t>& v) {
    w.U8(code);
    w.U8(static_cast<uint8_t>(v.size()));
    w.Bytes(v);
  };
  for (const auto& as : caps.multiprotocol) {
    Writer v;
    v.U16(as.afi);
    v.U8(0);
    v.U8(as.safi);
    cap(kCapMultiprotocol, v.bytes());
  }
  if (caps.route_refresh) cap(kCapRouteRefresh, {});
  if (caps.graceful_restart) {
    Writer v;
    v.U16(static_cast<uint16_t>((caps.graceful_restart->restarting ? 0x8000 : 0) |
                                (caps.graceful_restart->restart_time_s & 0x0FFF)));
    for (const auto& f : caps.graceful_restart->families) {
      v.U16(f.afi_safi.afi);
      v.U8(f.afi_safi.safi);
      v.U8(f.forwarding_preserved ? 0x80 : 0);
    }
    cap(kCapGracefulRestart, v.bytes());
  }
  if (caps.four_octet_asn) {
    Writer v;
    v.U32(*caps.four_octet_asn);
    cap(kCapFourOctetAs, v.bytes());
  }
  for (const auto& raw : caps.unknown) cap(raw.type, raw.value);
}

std::variant<Message, BgpError> DecodeOpen(std::span<const uint8_t> body) {
  Reader r(body);
  OpenMessage o;
  uint32_t id = 0;
  uint8_t opt_len = 0;
  if (!r.U8(o.version) || !r.U16(o.my_as) || !r.U16(o.hold_time_s) || !r.U32(id) ||
      !r.U8(opt_len)) {
    return MakeError(err::kHeader, err::kBadLength, "OPEN: too short");
  }
  if (o.version != 4) {
    return MakeError(err::kOpen, err::kUnsupportedVersion, "OPEN: unsupported version", {0, 4});
  }
  if (o.hold_time_s == 1 || o.hold_time_s == 2) {
    return MakeError(err::kOpen, err::kUnacceptableHoldTime, "OPEN: hold time 1 or 2");
  }
  if (id == 0) return MakeError(err::kOpen, err::kBadBgpId, "OPEN: BGP identifier 0");
  o.bgp_id = V4From(id);
  std::span<const uint8_t> params;
  if (!r.Bytes(opt_len, params) || !r.empty()) {
    return MakeError(err::kOpen, 0, "OPEN: optional parameter length mismatch");
  }
  Reader pr(params);
  while (!pr.empty()) {
    uint8_t type = 0, len = 0;
    std::span<const uint8_t> v;
    if (!pr.U8(type) || !pr.U8(len) || !pr.Bytes(len, v)) {
      return MakeError(err::kOpen, 0, "OPEN: truncated optional parameter");
    }
    if (type != 2) {
      return MakeError(err::kOpen, err::kUnsupportedOptParam,
                       "OPEN: unsupported optional parameter " + std::to_string(type));
    }
    if (!ReadCapabilities(v, o.caps)) {
      return MakeError(err::kOpen, 0, "OPEN: malformed capability");
    }
  }
  return Message(std::move(o));
}

void WriteHeader(Writer& w, MessageType type) {
  for (int i = 0; i < 16; ++i) w.U8(0xFF);
  w.U16(0);  // patched once the body is written
  w.U8(static_cast<uint8_t>(type));
}

std::vector<uint8_t> Finish(Writer& w) {
  w.PatchU16(16, static_cast<uint16_t>(w.size()));
  return std::move(w.bytes());
}

}  // namespace

// ---- AsPath helpers --------------------------------------------------------------------------

size_t AsPath::Length() const { return MergeCount(*this); }

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

// ---- public codec ----------------------------------------------------------------------------

std::optional<AfiSafi> UpdateMessage::EndOfRib() const {
  bool no_attrs = attrs == PathAttributes{} && !mp_reach;
  if (!no_attrs || !withdrawn.empty() || !nlri.empty()) return std::nullopt;
  if (!mp_unreach) return kIpv4Unicast;
  if (mp_unreach->withdrawn.empty()) return mp_unreach->afi_safi;
  return std::nullopt;
}

std::variant<size_t, BgpError> FrameLength(std::span<const uint8_t> bytes) {
  if (bytes.size() < kHeaderSize) return size_t{0};
  for (size_t i = 0; i < 16; ++i) {
    if (bytes[i] != 0xFF) {
      return MakeError(err::kHeader, err::kNotSynchronized, "header marker is not all ones");
    }
  }
  uint16_t len = static_cast<uint16_t>((bytes[16] << 8) | bytes[17]);
  uint8_t type = bytes[18];
  std::vector<uint8_t> len_data{bytes[16], bytes[17]};
  if (len < kHeaderSize || len > kMaxMessageSize) {
    return MakeError(err::kHeader, err::kBadLength, "bad message length", len_data);
  }
  size_t min = 0, max = kMaxMessageSize;
  switch (static_cast<MessageType>(type)) {
    case MessageType::kOpen:
      min = 29;
      break;
    case MessageType::kUpdate:
      min = 23;
      break;
    case MessageType::kNotification:
      min = 21;
      break;
    case MessageType::kKeepalive:
      min = max = 19;
      break;
    case MessageType::kRouteRefresh:
      min = max = 23;
      break;
    default:
      return MakeError(err::kHeader, err::kBadType, "bad message type", {type});
  }
  if (len < min || len > max) {
    return MakeError(err::kHeader, err::kBadLength, "bad length for message type", len_data);
  }
  return size_t{len};
}

std::variant<Message, BgpError> Decode(std::span<const uint8_t> bytes,
                                       const CodecOptions& options) {
  auto frame = FrameLength(bytes);
  if (auto* e = std::get_if<BgpError>(&frame)) return *e;
  size_t len = std::get<size_t>(frame);
  if (len == 0 || len != bytes.size()) {
    return MakeError(err::kHeader, err::kBadLength, "message length does not match its bytes");
  }
  auto body = bytes.subspan(kHeaderSize);
  Reader r(body);
  switch (static_cast<MessageType>(bytes[18])) {
    case MessageType::kOpen:
      return DecodeOpen(body);
    case MessageType::kUpdate:
      return DecodeUpdate(body, options);
    case MessageType::kNotification: {
      NotificationMessage n;
      r.U8(n.code);
      r.U8(n.subcode);
      auto rest = r.Rest();
      n.data.assign(rest.begin(), rest.end());
      return Message(std::move(n));
    }
    case MessageType::kKeepalive:
      return Message(KeepaliveMessage{});
    case MessageType::kRouteRefresh: {
      RouteRefreshMessage m;
      r.U16(m.afi_safi.afi);
      r.U8(m.subtype);
      r.U8(m.afi_safi.safi);
      return Message(m);
    }
  }
  return MakeError(err::kHeader, err::kBadType, "bad message type", {bytes[18]});
}

std::vector<uint8_t> Encode(const Message& message, const CodecOptions& options) {
  Writer w;
  if (const auto* o = std::get_if<OpenMessage>(&message)) {
    WriteHeader(w, MessageType::kOpen);
    w.U8(o->version);
    w.U16(o->my_as);
    w.U16(o->hold_time_s);
    w.U32(o->bgp_id.v4_host_order());
    Writer caps;
    WriteCapabilities(caps, o->caps);
    if (caps.size() == 0) {
      w.U8(0);
    } else {
      w.U8(static_cast<uint8_t>(caps.size() + 2));
      w.U8(2);
      w.U8(static_cast<uint8_t>(caps.size()));
      w.Bytes(caps.bytes());
    }
  } else if (const auto* u = std::get_if<UpdateMessage>(&message)) {
    WriteHeader(w, MessageType::kUpdate);
    size_t at = w.size();
    w.U16(0);
    for (const auto& p : u->withdrawn) WritePrefix(w, p);
    w.PatchU16(at, static_cast<uint16_t>(w.size() - at - 2));
    at = w.size();
    w.U16(0);
    WriteAttributes(w, *u, options);
    w.PatchU16(at, static_cast<uint16_t>(w.size() - at - 2));
    for (const auto& p : u->nlri) WritePrefix(w, p);
  } else if (const auto* n = std::get_if<NotificationMessage>(&message)) {
    WriteHeader(w, MessageType::kNotification);
    w.U8(n->code);
    w.U8(n->subcode);
    w.Bytes(n->data);
  } else if (std::holds_alternative<KeepaliveMessage>(message)) {
    WriteHeader(w, MessageType::kKeepalive);
  } else if (const auto* rr = std::get_if<RouteRefreshMessage>(&message)) {
    WriteHeader(w, MessageType::kRouteRefresh);
    w.U16(rr->afi_safi.afi);
    w.U8(rr->subtype);
    w.U8(rr->afi_safi.safi);
  }
  return Finish(w);
}

std::vector<std::vector<uint8_t>> PackAnnouncements(const PathAttributes& attrs,
                                                    const IpAddress& next_hop,
                                                    const std::vector<IpPrefix>& nlri,
                                                    const CodecOptions& options) {
  std::vector<std::vector<uint8_t>> out;
  if (nlri.empty()) return out;
  bool v6 = !nlri.front().is_v4();
  UpdateMessage base;
  base.attrs = attrs;
  if (v6) {
    base.attrs.next_hop.reset();
    base.mp_reach = MpReach{kIpv6Unicast, next_hop, std::nullopt, {}};
  } else {
    base.attrs.next_hop = next_hop;
  }
  // Size of the message without any prefix; MP_REACH may switch to a 2-byte length, so allow
  // one extra byte for it.
  const size_t fixed = Encode(base, options).size() + (v6 ? 1 : 0);
  size_t i = 0;
  while (i < nlri.size()) {
    UpdateMessage u = base;
    auto& dest = v6 ? u.mp_reach->nlri : u.nlri;
    size_t size = fixed;
    while (i < nlri.size() && size + PrefixWireSize(nlri[i]) <= kMaxMessageSize) {
      size += PrefixWireSize(nlri[i]);
      dest.push_back(nlri[i++]);
    }
    out.push_back(Encode(u, options));
  }
  return out;
}

std::vector<std::vector<uint8_t>> PackWithdrawals(const std::vector<IpPrefix>& prefixes,
                                                  const CodecOptions& options) {
  std::vector<std::vector<uint8_t>> out;
  if (prefixes.empty()) return out;
  bool v6 = !prefixes.front().is_v4();
  const size_t fixed = kHeaderSize + 4 + (v6 ? 4 + 3 : 0);
  size_t i = 0;
  while (i < prefixes.size()) {
    UpdateMessage u;
    if (v6) u.mp_unreach = MpUnreach{kIpv6Unicast, {}};
    auto& dest = v6 ? u.mp_unreach->withdrawn : u.withdrawn;
    size_t size = fixed;
    while (i < prefixes.size() && size + PrefixWireSize(prefixes[i]) <= kMaxMessageSize) {
      size += PrefixWireSize(prefixes[i]);
      dest.push_back(prefixes[i++]);
    }
    out.push_back(Encode(u, options));
  }
  return out;
}

std::string MessageTypeName(const Message& message) {
  static const char* kNames[] = {"OPEN", "UPDATE", "NOTIFICATION", "KEEPALIVE", "ROUTE-REFRESH"};
  return kNames[message.index()];
}

std::string NotificationName(uint8_t code, uint8_t subcode) {
  static const char* kCodes[] = {"?",
                                 "Message Header Error",
                                 "OPEN Message Error",
                                 "UPDATE Message Error",
                                 "Hold Timer Expired",
                                 "Finite State Machine Error",
                                 "Cease"};
  std::string name = code < 7 ? kCodes[code] : "code " + std::to_string(code);
  return name + "/" + std::to_string(subcode);
}

}  // namespace kr::bgp
