// SPDX-License-Identifier: Apache-2.0
// The Loc-RIB: every path per prefix (local ones and those from peers, each as received and
// as the import policy left it) and the best one chosen by the RFC 4271 9.1.2 decision process.
// A path is three handles to interned values (interned.h): paths with the same attributes and
// next hop share one PathInfo, paths of one peer session share one PathSource, so a large
// table from one peer costs one map entry per prefix. Single-threaded (the speaker thread owns
// it and its interners); no I/O.
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <vector>

#include "kube_router/bgp/interned.h"
#include "kube_router/bgp/types.h"

namespace kr::bgp {

// The attributes of a path together with its next hop (the NEXT_HOP attribute itself is kept
// unset: the next hop of either family lives here).
struct PathInfo {
  PathAttributes attributes;
  IpAddress next_hop;
  bool operator==(const PathInfo&) const = default;
};
size_t HashPathInfo(const PathInfo& info);

// Where a path came from; all paths of one peer session share it.
struct PathSource {
  std::optional<IpAddress> peer;  // unset for local paths
  uint32_t peer_asn = 0;
  IpAddress peer_router_id;
  bool ibgp = false;
  bool stale = false;  // kept across the peer's graceful restart, not yet refreshed
  bool operator==(const PathSource&) const = default;
};
size_t HashPathSource(const PathSource& source);

struct RibPath {
  Interned<PathSource> source;
  // As received (after the RFC checks), kept so ReapplyPolicies() needs no route refresh.
  Interned<PathInfo> received;
  // What the import policy made of it (usually the same handle); empty: not usable (rejected by
  // the policy or a loop), the path is then only the Adj-RIB-In's.
  Interned<PathInfo> info;
  bool usable() const { return static_cast<bool>(info); }
  const std::optional<IpAddress>& peer() const { return source->peer; }
};

// The interners a Loc-RIB's paths come from (owned next to the LocRib, outliving its paths).
struct PathInterners {
  Interner<PathInfo> infos{HashPathInfo};
  Interner<PathSource> sources{HashPathSource};
  // A usable path carrying `route` (received and accepted alike).
  RibPath FromRoute(const Route& route);
};

// The public value form of a usable path.
Route ToRoute(const IpPrefix& prefix, const RibPath& path);

// RFC 4271 9.1.2.2 tie-breaking (plus RFC 4456 9 for reflected routes): true when `a` is
// preferred over `b`. Order: local-pref (100 if absent), locally originated, AS path length,
// origin, MED (only between paths from the same neighbour AS), eBGP over iBGP, router ID
// (ORIGINATOR_ID when present), CLUSTER_LIST length, peer address.
bool BetterPath(const Route& a, const Route& b);
bool BetterPath(const RibPath& a, const RibPath& b);  // both usable

// The paths of one prefix in 16 bytes: the common case, one usable path whose set as received
// is the one accepted, is its two handles; anything else is a vector on the heap.
class PathList {
 public:
  PathList() : more_(nullptr) {}
  ~PathList() { Clear(); }
  PathList(const PathList&) = delete;
  PathList& operator=(const PathList&) = delete;

  size_t size() const { return source_ ? 1 : more_ ? more_->size() : 0; }
  bool empty() const { return size() == 0; }
  RibPath operator[](size_t i) const;  // a copy (three handles)
  // Moves the paths out (the list is then empty) and back in.
  std::vector<RibPath> Take();
  void Put(std::vector<RibPath> paths);

 private:
  void Clear();
  Interned<PathSource> source_;  // set: the compact form, info_ is the accepted set
  union {
    Interned<PathInfo> info_;
    std::vector<RibPath>* more_;  // when source_ is unset (null: no paths)
  };
};

class LocRib {
 public:
  struct Change {
    IpPrefix prefix;
    std::optional<RibPath> best;  // unset: no usable path left for the prefix
  };

  // Adds or replaces the path for `prefix` from path.peer() (unset = local). Appends to
  // `changes` when the best path changed (in identity or content).
  void Upsert(const IpPrefix& prefix, RibPath path, std::vector<Change>& changes);
  // Removes the path for `prefix` from `source` (unset = local), if any.
  void Remove(const IpPrefix& prefix, const std::optional<IpAddress>& source,
              std::vector<Change>& changes);

  std::optional<RibPath> Best(const IpPrefix& prefix) const;
  // The path from `source` (usable or not), if any.
  std::optional<RibPath> Find(const IpPrefix& prefix, const std::optional<IpAddress>& source) const;
  size_t prefix_count() const { return table_.size(); }  // prefixes with any path
  // Visits prefixes in order with all their paths (unusable ones too); paths[0] is the best
  // when it is usable.
  void ForEach(const std::function<void(const IpPrefix&, const PathList&)>& fn) const;
  // The first prefix after `after` (from the start when unset); unset at the end. Lets a caller
  // walk the table while changing it.
  std::optional<IpPrefix> Next(const std::optional<IpPrefix>& after) const;
  const PathList* Paths(const IpPrefix& prefix) const;

 private:
  // Moves the best usable path to the front.
  static void Select(std::vector<RibPath>& paths);
  static std::optional<RibPath> BestOf(const std::vector<RibPath>& paths);
  std::map<IpPrefix, PathList> table_;
};

}  // namespace kr::bgp
