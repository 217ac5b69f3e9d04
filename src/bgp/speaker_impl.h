// SPDX-License-Identifier: Apache-2.0
// Private to the bgp module: the speaker's state and the one class whose methods are spread
// over three files by what they do:
//   speaker.cc  the public API (each call posts a task to the loop), start/stop, peer
//               configuration and status snapshots;
//   session.cc  session I/O: accepting and connecting, reading and framing messages (an UPDATE
//               is processed right where it is read), the FSM's actions, output queue and
//               timers (RFC 4271 8, 6.8 collisions, RFC 9687 send hold time);
//   adj_ribs.cc the routes: Adj-RIB-In with import policy into the Loc-RIB, export into each
//               peer's Adj-RIB-Out (split horizon, RFC 4456 reflection), graceful restart
//               (RFC 4724) and route refresh (RFC 2918).
// Everything runs on the event-loop thread except the public entry points.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <future>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <span>
#include <string>
#include <thread>
#include <vector>

#include "event_loop.h"
#include "kube_router/base/unique_fd.h"
#include "kube_router/bgp/codec.h"
#include "kube_router/bgp/fsm.h"
#include "kube_router/bgp/rib.h"
#include "kube_router/bgp/speaker.h"

namespace kr::bgp::speaker_internal {

using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;
using std::chrono::seconds;

struct Peer;

struct Session {
  Peer* peer = nullptr;
  bool outgoing = false;           // the persistent session that initiates connections
  bool initiated_locally = false;  // the current TCP connection was opened by us
  UniqueFd fd;                     // the current TCP connection, if any (closed by CloseFd)
  bool connecting = false;
  PeerState state = PeerState::kIdle;
  std::vector<uint8_t> rbuf;
  std::vector<uint8_t> wbuf;
  size_t woff = 0;
  // The peer passed its prefix limit: nothing more is read, the session is closing.
  bool prefix_limit_hit = false;
  // Route refreshes asked for while output was still queued: answered once it drains, so a
  // peer repeating ROUTE-REFRESH without reading gets one re-send, not one per request.
  std::set<AfiSafi> refresh_pending;
  // A task is posted to resume exports (and deferred refreshes) once the queue has drained.
  bool resume_scheduled = false;
  Clock::time_point last_write;  // last time send() took bytes (RFC 9687)
  EventLoop::TimerId hold_timer = 0, keepalive_timer = 0, connect_retry_timer = 0,
                     restart_timer = 0, send_hold_timer = 0;
  uint16_t negotiated_hold = 0;
  std::optional<OpenMessage> remote_open;
  CodecOptions codec;
  BgpError pending_error;
  IpAddress local_address;
  bool graceful_down = false;  // the connection died without a NOTIFICATION
  size_t queued() const { return wbuf.size() - woff; }
};

struct Peer {
  PeerConfig config;
  std::unique_ptr<Session> out;  // absent for passive peers
  std::unique_ptr<Session> in;   // a connection the peer opened
  Session* established = nullptr;
  // The Adj-RIB-In lives in the Loc-RIB (each path keeps its attributes as received); these
  // count the peer's paths there: all of them, and those the import policy accepted.
  uint64_t received = 0;
  uint64_t accepted = 0;
  Interned<PathSource> source;  // of the paths the current session announces
  // Adj-RIB-Out: what was last sent per prefix (interned: the whole table usually shares one).
  std::map<IpPrefix, Interned<PathInfo>> adj_out;
  // Exports not generated yet because the connection's queue is past its bound (backpressure):
  // changed prefixes (their latest state is computed when they go out, so a prefix that changes
  // ten times while the peer is not reading is sent once) and a walk over the Loc-RIB for a
  // whole table (new session, route refresh, ReapplyPolicies).
  std::set<IpPrefix> export_pending;
  bool walking = false;
  std::optional<IpPrefix> walk_after;  // the walk continues after this prefix (unset: start)
  std::set<AfiSafi> walk_families;     // families the walk covers
  std::set<AfiSafi> walk_resend;       // ...of which sent even when unchanged (route refresh)
  std::set<AfiSafi> eor_due;           // End-of-RIB once the walk is done
  Clock::time_point established_at;
  std::string last_error;
  IpAddress remote_id;
  std::set<AfiSafi> families;
  bool gr_negotiated = false;
  uint16_t peer_restart_time = 0;
  std::set<AfiSafi> peer_forwarding_preserved;
  EventLoop::TimerId restart_timer = 0;  // peer restarting: drop stale if it does not return
  EventLoop::TimerId stale_timer = 0;    // peer back: drop stale if End-of-RIB does not come
  bool sessions_seen = false;            // for the R bit on our first sessions after start
  uint64_t malformed_updates = 0;        // RFC 7606 errors seen; the first few are logged in full
};

inline AfiSafi FamilyOf(const IpPrefix& p) { return p.is_v4() ? kIpv4Unicast : kIpv6Unicast; }

class SpeakerImpl final : public Speaker {
 public:
  explicit SpeakerImpl(const GlobalConfig& config);
  ~SpeakerImpl() override;

  Status Start() override;
  void Stop(bool graceful_restart) override;
  void AddPeer(const PeerConfig& peer) override;
  void UpdatePeer(const PeerConfig& peer) override;
  void RemovePeer(const IpAddress& address) override;
  void AddPath(const LocalPath& path) override;
  void WithdrawPath(const IpPrefix& prefix) override;
  void SetImportPolicy(ImportPolicy policy) override;
  void SetExportPolicy(ExportPolicy policy) override;
  void ReapplyPolicies() override;
  void SubscribeBestPaths(BestPathCallback callback) override;
  std::vector<PeerStatus> Peers() override;
  std::vector<Route> Rib() override;
  std::vector<Route> BestPaths() override;

