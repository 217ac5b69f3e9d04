// The netfilter role interface for iptables: read one table, change it atomically. Rules are
// plain text in iptables-restore syntax (the arguments after "-A <chain>"), so controllers,
// the real adapter and the fake all speak the same value type.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "kube_router/base/mutex.h"
#include "kube_router/base/status.h"

namespace kr::netfilter {

enum class IpFamily : uint8_t { kV4, kV6 };
const char* IpFamilyName(IpFamily family);  // "IPv4" / "IPv6"

// Which kernel backend the iptables tools write to. Rules written through one backend are
// invisible to the other backend's tools, so the agent must use the host's.
enum class IptablesMode : uint8_t { kNft, kLegacy };
const char* IptablesModeName(IptablesMode mode);  // "nft" / "legacy"
std::optional<IptablesMode> ParseIptablesMode(std::string_view text);

// A user-defined chain and its rules in order.
struct Chain {
  std::string name;
  std::vector<std::string> rules;
  bool operator==(const Chain&) const = default;
};

// One table as iptables-save shows it: every chain (built-in ones included) with its rules.
// A rule whose quoted string (a comment) holds a newline spans several lines of the output; it
// is joined back, newlines included (such a rule cannot be written back by specification).
struct TableSnapshot {
  std::map<std::string, std::vector<std::string>> chains;
  // Lines that could not be parsed were skipped (other software's rules must not stop us):
  // how many, the chains they claimed to be in (empty when not even that was readable), and
  // the first one (escaped, at most 200 bytes) for a log line. Callers decide whether a
  // skipped line in a chain of theirs is an error.
  size_t unparsed_lines = 0;
  std::set<std::string> unparsed_chains;
  std::string first_unparsed;
  bool operator==(const TableSnapshot&) const = default;
};

struct RuleInsert {
  std::string chain;
  int position = 1;  // 1-based, as `-I chain N`
  std::string rule;
};

struct RuleDelete {
  std::string chain;
  std::string rule;  // matched by specification, as `-D chain <rule>`
};

// One atomic change of one table (one `iptables-restore --noflush` transaction). Applied in
// this order: chains in `replace_chains` and `delete_chains` are created or flushed, rules are
// deleted, replaced chains are filled, rules are inserted, `delete_chains` are removed.
struct TableUpdate {
  std::string table = "filter";
  std::vector<Chain> replace_chains;
  std::vector<RuleDelete> delete_rules;
  std::vector<RuleInsert> insert_rules;
  std::vector<std::string> delete_chains;

  bool empty() const {
    return replace_chains.empty() && delete_rules.empty() && insert_rules.empty() &&
           delete_chains.empty();
  }
};

class Iptables {
 public:
  virtual ~Iptables() = default;
  virtual IpFamily family() const = 0;
  virtual Result<TableSnapshot> Save(const std::string& table) = 0;
  // All or nothing: on error the table is unchanged.
  virtual Status Apply(const TableUpdate& update) = 0;
};

// The iptables-restore input for `update` (used by the real adapter and by benchmarks).
std::string RenderRestore(const TableUpdate& update);
// Parses iptables-save output; only the section of `table` is returned. Never fails on a line
// it does not understand: see TableSnapshot::unparsed_lines.
Result<TableSnapshot> ParseSave(std::string_view text, const std::string& table);

// Built-in chains of the tables we touch; they can be neither created nor deleted.
bool IsBuiltinChain(std::string_view chain);
// The jump target of a rule ("-j X" / "-g X"), empty if none.
std::string RuleTarget(std::string_view rule);

// Held by each controller of this process from its read of a table to its write of rules whose
// position in a built-in chain it planned from that read (the proxy's INPUT jump goes below the
// policy controller's, its POSTROUTING rules are appended after what it saw). Without it, a
// controller running on another thread could write in between and the stale positions would
// give another order than the same objects give when the writes do not overlap. A function that
// writes positions planned from such a read says KR_REQUIRES(netfilter::BuiltinChainsMutex()),
// and clang's -Wthread-safety (scripts/check-tidy.sh) rejects a call without it held.
kr::Mutex& BuiltinChainsMutex();

}  // namespace kr::netfilter
