// SPDX-License-Identifier: Apache-2.0
// Session I/O of the speaker (see speaker_impl.h): connections in and out, reading and framing
// messages, the RFC 4271 8 FSM's actions (FsmStep decides, this executes), collision detection
// (6.8), the bounded output queue, the send hold timer (RFC 9687) and the local limits that
// end a session with a Cease (RFC 4486). An UPDATE is handed to the Adj-RIB-In where it is
// read, once the FSM has accepted it.
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>

#include "kube_router/base/log.h"
#include "kube_router/net/sockaddr.h"
#include "socket_util.h"
#include "speaker_impl.h"

namespace kr::bgp::speaker_internal {
namespace {

constexpr seconds kLargeHoldTime{240};  // RFC 4271 8.2.2: "4 minutes" while awaiting OPEN
constexpr size_t kReadChunk = 64 * 1024;

std::string HexOf(std::span<const uint8_t> bytes) {
  static const char kDigits[] = "0123456789abcdef";
  std::string out;
  out.reserve(bytes.size() * 2);
  for (uint8_t b : bytes) {
    out += kDigits[b >> 4];
    out += kDigits[b & 15];
  }
  return out;
}

// RFC 7606 6: the error, the NLRI involved and the whole message, for the first few malformed
// UPDATEs of a peer; later ones are only counted (a peer must not be able to flood the log).
void LogMalformedUpdate(Peer& p, const std::string& what, const UpdateMessage* u,
                        std::span<const uint8_t> raw) {
  constexpr uint64_t kLoggedInFull = 10;
  const uint64_t n = ++p.malformed_updates;
  const std::string who = p.config.address.ToString();
  if (n > kLoggedInFull) {
    if (n % 1000 == 0) KR_LOG_WARN("BGP peer {}: {} malformed UPDATEs so far", who, n);
    return;
  }
  std::string nlri;
  if (u) {
    std::vector<IpPrefix> all = u->nlri;
    if (u->mp_reach) all.insert(all.end(), u->mp_reach->nlri.begin(), u->mp_reach->nlri.end());
    for (size_t i = 0; i < all.size() && i < 32; ++i) nlri += " " + all[i].ToString();
    if (all.size() > 32) nlri += " ...";
  }
  KR_LOG_WARN("BGP peer {}: malformed UPDATE: {}; NLRI:{}; message: {}{}", who, what,
              nlri.empty() ? " none" : nlri, HexOf(raw),
              n == kLoggedInFull ? " (further malformed UPDATEs are only counted)" : "");
}

}  // namespace

// ---- connections -----------------------------------------------------------------------------

void SpeakerImpl::OnAccept(int listen_fd) {
  while (true) {
    sockaddr_storage ss{};
    socklen_t len = sizeof(ss);
    UniqueFd conn(
        accept4(listen_fd, reinterpret_cast<sockaddr*>(&ss), &len, SOCK_NONBLOCK | SOCK_CLOEXEC));
    if (!conn) return;
    const int fd = conn.get();
    auto peer_address = kr::net::FromSockaddr(reinterpret_cast<const sockaddr*>(&ss), len);
    if (!peer_address) continue;  // not an IP peer: closed
    const IpAddress from = peer_address->first;
    auto it = peers_.find(from);
    if (it == peers_.end()) {
      KR_VLOG(1, "BGP: refusing connection from unknown peer {}", from.ToString());
      continue;
    }
    Peer& p = *it->second;
    // RFC 4271 6.8 / RFC 4724 4.2: a new connection while established. A peer that negotiated
    // graceful restart is restarting: the old session goes, its routes stay as stale.
    if (p.established) {
      if (p.gr_negotiated) {
        KR_LOG_INFO("BGP peer {}: new connection while established, peer is restarting",
                    from.ToString());
        p.established->graceful_down = true;
        Fire(*p.established, FsmEvent::kTcpConnectionFails);
      } else {
        auto bytes =
            Encode(NotificationMessage{err::kCease, err::kCollisionResolution, {}}, CodecOptions{});
        [[maybe_unused]] auto n = send(fd, bytes.data(), bytes.size(), MSG_NOSIGNAL);
        continue;
      }
    }
    (void)net::SetTtl(fd, from.is_v6(), SendTtl(p));
    if (Gtsm(p)) {
      // Segments already queued were checked by nobody; from here on the kernel drops any
      // with a lower TTL, so an OPEN from further away never arrives.
      if (Status st = net::SetMinTtl(fd, from.is_v6(), 255); !st.ok()) {
        KR_LOG_ERROR("BGP peer {}: {}; refusing the connection", from.ToString(), st.message());
        continue;
      }
    }
    Session* target = nullptr;
    if (p.out && (p.out->state == PeerState::kIdle || p.out->state == PeerState::kConnect ||
                  p.out->state == PeerState::kActive)) {
      // Our own attempt has not got anywhere yet: use the peer's connection instead.
      if (p.out->state == PeerState::kIdle) Fire(*p.out, FsmEvent::kAutomaticStartPassive);
      CloseFd(*p.out);
      target = p.out.get();
    } else {
      if (p.in) Retire(p.in);
      p.in = std::make_unique<Session>();
      p.in->peer = &p;
      p.in->state = PeerState::kActive;
      target = p.in.get();
    }
    AdoptConnection(*target, std::move(conn));
    target->initiated_locally = false;
    Fire(*target, FsmEvent::kTcpConnectionConfirmed);
  }
}

void SpeakerImpl::BeginConnection(Session& s, UniqueFd fd) {
  s.fd = std::move(fd);
  s.rbuf.clear();
  s.wbuf.clear();
  s.woff = 0;
  s.prefix_limit_hit = false;
  s.refresh_pending.clear();
  s.graceful_down = false;
}

void SpeakerImpl::AdoptConnection(Session& s, UniqueFd fd) {
  BeginConnection(s, std::move(fd));
  s.connecting = false;
  s.local_address = net::LocalAddress(s.fd.get());
  loop_.Watch(s.fd.get(), EPOLLIN, [this, &s](uint32_t ev) { OnSocketEvent(s, ev); });
}

void SpeakerImpl::OnSocketEvent(Session& s, uint32_t events) {
  if (s.connecting) {
    if (events & (EPOLLOUT | EPOLLERR | EPOLLHUP)) OnConnected(s);
    return;
  }
  // Input first: a ROUTE-REFRESH that arrived while a table was queued must be seen as such
  // (one deferred copy), not after this Flush has drained the queue (a copy at once, then a
  // third for the requests read behind it).
  if (events & (EPOLLIN | EPOLLHUP | EPOLLERR)) ReadMessages(s);
  if (s.fd && (events & EPOLLOUT)) Flush(s);
}

void SpeakerImpl::OnConnected(Session& s) {
  int err = net::PendingError(s.fd.get());
  s.connecting = false;
  if (err != 0) {
    s.peer->last_error = "connect: " + net::ErrnoText(err);
    KR_VLOG(1, "BGP peer {}: {}", s.peer->config.address.ToString(), s.peer->last_error);
    Fire(s, FsmEvent::kTcpConnectionFails);
    return;
  }
  s.local_address = net::LocalAddress(s.fd.get());
  loop_.Modify(s.fd.get(), EPOLLIN);
  Fire(s, FsmEvent::kTcpCrAcked);
}

void SpeakerImpl::ReadMessages(Session& s) {
  uint8_t chunk[kReadChunk];
  bool eof = false;
  for (int rounds = 0; rounds < 16; ++rounds) {
    ssize_t n = read(s.fd.get(), chunk, sizeof(chunk));
    if (n > 0) {
      s.rbuf.insert(s.rbuf.end(), chunk, chunk + n);
      if (static_cast<size_t>(n) < sizeof(chunk)) break;
      continue;
    }
    if (n == 0 || (errno != EAGAIN && errno != EINTR)) {
      if (n < 0) s.peer->last_error = "read: " + net::ErrnoText(errno);
      eof = true;
    }
    break;
  }
  size_t pos = 0;
  while (s.fd && !s.prefix_limit_hit) {
    std::span<const uint8_t> avail(s.rbuf.data() + pos, s.rbuf.size() - pos);
    auto frame = FrameLength(avail);
    if (auto* e = std::get_if<BgpError>(&frame)) {
      s.pending_error = *e;
      s.peer->last_error = "sent NOTIFICATION: " + e->reason;
      KR_LOG_WARN("BGP peer {}: {}", s.peer->config.address.ToString(), e->reason);
      Fire(s, FsmEvent::kBgpHeaderErr);
      break;
    }
    size_t len = std::get<size_t>(frame);
    if (len == 0 || len > avail.size()) break;
    auto decoded = Decode(avail.first(len), s.codec);
    pos += len;
    const bool is_update = avail[18] == static_cast<uint8_t>(MessageType::kUpdate);
    if (auto* u = std::get_if<UpdateMessage>(std::get_if<Message>(&decoded));
        u && !u->errors.empty()) {
      std::string what;
      for (const auto& e : u->errors) what += (what.empty() ? "" : "; ") + e;
      LogMalformedUpdate(*s.peer, what, u, avail.first(len));
    }
    if (auto* e = std::get_if<BgpError>(&decoded)) {
      if (is_update)
        LogMalformedUpdate(*s.peer, e->reason + " (session reset)", nullptr, avail.first(len));
      s.pending_error = *e;
      s.peer->last_error =
          "sent NOTIFICATION " + NotificationName(e->code, e->subcode) + ": " + e->reason;
      KR_LOG_WARN("BGP peer {}: malformed message: {}", s.peer->config.address.ToString(),
                  e->reason);
      Fire(s, e->code == err::kHeader ? FsmEvent::kBgpHeaderErr
              : e->code == err::kOpen ? FsmEvent::kBgpOpenMsgErr
                                      : FsmEvent::kUpdateMsgErr);
      break;
    }
    HandleMessage(s, std::get<Message>(decoded));
  }
  if (s.fd) {
    s.rbuf.erase(s.rbuf.begin(), s.rbuf.begin() + static_cast<long>(pos));
    if (eof) {
      s.graceful_down = true;
      if (s.peer->last_error.empty() || s.state == PeerState::kEstablished)
        s.peer->last_error = "connection closed by peer";
      Fire(s, FsmEvent::kTcpConnectionFails);
    }
  }
}

void SpeakerImpl::HandleMessage(Session& s, const Message& m) {
  if (const auto* open = std::get_if<OpenMessage>(&m)) {
    HandleOpen(s, *open);
  } else if (const auto* u = std::get_if<UpdateMessage>(&m)) {
    // The FSM accepts it only in Established (and restarts the hold timer); the routes are
    // then taken from the message right here, not from a copy parked in the session.
    if (Fire(s, FsmEvent::kUpdateMsg).actions & action::kProcessUpdate) ProcessUpdate(s, *u);
  } else if (const auto* n = std::get_if<NotificationMessage>(&m)) {
    s.peer->last_error = "received NOTIFICATION " + NotificationName(n->code, n->subcode);
    KR_LOG_WARN("BGP peer {}: {}", s.peer->config.address.ToString(), s.peer->last_error);
    Fire(s, n->code == err::kOpen && n->subcode == err::kUnsupportedVersion
                ? FsmEvent::kNotifMsgVerErr
                : FsmEvent::kNotifMsg);
  } else if (std::holds_alternative<KeepaliveMessage>(m)) {
    Fire(s, FsmEvent::kKeepAliveMsg);
  } else if (const auto* rr = std::get_if<RouteRefreshMessage>(&m)) {
    if (s.state == PeerState::kEstablished && s.peer->established == &s) {
      OnRouteRefresh(s, rr->afi_safi);
      Fire(s, FsmEvent::kKeepAliveMsg);  // any message restarts the hold timer
    } else {
      Fire(s, FsmEvent::kUpdateMsg);  // unexpected: the FSM rejects it outside Established
    }
  }
}

void SpeakerImpl::HandleOpen(Session& s, const OpenMessage& open) {
  Peer& p = *s.peer;
  auto reject = [&](uint8_t subcode, std::string why) {
    s.pending_error = BgpError{err::kOpen, subcode, {}, why};
    p.last_error = "sent NOTIFICATION OPEN error: " + why;
    KR_LOG_WARN("BGP peer {}: {}", p.config.address.ToString(), why);
    Fire(s, FsmEvent::kBgpOpenMsgErr);
  };
  if (open.Asn() != p.config.remote_asn) {
    return reject(err::kBadPeerAs, "peer AS " + std::to_string(open.Asn()) + ", expected " +
                                       std::to_string(p.config.remote_asn));
  }
  if (IsIbgp(p) && open.bgp_id == config_.router_id) {
    return reject(err::kBadBgpId, "iBGP peer uses our router ID");
  }
  s.remote_open = open;
  s.codec.four_octet_as = open.caps.four_octet_asn.has_value();
  s.codec.external_peer = !IsIbgp(p);
  uint16_t ours = ProposedHold(p);
  s.negotiated_hold = std::min(ours, open.hold_time_s);
  // RFC 4271 6.8 collision detection against the peer's other connection.
  Session* other = Other(s);
  if (other && other->fd &&
      (other->state == PeerState::kOpenSent || other->state == PeerState::kOpenConfirm ||
       other->state == PeerState::kEstablished)) {
    bool keep_other;
    if (other->state == PeerState::kEstablished) {
      keep_other = true;
    } else {
      // The connection opened by the side with the higher BGP identifier survives.
      bool we_win = config_.router_id.v4_host_order() > open.bgp_id.v4_host_order();
      keep_other = other->initiated_locally == we_win;
    }
    KR_LOG_INFO("BGP peer {}: connection collision, keeping the {} connection",
                p.config.address.ToString(),
                keep_other == other->initiated_locally ? "outgoing" : "incoming");
    if (keep_other) {
      Fire(s, FsmEvent::kOpenCollisionDump);
      return;
    }
    Fire(*other, FsmEvent::kOpenCollisionDump);
  }
  Fire(s, FsmEvent::kBgpOpen);
}

// ---- FSM actions -----------------------------------------------------------------------------

Transition SpeakerImpl::Fire(Session& s, FsmEvent event) {
  Peer& p = *s.peer;
  FsmContext ctx{p.config.passive || !s.outgoing, s.negotiated_hold};
  Transition t = FsmStep(s.state, event, ctx);
  PeerState old = s.state;
  s.state = t.next;
  if (old != t.next) {
    KR_VLOG(1, "BGP peer {}: {} -> {} on {}", p.config.address.ToString(), PeerStateName(old),
            PeerStateName(t.next), FsmEventName(event));
    if (old == PeerState::kEstablished || t.next == PeerState::kEstablished) {
      KR_LOG_INFO("BGP peer {} AS {}: {} -> {}", p.config.address.ToString(), p.config.remote_asn,
                  PeerStateName(old), PeerStateName(t.next));
    }
  }
  Execute(s, t, old);
  return t;
}

void SpeakerImpl::Execute(Session& s, const Transition& t, PeerState old) {
  using namespace action;  // NOLINT(google-build-using-namespace)
  Peer& p = *s.peer;
  const uint32_t a = t.actions;
  if (a & kSendNotification) {
    s.graceful_down = false;
    NotificationMessage n{t.notify_code, t.notify_subcode, {}};
    if (t.notify_code != err::kCease || t.notify_subcode != err::kCollisionResolution) {
      p.last_error = "sent NOTIFICATION " + NotificationName(n.code, n.subcode);
    }
    if (s.fd && !s.connecting) Send(s, Encode(n, s.codec));
  }
  if (a & kSendErrorNotification) {
    s.graceful_down = false;
    NotificationMessage n{s.pending_error.code, s.pending_error.subcode, s.pending_error.data};
    if (s.fd && !s.connecting) Send(s, Encode(n, s.codec));
  }
  if (a & kStopConnectRetryTimer) {
    loop_.Cancel(s.connect_retry_timer);
    s.connect_retry_timer = 0;
  }
  if (a & kStopTimers) {
    loop_.Cancel(s.hold_timer);
    loop_.Cancel(s.keepalive_timer);
    loop_.Cancel(s.send_hold_timer);
    s.hold_timer = s.keepalive_timer = s.send_hold_timer = 0;
  }
  if ((a & kReleaseResources) && old == PeerState::kEstablished && p.established == &s) {
    PeerDown(s);
  }
  if (a & kDropTcp) CloseFd(s);
  if (a & kInitiateTcp) {
    CloseFd(s);
    IpAddress local = p.config.local_address.value_or(IpAddress());
    auto fd = net::StartConnect(p.config.address, p.config.port,
                                p.config.local_address ? &local : nullptr, p.config.password,
                                SendTtl(p), Gtsm(p) ? 255 : 0);
    if (!fd.ok()) {
      p.last_error = fd.error();
      KR_VLOG(1, "BGP peer {}: {}", p.config.address.ToString(), fd.error());
      // Reported as an event from the loop, not from inside this transition.
      loop_.Post([this, addr = p.config.address] {
        auto it = peers_.find(addr);
        if (it != peers_.end() && it->second->out &&
            it->second->out->state == PeerState::kConnect && !it->second->out->fd) {
          Fire(*it->second->out, FsmEvent::kTcpConnectionFails);
        }
      });
    } else {
      BeginConnection(s, UniqueFd(*fd));
      s.connecting = true;
      s.initiated_locally = true;
      loop_.Watch(s.fd.get(), EPOLLOUT, [this, &s](uint32_t ev) { OnSocketEvent(s, ev); });
    }
  }
  if (a & kStartConnectRetryTimer) {
    loop_.Cancel(s.connect_retry_timer);
    s.connect_retry_timer = loop_.AddTimer(seconds(config_.connect_retry_s), [this, &s] {
      s.connect_retry_timer = 0;
      Fire(s, FsmEvent::kConnectRetryTimerExpires);
    });
  }
  if (a & kSendOpen) Send(s, Encode(BuildOpen(p), s.codec));
  if (a & kSendKeepalive) Send(s, Encode(KeepaliveMessage{}, s.codec));
  auto arm_hold = [&](milliseconds d) {
    loop_.Cancel(s.hold_timer);
    s.hold_timer = loop_.AddTimer(d, [this, &s] {
      s.hold_timer = 0;
      s.peer->last_error = "hold timer expired";
      KR_LOG_WARN("BGP peer {}: hold timer expired", s.peer->config.address.ToString());
      Fire(s, FsmEvent::kHoldTimerExpires);
    });
  };
  if (a & kStartLargeHoldTimer) arm_hold(kLargeHoldTime);
  if ((a & kRestartHoldTimer) && s.negotiated_hold) arm_hold(seconds(s.negotiated_hold));
  if ((a & kRestartKeepaliveTimer) && s.negotiated_hold) {
    loop_.Cancel(s.keepalive_timer);
    milliseconds every = std::max<milliseconds>(milliseconds(1000), seconds(s.negotiated_hold) / 3);
    s.keepalive_timer = loop_.AddTimer(every, [this, &s] {
      s.keepalive_timer = 0;
      Fire(s, FsmEvent::kKeepaliveTimerExpires);
    });
  }
  // kProcessUpdate is done by HandleMessage, which holds the UPDATE.
  if (a & kSessionEstablished) {
    s.last_write = Clock::now();
    ArmSendHoldTimer(s);
    PeerUp(s);
  }

  if (t.next == PeerState::kIdle && old != PeerState::kIdle) {
    CancelTimers(s);
    CloseFd(s);
    if (&s == p.in.get()) Retire(p.in);
    ScheduleRestart(p);
  }
}

void SpeakerImpl::ScheduleRestart(Peer& p) {
  // Automatic restart after the connect-retry interval (RFC 4271 8.1.1 AllowAutomaticStart),
  // but only while no other connection of the peer is established.
  Session* out = p.out.get();
  if (!out || out->state != PeerState::kIdle || out->connect_retry_timer || p.established) return;
  out->connect_retry_timer = loop_.AddTimer(seconds(config_.connect_retry_s), [this, out] {
    out->connect_retry_timer = 0;
    if (out->state == PeerState::kIdle && !out->peer->established) {
      Fire(*out, FsmEvent::kAutomaticStart);
    }
  });
}

void SpeakerImpl::Send(Session& s, const std::vector<uint8_t>& bytes) {
  if (!s.fd) return;
  // Always queued: UPDATEs are not generated while the queue is past its bound (Throttled), so
  // only one batch of them and small control messages can ever be on top of it.
  // Compact once the sent prefix dominates, so a long-lived slow peer does not keep it.
  if (s.woff > 0 && s.woff >= s.wbuf.size() / 2) {
    s.wbuf.erase(s.wbuf.begin(), s.wbuf.begin() + static_cast<long>(s.woff));
    s.woff = 0;
  }
  s.wbuf.insert(s.wbuf.end(), bytes.begin(), bytes.end());
  Flush(s);
}

void SpeakerImpl::OnPrefixLimit(Session& s, AfiSafi family) {
  if (s.prefix_limit_hit) return;
  s.prefix_limit_hit = true;
  Peer& p = *s.peer;
  const uint32_t limit = p.config.max_prefixes;
  KR_LOG_WARN("BGP peer {}: more than {} prefixes; closing with Cease/Maximum Number of Prefixes",
              p.config.address.ToString(), limit);
  // RFC 4486 3: AFI, SAFI and the upper bound.
  std::vector<uint8_t> data = {static_cast<uint8_t>(family.afi >> 8),
                               static_cast<uint8_t>(family.afi),
                               family.safi,
                               static_cast<uint8_t>(limit >> 24),
                               static_cast<uint8_t>(limit >> 16),
                               static_cast<uint8_t>(limit >> 8),
                               static_cast<uint8_t>(limit)};
  loop_.Post([this, addr = p.config.address, session = &s, data, limit] {
    Session* live = FindSession(addr, session);
    if (!live || !live->fd || !live->prefix_limit_hit) return;
    live->pending_error = BgpError{err::kCease, err::kMaxPrefixes, data, "prefix limit"};
    live->peer->last_error = "sent NOTIFICATION Cease/Maximum Number of Prefixes Reached (" +
                             std::to_string(limit) + ")";
    Fire(*live, FsmEvent::kLocalLimitExceeded);
  });
}

Session* SpeakerImpl::FindSession(const IpAddress& peer, const Session* s) {
  auto it = peers_.find(peer);
  if (it == peers_.end()) return nullptr;
  Peer& p = *it->second;
  if (p.out.get() == s) return p.out.get();
  if (p.in.get() == s) return p.in.get();
  return nullptr;
}

void SpeakerImpl::OnRouteRefresh(Session& s, AfiSafi family) {
  const std::string who = s.peer->config.address.ToString();
  const Peer& p = *s.peer;
  if (s.queued() > 0 || s.resume_scheduled || p.walking || !p.export_pending.empty()) {
    // RFC 2918 asks for the table again; while the last copy is still queued, one more
    // re-send once it has drained answers every request made in between.
    if (s.refresh_pending.insert(family).second) {
      KR_VLOG(1, "BGP peer {}: route refresh deferred until queued output drains", who);
    }
    return;
  }
  KR_VLOG(1, "BGP peer {}: route refresh", who);
  SendAll(*s.peer, family);
}

void SpeakerImpl::ArmSendHoldTimer(Session& s) {
  loop_.Cancel(s.send_hold_timer);
  s.send_hold_timer = 0;
  if (s.negotiated_hold == 0) return;  // RFC 9687 4.3: no keepalives, nothing to measure
  const seconds limit =
      config_.send_hold_time_s
          ? seconds(config_.send_hold_time_s)
          : std::max<seconds>(seconds(480), seconds(2 * static_cast<int>(s.negotiated_hold)));
  const auto due = s.last_write + limit;
  const auto wait = std::max<milliseconds>(
      milliseconds(1), std::chrono::duration_cast<milliseconds>(due - Clock::now()));
  s.send_hold_timer = loop_.AddTimer(wait, [this, &s, limit] {
    s.send_hold_timer = 0;
    if (s.state != PeerState::kEstablished) return;
    if (s.queued() == 0) s.last_write = Clock::now();  // nothing is waiting to be written
    if (Clock::now() - s.last_write < limit) {
      ArmSendHoldTimer(s);  // progress since: wait for the rest of the period
      return;
    }
    s.peer->last_error = "send hold timer expired: nothing could be written for " +
                         std::to_string(limit.count()) + " s (peer not reading)";
    KR_LOG_WARN("BGP peer {}: {}", s.peer->config.address.ToString(), s.peer->last_error);
    Fire(s, FsmEvent::kSendHoldTimerExpires);
  });
}

void SpeakerImpl::Flush(Session& s) {
  while (s.woff < s.wbuf.size()) {
    ssize_t n = send(s.fd.get(), s.wbuf.data() + s.woff, s.wbuf.size() - s.woff, MSG_NOSIGNAL);
    if (n > 0) {
      s.woff += static_cast<size_t>(n);
      s.last_write = Clock::now();
      continue;
    }
    if (n < 0 && (errno == EAGAIN || errno == EINTR)) {
      loop_.Modify(s.fd.get(), EPOLLIN | EPOLLOUT);
      ScheduleResume(s);
      return;
    }
    // A dead connection: the read side reports it as TcpConnectionFails.
    s.wbuf.clear();
    s.woff = 0;
    return;
  }
  s.wbuf.clear();
  s.wbuf.shrink_to_fit();  // a large table sent once does not stay allocated
  s.woff = 0;
  loop_.Modify(s.fd.get(), EPOLLIN);
  ScheduleResume(s);
}

void SpeakerImpl::ScheduleResume(Session& s) {
  const Peer& p = *s.peer;
  const bool work = p.walking || !p.export_pending.empty() || !p.eor_due.empty() ||
                    (s.queued() == 0 && !s.refresh_pending.empty());
  if (!work || s.resume_scheduled || p.established != &s ||
      s.queued() > config_.max_output_queue_bytes / 2)
    return;
  // From the loop: Flush may run inside an export walk.
  s.resume_scheduled = true;
  loop_.Post([this, addr = p.config.address, session = &s] {
    Session* live = FindSession(addr, session);
    if (!live) return;
    live->resume_scheduled = false;
    if (!live->fd || live->peer->established != live) return;
    Peer& peer = *live->peer;
    Pump(peer);
    if (live->queued() > 0 || peer.walking || !peer.export_pending.empty()) return;
    std::set<AfiSafi> families;
    families.swap(live->refresh_pending);
    if (!families.empty()) KR_VLOG(1, "BGP peer {}: deferred route refresh", addr.ToString());
    for (AfiSafi f : families) SendAll(peer, f);
  });
}

void SpeakerImpl::CloseFd(Session& s) {
  if (!s.fd) return;
  // Best effort: whatever is still queued (a NOTIFICATION) goes out before the close.
  if (s.woff < s.wbuf.size()) {
    [[maybe_unused]] auto n = send(s.fd.get(), s.wbuf.data() + s.woff, s.wbuf.size() - s.woff,
                                   MSG_NOSIGNAL | MSG_DONTWAIT);
  }
  loop_.Unwatch(s.fd.get());
  s.fd.reset();
  s.connecting = false;
  s.wbuf.clear();
  s.wbuf.shrink_to_fit();
  s.woff = 0;
  s.rbuf.clear();
  s.refresh_pending.clear();
}

void SpeakerImpl::CancelTimers(Session& s) {
  for (auto* t : {&s.hold_timer, &s.keepalive_timer, &s.connect_retry_timer, &s.restart_timer,
                  &s.send_hold_timer}) {
    loop_.Cancel(*t);
    *t = 0;
  }
}

void SpeakerImpl::Retire(std::unique_ptr<Session>& s) {
  if (!s) return;
  CancelTimers(*s);
  CloseFd(*s);
  if (s->peer->established == s.get()) s->peer->established = nullptr;
  graveyard_.push_back(std::move(s));
  loop_.Post([this] { graveyard_.clear(); });
}

OpenMessage SpeakerImpl::BuildOpen(const Peer& peer) const {
  OpenMessage o;
  o.my_as = config_.local_asn > 0xFFFF ? kAsTrans : static_cast<uint16_t>(config_.local_asn);
  o.hold_time_s = ProposedHold(peer);
  o.bgp_id = config_.router_id;
  o.caps.multiprotocol = {kIpv4Unicast, kIpv6Unicast};
  o.caps.route_refresh = true;
  o.caps.four_octet_asn = config_.local_asn;
  if (config_.graceful_restart) {
    GracefulRestartCap gr;
    // R bit: we (re)started and this is our first session with the peer since.
    gr.restarting = !peer.sessions_seen;
    gr.restart_time_s = std::min<uint16_t>(config_.graceful_restart_time_s, 4095);
    for (auto f : {kIpv4Unicast, kIpv6Unicast}) gr.families.push_back({f, true});
    o.caps.graceful_restart = gr;
  }
  return o;
}

}  // namespace kr::bgp::speaker_internal
