#include "kube_router/netfilter/iptables.h"

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

kr::Mutex& BuiltinChainsMutex() {
  static auto* const mu = new kr::Mutex();  // never destroyed: controller threads may outlive exit
  return *mu;
}

bool IsBuiltinChain(std::string_view chain) {
  return chain == "INPUT" || chain == "FORWARD" || chain == "OUTPUT" || chain == "PREROUTING" ||
         chain == "POSTROUTING";
}

namespace {

// Splits a rule into words the way iptables-restore does: double quotes group words, and inside
// them a backslash escapes the next character (iptables-save writes \" and \\ there).
std::vector<std::string> SplitWords(std::string_view rule) {
  std::vector<std::string> words;
  std::string current;
  bool in_quotes = false;
  bool have_word = false;
  for (size_t i = 0; i < rule.size(); ++i) {
    char c = rule[i];
    if (in_quotes && c == '\\' && i + 1 < rule.size()) {
      current += rule[++i];
    } else if (c == '"') {
      in_quotes = !in_quotes;
      have_word = true;
    } else if ((c == ' ' || c == '\t') && !in_quotes) {
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

// True when every double quote of `text` is closed (escapes inside quotes honoured).
bool QuotesClosed(std::string_view text) {
  bool in_quotes = false;
  for (size_t i = 0; i < text.size(); ++i) {
    if (in_quotes && text[i] == '\\') {
      ++i;
    } else if (text[i] == '"') {
      in_quotes = !in_quotes;
    }
  }
  return !in_quotes;
}

// A line for a log message: control characters escaped, at most 200 bytes.
std::string Printable(std::string_view line) {
  std::string out;
  for (char c : line.substr(0, 200)) {
    if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) {
      static constexpr char kHex[] = "0123456789abcdef";
      out += "\\x";
      out += kHex[(c >> 4) & 0xf];
      out += kHex[c & 0xf];
    } else {
      out += c;
    }
  }
  return out;
}

// A rule continues on the next lines while a quoted string is open; real output closes it
// within a few lines, so a longer run is given up on.
constexpr size_t kMaxRuleLines = 64;

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
  std::vector<std::string_view> lines;
  for (size_t pos = 0; pos < text.size();) {
    size_t end = text.find('\n', pos);
    if (end == std::string_view::npos) end = text.size();
    lines.push_back(text.substr(pos, end - pos));
    pos = end + 1;
  }
  TableSnapshot snapshot;
  auto skip = [&](std::string_view line, const std::string& chain) {
    if (snapshot.unparsed_lines++ == 0) snapshot.first_unparsed = Printable(line);
    snapshot.unparsed_chains.insert(chain);
  };
  bool in_table = false;
  for (size_t i = 0; i < lines.size(); ++i) {
    std::string_view line = lines[i];
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
    if (!line.starts_with("-A ")) {
      skip(line, "");
      continue;
    }
    std::string_view rest = line.substr(3);
    size_t space = rest.find(' ');
    std::string chain(rest.substr(0, space));
    std::string rule = space == std::string_view::npos ? "" : std::string(rest.substr(space + 1));
    size_t last = i;
    while (!QuotesClosed(rule) && last + 1 < lines.size() && last + 1 - i < kMaxRuleLines &&
           lines[last + 1] != "COMMIT") {
      rule += '\n';
      rule += lines[++last];
    }
    if (!QuotesClosed(rule)) {
      skip(line, chain);  // the following lines are read on their own
      continue;
    }
    i = last;
    snapshot.chains[chain].push_back(std::move(rule));
  }
  return snapshot;
}

}  // namespace kr::netfilter