 private:
  template <typename T, typename Fn>
  T Query(Fn fn) {
    if (!running_) return fn();
    auto promise = std::make_shared<std::promise<T>>();
    auto future = promise->get_future();
    // The loop may finish between the check above and the post: then answer here, the loop
    // thread no longer touches the tables.
    if (!loop_.Post([promise, fn] { promise->set_value(fn()); })) return fn();
    return future.get();
  }

  // ---- peers and sessions --------------------------------------------------------------------
  void DoAddPeer(const PeerConfig& config);
  void DoRemovePeer(const IpAddress& address);
  void StartSession(Session& s);
  void ApplyListenerKeys(const PeerConfig& config, bool remove);
  void OnAccept(int listen_fd);
  // A new TCP connection for `s`: per-connection buffers and flags start empty.
  void BeginConnection(Session& s, UniqueFd fd);
  void AdoptConnection(Session& s, UniqueFd fd);
  void OnSocketEvent(Session& s, uint32_t events);
  void OnConnected(Session& s);
  void ReadMessages(Session& s);
  void HandleMessage(Session& s, const Message& m);
  void HandleOpen(Session& s, const OpenMessage& open);
  // Runs the FSM for `event` and executes the transition's actions; returns the transition so
  // the caller can do what only it can (process the UPDATE it just read).
  Transition Fire(Session& s, FsmEvent event);
  void Execute(Session& s, const Transition& t, PeerState old);
  void Send(Session& s, const std::vector<uint8_t>& bytes);
  void Flush(Session& s);
  // Past max_output_queue_bytes no UPDATE is generated for the connection.
  bool Throttled(const Session& s) const { return s.queued() >= config_.max_output_queue_bytes; }
  // Once the queue is below half the bound: resume exports, then answer deferred refreshes.
  void ScheduleResume(Session& s);
  void OnPrefixLimit(Session& s, AfiSafi family);
  void OnRouteRefresh(Session& s, AfiSafi family);
  void ArmSendHoldTimer(Session& s);
  Session* FindSession(const IpAddress& peer, const Session* s);
  void CloseFd(Session& s);
  void CancelTimers(Session& s);
  void Retire(std::unique_ptr<Session>& s);
  void ScheduleRestart(Peer& p);
  OpenMessage BuildOpen(const Peer& peer) const;
  uint16_t ProposedHold(const Peer& peer) const {
    return peer.config.hold_time_s.value_or(config_.hold_time_s);
  }
  bool IsIbgp(const Peer& peer) const { return peer.config.remote_asn == config_.local_asn; }
  static bool Gtsm(const Peer& peer) {
    return peer.config.ttl_security && peer.config.multihop_ttl == 0;
  }
  int SendTtl(const Peer& peer) const {
    if (peer.config.multihop_ttl) return peer.config.multihop_ttl;
    return IsIbgp(peer) || Gtsm(peer) ? 255 : 1;
  }
  Session* Other(Session& s) {
    Peer& p = *s.peer;
    return &s == p.out.get() ? p.in.get() : p.out.get();
  }

  // ---- routes --------------------------------------------------------------------------------
  void PeerUp(Session& s);
  void PeerDown(Session& s);
  void DropRoutes(Peer& peer, const std::function<bool(const IpPrefix&, const RibPath&)>& which);
  void ProcessUpdate(Session& s, const UpdateMessage& u);
  // Puts the peer's path for `prefix` into the Loc-RIB: as received, and usable when no loop
  // is detected and the import policy accepts it.
  void Learn(Peer& peer, const IpPrefix& prefix, Interned<PathInfo> received,
             const Interned<PathSource>& source, std::vector<LocRib::Change>& changes);
  void Unlearn(Peer& peer, const IpPrefix& prefix, std::vector<LocRib::Change>& changes);
  void DoAddPath(const LocalPath& path);
  void DoReapplyPolicies();
  void Propagate(const std::vector<LocRib::Change>& changes);
  std::optional<Interned<PathInfo>> ComputeExport(const IpPrefix& prefix, const RibPath& best,
                                                  Peer& to);
  // Exports `prefixes` now while the queue has room, the rest later (export_pending).
  void ExportPrefixes(Peer& peer, const std::vector<IpPrefix>& prefixes);
  // Sends what Loc-RIB and Adj-RIB-Out disagree on for `prefixes` (one batch); prefixes of the
  // `resend` families go out even when unchanged.
  void SyncExports(Peer& peer, std::span<const IpPrefix> prefixes,
                   const std::set<AfiSafi>& resend = {});
  // Generates pending exports and the table walk batch by batch until the queue is full.
  void Pump(Peer& peer);
  void ResetExports(Peer& peer);
  // The whole table (or one family of it) again, then End-of-RIB.
  void SendAll(Peer& peer, std::optional<AfiSafi> family);
  std::vector<PeerStatus> DoPeers();

  GlobalConfig config_;
  // Declared before everything holding handles (peers' Adj-RIB-Out, the Loc-RIB), so it is
  // destroyed after them.
  PathInterners interners_;
  EventLoop loop_;
  std::thread thread_;
  std::atomic<bool> running_{false};
  bool stopped_ = false;
  std::vector<UniqueFd> listeners_;
  std::map<IpAddress, std::unique_ptr<Peer>> peers_;
  std::vector<std::unique_ptr<Session>> graveyard_;
  std::vector<std::unique_ptr<Peer>> peer_graveyard_;
  LocRib rib_;
  ImportPolicy import_policy_;
  ExportPolicy export_policy_;
  std::vector<BestPathCallback> subscribers_;
};

}  // namespace kr::bgp::speaker_internal
