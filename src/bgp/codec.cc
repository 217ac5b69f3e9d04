// SPDX-License-Identifier: Apache-2.0
// BGP-4 message codec: RFC 4271 (framing, OPEN, UPDATE, NOTIFICATION, KEEPALIVE), RFC 4760
// (MP_REACH/MP_UNREACH), RFC 6793 (4-octet ASNs, AS4_PATH), RFC 2918 (ROUTE-REFRESH),
// RFC 4724 (graceful restart capability), RFC 1997/8092 communities, RFC 4456 attributes and
// RFC 7606 revised error handling.
#include "kube_router/bgp/codec.h"

#include <algorithm>
#include <string>

#include "attributes.h"
#include "bytes.h"

namespace kr::bgp {
namespace {

using detail::PrefixWireSize;
using detail::Reader;
using detail::ReadPrefixes;
using detail::WritePrefix;
using detail::Writer;

// Capability codes (IANA).
constexpr uint8_t kCapMultiprotocol = 1;
constexpr uint8_t kCapRouteRefresh = 2;
constexpr uint8_t kCapGracefulRestart = 64;
constexpr uint8_t kCapFourOctetAs = 65;

BgpError MakeError(uint8_t code, uint8_t subcode, std::string reason,
                   std::vector<uint8_t> data = {}) {
  return BgpError{code, subcode, std::move(data), std::move(reason)};
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

  if (auto error = detail::DecodeAttributes(attrs, opt, u)) return *error;
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
  o.bgp_id = IpAddress::V4(id);
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
                                 "Cease",
                                 "ROUTE-REFRESH Message Error",
                                 "Send Hold Timer Expired"};
  std::string name = code < 9 ? kCodes[code] : "code " + std::to_string(code);
  return name + "/" + std::to_string(subcode);
}

}  // namespace kr::bgp
