// SPDX-License-Identifier: Apache-2.0
#include "kube_router/net/dns.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cstring>
#include <fstream>
#include <random>
#include <sstream>

#include "kube_router/base/unique_fd.h"
#include "kube_router/net/sockaddr.h"

namespace kr::net {
namespace {

constexpr uint16_t kTypeA = 1;
constexpr uint16_t kTypeAaaa = 28;

uint16_t Get16(const std::string& p, size_t at) {
  return static_cast<uint16_t>((static_cast<uint8_t>(p[at]) << 8) |
                               static_cast<uint8_t>(p[at + 1]));
}

// Moves `pos` past a (possibly compressed) name; false if it runs off the packet.
bool SkipName(const std::string& p, size_t* pos) {
  for (int labels = 0; labels < 128; ++labels) {
    if (*pos >= p.size()) return false;
    uint8_t len = static_cast<uint8_t>(p[*pos]);
    if (len == 0) {
      *pos += 1;
      return true;
    }
    if ((len & 0xC0) == 0xC0) {  // compression pointer: the name ends here
      *pos += 2;
      return *pos <= p.size();
    }
    if (len & 0xC0) return false;
    *pos += 1 + len;
  }
  return false;
}

std::string Lower(std::string s) {
  for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

}  // namespace

Result<std::vector<IpAddress>> ResolveHost(const std::string& host, const std::string& hosts_file,
                                           const std::string& resolv_conf) {
  if (auto ip = IpAddress::Parse(host)) return std::vector<IpAddress>{*ip};
  std::vector<IpAddress> out;
  std::ifstream in(hosts_file);
  std::string line;
  std::string want = Lower(host);
  while (std::getline(in, line)) {
    line = line.substr(0, line.find('#'));
    std::istringstream fields(line);
    std::string addr, name;
    if (!(fields >> addr)) continue;
    auto ip = IpAddress::Parse(addr);
    if (!ip) continue;
    while (fields >> name) {
      if (Lower(name) == want && std::find(out.begin(), out.end(), *ip) == out.end())
        out.push_back(*ip);
    }
  }
  if (out.empty() && want == "localhost") {
    out.push_back(*IpAddress::Parse("127.0.0.1"));
    out.push_back(*IpAddress::Parse("::1"));
  }
  if (!out.empty()) return out;
  // Not a local name: ask the nameservers directly (no NSS in a static binary).
  auto dns = QueryDns(host, ReadNameservers(resolv_conf));
  if (!dns.ok())
    return Status::Error(dns.error() + " (and not in " + hosts_file +
                         "); use an IP address in the server URL or add the name to " + hosts_file);
  return dns;
}

std::vector<IpAddress> ReadNameservers(const std::string& resolv_conf) {
  std::vector<IpAddress> out;
  std::ifstream in(resolv_conf);
  std::string line;
  while (std::getline(in, line)) {
    std::istringstream fields(line);
    std::string key, value;
    if (!(fields >> key >> value) || key != "nameserver") continue;
    value = value.substr(0, value.find('%'));  // drop an IPv6 zone
    if (auto ip = IpAddress::Parse(value)) out.push_back(*ip);
  }
  return out;
}

std::string BuildDnsQuery(const std::string& name, uint16_t id, uint16_t qtype) {
  std::string q;
  auto put16 = [&](uint16_t v) {
    q += static_cast<char>(v >> 8);
    q += static_cast<char>(v & 0xff);
  };
  put16(id);
  put16(0x0100);  // standard query, recursion desired
  put16(1);       // one question
  put16(0);
  put16(0);
  put16(0);
  size_t start = 0;
  while (start < name.size()) {
    size_t dot = name.find('.', start);
    if (dot == std::string::npos) dot = name.size();
    size_t len = std::min<size_t>(dot - start, 63);
    q += static_cast<char>(len);
    q += name.substr(start, len);
    start = dot + 1;
  }
  q += '\0';
  put16(qtype);
  put16(1);  // class IN
  return q;
}

Result<std::vector<IpAddress>> ParseDnsResponse(const std::string& p, uint16_t id) {
  if (p.size() < 12) return Status::Error("DNS response too short");
  if (Get16(p, 0) != id) return Status::Error("DNS response for another query");
  uint16_t flags = Get16(p, 2);
  if (!(flags & 0x8000)) return Status::Error("DNS packet is not a response");
  if ((flags & 0x000F) != 0) return Status::Error("DNS error code " + std::to_string(flags & 15));
  uint16_t questions = Get16(p, 4), answers = Get16(p, 6);
  size_t pos = 12;
  for (uint16_t i = 0; i < questions; ++i) {
    if (!SkipName(p, &pos) || pos + 4 > p.size()) return Status::Error("malformed DNS question");
    pos += 4;
  }
  std::vector<IpAddress> out;
  for (uint16_t i = 0; i < answers; ++i) {
    if (!SkipName(p, &pos) || pos + 10 > p.size()) return Status::Error("malformed DNS answer");
    uint16_t type = Get16(p, pos), rdlength = Get16(p, pos + 8);
    pos += 10;
    if (pos + rdlength > p.size()) return Status::Error("malformed DNS answer data");
    if (type == kTypeA && rdlength == 4) {
      uint32_t v = (static_cast<uint32_t>(static_cast<uint8_t>(p[pos])) << 24) |
                   (static_cast<uint32_t>(static_cast<uint8_t>(p[pos + 1])) << 16) |
                   (static_cast<uint32_t>(static_cast<uint8_t>(p[pos + 2])) << 8) |
                   static_cast<uint32_t>(static_cast<uint8_t>(p[pos + 3]));
      out.push_back(IpAddress::V4(v));
    } else if (type == kTypeAaaa && rdlength == 16) {
      std::array<uint8_t, 16> b{};
      std::memcpy(b.data(), p.data() + pos, 16);
      out.push_back(IpAddress::V6(b));
    }
    pos += rdlength;  // CNAMEs and others are skipped; their targets' records follow
  }
  return out;
}

Result<std::vector<IpAddress>> QueryDns(const std::string& name,
                                        const std::vector<IpAddress>& nameservers, uint16_t port,
                                        std::chrono::milliseconds timeout) {
  if (nameservers.empty()) return Status::Error("cannot resolve '" + name + "': no nameserver");
  std::mt19937 rng(std::random_device{}());
  std::string last_error = "no answer";
  for (const auto& server : nameservers) {
    std::vector<IpAddress> found;
    for (uint16_t qtype : {kTypeA, kTypeAaaa}) {
      net::SocketAddress where = net::ToSockaddr(server, port);
      UniqueFd fd(::socket(where.family(), SOCK_DGRAM | SOCK_CLOEXEC, 0));
      if (!fd) continue;
      // A connected UDP socket only accepts replies from the server we asked.
      uint16_t id = static_cast<uint16_t>(rng());
      std::string query = BuildDnsQuery(name, id, qtype);
      if (::connect(fd.get(), where.get(), where.length) != 0 ||
          ::send(fd.get(), query.data(), query.size(), 0) < 0) {
        last_error = std::string("send: ") + strerror(errno);
        continue;
      }
      auto deadline = std::chrono::steady_clock::now() + timeout;
      for (;;) {
        auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
                        deadline - std::chrono::steady_clock::now())
                        .count();
        if (left <= 0) {
          last_error = "timed out";
          break;
        }
        pollfd pfd{fd.get(), POLLIN, 0};
        if (::poll(&pfd, 1, static_cast<int>(left)) <= 0) continue;
        char buf[1500];
        ssize_t n = ::recv(fd.get(), buf, sizeof buf, 0);
        if (n <= 0) {
          last_error = "no reply";
          break;
        }
        auto parsed = ParseDnsResponse(std::string(buf, static_cast<size_t>(n)), id);
        if (!parsed.ok() && parsed.error() == "DNS response for another query") continue;
        if (!parsed.ok()) {
          last_error = parsed.error();
          break;
        }
        found.insert(found.end(), parsed->begin(), parsed->end());
        break;
      }
    }
    if (!found.empty()) return found;
  }
  return Status::Error("cannot resolve '" + name + "' via DNS: " + last_error);
}

}  // namespace kr::net
