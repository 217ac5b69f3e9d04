// SPDX-License-Identifier: Apache-2.0
// The speaker API: every public call posts a task to the event loop (or waits for its answer),
// start and stop, peer configuration and the status snapshot. Sessions are in session.cc,
// routes in adj_ribs.cc (see speaker_impl.h).
#include "kube_router/bgp/speaker.h"

#include <sys/epoll.h>
#include <unistd.h>

#include <cstdlib>

#include "kube_router/base/log.h"
#include "socket_util.h"
#include "speaker_impl.h"

namespace kr::bgp {
namespace speaker_internal {

// ---- API -------------------------------------------------------------------------------------

SpeakerImpl::SpeakerImpl(const GlobalConfig& config) : config_(config) {
  if (!config_.cluster_id) config_.cluster_id = config_.router_id;
}

SpeakerImpl::~SpeakerImpl() { Stop(false); }

void SpeakerImpl::AddPeer(const PeerConfig& peer) {
  loop_.Post([this, peer] { DoAddPeer(peer); });
}

void SpeakerImpl::UpdatePeer(const PeerConfig& peer) { AddPeer(peer); }

void SpeakerImpl::RemovePeer(const IpAddress& address) {
  loop_.Post([this, address] { DoRemovePeer(address); });
}

void SpeakerImpl::AddPath(const LocalPath& path) {
  loop_.Post([this, path] { DoAddPath(path); });
}

void SpeakerImpl::WithdrawPath(const IpPrefix& prefix) {
  loop_.Post([this, prefix] {
    std::vector<LocRib::Change> changes;
    rib_.Remove(prefix, std::nullopt, changes);
    Propagate(changes);
  });
}

void SpeakerImpl::SetImportPolicy(ImportPolicy policy) {
  loop_.Post([this, policy] { import_policy_ = policy; });
}

void SpeakerImpl::SetExportPolicy(ExportPolicy policy) {
  loop_.Post([this, policy] { export_policy_ = policy; });
}

void SpeakerImpl::ReapplyPolicies() {
  loop_.Post([this] { DoReapplyPolicies(); });
}

void SpeakerImpl::SubscribeBestPaths(BestPathCallback callback) {
  loop_.Post([this, callback] {
    subscribers_.push_back(callback);
    rib_.ForEach([&](const IpPrefix& prefix, const PathList& paths) {
      if (paths[0].usable()) callback(BestPathChange{prefix, ToRoute(prefix, paths[0])});
    });
  });
}

std::vector<PeerStatus> SpeakerImpl::Peers() {
  return Query<std::vector<PeerStatus>>([this] { return DoPeers(); });
}

std::vector<Route> SpeakerImpl::Rib() {
  return Query<std::vector<Route>>([this] {
    std::vector<Route> out;
    rib_.ForEach([&](const IpPrefix& prefix, const PathList& paths) {
      for (size_t i = 0; i < paths.size(); ++i)
        if (paths[i].usable()) out.push_back(ToRoute(prefix, paths[i]));
    });
    return out;
  });
}

std::vector<Route> SpeakerImpl::BestPaths() {
  return Query<std::vector<Route>>([this] {
    std::vector<Route> out;
    rib_.ForEach([&](const IpPrefix& prefix, const PathList& paths) {
      if (paths[0].usable()) out.push_back(ToRoute(prefix, paths[0]));
    });
    return out;
  });
}

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
        listeners_.clear();  // closes those already open
        return fd.status().Context("BGP listen");
      }
      listeners_.emplace_back(*fd);
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
        if (!s || !s->fd) continue;
        if (!graceful_restart && s->state >= PeerState::kOpenSent) {
          Send(*s, Encode(NotificationMessage{err::kCease, err::kAdminShutdown, {}}, s->codec));
        }
        CancelTimers(*s);
        CloseFd(*s);
      }
    }
    for (const auto& l : listeners_) loop_.Unwatch(l.get());
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
  for (const auto& listener : listeners_) {
    const int l = listener.get();
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
    if (!s || !s->fd) continue;
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
  DropRoutes(p, [](const IpPrefix&, const RibPath&) { return true; });
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

// ---- status ----------------------------------------------------------------------------------

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

}  // namespace speaker_internal

std::unique_ptr<Speaker> NewSpeaker(const GlobalConfig& config) {
  return std::make_unique<speaker_internal::SpeakerImpl>(config);
}

}  // namespace kr::bgp
