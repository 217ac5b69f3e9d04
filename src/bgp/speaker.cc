// SPDX-License-Identifier: Apache-2.0
// The speaker: peers and their sessions (RFC 4271 8 via FsmStep), collision detection (6.8),
// UPDATE processing into Adj-RIB-In and the Loc-RIB, export into Adj-RIB-Out per peer (iBGP
// split horizon, RFC 4456 reflection), graceful restart (RFC 4724) and route refresh
// (RFC 2918). Everything here runs on the event-loop thread except the public entry points,
// which only post tasks.
#include "kube_router/bgp/speaker.h"

#include <sys/epoll.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <future>
#include <map>
#include <set>
#include <span>
#include <thread>

#include "event_loop.h"
#include "kube_router/base/log.h"
#include "kube_router/bgp/codec.h"
#include "kube_router/bgp/fsm.h"
#include "kube_router/bgp/rib.h"
#include "socket_util.h"

namespace kr::bgp {
namespace {

using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;
using std::chrono::seconds;

constexpr seconds kLargeHoldTime{240};  // RFC 4271 8.2.2: "4 minutes" while awaiting OPEN
constexpr size_t kReadChunk = 64 * 1024;

struct Peer;

struct Session {
  Peer* peer = nullptr;
  bool outgoing = false;           // the persistent session that initiates connections
  bool initiated_locally = false;  // the current TCP connection was opened by us
  int fd = -1;
  bool connecting = false;
  PeerState state = PeerState::kIdle;
  std::vector<uint8_t> rbuf;
  std::vector<uint8_t> wbuf;
  size_t woff = 0;
  // The queue passed max_output_queue_bytes: nothing more is queued, the session is closing.
  bool output_overflow = false;
  // The peer passed its prefix limit: nothing more is read, the session is closing.
  bool prefix_limit_hit = false;
  // Route refreshes asked for while output was still queued: answered once it drains, so a
  // peer repeating ROUTE-REFRESH without reading gets one re-send, not one per request.
  std::set<AfiSafi> refresh_pending;
  bool refresh_scheduled = false;
  Clock::time_point last_write;  // last time send() took bytes (RFC 9687)
  EventLoop::TimerId hold_timer = 0, keepalive_timer = 0, connect_retry_timer = 0,
                     restart_timer = 0, send_hold_timer = 0;
  uint16_t negotiated_hold = 0;
  std::optional<OpenMessage> remote_open;
  CodecOptions codec;
  BgpError pending_error;
  UpdateMessage pending_update;
  IpAddress local_address;
  bool graceful_down = false;  // the connection died without a NOTIFICATION
  size_t queued() const { return wbuf.size() - woff; }
};

struct AdjInEntry {
  // As received (after the RFC checks, before import policy). One UPDATE's prefixes share
  // one attribute set, which keeps a large table small.
  std::shared_ptr<const PathAttributes> attrs;
  IpAddress next_hop;
  bool stale = false;
  bool accepted = false;
};

// What export computes for one prefix and one peer.
struct ExportedPath {
  PathAttributes attrs;
  IpAddress next_hop;
};

// What was sent; prefixes sent in one group share the attribute set.
struct OutEntry {
  std::shared_ptr<const PathAttributes> attrs;
  IpAddress next_hop;
  bool Same(const ExportedPath& p) const { return next_hop == p.next_hop && *attrs == p.attrs; }
};

struct Peer {
  PeerConfig config;
  std::unique_ptr<Session> out;  // absent for passive peers
  std::unique_ptr<Session> in;   // a connection the peer opened
  Session* established = nullptr;
  std::map<IpPrefix, AdjInEntry> adj_in;
  std::map<IpPrefix, OutEntry> adj_out;
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
  uint64_t accepted = 0;
  uint64_t malformed_updates = 0;  // RFC 7606 errors seen; the first few are logged in full
};

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

AfiSafi FamilyOf(const IpPrefix& p) { return p.is_v4() ? kIpv4Unicast : kIpv6Unicast; }

class SpeakerImpl final : public Speaker {
 public:
  explicit SpeakerImpl(const GlobalConfig& config) : config_(config) {
    if (!config_.cluster_id) config_.cluster_id = config_.router_id;
  }
  ~SpeakerImpl() override { Stop(false); }

