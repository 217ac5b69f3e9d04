#include "kube_router/netfilter/ipset.h"

#include <algorithm>
#include <sstream>

namespace kr::netfilter {

const char* IpsetTypeName(IpsetType type) {
  return type == IpsetType::kHashIp ? "hash:ip" : "hash:net";
}

IpsetEntry CanonicalEntry(IpsetEntry entry) {
  auto strip = [&](std::string_view suffix) {
    if (entry.address.ends_with(suffix)) {
      entry.address.resize(entry.address.size() - suffix.size());
    }
  };
  if (entry.address.find(':') == std::string::npos) {
    strip("/32");
  } else {
    strip("/128");
  }
  return entry;
}

namespace {

std::vector<std::string> Words(const std::string& line) {
  std::istringstream in(line);
  std::vector<std::string> words;
  std::string w;
  while (in >> w) words.push_back(w);
  return words;
}

// One reusable temporary set per type and family: a swap needs both sides of the same kind.
std::string TempSetName(IpsetType type, IpFamily family) {
  return std::string("KUBE-TMP-") + (type == IpsetType::kHashIp ? "IP" : "NET") +
         (family == IpFamily::kV4 ? "4" : "6");
}

std::string CreateLine(const std::string& name, IpsetType type, IpFamily family, size_t entries) {
  // hash sets default to maxelem 65536; a bigger set must ask for it.
  size_t maxelem = std::max<size_t>(65536, entries * 2);
  return "create " + name + " " + IpsetTypeName(type) + " family " +
         (family == IpFamily::kV4 ? "inet" : "inet6") + " hashsize 1024 maxelem " +
         std::to_string(maxelem) + "\n";
}

std::string AddLine(const std::string& name, const IpsetEntry& entry) {
  return "add " + name + " " + entry.address + (entry.nomatch ? " nomatch" : "") + "\n";
}

}  // namespace

Result<std::map<std::string, IpsetSet>> ParseIpsetSave(const std::string& text) {
  std::map<std::string, IpsetSet> sets;
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line)) {
    auto words = Words(line);
    if (words.empty()) continue;
    if (words[0] == "create" && words.size() >= 3) {
      IpsetSet set;
      set.name = words[1];
      if (words[2] == "hash:ip") {
        set.type = IpsetType::kHashIp;
      } else if (words[2] == "hash:net") {
        set.type = IpsetType::kHashNet;
      } else {
        continue;  // a set type we never create: listed by name only via ListNames
      }
      auto fam = std::find(words.begin(), words.end(), "family");
      if (fam != words.end() && fam + 1 != words.end() && *(fam + 1) == "inet6") {
        set.family = IpFamily::kV6;
      }
      sets[set.name] = std::move(set);
    } else if (words[0] == "add" && words.size() >= 3) {
      auto it = sets.find(words[1]);
      if (it == sets.end()) continue;  // member of a foreign-typed set
      IpsetEntry entry{words[2], std::find(words.begin(), words.end(), "nomatch") != words.end()};
      it->second.entries.insert(CanonicalEntry(entry));
    } else {
      return Status::Error("ipset save output not understood: " + line);
    }
  }
  return sets;
}

std::string RenderIpsetRestore(const IpsetUpdate& update, const std::set<std::string>& existing) {
  std::string out;
  std::set<std::string> leftover_temps;
  for (const auto& name : existing) {
    if (name.starts_with("KUBE-TMP-")) leftover_temps.insert(name);
  }
  for (const auto& name : leftover_temps) out += "destroy " + name + "\n";
  for (const auto& set : update.replace) {
    if (!existing.contains(set.name)) {
      out += CreateLine(set.name, set.type, set.family, set.entries.size());
      for (const auto& e : set.entries) out += AddLine(set.name, e);
      continue;
    }
    std::string temp = TempSetName(set.type, set.family);
    out += CreateLine(temp, set.type, set.family, set.entries.size());
    for (const auto& e : set.entries) out += AddLine(temp, e);
    out += "swap " + temp + " " + set.name + "\n";
    out += "destroy " + temp + "\n";
  }
  for (const auto& delta : update.deltas) {
    for (const auto& e : delta.del) out += "del " + delta.set + " " + e.address + "\n";
    for (const auto& e : delta.add) out += AddLine(delta.set, e);
  }
  for (const auto& name : update.destroy) {
    bool created_here = std::any_of(update.replace.begin(), update.replace.end(),
                                    [&](const IpsetSet& s) { return s.name == name; });
    if (existing.contains(name) || created_here) out += "destroy " + name + "\n";
  }
  return out;
}

}  // namespace kr::netfilter
