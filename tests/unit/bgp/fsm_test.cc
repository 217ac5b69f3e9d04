// RFC 4271 8.2.2, row by row: (state, event) -> next state and actions.
#include "kube_router/bgp/fsm.h"

#include <gtest/gtest.h>

#include "kube_router/bgp/message.h"

namespace kr::bgp::fsm_test {
namespace {

using namespace action;  // NOLINT

using S = PeerState;
using E = FsmEvent;

constexpr uint32_t kCloseWithError = kStopConnectRetryTimer | kStopTimers | kReleaseResources |
                                     kDropTcp | kIncrementConnectRetryCounter;
constexpr uint32_t kCloseByOperator =
    kStopConnectRetryTimer | kStopTimers | kReleaseResources | kDropTcp | kZeroConnectRetryCounter;

struct Row {
  S state;
  E event;
  bool passive;
  uint16_t hold;
  S next;
  uint32_t actions;
  uint8_t code = 0;
  uint8_t subcode = 0;
};

TEST(FsmTest, Rfc4271Table) {
  const Row rows[] = {
      // Idle
      {S::kIdle, E::kManualStart, false, 90, S::kConnect,
       kZeroConnectRetryCounter | kStartConnectRetryTimer | kInitiateTcp},
      {S::kIdle, E::kAutomaticStart, false, 90, S::kConnect,
       kZeroConnectRetryCounter | kStartConnectRetryTimer | kInitiateTcp},
      {S::kIdle, E::kManualStartPassive, false, 90, S::kActive,
       kZeroConnectRetryCounter | kStartConnectRetryTimer},
      {S::kIdle, E::kAutomaticStart, true, 90, S::kActive,
       kZeroConnectRetryCounter | kStartConnectRetryTimer},
      {S::kIdle, E::kManualStop, false, 90, S::kIdle, 0},
      {S::kIdle, E::kHoldTimerExpires, false, 90, S::kIdle, 0},
      {S::kIdle, E::kBgpOpen, false, 90, S::kIdle, 0},
      {S::kIdle, E::kTcpConnectionConfirmed, false, 90, S::kIdle, kDropTcp},
      // Connect
      {S::kConnect, E::kManualStart, false, 90, S::kConnect, 0},
      {S::kConnect, E::kManualStop, false, 90, S::kIdle, kCloseByOperator},
      {S::kConnect, E::kConnectRetryTimerExpires, false, 90, S::kConnect,
       kDropTcp | kStartConnectRetryTimer | kInitiateTcp},
      {S::kConnect, E::kTcpCrAcked, false, 90, S::kOpenSent,
       kStopConnectRetryTimer | kSendOpen | kStartLargeHoldTimer},
      {S::kConnect, E::kTcpConnectionConfirmed, false, 90, S::kOpenSent,
       kStopConnectRetryTimer | kSendOpen | kStartLargeHoldTimer},
      {S::kConnect, E::kTcpConnectionFails, false, 90, S::kIdle,
       kStopConnectRetryTimer | kDropTcp | kReleaseResources},
      {S::kConnect, E::kBgpHeaderErr, false, 90, S::kIdle,
       kSendErrorNotification | kCloseWithError},
      {S::kConnect, E::kNotifMsgVerErr, false, 90, S::kIdle,
       kStopConnectRetryTimer | kReleaseResources | kDropTcp},
      {S::kConnect, E::kBgpOpen, false, 90, S::kIdle, kCloseWithError},
      {S::kConnect, E::kKeepAliveMsg, false, 90, S::kIdle, kCloseWithError},
      // Active
      {S::kActive, E::kAutomaticStart, false, 90, S::kActive, 0},
      {S::kActive, E::kManualStop, false, 90, S::kIdle, kCloseByOperator},
      {S::kActive, E::kConnectRetryTimerExpires, false, 90, S::kConnect,
       kDropTcp | kStartConnectRetryTimer | kInitiateTcp},
      {S::kActive, E::kConnectRetryTimerExpires, true, 90, S::kActive, kStartConnectRetryTimer},
      {S::kActive, E::kTcpConnectionConfirmed, true, 90, S::kOpenSent,
       kStopConnectRetryTimer | kSendOpen | kStartLargeHoldTimer},
      {S::kActive, E::kTcpConnectionFails, false, 90, S::kIdle,
       kStartConnectRetryTimer | kReleaseResources | kIncrementConnectRetryCounter},
      {S::kActive, E::kBgpOpenMsgErr, false, 90, S::kIdle,
       kSendErrorNotification | kCloseWithError},
      {S::kActive, E::kUpdateMsg, false, 90, S::kIdle, kCloseWithError},
      // OpenSent
      {S::kOpenSent, E::kManualStart, false, 90, S::kOpenSent, 0},
      {S::kOpenSent, E::kManualStop, false, 90, S::kIdle, kCloseByOperator, err::kCease,
       err::kAdminShutdown},
      {S::kOpenSent, E::kHoldTimerExpires, false, 90, S::kIdle, kCloseWithError,
       err::kHoldTimerExpired, 0},
      {S::kOpenSent, E::kTcpConnectionConfirmed, false, 90, S::kOpenSent, 0},
      {S::kOpenSent, E::kTcpConnectionFails, false, 90, S::kActive,
       kDropTcp | kStopTimers | kStartConnectRetryTimer},
      {S::kOpenSent, E::kBgpOpen, false, 90, S::kOpenConfirm,
       kStopConnectRetryTimer | kSendKeepalive | kRestartHoldTimer | kRestartKeepaliveTimer},
      {S::kOpenSent, E::kBgpOpen, false, 0, S::kOpenConfirm,
       kStopConnectRetryTimer | kSendKeepalive | kStopTimers},
      {S::kOpenSent, E::kBgpHeaderErr, false, 90, S::kIdle,
       kSendErrorNotification | kCloseWithError},
      {S::kOpenSent, E::kBgpOpenMsgErr, false, 90, S::kIdle,
       kSendErrorNotification | kCloseWithError},
      {S::kOpenSent, E::kOpenCollisionDump, false, 90, S::kIdle, kCloseWithError, err::kCease,
       err::kCollisionResolution},
      {S::kOpenSent, E::kNotifMsgVerErr, false, 90, S::kIdle,
       kStopConnectRetryTimer | kStopTimers | kReleaseResources | kDropTcp},
      {S::kOpenSent, E::kKeepAliveMsg, false, 90, S::kIdle, kCloseWithError, err::kFsm, 1},
      {S::kOpenSent, E::kUpdateMsg, false, 90, S::kIdle, kCloseWithError, err::kFsm, 1},
      {S::kOpenSent, E::kConnectRetryTimerExpires, false, 90, S::kIdle, kCloseWithError, err::kFsm,
       1},
      // OpenConfirm
      {S::kOpenConfirm, E::kManualStop, false, 90, S::kIdle, kCloseByOperator, err::kCease,
       err::kAdminShutdown},
      {S::kOpenConfirm, E::kHoldTimerExpires, false, 90, S::kIdle, kCloseWithError,
       err::kHoldTimerExpired, 0},
      {S::kOpenConfirm, E::kKeepaliveTimerExpires, false, 90, S::kOpenConfirm,
       kSendKeepalive | kRestartKeepaliveTimer},
      {S::kOpenConfirm, E::kTcpConnectionFails, false, 90, S::kIdle, kCloseWithError},
      {S::kOpenConfirm, E::kNotifMsg, false, 90, S::kIdle, kCloseWithError},
      {S::kOpenConfirm, E::kNotifMsgVerErr, false, 90, S::kIdle,
       kStopConnectRetryTimer | kStopTimers | kReleaseResources | kDropTcp},
      {S::kOpenConfirm, E::kOpenCollisionDump, false, 90, S::kIdle, kCloseWithError, err::kCease,
       err::kCollisionResolution},
      {S::kOpenConfirm, E::kBgpHeaderErr, false, 90, S::kIdle,
       kSendErrorNotification | kCloseWithError},
      {S::kOpenConfirm, E::kKeepAliveMsg, false, 90, S::kEstablished,
       kRestartHoldTimer | kSessionEstablished},
      {S::kOpenConfirm, E::kKeepAliveMsg, false, 0, S::kEstablished, kSessionEstablished},
      {S::kOpenConfirm, E::kUpdateMsg, false, 90, S::kIdle, kCloseWithError, err::kFsm, 2},
      {S::kOpenConfirm, E::kBgpOpen, false, 90, S::kIdle, kCloseWithError, err::kFsm, 2},
      // Established
      {S::kEstablished, E::kManualStart, false, 90, S::kEstablished, 0},
      {S::kEstablished, E::kManualStop, false, 90, S::kIdle, kCloseByOperator, err::kCease,
       err::kAdminShutdown},
      {S::kEstablished, E::kHoldTimerExpires, false, 90, S::kIdle, kCloseWithError,
       err::kHoldTimerExpired, 0},
      {S::kEstablished, E::kKeepaliveTimerExpires, false, 90, S::kEstablished,
       kSendKeepalive | kRestartKeepaliveTimer},
      {S::kEstablished, E::kTcpConnectionConfirmed, false, 90, S::kEstablished, 0},
      {S::kEstablished, E::kOpenCollisionDump, false, 90, S::kIdle, kCloseWithError, err::kCease,
       err::kCollisionResolution},
      {S::kEstablished, E::kNotifMsg, false, 90, S::kIdle, kCloseWithError},
      {S::kEstablished, E::kNotifMsgVerErr, false, 90, S::kIdle, kCloseWithError},
      {S::kEstablished, E::kTcpConnectionFails, false, 90, S::kIdle, kCloseWithError},
      {S::kEstablished, E::kKeepAliveMsg, false, 90, S::kEstablished, kRestartHoldTimer},
      {S::kEstablished, E::kKeepAliveMsg, false, 0, S::kEstablished, 0},
      {S::kEstablished, E::kUpdateMsg, false, 90, S::kEstablished,
       kProcessUpdate | kRestartHoldTimer},
      {S::kEstablished, E::kUpdateMsgErr, false, 90, S::kIdle,
       kSendErrorNotification | kCloseWithError},
      {S::kEstablished, E::kBgpHeaderErr, false, 90, S::kIdle,
       kSendErrorNotification | kCloseWithError},
      {S::kEstablished, E::kBgpOpen, false, 90, S::kIdle, kCloseWithError, err::kFsm, 3},
      // RFC 9687 send hold timer; the output queue bound closes with the pending error.
      {S::kEstablished, E::kSendHoldTimerExpires, false, 90, S::kIdle, kCloseWithError,
       err::kSendHoldTimerExpired, 0},
      {S::kEstablished, E::kLocalLimitExceeded, false, 90, S::kIdle,
       kSendErrorNotification | kCloseWithError},
      {S::kOpenConfirm, E::kLocalLimitExceeded, false, 90, S::kIdle,
       kSendErrorNotification | kCloseWithError},
      {S::kOpenSent, E::kLocalLimitExceeded, false, 90, S::kIdle,
       kSendErrorNotification | kCloseWithError},
      {S::kEstablished, E::kConnectRetryTimerExpires, false, 90, S::kIdle, kCloseWithError,
       err::kFsm, 3},
  };
  for (const auto& r : rows) {
    SCOPED_TRACE(std::string(PeerStateName(r.state)) + " + " + FsmEventName(r.event) +
                 (r.passive ? " (passive)" : "") + " hold " + std::to_string(r.hold));
    Transition t = FsmStep(r.state, r.event, FsmContext{r.passive, r.hold});
    uint32_t want = r.actions | (r.code ? kSendNotification : 0);
    EXPECT_EQ(t.next, r.next) << PeerStateName(t.next);
    EXPECT_EQ(t.actions, want) << std::hex << t.actions << " vs " << want;
    EXPECT_EQ(t.notify_code, r.code);
    EXPECT_EQ(t.notify_subcode, r.subcode);
  }
}

// Every (state, event) pair is defined, and any transition to Idle drops the connection and
// forgets the peer's routes unless the session was already down.
TEST(FsmTest, EveryTransitionToIdleCleansUp) {
  for (int s = 0; s <= static_cast<int>(S::kEstablished); ++s) {
    for (int e = 0; e <= static_cast<int>(E::kLocalLimitExceeded); ++e) {
      auto state = static_cast<S>(s);
      auto event = static_cast<E>(e);
      Transition t = FsmStep(state, event, FsmContext{});
      if (state == S::kIdle || t.next != S::kIdle) continue;
      SCOPED_TRACE(std::string(PeerStateName(state)) + " + " + FsmEventName(event));
      EXPECT_TRUE(t.actions & kReleaseResources);
      if (state != S::kActive) {
        EXPECT_TRUE(t.actions & kDropTcp);
      }
    }
  }
}

}  // namespace
}  // namespace kr::bgp::fsm_test