  Status Start() override;
  void Stop(bool graceful_restart) override;
  void AddPeer(const PeerConfig& peer) override {
    loop_.Post([this, peer] { DoAddPeer(peer); });
  }
  void UpdatePeer(const PeerConfig& peer) override { AddPeer(peer); }
  void RemovePeer(const IpAddress& address) override {
    loop_.Post([this, address] { DoRemovePeer(address); });
  }
  void AddPath(const LocalPath& path) override {
    loop_.Post([this, path] { DoAddPath(path); });
  }
  void WithdrawPath(const IpPrefix& prefix) override {
    loop_.Post([this, prefix] {
      std::vector<LocRib::Change> changes;
      rib_.Remove(prefix, std::nullopt, changes);
      Propagate(changes);
    });
  }
  void SetImportPolicy(ImportPolicy policy) override {
    loop_.Post([this, policy] { import_policy_ = policy; });
  }
  void SetExportPolicy(ExportPolicy policy) override {
    loop_.Post([this, policy] { export_policy_ = policy; });
  }
  void ReapplyPolicies() override {
    loop_.Post([this] { DoReapplyPolicies(); });
  }
  void SubscribeBestPaths(BestPathCallback callback) override {
    loop_.Post([this, callback] {
      subscribers_.push_back(callback);
      rib_.ForEach([&](const IpPrefix& prefix, const std::vector<Route>& paths) {
        callback(BestPathChange{prefix, paths[0]});
      });
    });
  }
  std::vector<PeerStatus> Peers() override {
    return Query<std::vector<PeerStatus>>([this] { return DoPeers(); });
  }
  std::vector<Route> Rib() override {
    return Query<std::vector<Route>>([this] {
      std::vector<Route> out;
      rib_.ForEach([&](const IpPrefix&, const std::vector<Route>& paths) {
        out.insert(out.end(), paths.begin(), paths.end());
      });
      return out;
    });
  }
  std::vector<Route> BestPaths() override {
    return Query<std::vector<Route>>([this] {
      std::vector<Route> out;
      rib_.ForEach(
          [&](const IpPrefix&, const std::vector<Route>& paths) { out.push_back(paths[0]); });
      return out;
    });
  }

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
  void AdoptConnection(Session& s, int fd);
  void OnSocketEvent(Session& s, uint32_t events);
  void OnConnected(Session& s);
  void ReadMessages(Session& s);
  void HandleMessage(Session& s, const Message& m);
  void HandleOpen(Session& s, const OpenMessage& open);
  void Fire(Session& s, FsmEvent event);
  void Execute(Session& s, const Transition& t, PeerState old);
  void Send(Session& s, const std::vector<uint8_t>& bytes);
  void Flush(Session& s);
  void OnOutputOverflow(Session& s);
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
  void DropRoutes(Peer& peer, const std::function<bool(const IpPrefix&, const AdjInEntry&)>& which);
  Route RouteFromAdjIn(const Peer& peer, const IpPrefix& prefix, const AdjInEntry& entry) const;
  void ProcessUpdate(Session& s, UpdateMessage& u);
  void Learn(Peer& peer, const IpPrefix& prefix, std::shared_ptr<const PathAttributes> attrs,
             const IpAddress& next_hop, bool stale, std::vector<LocRib::Change>& changes);
  void Unlearn(Peer& peer, const IpPrefix& prefix, std::vector<LocRib::Change>& changes);
  void DoAddPath(const LocalPath& path);
  void DoReapplyPolicies();
  void Propagate(const std::vector<LocRib::Change>& changes);
  std::optional<ExportedPath> ComputeExport(const Route& best, Peer& to);
  void SyncExports(Peer& peer, const std::vector<IpPrefix>& prefixes);
  void SendAll(Peer& peer, std::optional<AfiSafi> family);
  std::vector<PeerStatus> DoPeers();

