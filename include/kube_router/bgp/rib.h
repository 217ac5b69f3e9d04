// SPDX-License-Identifier: Apache-2.0
// The Loc-RIB: every usable path per prefix (local ones and, after import policy, those from
// peers) and the best one chosen by the RFC 4271 9.1.2 decision process. Single-threaded (the
// speaker thread owns it); no I/O.
#pragma once

#include <functional>
#include <map>
#include <optional>
#include <vector>

#include "kube_router/bgp/types.h"

namespace kr::bgp {

// RFC 4271 9.1.2.2 tie-breaking (plus RFC 4456 9 for reflected routes): true when `a` is
// preferred over `b`. Order: local-pref (100 if absent), locally originated, AS path length,
// origin, MED (only between paths from the same neighbour AS), eBGP over iBGP, router ID
// (ORIGINATOR_ID when present), CLUSTER_LIST length, peer address.
bool BetterPath(const Route& a, const Route& b);

class LocRib {
 public:
  struct Change {
    IpPrefix prefix;
    std::optional<Route> best;  // unset: nothing left for the prefix
  };

  // Adds or replaces the path for route.prefix from route.peer (unset = local). Appends to
  // `changes` when the best path changed (in identity or content).
  void Upsert(const Route& route, std::vector<Change>& changes);
  // Removes the path for `prefix` from `source` (unset = local), if any.
  void Remove(const IpPrefix& prefix, const std::optional<IpAddress>& source,
              std::vector<Change>& changes);

  const Route* Best(const IpPrefix& prefix) const;
  size_t prefix_count() const { return table_.size(); }
  // Visits prefixes in order; paths[0] is the best.
  void ForEach(const std::function<void(const IpPrefix&, const std::vector<Route>&)>& fn) const;

 private:
  // Moves the best path to the front; returns true when the front changed.
  static bool Select(std::vector<Route>& paths);
  std::map<IpPrefix, std::vector<Route>> table_;
};

}  // namespace kr::bgp
