// SPDX-License-Identifier: Apache-2.0
#include "kube_router/bgp/rib.h"

#include <algorithm>

namespace kr::bgp {
namespace {

constexpr uint32_t kDefaultLocalPref = 100;

// What the decision process looks at, for both the public Route and the interned RibPath.
struct Candidate {
  const PathAttributes& a;
  bool local;
  bool ibgp;
  const IpAddress& router_id;
  const std::optional<IpAddress>& peer;
};

uint32_t LocalPref(const Candidate& c) { return c.a.local_pref.value_or(kDefaultLocalPref); }
size_t PathLength(const Candidate& c) { return c.a.as_path ? c.a.as_path->Length() : 0; }
int OriginRank(const Candidate& c) {
  return static_cast<int>(c.a.origin.value_or(Origin::kIncomplete));
}
// RFC 4456 9: a reflected route is compared by its ORIGINATOR_ID instead of the router ID.
uint32_t RouterIdOf(const Candidate& c) {
  return c.a.originator_id ? c.a.originator_id->v4_host_order() : c.router_id.v4_host_order();
}

bool Better(const Candidate& a, const Candidate& b) {
  if (LocalPref(a) != LocalPref(b)) return LocalPref(a) > LocalPref(b);
  if (a.local != b.local) return a.local;
  if (PathLength(a) != PathLength(b)) return PathLength(a) < PathLength(b);
  if (OriginRank(a) != OriginRank(b)) return OriginRank(a) < OriginRank(b);
  // RFC 4271 9.1.2.2 c): MED only compares paths from the same neighbouring AS; a missing MED
  // is the lowest value (0).
  uint32_t as_a = a.a.as_path ? a.a.as_path->FirstAsn() : 0;
  uint32_t as_b = b.a.as_path ? b.a.as_path->FirstAsn() : 0;
  if (as_a == as_b) {
    uint32_t med_a = a.a.med.value_or(0), med_b = b.a.med.value_or(0);
    if (med_a != med_b) return med_a < med_b;
  }
  if (a.ibgp != b.ibgp) return !a.ibgp;
  if (RouterIdOf(a) != RouterIdOf(b)) return RouterIdOf(a) < RouterIdOf(b);
  if (a.a.cluster_list.size() != b.a.cluster_list.size())
    return a.a.cluster_list.size() < b.a.cluster_list.size();
  return a.peer.value_or(IpAddress()) < b.peer.value_or(IpAddress());
}

Candidate Of(const Route& r) { return {r.attributes, r.local(), r.ibgp, r.peer_router_id, r.peer}; }
Candidate Of(const RibPath& p) {
  return {p.info->attributes, !p.peer().has_value(), p.source->ibgp, p.source->peer_router_id,
          p.peer()};
}

// Boost-style mixing; the values only need to spread over the interner's buckets.
void Mix(size_t& seed, size_t v) { seed ^= v + 0x9e3779b97f4a7c15ULL + (seed << 6) + (seed >> 2); }
void MixIp(size_t& seed, const IpAddress& ip) {
  Mix(seed, static_cast<size_t>(ip.family()));
  for (uint8_t b : ip.bytes()) Mix(seed, b);
}

}  // namespace

size_t HashPathInfo(const PathInfo& info) {
  const PathAttributes& a = info.attributes;
  size_t h = 0;
  MixIp(h, info.next_hop);
  Mix(h, a.origin ? 1 + static_cast<size_t>(*a.origin) : 0);
  if (a.as_path) {
    for (const auto& seg : a.as_path->segments) {
      Mix(h, static_cast<size_t>(seg.type));
      for (uint32_t asn : seg.asns) Mix(h, asn);
    }
  }
  Mix(h, a.med ? 1 + static_cast<size_t>(*a.med) : 0);
  Mix(h, a.local_pref ? 1 + static_cast<size_t>(*a.local_pref) : 0);
  Mix(h, a.atomic_aggregate);
  for (uint32_t c : a.communities) Mix(h, c);
  for (const auto& lc : a.large_communities) {
    Mix(h, lc.global_admin);
    Mix(h, lc.local_data1);
    Mix(h, lc.local_data2);
  }
  for (uint32_t c : a.cluster_list) Mix(h, c);
  if (a.originator_id) MixIp(h, *a.originator_id);
  // Aggregator and unknown attributes are rare: equality sorts them out.
  Mix(h, a.unknown.size());
  return h;
}

size_t HashPathSource(const PathSource& s) {
  size_t h = 0;
  if (s.peer) MixIp(h, *s.peer);
  Mix(h, s.peer_asn);
  MixIp(h, s.peer_router_id);
  Mix(h, s.ibgp);
  Mix(h, s.stale);
  return h;
}

RibPath PathInterners::FromRoute(const Route& route) {
  RibPath p;
  p.source = sources.Intern(
      PathSource{route.peer, route.peer_asn, route.peer_router_id, route.ibgp, route.stale});
  p.received = infos.Intern(PathInfo{route.attributes, route.next_hop});
  p.info = p.received;
  return p;
}

Route ToRoute(const IpPrefix& prefix, const RibPath& path) {
  Route r;
  r.prefix = prefix;
  r.next_hop = path.info->next_hop;
  r.attributes = path.info->attributes;
  r.peer = path.source->peer;
  r.peer_asn = path.source->peer_asn;
  r.peer_router_id = path.source->peer_router_id;
  r.ibgp = path.source->ibgp;
  r.stale = path.source->stale;
  return r;
}

bool BetterPath(const Route& a, const Route& b) { return Better(Of(a), Of(b)); }
bool BetterPath(const RibPath& a, const RibPath& b) { return Better(Of(a), Of(b)); }

RibPath PathList::operator[](size_t i) const {
  if (source_) return RibPath{source_, info_, info_};
  return (*more_)[i];
}

void PathList::Clear() {
  if (source_) {
    info_.~Interned<PathInfo>();
    source_ = {};
  } else {
    delete more_;
  }
  more_ = nullptr;
}

std::vector<RibPath> PathList::Take() {
  std::vector<RibPath> out;
  if (source_) {
    Interned<PathInfo> info = std::move(info_);
    out.push_back(RibPath{std::move(source_), info, info});
  } else if (more_) {
    out = std::move(*more_);
  }
  Clear();
  return out;
}

void PathList::Put(std::vector<RibPath> paths) {
  Clear();
  if (paths.size() == 1 && paths[0].usable() && paths[0].received == paths[0].info) {
    source_ = std::move(paths[0].source);
    new (&info_) Interned<PathInfo>(std::move(paths[0].info));
  } else if (!paths.empty()) {
    more_ = new std::vector<RibPath>(std::move(paths));
  }
}

void LocRib::Select(std::vector<RibPath>& paths) {
  size_t best = paths.size();
  for (size_t i = 0; i < paths.size(); ++i) {
    if (!paths[i].usable()) continue;
    if (best == paths.size() || BetterPath(paths[i], paths[best])) best = i;
  }
  if (best != paths.size() && best != 0) std::swap(paths[0], paths[best]);
}

std::optional<RibPath> LocRib::BestOf(const std::vector<RibPath>& paths) {
  if (paths.empty() || !paths[0].usable()) return std::nullopt;
  return paths[0];
}

namespace {
// Interned handles: equal pointers are equal values.
bool SamePath(const std::optional<RibPath>& a, const std::optional<RibPath>& b) {
  if (a.has_value() != b.has_value()) return false;
  return !a || (a->source == b->source && a->info == b->info);
}
}  // namespace

void LocRib::Upsert(const IpPrefix& prefix, RibPath path, std::vector<Change>& changes) {
  PathList& list = table_[prefix];
  std::vector<RibPath> paths = list.Take();
  std::optional<RibPath> old_best = BestOf(paths);
  auto it = std::find_if(paths.begin(), paths.end(),
                         [&](const RibPath& p) { return p.peer() == path.peer(); });
  if (it != paths.end()) {
    *it = std::move(path);
  } else {
    paths.push_back(std::move(path));
  }
  Select(paths);
  std::optional<RibPath> new_best = BestOf(paths);
  list.Put(std::move(paths));
  if (!SamePath(old_best, new_best)) changes.push_back({prefix, std::move(new_best)});
}

void LocRib::Remove(const IpPrefix& prefix, const std::optional<IpAddress>& source,
                    std::vector<Change>& changes) {
  auto t = table_.find(prefix);
  if (t == table_.end()) return;
  std::vector<RibPath> paths = t->second.Take();
  auto it = std::find_if(paths.begin(), paths.end(),
                         [&](const RibPath& p) { return p.peer() == source; });
  if (it == paths.end()) {
    t->second.Put(std::move(paths));
    return;
  }
  std::optional<RibPath> old_best = BestOf(paths);
  paths.erase(it);
  Select(paths);
  std::optional<RibPath> new_best = BestOf(paths);
  if (paths.empty()) {
    table_.erase(t);
  } else {
    t->second.Put(std::move(paths));
  }
  if (!SamePath(old_best, new_best)) changes.push_back({prefix, std::move(new_best)});
}

std::optional<RibPath> LocRib::Best(const IpPrefix& prefix) const {
  auto t = table_.find(prefix);
  if (t == table_.end()) return std::nullopt;
  RibPath first = t->second[0];
  if (!first.usable()) return std::nullopt;
  return first;
}

std::optional<RibPath> LocRib::Find(const IpPrefix& prefix,
                                    const std::optional<IpAddress>& source) const {
  const PathList* paths = Paths(prefix);
  if (!paths) return std::nullopt;
  for (size_t i = 0; i < paths->size(); ++i) {
    RibPath p = (*paths)[i];
    if (p.peer() == source) return p;
  }
  return std::nullopt;
}

const PathList* LocRib::Paths(const IpPrefix& prefix) const {
  auto t = table_.find(prefix);
  return t == table_.end() ? nullptr : &t->second;
}

std::optional<IpPrefix> LocRib::Next(const std::optional<IpPrefix>& after) const {
  auto it = after ? table_.upper_bound(*after) : table_.begin();
  if (it == table_.end()) return std::nullopt;
  return it->first;
}

void LocRib::ForEach(const std::function<void(const IpPrefix&, const PathList&)>& fn) const {
  for (const auto& [prefix, paths] : table_) fn(prefix, paths);
}

}  // namespace kr::bgp
