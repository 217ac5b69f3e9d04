#include "kube_router/netfilter/ipset.h"

#include <algorithm>
#include <cctype>
#include <sstream>

#include "kube_router/base/ip.h"

namespace kr::netfilter {

const char* IpsetTypeName(IpsetType type) {
  switch (type) {
    case IpsetType::kHashIp:
      return "hash:ip";
    case IpsetType::kHashNet:
      return "hash:net";
    case IpsetType::kHashIpPort:
      return "hash:ip,port";
    case IpsetType::kHashIpPortNet:
      return "hash:ip,port,net";
  }
  return "hash:ip";
}

std::optional<IpsetType> ParseIpsetType(std::string_view name) {
  for (IpsetType type : {IpsetType::kHashIp, IpsetType::kHashNet, IpsetType::kHashIpPort,
                         IpsetType::kHashIpPortNet}) {
    if (name == IpsetTypeName(type)) return type;
  }
  return std::nullopt;
}

namespace {

// Splits "a,b,c" into its comma-separated parts.
std::vector<std::string> Parts(std::string_view text) {
  std::vector<std::string> parts;
  size_t start = 0;
  while (true) {
    size_t comma = text.find(',', start);
    parts.emplace_back(
        text.substr(start, comma == std::string_view::npos ? text.npos : comma - start));
    if (comma == std::string_view::npos) return parts;
    start = comma + 1;
  }
}

std::string Join(const std::vector<std::string>& parts) {
  std::string out;
  for (const auto& part : parts) out += (out.empty() ? "" : ",") + part;
  return out;
}

// "10.0.0.1/32" -> "10.0.0.1", "fd00::1/128" -> "fd00::1".
std::string StripHostLength(std::string net) {
  std::string_view suffix = net.find(':') == std::string::npos ? "/32" : "/128";
  if (net.ends_with(suffix)) net.resize(net.size() - suffix.size());
  return net;
}

std::string Lower(std::string_view text) {
  std::string out(text);
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

// "tcp:53" / "132:80" -> "tcp:53" / "sctp:80" (the names ipset prints).
std::string CanonicalProtoPort(std::string_view text) {
  size_t colon = text.find(':');
  if (colon == std::string_view::npos) return std::string(text);
  std::string proto = Lower(text.substr(0, colon));
  if (proto == "6") proto = "tcp";
  if (proto == "17") proto = "udp";
  if (proto == "132") proto = "sctp";
  return proto + std::string(text.substr(colon));
}

}  // namespace

IpsetEntry CanonicalEntry(IpsetEntry entry) {
  auto parts = Parts(entry.address);
  if (parts.size() == 1) {
    entry.address = StripHostLength(std::move(parts[0]));
    return entry;
  }
  parts[1] = CanonicalProtoPort(parts[1]);
  if (parts.size() == 3) parts[2] = StripHostLength(std::move(parts[2]));
  entry.address = Join(parts);
  return entry;
}

std::string IpPortEntry(std::string_view address, std::string_view protocol, uint16_t port) {
  return std::string(address) + "," + Lower(protocol) + ":" + std::to_string(port);
}

Status CheckEntry(IpsetType type, IpFamily family, const IpsetEntry& entry) {
  auto bad = [&](const std::string& why) {
    return Status::Error("ipset entry \"" + entry.address + "\" for " + IpsetTypeName(type) + ": " +
                         why);
  };
  auto family_ok = [&](const IpAddress& ip) { return ip.is_v4() == (family == IpFamily::kV4); };
  auto check_net = [&](const std::string& text, bool host_only) -> Status {
    if (host_only) {
      auto ip = IpAddress::Parse(text);
      if (!ip) return bad("not an IP address");
      if (!family_ok(*ip)) return bad("address of the other family");
      return Status::Ok();
    }
    auto net = IpPrefix::Parse(text);
    if (!net) return bad("not an address or network");
    if (!family_ok(net->address())) return bad("address of the other family");
    return Status::Ok();
  };
  const auto parts = Parts(entry.address);
  const bool with_port = type == IpsetType::kHashIpPort || type == IpsetType::kHashIpPortNet;
  const size_t want = type == IpsetType::kHashIpPortNet ? 3 : (with_port ? 2 : 1);
  if (parts.size() != want) return bad("wrong number of parts");
  if (auto s = check_net(parts[0], type != IpsetType::kHashNet); !s.ok()) return s;
  if (entry.nomatch && type == IpsetType::kHashIp) return bad("nomatch needs a network type");
  if (!with_port) return Status::Ok();
  std::string proto_port = CanonicalProtoPort(parts[1]);
  size_t colon = proto_port.find(':');
  if (colon == std::string::npos) return bad("no protocol:port");
  std::string proto = proto_port.substr(0, colon);
  if (proto != "tcp" && proto != "udp" && proto != "sctp") return bad("unknown protocol");
  std::string port = proto_port.substr(colon + 1);
  if (port.empty() || port.size() > 5 ||
      port.find_first_not_of("0123456789") != std::string::npos || std::stoi(port) > 65535) {
    return bad("port not in 0-65535");
  }
  if (type == IpsetType::kHashIpPortNet) return check_net(parts[2], false);
  return Status::Ok();
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
  const char* kind = "IP";
  switch (type) {
    case IpsetType::kHashIp:
      break;
    case IpsetType::kHashNet:
      kind = "NET";
      break;
    case IpsetType::kHashIpPort:
      kind = "IPPORT";
      break;
    case IpsetType::kHashIpPortNet:
      kind = "IPPORTNET";
      break;
  }
  return std::string("KUBE-TMP-") + kind + (family == IpFamily::kV4 ? "4" : "6");
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
      auto type = ParseIpsetType(words[2]);
      if (!type) continue;  // a set type we never create: listed by name only via ListNames
      set.type = *type;
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