  GlobalConfig config_;
  EventLoop loop_;
  std::thread thread_;
  std::atomic<bool> running_{false};
  bool stopped_ = false;
  std::vector<int> listeners_;
  std::map<IpAddress, std::unique_ptr<Peer>> peers_;
  std::vector<std::unique_ptr<Session>> graveyard_;
  std::vector<std::unique_ptr<Peer>> peer_graveyard_;
  LocRib rib_;
  ImportPolicy import_policy_;
  ExportPolicy export_policy_;
  std::vector<BestPathCallback> subscribers_;
};

// ---- lifecycle -------------------------------------------------------------------------------

Status SpeakerImpl::Start() {
  if (running_ || stopped_) return Status::Error("BGP speaker already started");
  if (config_.local_asn == 0) return Status::Error("BGP: local ASN must not be 0");
  if (!config_.router_id.is_v4() || config_.router_id == IpAddress()) {
    return Status::Error("BGP: router ID must be a non-zero IPv4 address");
  }
  if (config_.hold_time_s != 0 && config_.hold_time_s < 3) {
    return Status::Error("BGP: hold time must be 0 or at least 3 seconds");
  }
  if (config_.send_hold_time_s != 0 && config_.send_hold_time_s <= config_.hold_time_s) {
    return Status::Error("BGP: send hold time must exceed the hold time (RFC 9687)");
  }
  if (config_.max_output_queue_bytes < kMaxMessageSize) {
    return Status::Error("BGP: the output queue bound must hold at least one message");
  }
  if (!loop_.ok()) return Status::Error("BGP: cannot create epoll/eventfd");
  if (!config_.disable_listen) {
    std::vector<IpAddress> addrs = config_.listen_addresses;
    bool wildcard = addrs.empty();
    if (wildcard) addrs = {IpAddress(), *IpAddress::Parse("::")};
    for (const auto& a : addrs) {
      auto fd = net::Listen(a, config_.listen_port);
      if (!fd.ok()) {
        // An IPv6-less host still gets IPv4 with the wildcard default.
        if (wildcard && a.is_v6()) continue;
        for (int l : listeners_) close(l);
        listeners_.clear();
        return fd.status().Context("BGP listen");
      }
      listeners_.push_back(*fd);
      loop_.Watch(*fd, EPOLLIN, [this, l = *fd](uint32_t) { OnAccept(l); });
    }
  }
  running_ = true;
  KR_LOG_INFO("BGP speaker started: AS {} router ID {} port {}", config_.local_asn,
              config_.router_id.ToString(), config_.listen_port);
  thread_ = std::thread([this] {
    // Nothing may escape the thread silently (e.g. from a policy callback): log, then abort.
    try {
      loop_.Run();
    } catch (const std::exception& e) {
      KR_LOG_ERROR("BGP speaker thread: uncaught exception: {}", e.what());
      std::abort();
    }
  });
  return Status::Ok();
}

void SpeakerImpl::Stop(bool graceful_restart) {
  if (!running_) return;
  loop_.Post([this, graceful_restart] {
    for (auto& [addr, peer] : peers_) {
      for (Session* s : {peer->out.get(), peer->in.get()}) {
        if (!s || s->fd < 0) continue;
        if (!graceful_restart && s->state >= PeerState::kOpenSent) {
          Send(*s, Encode(NotificationMessage{err::kCease, err::kAdminShutdown, {}}, s->codec));
        }
        CancelTimers(*s);
        CloseFd(*s);
      }
    }
    for (int l : listeners_) {
      loop_.Unwatch(l);
      close(l);
    }
    listeners_.clear();
    loop_.Stop();
  });
  thread_.join();
  running_ = false;
  stopped_ = true;
  KR_LOG_INFO("BGP speaker stopped{}", graceful_restart ? " (graceful restart)" : "");
}

// ---- peers -----------------------------------------------------------------------------------

void SpeakerImpl::ApplyListenerKeys(const PeerConfig& config, bool remove) {
  if (config.password.empty()) return;
  for (int l : listeners_) {
    bool l_v6 = net::LocalAddress(l).is_v6();
    if (l_v6 != config.address.is_v6()) continue;
    if (Status s = net::SetMd5Key(l, config.address, remove ? "" : config.password); !s.ok()) {
      KR_LOG_ERROR("BGP peer {}: {}", config.address.ToString(), s.message());
    }
  }
}

void SpeakerImpl::DoAddPeer(const PeerConfig& config) {
  auto it = peers_.find(config.address);
  if (it != peers_.end()) {
    Peer& p = *it->second;
    const PeerConfig& old = p.config;
    bool reset = old.remote_asn != config.remote_asn || old.password != config.password ||
                 old.port != config.port || old.multihop_ttl != config.multihop_ttl ||
                 old.local_address != config.local_address || old.passive != config.passive ||
                 old.route_reflector_client != config.route_reflector_client ||
                 old.hold_time_s != config.hold_time_s || old.ttl_security != config.ttl_security;
    if (!reset) {
      p.config.description = config.description;
      p.config.max_prefixes = config.max_prefixes;
      return;
    }
    KR_LOG_INFO("BGP peer {}: configuration changed, resetting session", config.address.ToString());
    DoRemovePeer(config.address);
  }
  auto peer = std::make_unique<Peer>();
  peer->config = config;
  ApplyListenerKeys(config, false);
  if (!config.passive) {
    peer->out = std::make_unique<Session>();
    peer->out->peer = peer.get();
    peer->out->outgoing = true;
  }
  Peer& p = *peer;
  peers_[config.address] = std::move(peer);
  KR_LOG_INFO("BGP peer {} AS {} added{}", config.address.ToString(), config.remote_asn,
              config.passive ? " (passive)" : "");
  if (p.out) StartSession(*p.out);
}

void SpeakerImpl::StartSession(Session& s) { Fire(s, FsmEvent::kManualStart); }

void SpeakerImpl::DoRemovePeer(const IpAddress& address) {
  auto it = peers_.find(address);
  if (it == peers_.end()) return;
  Peer& p = *it->second;
  for (Session* s : {p.out.get(), p.in.get()}) {
    if (!s || s->fd < 0) continue;
    if (s->state >= PeerState::kOpenSent) {
      Send(*s, Encode(NotificationMessage{err::kCease, err::kPeerDeconfigured, {}}, s->codec));
    }
  }
  for (auto* s : {p.out.get(), p.in.get()}) {
    if (!s) continue;
    CancelTimers(*s);
    CloseFd(*s);
  }
  loop_.Cancel(p.restart_timer);
  loop_.Cancel(p.stale_timer);
  p.established = nullptr;
  DropRoutes(p, [](const IpPrefix&, const AdjInEntry&) { return true; });
  ApplyListenerKeys(p.config, true);
  KR_LOG_INFO("BGP peer {} removed", address.ToString());
  // Deleted after the current callback returns; timers and fds are already gone.
  peer_graveyard_.push_back(std::move(it->second));
  peers_.erase(it);
  loop_.Post([this] {
    peer_graveyard_.clear();
    graveyard_.clear();
  });
}

// ---- connections -----------------------------------------------------------------------------

void SpeakerImpl::OnAccept(int listen_fd) {
  while (true) {
    sockaddr_storage ss{};
    socklen_t len = sizeof(ss);
    int fd =
        accept4(listen_fd, reinterpret_cast<sockaddr*>(&ss), &len, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) return;
    IpAddress from = net::FromSockaddr(ss);
    auto it = peers_.find(from);
    if (it == peers_.end()) {
      KR_VLOG(1, "BGP: refusing connection from unknown peer {}", from.ToString());
      close(fd);
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
        close(fd);
        continue;
      }
    }
    (void)net::SetTtl(fd, from.is_v6(), SendTtl(p));
    if (Gtsm(p)) {
      // Segments already queued were checked by nobody; from here on the kernel drops any
      // with a lower TTL, so an OPEN from further away never arrives.
      if (Status st = net::SetMinTtl(fd, from.is_v6(), 255); !st.ok()) {
        KR_LOG_ERROR("BGP peer {}: {}; refusing the connection", from.ToString(), st.message());
        close(fd);
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
    AdoptConnection(*target, fd);
    target->initiated_locally = false;
    Fire(*target, FsmEvent::kTcpConnectionConfirmed);
  }
}

void SpeakerImpl::AdoptConnection(Session& s, int fd) {
  s.fd = fd;
  s.connecting = false;
  s.rbuf.clear();
  s.wbuf.clear();
  s.woff = 0;
  s.output_overflow = false;
  s.prefix_limit_hit = false;
  s.refresh_pending.clear();
  s.graceful_down = false;
  s.local_address = net::LocalAddress(fd);
  loop_.Watch(fd, EPOLLIN, [this, &s](uint32_t ev) { OnSocketEvent(s, ev); });
}

void SpeakerImpl::OnSocketEvent(Session& s, uint32_t events) {
  if (s.connecting) {
    if (events & (EPOLLOUT | EPOLLERR | EPOLLHUP)) OnConnected(s);
    return;
  }
  if (events & EPOLLOUT) Flush(s);
  if (s.fd >= 0 && (events & (EPOLLIN | EPOLLHUP | EPOLLERR))) ReadMessages(s);
}

void SpeakerImpl::OnConnected(Session& s) {
  int err = net::PendingError(s.fd);
  s.connecting = false;
  if (err != 0) {
    s.peer->last_error = "connect: " + net::ErrnoText(err);
    KR_VLOG(1, "BGP peer {}: {}", s.peer->config.address.ToString(), s.peer->last_error);
    Fire(s, FsmEvent::kTcpConnectionFails);
    return;
  }
  s.local_address = net::LocalAddress(s.fd);
  loop_.Modify(s.fd, EPOLLIN);
  Fire(s, FsmEvent::kTcpCrAcked);
}

void SpeakerImpl::ReadMessages(Session& s) {
  uint8_t chunk[kReadChunk];
  bool eof = false;
  for (int rounds = 0; rounds < 16; ++rounds) {
    ssize_t n = read(s.fd, chunk, sizeof(chunk));
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
  while (s.fd >= 0 && !s.prefix_limit_hit) {
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
  if (s.fd >= 0) {
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
    s.pending_update = *u;
    Fire(s, FsmEvent::kUpdateMsg);
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
  if (other && other->fd >= 0 &&
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

void SpeakerImpl::Fire(Session& s, FsmEvent event) {
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
    if (s.fd >= 0 && !s.connecting) Send(s, Encode(n, s.codec));
  }
  if (a & kSendErrorNotification) {
    s.graceful_down = false;
    NotificationMessage n{s.pending_error.code, s.pending_error.subcode, s.pending_error.data};
    if (s.fd >= 0 && !s.connecting) Send(s, Encode(n, s.codec));
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
            it->second->out->state == PeerState::kConnect && it->second->out->fd < 0) {
          Fire(*it->second->out, FsmEvent::kTcpConnectionFails);
        }
      });
    } else {
      s.fd = *fd;
      s.connecting = true;
      s.initiated_locally = true;
      s.rbuf.clear();
      s.wbuf.clear();
      s.woff = 0;
      s.output_overflow = false;
      s.prefix_limit_hit = false;
      s.refresh_pending.clear();
      s.graceful_down = false;
      loop_.Watch(*fd, EPOLLOUT, [this, &s](uint32_t ev) { OnSocketEvent(s, ev); });
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
  if (a & kProcessUpdate) ProcessUpdate(s, s.pending_update);
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
  if (s.fd < 0) return;
  // A NOTIFICATION is always queued (it is small and the session ends with it); anything else
  // beyond the bound ends the session instead of growing the queue.
  const bool notification =
      bytes.size() > 18 && bytes[18] == static_cast<uint8_t>(MessageType::kNotification);
  if (!notification) {
    if (s.output_overflow) return;
    if (s.queued() + bytes.size() > config_.max_output_queue_bytes) {
      OnOutputOverflow(s);
      return;
    }
  }
  // Compact once the sent prefix dominates, so a long-lived slow peer does not keep it.
  if (s.woff > 0 && s.woff >= s.wbuf.size() / 2) {
    s.wbuf.erase(s.wbuf.begin(), s.wbuf.begin() + static_cast<long>(s.woff));
    s.woff = 0;
  }
  s.wbuf.insert(s.wbuf.end(), bytes.begin(), bytes.end());
  Flush(s);
}

void SpeakerImpl::OnOutputOverflow(Session& s) {
  Peer& p = *s.peer;
  s.output_overflow = true;
  s.refresh_pending.clear();
  KR_LOG_WARN(
      "BGP peer {}: {} bytes queued and the peer is not reading; closing with Cease/Out of "
      "Resources",
      p.config.address.ToString(), s.queued());
  // Closed from the loop, not from inside whatever was sending (an export walk, PeerUp).
  loop_.Post([this, addr = p.config.address, session = &s] {
    Session* live = FindSession(addr, session);
    if (!live || live->fd < 0 || !live->output_overflow) return;
    live->pending_error =
        BgpError{err::kCease, err::kOutOfResources, {}, "output queue bound exceeded"};
    live->peer->last_error = "sent NOTIFICATION Cease/Out of Resources: output queue of " +
                             std::to_string(config_.max_output_queue_bytes) +
                             " bytes full (peer not reading)";
    Fire(*live, FsmEvent::kLocalLimitExceeded);
  });
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
    if (!live || live->fd < 0 || !live->prefix_limit_hit) return;
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
  if (s.queued() > 0 || s.refresh_scheduled) {
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
    ssize_t n = send(s.fd, s.wbuf.data() + s.woff, s.wbuf.size() - s.woff, MSG_NOSIGNAL);
    if (n > 0) {
      s.woff += static_cast<size_t>(n);
      s.last_write = Clock::now();
      continue;
    }
    if (n < 0 && (errno == EAGAIN || errno == EINTR)) {
      loop_.Modify(s.fd, EPOLLIN | EPOLLOUT);
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
  loop_.Modify(s.fd, EPOLLIN);
  if (!s.refresh_pending.empty() && !s.refresh_scheduled) {
    // Answered from the loop: Flush may run inside an export walk.
    s.refresh_scheduled = true;
    loop_.Post([this, addr = s.peer->config.address, session = &s] {
      Session* live = FindSession(addr, session);
      if (!live) return;
      live->refresh_scheduled = false;
      std::set<AfiSafi> families;
      families.swap(live->refresh_pending);
      if (live->fd < 0 || live->peer->established != live) return;
      KR_VLOG(1, "BGP peer {}: deferred route refresh", addr.ToString());
      for (AfiSafi f : families) SendAll(*live->peer, f);
    });
  }
}

void SpeakerImpl::CloseFd(Session& s) {
  if (s.fd < 0) return;
  // Best effort: whatever is still queued (a NOTIFICATION) goes out before the close.
  if (s.woff < s.wbuf.size()) {
    [[maybe_unused]] auto n =
        send(s.fd, s.wbuf.data() + s.woff, s.wbuf.size() - s.woff, MSG_NOSIGNAL | MSG_DONTWAIT);
  }
  loop_.Unwatch(s.fd);
  close(s.fd);
  s.fd = -1;
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

// ---- routes ----------------------------------------------------------------------------------

void SpeakerImpl::DropRoutes(Peer& peer,
                             const std::function<bool(const IpPrefix&, const AdjInEntry&)>& which) {
  std::vector<LocRib::Change> changes;
  for (auto it = peer.adj_in.begin(); it != peer.adj_in.end();) {
    if (!which(it->first, it->second)) {
      ++it;
      continue;
    }
    if (it->second.accepted) {
      rib_.Remove(it->first, peer.config.address, changes);
      --peer.accepted;
    }
    it = peer.adj_in.erase(it);
  }
  Propagate(changes);
}

void SpeakerImpl::PeerUp(Session& s) {
  Peer& p = *s.peer;
  p.established = &s;
  p.sessions_seen = true;
  p.established_at = Clock::now();
  p.last_error.clear();
  const OpenMessage& open = *s.remote_open;
  p.remote_id = open.bgp_id;
  // RFC 4760 8: without multiprotocol capabilities the peer speaks IPv4 unicast only.
  p.families.clear();
  std::vector<AfiSafi> theirs = open.caps.multiprotocol;
  if (theirs.empty()) theirs = {kIpv4Unicast};
  for (auto f : theirs)
    if (f == kIpv4Unicast || f == kIpv6Unicast) p.families.insert(f);
  p.gr_negotiated = config_.graceful_restart && open.caps.graceful_restart.has_value();
  p.peer_forwarding_preserved.clear();
  p.peer_restart_time = 0;
  if (open.caps.graceful_restart) {
    p.peer_restart_time = open.caps.graceful_restart->restart_time_s;
    for (const auto& f : open.caps.graceful_restart->families)
      if (f.forwarding_preserved) p.peer_forwarding_preserved.insert(f.afi_safi);
  }
  loop_.Cancel(p.restart_timer);
  p.restart_timer = 0;
  // RFC 4724 4.2: stale routes of families the peer did not preserve go now; the rest wait
  // for its End-of-RIB (or the stale-path timer).
  bool any_stale = false;
  DropRoutes(p, [&](const IpPrefix& prefix, const AdjInEntry& e) {
    if (!e.stale) return false;
    bool keep = p.gr_negotiated && p.peer_forwarding_preserved.count(FamilyOf(prefix));
    any_stale |= keep;
    return !keep;
  });
  if (any_stale) {
    loop_.Cancel(p.stale_timer);
    p.stale_timer = loop_.AddTimer(seconds(config_.stale_path_time_s), [this, &p] {
      p.stale_timer = 0;
      DropRoutes(p, [](const IpPrefix&, const AdjInEntry& e) { return e.stale; });
    });
  }
  // The other connection lost the race.
  if (Session* other = Other(s); other && other->fd >= 0)
    Fire(*other, FsmEvent::kOpenCollisionDump);
  p.adj_out.clear();
  SendAll(p, std::nullopt);
}

void SpeakerImpl::PeerDown(Session& s) {
  Peer& p = *s.peer;
  p.established = nullptr;
  p.adj_out.clear();
  bool graceful = s.graceful_down && p.gr_negotiated && p.peer_restart_time > 0;
  if (!graceful) {
    DropRoutes(p, [](const IpPrefix&, const AdjInEntry&) { return true; });
    return;
  }
  // RFC 4724 4.2: keep the routes, marked stale, for the peer's restart time.
  KR_LOG_INFO("BGP peer {}: keeping {} routes as stale for up to {} s (graceful restart)",
              p.config.address.ToString(), p.adj_in.size(), p.peer_restart_time);
  std::vector<LocRib::Change> changes;
  for (auto& [prefix, entry] : p.adj_in) {
    entry.stale = true;
    if (!entry.accepted) continue;
    // The Loc-RIB holds the copy the import policy produced; produce it again, now stale.
    Route r = RouteFromAdjIn(p, prefix, entry);
    if (import_policy_ && import_policy_(p.config, r) == PolicyVerdict::kReject) continue;
    rib_.Upsert(r, changes);
  }
  Propagate(changes);
  loop_.Cancel(p.restart_timer);
  p.restart_timer = loop_.AddTimer(seconds(p.peer_restart_time), [this, &p] {
    p.restart_timer = 0;
    KR_LOG_INFO("BGP peer {}: restart time over, dropping stale routes",
                p.config.address.ToString());
    DropRoutes(p, [](const IpPrefix&, const AdjInEntry& e) { return e.stale; });
  });
}

Route SpeakerImpl::RouteFromAdjIn(const Peer& peer, const IpPrefix& prefix,
                                  const AdjInEntry& entry) const {
  Route r;
  r.prefix = prefix;
  r.next_hop = entry.next_hop;
  r.attributes = *entry.attrs;
  r.peer = peer.config.address;
  r.peer_asn = peer.config.remote_asn;
  r.peer_router_id = peer.remote_id;
  r.ibgp = IsIbgp(peer);
  r.stale = entry.stale;
  return r;
}

void SpeakerImpl::Learn(Peer& peer, const IpPrefix& prefix,
                        std::shared_ptr<const PathAttributes> attrs, const IpAddress& next_hop,
                        bool stale, std::vector<LocRib::Change>& changes) {
  auto& entry = peer.adj_in[prefix];
  bool was_accepted = entry.accepted;
  entry.attrs = std::move(attrs);
  entry.next_hop = next_hop;
  entry.stale = stale;
  Route route = RouteFromAdjIn(peer, prefix, entry);
  bool accept = true;
  // Loop prevention (RFC 4271 9.1.2, RFC 4456 8).
  if (!route.ibgp && route.attributes.as_path &&
      route.attributes.as_path->Contains(config_.local_asn))
    accept = false;
  if (route.attributes.originator_id && *route.attributes.originator_id == config_.router_id)
    accept = false;
  if (std::find(route.attributes.cluster_list.begin(), route.attributes.cluster_list.end(),
                config_.cluster_id->v4_host_order()) != route.attributes.cluster_list.end())
    accept = false;
  if (accept && import_policy_)
    accept = import_policy_(peer.config, route) == PolicyVerdict::kAccept;
  entry.accepted = accept;
  if (accept) {
    if (!was_accepted) ++peer.accepted;
    rib_.Upsert(route, changes);
  } else if (was_accepted) {
    --peer.accepted;
    rib_.Remove(prefix, peer.config.address, changes);
  }
}

void SpeakerImpl::Unlearn(Peer& peer, const IpPrefix& prefix,
                          std::vector<LocRib::Change>& changes) {
  auto it = peer.adj_in.find(prefix);
  if (it == peer.adj_in.end()) return;
  if (it->second.accepted) {
    --peer.accepted;
    rib_.Remove(prefix, peer.config.address, changes);
  }
  peer.adj_in.erase(it);
}

void SpeakerImpl::ProcessUpdate(Session& s, UpdateMessage& u) {
  Peer& p = *s.peer;
  if (s.prefix_limit_hit) return;
  const std::string who = p.config.address.ToString();
  if (auto eor = u.EndOfRib()) {
    KR_VLOG(1, "BGP peer {}: End-of-RIB", who);
    AfiSafi family = *eor;
    loop_.Cancel(p.stale_timer);
    p.stale_timer = 0;
    DropRoutes(p, [&](const IpPrefix& prefix, const AdjInEntry& e) {
      return e.stale && FamilyOf(prefix) == family;
    });
    return;
  }
  std::vector<LocRib::Change> changes;
  for (const auto& prefix : u.withdrawn) Unlearn(p, prefix, changes);
  if (u.mp_unreach)
    for (const auto& prefix : u.mp_unreach->withdrawn) Unlearn(p, prefix, changes);

  bool ibgp = IsIbgp(p);
  bool withdraw = u.treat_as_withdraw;
  PathAttributes attrs = u.attrs;
  if (!ibgp) {
    // RFC 4271 5.1.5: LOCAL_PREF from an external peer is ignored.
    attrs.local_pref.reset();
    // RFC 4271 6.3: the first AS must be the peer's (treat-as-withdraw per RFC 7606).
    if (attrs.as_path && attrs.as_path->FirstAsn() != p.config.remote_asn &&
        (!u.nlri.empty() || (u.mp_reach && !u.mp_reach->nlri.empty()))) {
      if (++p.malformed_updates <= 10) {
        KR_LOG_WARN("BGP peer {}: AS_PATH does not start with the peer AS {} (treat-as-withdraw)",
                    who, p.config.remote_asn);
      }
      withdraw = true;
    }
  }
  attrs.next_hop.reset();  // kept per route (NEXT_HOP or the MP_REACH next hop)
  auto shared = std::make_shared<const PathAttributes>(std::move(attrs));
  auto announce = [&](const std::vector<IpPrefix>& nlri, const IpAddress& next_hop) {
    // RFC 4271 6.3: a next hop that is our own address is semantically incorrect; the routes
    // are ignored.
    const bool ours = next_hop == s.local_address;
    if (ours && !nlri.empty() && ++p.malformed_updates <= 10) {
      KR_LOG_WARN("BGP peer {}: next hop {} is our own address (routes ignored)", who,
                  next_hop.ToString());
    }
    for (const auto& prefix : nlri) {
      if (withdraw || ours) {
        Unlearn(p, prefix, changes);
      } else if (p.config.max_prefixes && p.adj_in.size() >= p.config.max_prefixes &&
                 !p.adj_in.count(prefix)) {
        OnPrefixLimit(s, FamilyOf(prefix));
        return;
      } else {
        Learn(p, prefix, shared, next_hop, /*stale=*/false, changes);
      }
    }
  };
  if (!u.nlri.empty()) announce(u.nlri, u.attrs.next_hop.value_or(IpAddress()));
  if (u.mp_reach) announce(u.mp_reach->nlri, u.mp_reach->next_hop);
  Propagate(changes);
}

void SpeakerImpl::DoAddPath(const LocalPath& path) {
  Route r;
  r.prefix = path.prefix;
  // Unspecified = next-hop-self, filled in per session at export.
  r.next_hop = path.next_hop.value_or(path.prefix.is_v4() ? IpAddress() : *IpAddress::Parse("::"));
  r.attributes.origin = path.origin;
  r.attributes.as_path = AsPath{};
  r.attributes.as_path->Prepend(path.prepend_asn ? path.prepend_asn : config_.local_asn,
                                path.prepend_count);
  r.attributes.communities = path.communities;
  r.attributes.large_communities = path.large_communities;
  r.attributes.local_pref = path.local_pref;
  r.attributes.med = path.med;
  r.peer_router_id = config_.router_id;
  std::vector<LocRib::Change> changes;
  rib_.Upsert(r, changes);
  Propagate(changes);
}

void SpeakerImpl::DoReapplyPolicies() {
  for (auto& [addr, peer] : peers_) {
    std::vector<LocRib::Change> changes;
    for (auto& [prefix, entry] : peer->adj_in) {
      Learn(*peer, prefix, entry.attrs, entry.next_hop, entry.stale, changes);
    }
    Propagate(changes);
  }
  for (auto& [addr, peer] : peers_)
    if (peer->established) SendAll(*peer, std::nullopt);
}

void SpeakerImpl::Propagate(const std::vector<LocRib::Change>& changes) {
  if (changes.empty()) return;
  for (const auto& c : changes)
    for (const auto& cb : subscribers_) cb(BestPathChange{c.prefix, c.best});
  std::vector<IpPrefix> prefixes;
  prefixes.reserve(changes.size());
  for (const auto& c : changes) prefixes.push_back(c.prefix);
  for (auto& [addr, peer] : peers_)
    if (peer->established) SyncExports(*peer, prefixes);
}

std::optional<ExportedPath> SpeakerImpl::ComputeExport(const Route& best, Peer& to) {
  if (!to.families.count(FamilyOf(best.prefix))) return std::nullopt;
  if (best.peer && *best.peer == to.config.address) return std::nullopt;
  const bool to_ibgp = IsIbgp(to);
  const auto& comms = best.attributes.communities;
  if (std::find(comms.begin(), comms.end(), kNoAdvertise) != comms.end()) return std::nullopt;
  if (!to_ibgp && std::find(comms.begin(), comms.end(), kNoExport) != comms.end())
    return std::nullopt;
  bool reflect = false;
  if (best.ibgp && to_ibgp) {
    // RFC 4456 6: iBGP-learned routes go to iBGP peers only through a reflector: from a
    // client to everyone, from a non-client to clients.
    auto from = peers_.find(*best.peer);
    bool from_client = from != peers_.end() && from->second->config.route_reflector_client;
    if (!from_client && !to.config.route_reflector_client) return std::nullopt;
    reflect = true;
  }
  Route r = best;
  PathAttributes& a = r.attributes;
  for (auto& raw : a.unknown) raw.flags |= 0x20;  // RFC 4271 5: partial once passed on
  if (!a.as_path) a.as_path = AsPath{};
  bool next_hop_unset =
      best.local() && (best.next_hop == IpAddress() || best.next_hop == *IpAddress::Parse("::"));
  if (!to_ibgp) {
    a.local_pref.reset();
    a.originator_id.reset();
    a.cluster_list.clear();
    if (!best.local()) a.med.reset();  // RFC 4271 5.1.4: MED does not leave the next AS
    if (!best.local() || next_hop_unset) r.next_hop = to.established->local_address;
  } else {
    if (!a.local_pref) a.local_pref = 100;
    if (next_hop_unset) r.next_hop = to.established->local_address;
    if (reflect) {
      if (!a.originator_id) a.originator_id = best.peer_router_id;
      a.cluster_list.insert(a.cluster_list.begin(), config_.cluster_id->v4_host_order());
    }
  }
  if (export_policy_ && export_policy_(to.config, r) == PolicyVerdict::kReject) return std::nullopt;
  // Our ASN goes in front after the policy, as GoBGP does, so a policy prepend lands behind it.
  if (!to_ibgp) {
    if (!r.attributes.as_path) r.attributes.as_path = AsPath{};
    r.attributes.as_path->Prepend(config_.local_asn);
  }
  // The next hop must be of the prefix's family (an IPv6 prefix over an IPv4 session needs an
  // explicit IPv6 next hop).
  if (r.next_hop.is_v4() != best.prefix.is_v4()) return std::nullopt;
  r.attributes.next_hop.reset();
  return ExportedPath{std::move(r.attributes), r.next_hop};
}

void SpeakerImpl::SyncExports(Peer& peer, const std::vector<IpPrefix>& prefixes) {
  Session& s = *peer.established;
  struct Group {
    std::shared_ptr<const PathAttributes> attrs;
    std::vector<IpPrefix> prefixes;
  };
  std::map<std::pair<PathAttributes, IpAddress>, Group> announce;
  std::vector<IpPrefix> withdraw_v4, withdraw_v6;
  for (const auto& prefix : prefixes) {
    const Route* best = rib_.Best(prefix);
    std::optional<ExportedPath> want;
    if (best) want = ComputeExport(*best, peer);
    auto it = peer.adj_out.find(prefix);
    if (want) {
      if (it != peer.adj_out.end() && it->second.Same(*want)) continue;
      Group& group = announce[{want->attrs, want->next_hop}];
      if (!group.attrs) group.attrs = std::make_shared<const PathAttributes>(want->attrs);
      group.prefixes.push_back(prefix);
      peer.adj_out[prefix] = OutEntry{group.attrs, want->next_hop};
    } else if (it != peer.adj_out.end()) {
      (prefix.is_v4() ? withdraw_v4 : withdraw_v6).push_back(prefix);
      peer.adj_out.erase(it);
    }
  }
  for (auto* w : {&withdraw_v4, &withdraw_v6})
    for (const auto& bytes : PackWithdrawals(*w, s.codec)) Send(s, bytes);
  for (const auto& [key, group] : announce) {
    // PackAnnouncements wants one family per call.
    std::vector<IpPrefix> v4, v6;
    for (const auto& p : group.prefixes) (p.is_v4() ? v4 : v6).push_back(p);
    for (auto* part : {&v4, &v6})
      for (const auto& bytes : PackAnnouncements(key.first, key.second, *part, s.codec))
        Send(s, bytes);
  }
}

void SpeakerImpl::SendAll(Peer& peer, std::optional<AfiSafi> family) {
  std::vector<IpPrefix> prefixes;
  rib_.ForEach([&](const IpPrefix& prefix, const std::vector<Route>&) {
    if (!family || FamilyOf(prefix) == *family) prefixes.push_back(prefix);
  });
  if (family) {
    // Route refresh: send everything for the family again.
    for (auto it = peer.adj_out.begin(); it != peer.adj_out.end();)
      it = FamilyOf(it->first) == *family ? peer.adj_out.erase(it) : std::next(it);
  }
  SyncExports(peer, prefixes);
  // RFC 4724 2: End-of-RIB after the initial table (harmless for peers without GR).
  Session& s = *peer.established;
  for (auto f : peer.families) {
    if (family && f != *family) continue;
    UpdateMessage eor;
    if (f != kIpv4Unicast) eor.mp_unreach = MpUnreach{f, {}};
    Send(s, Encode(eor, s.codec));
  }
}

std::vector<PeerStatus> SpeakerImpl::DoPeers() {
  std::vector<PeerStatus> out;
  for (auto& [addr, p] : peers_) {
    PeerStatus st;
    st.config = p->config;
    st.config.password = p->config.password.empty() ? "" : "<set>";
    PeerState state = p->config.passive ? PeerState::kActive : PeerState::kIdle;
    for (Session* s : {p->out.get(), p->in.get()})
      if (s && s->state > state) state = s->state;
    st.state = state;
    if (p->established) {
      st.uptime = std::chrono::duration_cast<seconds>(Clock::now() - p->established_at);
      st.negotiated_hold_time_s = p->established->negotiated_hold;
      st.output_queue_bytes = p->established->queued();
      st.remote_router_id = p->remote_id;
    }
    st.prefixes_received = p->accepted;
    st.prefixes_sent = p->adj_out.size();
    st.last_error = p->last_error;
    out.push_back(std::move(st));
  }
  return out;
}

}  // namespace

std::unique_ptr<Speaker> NewSpeaker(const GlobalConfig& config) {
  return std::make_unique<SpeakerImpl>(config);
}

}  // namespace kr::bgp
