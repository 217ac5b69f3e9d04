// SPDX-License-Identifier: Apache-2.0
// RFC 4271 8.2.2, state by state. Each block names the events the RFC lists for that state;
// "any other event" rows close the session as the RFC says.
#include "kube_router/bgp/fsm.h"

#include "kube_router/bgp/message.h"

namespace kr::bgp {
namespace {

using namespace action;  // NOLINT(google-build-using-namespace): the table reads better

// Closing the session after an error: the RFC's recurring "sets the ConnectRetryTimer to
// zero, releases all BGP resources, drops the TCP connection, increments the
// ConnectRetryCounter, changes its state to Idle".
constexpr uint32_t kCloseWithError = kStopConnectRetryTimer | kStopTimers | kReleaseResources |
                                     kDropTcp | kIncrementConnectRetryCounter;
// ManualStop: the same but the counter is zeroed.
constexpr uint32_t kCloseByOperator =
    kStopConnectRetryTimer | kStopTimers | kReleaseResources | kDropTcp | kZeroConnectRetryCounter;

Transition To(PeerState next, uint32_t actions) { return Transition{next, actions, 0, 0}; }
Transition Notify(uint8_t code, uint8_t subcode, uint32_t actions) {
  return Transition{PeerState::kIdle, actions | kSendNotification, code, subcode};
}

uint32_t HoldTimers(const FsmContext& c) {
  return c.negotiated_hold_s == 0 ? kStopTimers : kRestartHoldTimer | kRestartKeepaliveTimer;
}

bool IsStart(FsmEvent e) {
  return e == FsmEvent::kManualStart || e == FsmEvent::kAutomaticStart ||
         e == FsmEvent::kManualStartPassive || e == FsmEvent::kAutomaticStartPassive;
}

Transition Idle(FsmEvent e, const FsmContext& c) {
  switch (e) {
    case FsmEvent::kManualStart:
    case FsmEvent::kAutomaticStart:
      if (!c.passive) {
        return To(PeerState::kConnect,
                  kZeroConnectRetryCounter | kStartConnectRetryTimer | kInitiateTcp);
      }
      [[fallthrough]];
    case FsmEvent::kManualStartPassive:
    case FsmEvent::kAutomaticStartPassive:
      return To(PeerState::kActive, kZeroConnectRetryCounter | kStartConnectRetryTimer);
    default:
      // "Any other event received in the Idle state does not cause change in the state."
      // An accepted connection in Idle is refused by the session.
      return To(
          PeerState::kIdle,
          e == FsmEvent::kTcpConnectionConfirmed || e == FsmEvent::kTcpCrAcked ? kDropTcp : 0);
  }
}

// Connect and Active differ only in a few rows.
Transition ConnectOrActive(PeerState s, FsmEvent e, const FsmContext& c) {
  if (IsStart(e)) return To(s, 0);
  switch (e) {
    case FsmEvent::kManualStop:
      return To(PeerState::kIdle, kCloseByOperator);
    case FsmEvent::kConnectRetryTimerExpires:
      if (c.passive) return To(PeerState::kActive, kStartConnectRetryTimer);
      return To(PeerState::kConnect, kDropTcp | kStartConnectRetryTimer | kInitiateTcp);
    case FsmEvent::kTcpCrAcked:
    case FsmEvent::kTcpConnectionConfirmed:
      return To(PeerState::kOpenSent, kStopConnectRetryTimer | kSendOpen | kStartLargeHoldTimer);
    case FsmEvent::kTcpConnectionFails:
      // Connect: to Idle (the session re-starts it automatically). Active: the same, with the
      // ConnectRetryTimer restarted.
      if (s == PeerState::kConnect) {
        return To(PeerState::kIdle, kStopConnectRetryTimer | kDropTcp | kReleaseResources);
      }
      return To(PeerState::kIdle,
                kStartConnectRetryTimer | kReleaseResources | kIncrementConnectRetryCounter);
    case FsmEvent::kBgpHeaderErr:
    case FsmEvent::kBgpOpenMsgErr:
      return To(PeerState::kIdle, kSendErrorNotification | kCloseWithError);
    case FsmEvent::kNotifMsgVerErr:
      return To(PeerState::kIdle, kStopConnectRetryTimer | kReleaseResources | kDropTcp);
    default:
      return To(PeerState::kIdle, kCloseWithError);
  }
}

Transition OpenSent(FsmEvent e, const FsmContext& c) {
  if (IsStart(e)) return To(PeerState::kOpenSent, 0);
  switch (e) {
    case FsmEvent::kManualStop:
      return Notify(err::kCease, err::kAdminShutdown, kCloseByOperator);
    case FsmEvent::kHoldTimerExpires:
      return Notify(err::kHoldTimerExpired, 0, kCloseWithError);
    case FsmEvent::kTcpCrAcked:
    case FsmEvent::kTcpConnectionConfirmed:
      // A second connection: the session tracks it for collision detection.
      return To(PeerState::kOpenSent, 0);
    case FsmEvent::kTcpConnectionFails:
      return To(PeerState::kActive, kDropTcp | kStopTimers | kStartConnectRetryTimer);
    case FsmEvent::kBgpOpen:
      return To(PeerState::kOpenConfirm, kStopConnectRetryTimer | kSendKeepalive | HoldTimers(c));
    case FsmEvent::kBgpHeaderErr:
    case FsmEvent::kBgpOpenMsgErr:
    case FsmEvent::kLocalLimitExceeded:
      return To(PeerState::kIdle, kSendErrorNotification | kCloseWithError);
    case FsmEvent::kOpenCollisionDump:
      return Notify(err::kCease, err::kCollisionResolution, kCloseWithError);
    case FsmEvent::kNotifMsgVerErr:
      return To(PeerState::kIdle,
                kStopConnectRetryTimer | kStopTimers | kReleaseResources | kDropTcp);
    default:
      // RFC 6608: unexpected message in OpenSent.
      return Notify(err::kFsm, 1, kCloseWithError);
  }
}

Transition OpenConfirm(FsmEvent e, const FsmContext& c) {
  if (IsStart(e)) return To(PeerState::kOpenConfirm, 0);
  switch (e) {
    case FsmEvent::kManualStop:
      return Notify(err::kCease, err::kAdminShutdown, kCloseByOperator);
    case FsmEvent::kHoldTimerExpires:
      return Notify(err::kHoldTimerExpired, 0, kCloseWithError);
    case FsmEvent::kKeepaliveTimerExpires:
      return To(PeerState::kOpenConfirm, kSendKeepalive | kRestartKeepaliveTimer);
    case FsmEvent::kTcpCrAcked:
    case FsmEvent::kTcpConnectionConfirmed:
      return To(PeerState::kOpenConfirm, 0);
    case FsmEvent::kTcpConnectionFails:
    case FsmEvent::kNotifMsg:
      return To(PeerState::kIdle, kCloseWithError);
    case FsmEvent::kNotifMsgVerErr:
      return To(PeerState::kIdle,
                kStopConnectRetryTimer | kStopTimers | kReleaseResources | kDropTcp);
    case FsmEvent::kOpenCollisionDump:
      return Notify(err::kCease, err::kCollisionResolution, kCloseWithError);
    case FsmEvent::kBgpHeaderErr:
    case FsmEvent::kBgpOpenMsgErr:
    case FsmEvent::kLocalLimitExceeded:
      return To(PeerState::kIdle, kSendErrorNotification | kCloseWithError);
    case FsmEvent::kKeepAliveMsg:
      return To(PeerState::kEstablished,
                (c.negotiated_hold_s ? kRestartHoldTimer : 0) | kSessionEstablished);
    default:
      return Notify(err::kFsm, 2, kCloseWithError);
  }
}

Transition Established(FsmEvent e, const FsmContext& c) {
  if (IsStart(e)) return To(PeerState::kEstablished, 0);
  const uint32_t hold = c.negotiated_hold_s ? kRestartHoldTimer : 0;
  switch (e) {
    case FsmEvent::kManualStop:
      return Notify(err::kCease, err::kAdminShutdown, kCloseByOperator);
    case FsmEvent::kHoldTimerExpires:
      return Notify(err::kHoldTimerExpired, 0, kCloseWithError);
    case FsmEvent::kKeepaliveTimerExpires:
      return To(PeerState::kEstablished, kSendKeepalive | kRestartKeepaliveTimer);
    case FsmEvent::kTcpCrAcked:
    case FsmEvent::kTcpConnectionConfirmed:
      return To(PeerState::kEstablished, 0);
    case FsmEvent::kOpenCollisionDump:
      return Notify(err::kCease, err::kCollisionResolution, kCloseWithError);
    case FsmEvent::kNotifMsgVerErr:
    case FsmEvent::kNotifMsg:
    case FsmEvent::kTcpConnectionFails:
      return To(PeerState::kIdle, kCloseWithError);
    case FsmEvent::kKeepAliveMsg:
      return To(PeerState::kEstablished, hold);
    case FsmEvent::kUpdateMsg:
      return To(PeerState::kEstablished, kProcessUpdate | hold);
    // RFC 4271 lists event 21 under "any other event" here (an FSM error), but 6.1 says a
    // header error is always answered with Message Header Error, as other speakers do.
    case FsmEvent::kBgpHeaderErr:
    case FsmEvent::kUpdateMsgErr:
    case FsmEvent::kLocalLimitExceeded:
      return To(PeerState::kIdle, kSendErrorNotification | kCloseWithError);
    case FsmEvent::kSendHoldTimerExpires:
      return Notify(err::kSendHoldTimerExpired, 0, kCloseWithError);
    default:
      return Notify(err::kFsm, 3, kCloseWithError);
  }
}

}  // namespace

Transition FsmStep(PeerState state, FsmEvent event, const FsmContext& context) {
  switch (state) {
    case PeerState::kIdle:
      return Idle(event, context);
    case PeerState::kConnect:
    case PeerState::kActive:
      return ConnectOrActive(state, event, context);
    case PeerState::kOpenSent:
      return OpenSent(event, context);
    case PeerState::kOpenConfirm:
      return OpenConfirm(event, context);
    case PeerState::kEstablished:
      return Established(event, context);
  }
  return To(PeerState::kIdle, kCloseWithError);
}

const char* FsmEventName(FsmEvent event) {
  static const char* kNames[] = {"ManualStart",
                                 "ManualStop",
                                 "AutomaticStart",
                                 "ManualStart_with_PassiveTcpEstablishment",
                                 "AutomaticStart_with_PassiveTcpEstablishment",
                                 "ConnectRetryTimer_Expires",
                                 "HoldTimer_Expires",
                                 "KeepaliveTimer_Expires",
                                 "Tcp_CR_Acked",
                                 "TcpConnectionConfirmed",
                                 "TcpConnectionFails",
                                 "BGPOpen",
                                 "BGPHeaderErr",
                                 "BGPOpenMsgErr",
                                 "OpenCollisionDump",
                                 "NotifMsgVerErr",
                                 "NotifMsg",
                                 "KeepAliveMsg",
                                 "UpdateMsg",
                                 "UpdateMsgErr",
                                 "SendHoldTimer_Expires",
                                 "LocalLimitExceeded"};
  return kNames[static_cast<int>(event)];
}

const char* PeerStateName(PeerState state) {
  static const char* kNames[] = {"Idle",     "Connect",     "Active",
                                 "OpenSent", "OpenConfirm", "Established"};
  return kNames[static_cast<int>(state)];
}

}  // namespace kr::bgp
