// The netfilter role interface for ipset: list sets, change many sets in one batch.
#pragma once

#include <compare>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "kube_router/base/status.h"
#include "kube_router/netfilter/iptables.h"

namespace kr::netfilter {

enum class IpsetType : uint8_t { kHashIp, kHashNet };
const char* IpsetTypeName(IpsetType type);  // "hash:ip" / "hash:net"

// "10.1.2.3" for hash:ip, "10.0.0.0/8" (or a bare host address) for hash:net. `nomatch`
// marks an excluded range of a hash:net set (NetworkPolicy ipBlock.except).
struct IpsetEntry {
  std::string address;
  bool nomatch = false;
  auto operator<=>(const IpsetEntry&) const = default;
};

struct IpsetSet {
  std::string name;
  IpsetType type = IpsetType::kHashIp;
  IpFamily family = IpFamily::kV4;
  std::set<IpsetEntry> entries;
  bool operator==(const IpsetSet&) const = default;
};

struct IpsetDelta {
  std::string set;
  std::vector<IpsetEntry> add;
  std::vector<IpsetEntry> del;
};

// One batch. Applied in this order: `replace` (a missing set is created; an existing set is
// rebuilt in a temporary set and swapped in, so a live set is never empty or flushed), then
// `deltas`, then `destroy` (which fails for a set still referenced by an iptables rule).
struct IpsetUpdate {
  std::vector<IpsetSet> replace;
  std::vector<IpsetDelta> deltas;
  std::vector<std::string> destroy;
  bool empty() const { return replace.empty() && deltas.empty() && destroy.empty(); }
};

class Ipset {
 public:
  virtual ~Ipset() = default;
  virtual Result<std::vector<std::string>> ListNames() = 0;
  // Every set with its entries.
  virtual Result<std::map<std::string, IpsetSet>> List() = 0;
  virtual Status Apply(const IpsetUpdate& update) = 0;
};

// A host address without "/32" or "/128", so hash:net entries compare equal to what
// `ipset save` prints.
IpsetEntry CanonicalEntry(IpsetEntry entry);
// Parses `ipset save` output.
Result<std::map<std::string, IpsetSet>> ParseIpsetSave(const std::string& text);
// The `ipset restore` input for `update`; `existing` names the sets already in the kernel (a
// set that exists is rebuilt via a temporary set and swapped).
std::string RenderIpsetRestore(const IpsetUpdate& update, const std::set<std::string>& existing);

}  // namespace kr::netfilter
