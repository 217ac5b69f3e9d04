// SPDX-License-Identifier: Apache-2.0
#include "kube_router/bgp/rib.h"

#include <algorithm>

namespace kr::bgp {
namespace {

constexpr uint32_t kDefaultLocalPref = 100;

uint32_t LocalPref(const Route& r) { return r.attributes.local_pref.value_or(kDefaultLocalPref); }
size_t PathLength(const Route& r) {
  return r.attributes.as_path ? r.attributes.as_path->Length() : 0;
}
int OriginRank(const Route& r) {
  return static_cast<int>(r.attributes.origin.value_or(Origin::kIncomplete));
}
// RFC 4456 9: a reflected route is compared by its ORIGINATOR_ID instead of the router ID.
uint32_t RouterIdOf(const Route& r) {
  return r.attributes.originator_id ? r.attributes.originator_id->v4_host_order()
                                    : r.peer_router_id.v4_host_order();
}

}  // namespace

bool BetterPath(const Route& a, const Route& b) {
  if (LocalPref(a) != LocalPref(b)) return LocalPref(a) > LocalPref(b);
  if (a.local() != b.local()) return a.local();
  if (PathLength(a) != PathLength(b)) return PathLength(a) < PathLength(b);
  if (OriginRank(a) != OriginRank(b)) return OriginRank(a) < OriginRank(b);
  // RFC 4271 9.1.2.2 c): MED only compares paths from the same neighbouring AS; a missing MED
  // is the lowest value (0).
  uint32_t as_a = a.attributes.as_path ? a.attributes.as_path->FirstAsn() : 0;
  uint32_t as_b = b.attributes.as_path ? b.attributes.as_path->FirstAsn() : 0;
  if (as_a == as_b) {
    uint32_t med_a = a.attributes.med.value_or(0), med_b = b.attributes.med.value_or(0);
    if (med_a != med_b) return med_a < med_b;
  }
  if (a.ibgp != b.ibgp) return !a.ibgp;
  if (RouterIdOf(a) != RouterIdOf(b)) return RouterIdOf(a) < RouterIdOf(b);
  if (a.attributes.cluster_list.size() != b.attributes.cluster_list.size())
    return a.attributes.cluster_list.size() < b.attributes.cluster_list.size();
  return a.peer.value_or(IpAddress()) < b.peer.value_or(IpAddress());
}

bool LocRib::Select(std::vector<Route>& paths) {
  size_t best = 0;
  for (size_t i = 1; i < paths.size(); ++i)
    if (BetterPath(paths[i], paths[best])) best = i;
  if (best == 0) return false;
  std::swap(paths[0], paths[best]);
  return true;
}

namespace {
bool SameRoute(const Route& a, const Route& b) {
  return a.peer == b.peer && a.next_hop == b.next_hop && a.attributes == b.attributes &&
         a.stale == b.stale;
}
}  // namespace

void LocRib::Upsert(const Route& route, std::vector<Change>& changes) {
  auto& paths = table_[route.prefix];
  std::optional<Route> old_best;
  if (!paths.empty()) old_best = paths[0];
  auto it = std::find_if(paths.begin(), paths.end(),
                         [&](const Route& r) { return r.peer == route.peer; });
  if (it != paths.end()) {
    *it = route;
  } else {
    paths.push_back(route);
  }
  Select(paths);
  if (!old_best || !SameRoute(*old_best, paths[0])) changes.push_back({route.prefix, paths[0]});
}

void LocRib::Remove(const IpPrefix& prefix, const std::optional<IpAddress>& source,
                    std::vector<Change>& changes) {
  auto t = table_.find(prefix);
  if (t == table_.end()) return;
  auto& paths = t->second;
  auto it =
      std::find_if(paths.begin(), paths.end(), [&](const Route& r) { return r.peer == source; });
  if (it == paths.end()) return;
  bool was_best = it == paths.begin();
  paths.erase(it);
  if (paths.empty()) {
    table_.erase(t);
    changes.push_back({prefix, std::nullopt});
    return;
  }
  Select(paths);
  if (was_best) changes.push_back({prefix, paths[0]});
}

const Route* LocRib::Best(const IpPrefix& prefix) const {
  auto t = table_.find(prefix);
  return t == table_.end() ? nullptr : &t->second[0];
}

void LocRib::ForEach(
    const std::function<void(const IpPrefix&, const std::vector<Route>&)>& fn) const {
  for (const auto& [prefix, paths] : table_) fn(prefix, paths);
}

}  // namespace kr::bgp
