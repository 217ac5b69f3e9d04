// SPDX-License-Identifier: Apache-2.0
// The BGP-4 codec: messages (message.h) to bytes and back. It does no I/O and keeps no state
// beyond the per-session CodecOptions. Decoding never throws and never trusts a length field:
// malformed input yields a BgpError carrying the NOTIFICATION code/subcode/data, or (for the
// UPDATE errors RFC 7606 handles without a reset) a message marked treat-as-withdraw.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <variant>
#include <vector>

#include "kube_router/bgp/message.h"

namespace kr::bgp {

// RFC 7606 3 actions, from mildest to harshest.
enum class ErrorAction : uint8_t { kAttributeDiscard, kTreatAsWithdraw, kSessionReset };

// A decoding failure that resets the session: what to send in the NOTIFICATION, and why.
struct BgpError {
  uint8_t code = 0;
  uint8_t subcode = 0;
  std::vector<uint8_t> data;
  std::string reason;
};

// Negotiated per session.
struct CodecOptions {
  bool four_octet_as = true;  // both sides announced capability 65 (RFC 6793)
  // The peer is in another AS: LOCAL_PREF, ORIGINATOR_ID and CLUSTER_LIST from it are
  // discarded (RFC 7606 7.5, 7.9, 7.10).
  bool external_peer = false;
};

// Returns the total length of the message at the front of `bytes` when its header is complete
// and valid, 0 when more bytes are needed, or the header error (RFC 4271 6.1).
std::variant<size_t, BgpError> FrameLength(std::span<const uint8_t> bytes);

// Decodes one complete message (header included). UPDATE errors that RFC 7606 handles without
// a reset come back inside the message (treat_as_withdraw, errors).
std::variant<Message, BgpError> Decode(std::span<const uint8_t> bytes, const CodecOptions& options);

// Encodes one message (header included). The caller keeps UPDATEs within kMaxMessageSize,
// e.g. with PackUpdates.
std::vector<uint8_t> Encode(const Message& message, const CodecOptions& options);

// Splits announcements of `nlri` (one family) sharing `attrs` into as few UPDATE messages as
// fit in kMaxMessageSize. IPv6 prefixes go into MP_REACH with `next_hop`.
std::vector<std::vector<uint8_t>> PackAnnouncements(const PathAttributes& attrs,
                                                    const IpAddress& next_hop,
                                                    const std::vector<IpPrefix>& nlri,
                                                    const CodecOptions& options);
// Same for withdrawals of one family.
std::vector<std::vector<uint8_t>> PackWithdrawals(const std::vector<IpPrefix>& prefixes,
                                                  const CodecOptions& options);

std::string MessageTypeName(const Message& message);
// "Cease/peer de-configured", for logs.
std::string NotificationName(uint8_t code, uint8_t subcode);

}  // namespace kr::bgp
