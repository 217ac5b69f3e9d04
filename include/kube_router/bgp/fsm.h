// SPDX-License-Identifier: Apache-2.0
// The RFC 4271 8 session finite state machine as a pure function: (state, event, context) ->
// (next state, actions). It performs no I/O and reads no clock; the session executes the
// actions (open/close TCP, send messages, arm timers) and feeds timer expiries back as events.
// Optional session attributes fixed here: DelayOpen off, damping off, SendNOTIFICATIONwithout-
// OPEN on; collision detection is done by the session across its connections and reported
// with kOpenCollisionDump.
#pragma once

#include <cstdint>

#include "kube_router/bgp/types.h"

namespace kr::bgp {

// RFC 4271 8.1 event numbers in the comments.
enum class FsmEvent : uint8_t {
  kManualStart,               // 1
  kManualStop,                // 2
  kAutomaticStart,            // 3
  kManualStartPassive,        // 4
  kAutomaticStartPassive,     // 5
  kConnectRetryTimerExpires,  // 9
  kHoldTimerExpires,          // 10
  kKeepaliveTimerExpires,     // 11
  kTcpCrAcked,                // 16: our connection attempt succeeded
  kTcpConnectionConfirmed,    // 17: we accepted the peer's connection
  kTcpConnectionFails,        // 18
  kBgpOpen,                   // 19: a valid OPEN
  kBgpHeaderErr,              // 21
  kBgpOpenMsgErr,             // 22
  kOpenCollisionDump,         // 23
  kNotifMsgVerErr,            // 24
  kNotifMsg,                  // 25
  kKeepAliveMsg,              // 26
  kUpdateMsg,                 // 27
  kUpdateMsgErr,              // 28
  kSendHoldTimerExpires,      // 29 (RFC 9687): nothing could be sent for SendHoldTime
  // Not in RFC 4271: a local bound was passed (the output queue, the peer's prefix limit);
  // closes with the session's pending error (an RFC 4486 Cease).
  kLocalLimitExceeded,
};
const char* FsmEventName(FsmEvent event);

// Action bits, executed by the session in this order.
namespace action {
inline constexpr uint32_t kSendNotification = 1u << 0;       // notify_code/subcode below
inline constexpr uint32_t kSendErrorNotification = 1u << 1;  // the decode error at hand
inline constexpr uint32_t kDropTcp = 1u << 2;
inline constexpr uint32_t kReleaseResources = 1u << 3;  // forget the peer's routes
inline constexpr uint32_t kInitiateTcp = 1u << 4;
inline constexpr uint32_t kSendOpen = 1u << 5;
inline constexpr uint32_t kSendKeepalive = 1u << 6;
inline constexpr uint32_t kStartConnectRetryTimer = 1u << 7;
inline constexpr uint32_t kStopConnectRetryTimer = 1u << 8;
inline constexpr uint32_t kStartLargeHoldTimer = 1u << 9;  // 4 minutes while OPEN is awaited
inline constexpr uint32_t kRestartHoldTimer = 1u << 10;    // negotiated hold time
inline constexpr uint32_t kRestartKeepaliveTimer = 1u << 11;
inline constexpr uint32_t kStopTimers = 1u << 12;  // hold and keepalive
inline constexpr uint32_t kIncrementConnectRetryCounter = 1u << 13;
inline constexpr uint32_t kZeroConnectRetryCounter = 1u << 14;
inline constexpr uint32_t kProcessUpdate = 1u << 15;       // by the reader, which holds the UPDATE
inline constexpr uint32_t kSessionEstablished = 1u << 16;  // send the initial table
}  // namespace action

struct FsmContext {
  bool passive = false;            // never initiate TCP (PassiveTcpEstablishment)
  uint16_t negotiated_hold_s = 0;  // 0: no hold or keepalive timers (RFC 4271 4.4)
};

struct Transition {
  PeerState next = PeerState::kIdle;
  uint32_t actions = 0;
  uint8_t notify_code = 0;
  uint8_t notify_subcode = 0;
  bool operator==(const Transition&) const = default;
};

Transition FsmStep(PeerState state, FsmEvent event, const FsmContext& context);

}  // namespace kr::bgp
