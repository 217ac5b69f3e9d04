#include "kube_router/netfilter/adapters.h"

#include <set>
#include <sstream>

#include "kube_router/base/exec.h"
#include "kube_router/base/log.h"

namespace kr::netfilter {
namespace {

std::string Tool(IptablesMode mode, IpFamily family, const char* verb) {
  return std::string(family == IpFamily::kV4 ? "iptables-" : "ip6tables-") +
         IptablesModeName(mode) + "-" + verb;
}

class ExecIptables : public Iptables {
 public:
  ExecIptables(IptablesMode mode, IpFamily family, bool existing_tables_only)
      : mode_(mode), family_(family), existing_tables_only_(existing_tables_only) {}

  IpFamily family() const override { return family_; }

  Result<TableSnapshot> Save(const std::string& table) override {
    std::vector<std::string> argv = {Tool(mode_, family_, "save")};
    if (!existing_tables_only_) argv.insert(argv.end(), {"-t", table});
    auto out = ExecChecked(argv);
    if (!out.ok()) return out.status();
    return ParseSave(*out, table);
  }

  Status Apply(const TableUpdate& update) override {
    if (update.empty()) return Status::Ok();
    // --wait: the legacy backend shares one lock with every other iptables writer.
    auto out = ExecChecked({Tool(mode_, family_, "restore"), "--noflush", "--wait"},
                           RenderRestore(update));
    return out.status();
  }

 private:
  IptablesMode mode_;
  IpFamily family_;
  bool existing_tables_only_;
};

class ExecIpset : public Ipset {
 public:
  Result<std::vector<std::string>> ListNames() override {
    auto out = ExecChecked({"ipset", "list", "-n"});
    if (!out.ok()) return out.status();
    std::vector<std::string> names;
    std::istringstream in(*out);
    std::string name;
    while (std::getline(in, name)) {
      if (!name.empty()) names.push_back(name);
    }
    return names;
  }

  Result<std::map<std::string, IpsetSet>> List() override {
    auto out = ExecChecked({"ipset", "save"});
    if (!out.ok()) return out.status();
    return ParseIpsetSave(*out);
  }

  Status Apply(const IpsetUpdate& update) override {
    if (update.empty()) return Status::Ok();
    std::set<std::string> existing;
    // Deltas alone need no listing (one process less on the incremental path).
    if (!update.replace.empty() || !update.destroy.empty()) {
      auto names = ListNames();
      if (!names.ok()) return names.status();
      existing.insert(names->begin(), names->end());
    }
    // -exist: adding a present entry or deleting an absent one is not an error for a delta.
    return ExecChecked({"ipset", "restore", "-exist"}, RenderIpsetRestore(update, existing))
        .status();
  }
};

size_t CountRules(IptablesMode mode) {
  size_t rules = 0;
  for (IpFamily family : {IpFamily::kV4, IpFamily::kV6}) {
    auto out = Exec({Tool(mode, family, "save")});
    if (!out.ok() || out->exit_code != 0) continue;
    std::istringstream in(out->out);
    std::string line;
    while (std::getline(in, line)) {
      if (line.starts_with("-A ")) ++rules;
    }
  }
  return rules;
}

}  // namespace

IptablesMode DetectIptablesMode() {
  size_t nft = CountRules(IptablesMode::kNft);
  if (nft > 0) return IptablesMode::kNft;
  size_t legacy = CountRules(IptablesMode::kLegacy);
  return legacy > 0 ? IptablesMode::kLegacy : IptablesMode::kNft;
}

std::unique_ptr<Iptables> MakeIptables(IptablesMode mode, IpFamily family) {
  return std::make_unique<ExecIptables>(mode, family, /*existing_tables_only=*/false);
}
std::unique_ptr<Iptables> MakeIptablesForCleanup(IptablesMode mode, IpFamily family) {
  return std::make_unique<ExecIptables>(mode, family, /*existing_tables_only=*/true);
}
std::unique_ptr<Ipset> MakeIpset() { return std::make_unique<ExecIpset>(); }

}  // namespace kr::netfilter
