// The netfilter role interface for ipset: list sets, change many sets in one batch.
#pragma once

#include <compare>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "kube_router/base/status.h"
#include "kube_router/netfilter/iptables.h"

namespace kr::netfilter {

enum class IpsetType : uint8_t { kHashIp, kHashNet, kHashIpPort, kHashIpPortNet };
// "hash:ip" / "hash:net" / "hash:ip,port" / "hash:ip,port,net"
const char* IpsetTypeName(IpsetType type);
std::optional<IpsetType> ParseIpsetType(std::string_view name);

// "10.1.2.3" for hash:ip, "10.0.0.0/8" (or a bare host address) for hash:net,
// "10.96.0.10,tcp:53" for hash:ip,port and "10.96.0.10,tcp:53,192.0.2.0/24" for
// hash:ip,port,net (protocol tcp, udp, sctp or its number 132). `nomatch` marks an excluded
// range of a hash:net set (NetworkPolicy ipBlock.except).
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

// The entry as `ipset save` prints it, so desired and listed entries compare equal: a host
// network without "/32" or "/128", the protocol of an ip,port entry by name ("132:80" is
// "sctp:80", as the kernel stores the number and ipset prints the name).
IpsetEntry CanonicalEntry(IpsetEntry entry);
// Whether `entry` is well formed for a set of `type` and `family` (addresses of that family, a
// known protocol and a port in 0-65535); the error names the entry.
Status CheckEntry(IpsetType type, IpFamily family, const IpsetEntry& entry);
// "10.96.0.10,tcp:53" (SCTP as "sctp"); `protocol` is "tcp", "udp" or "sctp" in any case.
std::string IpPortEntry(std::string_view address, std::string_view protocol, uint16_t port);
// Parses `ipset save` output.
Result<std::map<std::string, IpsetSet>> ParseIpsetSave(const std::string& text);
// The `ipset restore` input for `update`; `existing` names the sets already in the kernel (a
// set that exists is rebuilt via a temporary set and swapped).
std::string RenderIpsetRestore(const IpsetUpdate& update, const std::set<std::string>& existing);

}  // namespace kr::netfilter
