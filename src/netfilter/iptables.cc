#include "kube_router/netfilter/iptables.h"

#include <sstream>

namespace kr::netfilter {

const char* IpFamilyName(IpFamily family) { return family == IpFamily::kV4 ? "IPv4" : "IPv6"; }

const char* IptablesModeName(IptablesMode mode) {
  return mode == IptablesMode::kNft ? "nft" : "legacy";
}

std::optional<IptablesMode> ParseIptablesMode(std::string_view text) {
  if (text == "nft") return IptablesMode::kNft;
  if (text == "legacy") return IptablesMode::kLegacy;
  return std::nullopt;
}

bool IsBuiltinChain(std::string_view chain) {
  return chain == "INPUT" || chain == "FORWARD" || chain == "OUTPUT" || chain == "PREROUTING" ||
         chain == "POSTROUTING";
}

namespace {

// Splits a rule into words the way iptables-restore does: double quotes group words.
std::vector<std::string> SplitWords(std::string_view rule) {
  std::vector<std::string> words;
  std::string current;
  bool in_quotes = false;
  bool have_word = false;
  for (char c : rule) {
    if (c == '"') {
      in_quotes = !in_quotes;
      have_word = true;
    } else if (c == ' ' && !in_quotes) {
      if (have_word) words.push_back(current);
      current.clear();
      have_word = false;
    } else {
      current += c;
      have_word = true;
    }
  }
  if (have_word) words.push_back(current);
  return words;
}

}  // namespace

std::string RuleTarget(std::string_view rule) {
  auto words = SplitWords(rule);
  for (size_t i = 0; i + 1 < words.size(); ++i) {
    if (words[i] == "-j" || words[i] == "-g" || words[i] == "--jump" || words[i] == "--goto") {
      return words[i + 1];
    }
  }
  return "";
}

std::string RenderRestore(const TableUpdate& update) {
  std::string out = "*" + update.table + "\n";
  // Declaring a chain under --noflush creates it, or flushes it if it exists.
  for (const auto& chain : update.replace_chains) out += ":" + chain.name + " - [0:0]\n";
  for (const auto& name : update.delete_chains) out += ":" + name + " - [0:0]\n";
  for (const auto& del : update.delete_rules) out += "-D " + del.chain + " " + del.rule + "\n";
  for (const auto& chain : update.replace_chains) {
    for (const auto& rule : chain.rules) out += "-A " + chain.name + " " + rule + "\n";
  }
  for (const auto& ins : update.insert_rules) {
    out += "-I " + ins.chain + " " + std::to_string(ins.position) + " " + ins.rule + "\n";
  }
  for (const auto& name : update.delete_chains) out += "-X " + name + "\n";
  out += "COMMIT\n";
  return out;
}

Result<TableSnapshot> ParseSave(std::string_view text, const std::string& table) {
  TableSnapshot snapshot;
  bool in_table = false;
  size_t line_no = 0;
  size_t pos = 0;
  while (pos < text.size()) {
    size_t end = text.find('\n', pos);
    if (end == std::string_view::npos) end = text.size();
    std::string_view line = text.substr(pos, end - pos);
    pos = end + 1;
    ++line_no;
    if (line.empty() || line[0] == '#') continue;
    if (line[0] == '*') {
      in_table = line.substr(1) == table;
      continue;
    }
    if (!in_table) continue;
    if (line == "COMMIT") {
      in_table = false;
      continue;
    }
    if (line[0] == ':') {
      size_t space = line.find(' ');
      snapshot.chains[std::string(
          line.substr(1, space == std::string_view::npos ? std::string_view::npos : space - 1))];
      continue;
    }
    if (line.starts_with("-A ")) {
      std::string_view rest = line.substr(3);
      size_t space = rest.find(' ');
      std::string chain(rest.substr(0, space));
      std::string rule = space == std::string_view::npos ? "" : std::string(rest.substr(space + 1));
      snapshot.chains[chain].push_back(std::move(rule));
      continue;
    }
    std::ostringstream msg;
    msg << "iptables-save output line " << line_no << " not understood: " << line;
    return Status::Error(msg.str());
  }
  return snapshot;
}

}  // namespace kr::netfilter
