// SPDX-License-Identifier: Apache-2.0
// The speaker's routes (see speaker_impl.h): UPDATEs into each peer's Adj-RIB-In (kept as
// received, before import policy), accepted paths into the Loc-RIB, best-path changes out to
// subscribers and into each established peer's Adj-RIB-Out (iBGP split horizon, RFC 4456
// reflection, export policy); graceful restart's stale routes (RFC 4724) and the full table for
// a new session or a route refresh (RFC 2918).
#include <algorithm>
#include <tuple>
#include <unordered_map>

#include "kube_router/base/log.h"
#include "speaker_impl.h"

namespace kr::bgp::speaker_internal {
namespace {
// Prefixes exported per step. The queue bound is checked between steps, so at most one step's
// UPDATEs land on top of it.
constexpr size_t kExportBatch = 512;
}  // namespace

// ---- routes ----------------------------------------------------------------------------------

void SpeakerImpl::DropRoutes(Peer& peer,
                             const std::function<bool(const IpPrefix&, const RibPath&)>& which) {
  if (peer.received == 0) return;
  std::vector<LocRib::Change> changes;
  const std::optional<IpAddress> from = peer.config.address;
  for (auto prefix = rib_.Next(std::nullopt); prefix; prefix = rib_.Next(prefix)) {
    auto path = rib_.Find(*prefix, from);
    if (path && which(*prefix, *path)) Unlearn(peer, *prefix, changes);
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
  p.source = interners_.sources.Intern(
      PathSource{p.config.address, p.config.remote_asn, p.remote_id, IsIbgp(p), false});
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
  DropRoutes(p, [&](const IpPrefix& prefix, const RibPath& path) {
    if (!path.source->stale) return false;
    bool keep = p.gr_negotiated && p.peer_forwarding_preserved.count(FamilyOf(prefix));
    any_stale |= keep;
    return !keep;
  });
  if (any_stale) {
    loop_.Cancel(p.stale_timer);
    p.stale_timer = loop_.AddTimer(seconds(config_.stale_path_time_s), [this, &p] {
      p.stale_timer = 0;
      DropRoutes(p, [](const IpPrefix&, const RibPath& path) { return path.source->stale; });
    });
  }
  // The other connection lost the race.
  if (Session* other = Other(s); other && other->fd) Fire(*other, FsmEvent::kOpenCollisionDump);
  ResetExports(p);
  SendAll(p, std::nullopt);
}

void SpeakerImpl::PeerDown(Session& s) {
  Peer& p = *s.peer;
  p.established = nullptr;
  ResetExports(p);
  bool graceful = s.graceful_down && p.gr_negotiated && p.peer_restart_time > 0;
  if (!graceful) {
    DropRoutes(p, [](const IpPrefix&, const RibPath&) { return true; });
    return;
  }
  // RFC 4724 4.2: keep the routes, marked stale, for the peer's restart time.
  KR_LOG_INFO("BGP peer {}: keeping {} routes as stale for up to {} s (graceful restart)",
              p.config.address.ToString(), p.received, p.peer_restart_time);
  std::vector<LocRib::Change> changes;
  const std::optional<IpAddress> from = p.config.address;
  for (auto prefix = rib_.Next(std::nullopt); prefix; prefix = rib_.Next(prefix)) {
    auto path = rib_.Find(*prefix, from);
    if (!path || path->source->stale) continue;
    RibPath stale = *path;
    PathSource source = *path->source;
    source.stale = true;
    stale.source = interners_.sources.Intern(std::move(source));
    rib_.Upsert(*prefix, std::move(stale), changes);
  }
  Propagate(changes);
  loop_.Cancel(p.restart_timer);
  p.restart_timer = loop_.AddTimer(seconds(p.peer_restart_time), [this, &p] {
    p.restart_timer = 0;
    KR_LOG_INFO("BGP peer {}: restart time over, dropping stale routes",
                p.config.address.ToString());
    DropRoutes(p, [](const IpPrefix&, const RibPath& path) { return path.source->stale; });
  });
}

void SpeakerImpl::Learn(Peer& peer, const IpPrefix& prefix, Interned<PathInfo> received,
                        const Interned<PathSource>& source, std::vector<LocRib::Change>& changes) {
  const std::optional<IpAddress> from = peer.config.address;
  auto old = rib_.Find(prefix, from);
  const bool was_accepted = old && old->usable();
  if (!old) ++peer.received;
  const PathAttributes& a = received->attributes;
  bool accept = true;
  // Loop prevention (RFC 4271 9.1.2, RFC 4456 8).
  if (!source->ibgp && a.as_path && a.as_path->Contains(config_.local_asn)) accept = false;
  if (a.originator_id && *a.originator_id == config_.router_id) accept = false;
  if (std::find(a.cluster_list.begin(), a.cluster_list.end(),
                config_.cluster_id->v4_host_order()) != a.cluster_list.end())
    accept = false;
  RibPath path{source, received, {}};
  if (accept && import_policy_) {
    // The policy edits a copy; what it returns is interned again, so a change made for this
    // path never reaches another path sharing the received set.
    Route route = ToRoute(prefix, RibPath{source, received, received});
    accept = import_policy_(peer.config, route) == PolicyVerdict::kAccept;
    if (accept) {
      route.attributes.next_hop.reset();
      path.info =
          route.attributes == a && route.next_hop == received->next_hop
              ? received
              : interners_.infos.Intern(PathInfo{std::move(route.attributes), route.next_hop});
    }
  } else if (accept) {
    path.info = received;
  }
  if (accept && !was_accepted) ++peer.accepted;
  if (!accept && was_accepted) --peer.accepted;
  rib_.Upsert(prefix, std::move(path), changes);
}

void SpeakerImpl::Unlearn(Peer& peer, const IpPrefix& prefix,
                          std::vector<LocRib::Change>& changes) {
  const std::optional<IpAddress> from = peer.config.address;
  auto path = rib_.Find(prefix, from);
  if (!path) return;
  --peer.received;
  if (path->usable()) --peer.accepted;
  rib_.Remove(prefix, from, changes);
}

void SpeakerImpl::ProcessUpdate(Session& s, const UpdateMessage& u) {
  Peer& p = *s.peer;
  if (s.prefix_limit_hit) return;
  const std::string who = p.config.address.ToString();
  if (auto eor = u.EndOfRib()) {
    KR_VLOG(1, "BGP peer {}: End-of-RIB", who);
    AfiSafi family = *eor;
    loop_.Cancel(p.stale_timer);
    p.stale_timer = 0;
    DropRoutes(p, [&](const IpPrefix& prefix, const RibPath& path) {
      return path.source->stale && FamilyOf(prefix) == family;
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
  attrs.next_hop.reset();  // kept in PathInfo (NEXT_HOP or the MP_REACH next hop)
  auto announce = [&](const std::vector<IpPrefix>& nlri, const IpAddress& next_hop) {
    // Interned: every prefix of every UPDATE with these attributes shares one set.
    Interned<PathInfo> info;
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
      } else if (p.config.max_prefixes && p.received >= p.config.max_prefixes &&
                 !rib_.Find(prefix, p.config.address)) {
        OnPrefixLimit(s, FamilyOf(prefix));
        return;
      } else {
        if (!info) info = interners_.infos.Intern(PathInfo{attrs, next_hop});
        Learn(p, prefix, info, p.source, changes);
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
  rib_.Upsert(r.prefix, interners_.FromRoute(r), changes);
  Propagate(changes);
}

void SpeakerImpl::DoReapplyPolicies() {
  std::vector<LocRib::Change> changes;
  for (auto prefix = rib_.Next(std::nullopt); prefix; prefix = rib_.Next(prefix)) {
    // Copied: Learn replaces the paths it runs over.
    std::vector<RibPath> learned;
    const PathList& paths = *rib_.Paths(*prefix);
    for (size_t i = 0; i < paths.size(); ++i)
      if (paths[i].peer()) learned.push_back(paths[i]);
    for (const RibPath& path : learned) {
      auto peer = peers_.find(*path.peer());
      if (peer != peers_.end()) Learn(*peer->second, *prefix, path.received, path.source, changes);
    }
  }
  Propagate(changes);
  for (auto& [addr, peer] : peers_)
    if (peer->established) SendAll(*peer, std::nullopt);
}

void SpeakerImpl::Propagate(const std::vector<LocRib::Change>& changes) {
  if (changes.empty()) return;
  for (const auto& c : changes) {
    if (subscribers_.empty()) break;
    BestPathChange change{c.prefix, std::nullopt};
    if (c.best) change.best = ToRoute(c.prefix, *c.best);
    for (const auto& cb : subscribers_) cb(change);
  }
  std::vector<IpPrefix> prefixes;
  prefixes.reserve(changes.size());
  for (const auto& c : changes) prefixes.push_back(c.prefix);
  for (auto& [addr, peer] : peers_)
    if (peer->established) ExportPrefixes(*peer, prefixes);
}

void SpeakerImpl::ResetExports(Peer& peer) {
  peer.adj_out.clear();
  peer.export_pending.clear();
  peer.walking = false;
  peer.walk_after.reset();
  peer.walk_families.clear();
  peer.walk_resend.clear();
  peer.eor_due.clear();
}

void SpeakerImpl::ExportPrefixes(Peer& peer, const std::vector<IpPrefix>& prefixes) {
  Session& s = *peer.established;
  size_t i = 0;
  while (i < prefixes.size() && !Throttled(s) && peer.established == &s) {
    const size_t n = std::min(kExportBatch, prefixes.size() - i);
    SyncExports(peer, std::span<const IpPrefix>(prefixes).subspan(i, n));
    i += n;
  }
  // The rest waits for the queue to drain; only the prefix is remembered, its state is read
  // from the Loc-RIB when it goes out.
  peer.export_pending.insert(prefixes.begin() + static_cast<long>(i), prefixes.end());
}

void SpeakerImpl::Pump(Peer& peer) {
  if (!peer.established) return;
  Session& s = *peer.established;
  std::vector<IpPrefix> batch;
  while (!Throttled(s) && peer.established == &s) {
    batch.clear();
    while (batch.size() < kExportBatch && !peer.export_pending.empty())
      batch.push_back(peer.export_pending.extract(peer.export_pending.begin()).value());
    if (!batch.empty()) {
      SyncExports(peer, batch);
      continue;
    }
    if (!peer.walking) break;
    std::optional<IpPrefix> next = rib_.Next(peer.walk_after);
    for (; next && batch.size() < kExportBatch; next = rib_.Next(next)) {
      peer.walk_after = next;
      if (peer.walk_families.count(FamilyOf(*next))) batch.push_back(*next);
    }
    SyncExports(peer, batch, peer.walk_resend);
    if (next) continue;
    // RFC 4724 2: End-of-RIB after the table (harmless for peers without GR).
    peer.walking = false;
    peer.walk_families.clear();
    peer.walk_resend.clear();
    for (AfiSafi f : peer.eor_due) {
      UpdateMessage eor;
      if (f != kIpv4Unicast) eor.mp_unreach = MpUnreach{f, {}};
      Send(s, Encode(eor, s.codec));
    }
    peer.eor_due.clear();
  }
}

std::optional<Interned<PathInfo>> SpeakerImpl::ComputeExport(const IpPrefix& prefix,
                                                             const RibPath& best, Peer& to) {
  if (!to.families.count(FamilyOf(prefix))) return std::nullopt;
  if (best.peer() && *best.peer() == to.config.address) return std::nullopt;
  const bool to_ibgp = IsIbgp(to);
  const auto& comms = best.info->attributes.communities;
  if (std::find(comms.begin(), comms.end(), kNoAdvertise) != comms.end()) return std::nullopt;
  if (!to_ibgp && std::find(comms.begin(), comms.end(), kNoExport) != comms.end())
    return std::nullopt;
  bool reflect = false;
  if (best.source->ibgp && to_ibgp) {
    // RFC 4456 6: iBGP-learned routes go to iBGP peers only through a reflector: from a
    // client to everyone, from a non-client to clients.
    auto from = peers_.find(*best.peer());
    bool from_client = from != peers_.end() && from->second->config.route_reflector_client;
    if (!from_client && !to.config.route_reflector_client) return std::nullopt;
    reflect = true;
  }
  // A copy: the interned set is shared with other paths and never changed in place.
  Route r = ToRoute(prefix, best);
  PathAttributes& a = r.attributes;
  for (auto& raw : a.unknown) raw.flags |= 0x20;  // RFC 4271 5: partial once passed on
  if (!a.as_path) a.as_path = AsPath{};
  bool next_hop_unset =
      r.local() && (r.next_hop == IpAddress() || r.next_hop == *IpAddress::Parse("::"));
  if (!to_ibgp) {
    a.local_pref.reset();
    a.originator_id.reset();
    a.cluster_list.clear();
    if (!r.local()) a.med.reset();  // RFC 4271 5.1.4: MED does not leave the next AS
    if (!r.local() || next_hop_unset) r.next_hop = to.established->local_address;
  } else {
    if (!a.local_pref) a.local_pref = 100;
    if (next_hop_unset) r.next_hop = to.established->local_address;
    if (reflect) {
      if (!a.originator_id) a.originator_id = best.source->peer_router_id;
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
  if (r.next_hop.is_v4() != prefix.is_v4()) return std::nullopt;
  r.attributes.next_hop.reset();
  return interners_.infos.Intern(PathInfo{std::move(r.attributes), r.next_hop});
}

void SpeakerImpl::SyncExports(Peer& peer, std::span<const IpPrefix> prefixes,
                              const std::set<AfiSafi>& resend) {
  Session& s = *peer.established;
  // Prefixes with the same exported set go out together, in order of first appearance.
  struct Group {
    Interned<PathInfo> info;
    std::vector<IpPrefix> v4, v6;
  };
  std::vector<Group> groups;
  std::unordered_map<const PathInfo*, size_t> group_of;
  // Without an export policy the result depends only on the path's source and attributes (and
  // the family), which most prefixes share: compute it once per combination.
  std::map<std::tuple<const PathSource*, const PathInfo*, bool>, std::optional<Interned<PathInfo>>>
      memo;
  std::vector<IpPrefix> withdraw_v4, withdraw_v6;
  for (const auto& prefix : prefixes) {
    auto best = rib_.Best(prefix);
    std::optional<Interned<PathInfo>> want;
    if (best && export_policy_) {
      want = ComputeExport(prefix, *best, peer);
    } else if (best) {
      auto key = std::make_tuple(best->source.get(), best->info.get(), prefix.is_v4());
      auto m = memo.find(key);
      if (m == memo.end()) m = memo.emplace(key, ComputeExport(prefix, *best, peer)).first;
      want = m->second;
    }
    auto it = peer.adj_out.find(prefix);
    if (want) {
      if (it != peer.adj_out.end() && it->second == *want && !resend.count(FamilyOf(prefix)))
        continue;
      auto [g, added] = group_of.emplace(want->get(), groups.size());
      if (added) groups.push_back(Group{*want, {}, {}});
      (prefix.is_v4() ? groups[g->second].v4 : groups[g->second].v6).push_back(prefix);
      if (it != peer.adj_out.end()) {
        it->second = std::move(*want);
      } else {
        peer.adj_out.emplace(prefix, std::move(*want));
      }
    } else if (it != peer.adj_out.end()) {
      (prefix.is_v4() ? withdraw_v4 : withdraw_v6).push_back(prefix);
      peer.adj_out.erase(it);
    }
  }
  for (auto* w : {&withdraw_v4, &withdraw_v6})
    for (const auto& bytes : PackWithdrawals(*w, s.codec)) Send(s, bytes);
  for (const Group& group : groups) {
    // PackAnnouncements wants one family per call.
    for (const auto* part : {&group.v4, &group.v6})
      for (const auto& bytes :
           PackAnnouncements(group.info->attributes, group.info->next_hop, *part, s.codec))
        Send(s, bytes);
  }
}

void SpeakerImpl::SendAll(Peer& peer, std::optional<AfiSafi> family) {
  // A walk over the Loc-RIB in prefix order, restarted from the beginning. A route refresh
  // re-sends its family even where the Adj-RIB-Out says the peer has it; the Adj-RIB-Out stays,
  // so withdrawals of prefixes that left meanwhile still go out.
  for (AfiSafi f : peer.families) {
    if (family && f != *family) continue;
    peer.walk_families.insert(f);
    if (family) peer.walk_resend.insert(f);
    peer.eor_due.insert(f);
  }
  peer.walking = true;
  peer.walk_after.reset();
  Pump(peer);
}

}  // namespace kr::bgp::speaker_internal
