#include "kube_router/base/ip.h"

#include <arpa/inet.h>

#include <cstring>

namespace kr {

IpAddress IpAddress::V4(uint32_t host_order) {
  IpAddress ip;
  ip.family_ = Family::kV4;
  uint32_t net = htonl(host_order);
  std::memcpy(ip.bytes_.data(), &net, 4);
  return ip;
}

IpAddress IpAddress::V6(const std::array<uint8_t, 16>& bytes) {
  IpAddress ip;
  ip.family_ = Family::kV6;
  ip.bytes_ = bytes;
  return ip;
}

std::optional<IpAddress> IpAddress::Parse(std::string_view text) {
  if (text.empty() || text.size() > INET6_ADDRSTRLEN) return std::nullopt;
  std::string s(text);
  IpAddress ip;
  if (s.find(':') == std::string::npos) {
    in_addr a{};
    if (inet_pton(AF_INET, s.c_str(), &a) != 1) return std::nullopt;
    ip.family_ = Family::kV4;
    std::memcpy(ip.bytes_.data(), &a, 4);
    return ip;
  }
  in6_addr a6{};
  if (inet_pton(AF_INET6, s.c_str(), &a6) != 1) return std::nullopt;
  ip.family_ = Family::kV6;
  std::memcpy(ip.bytes_.data(), &a6, 16);
  return ip;
}

uint32_t IpAddress::v4_host_order() const {
  uint32_t net;
  std::memcpy(&net, bytes_.data(), 4);
  return ntohl(net);
}

std::string IpAddress::ToString() const {
  char buf[INET6_ADDRSTRLEN] = {};
  inet_ntop(is_v4() ? AF_INET : AF_INET6, bytes_.data(), buf, sizeof(buf));
  return buf;
}

IpAddress IpAddress::Masked(int bits) const {
  IpAddress out = *this;
  const int total = bit_length();
  for (int i = 0; i < total / 8; ++i) {
    int keep = bits - i * 8;
    if (keep >= 8) continue;
    out.bytes_[i] &= keep <= 0 ? 0 : static_cast<uint8_t>(0xff << (8 - keep));
  }
  return out;
}

IpPrefix::IpPrefix(IpAddress address, int length)
    : address_(address.Masked(length)), length_(length) {}

std::optional<IpPrefix> IpPrefix::Parse(std::string_view text, bool strict) {
  auto slash = text.find('/');
  auto ip = IpAddress::Parse(text.substr(0, slash));
  if (!ip) return std::nullopt;
  int length = ip->bit_length();
  if (slash != std::string_view::npos) {
    std::string_view len_text = text.substr(slash + 1);
    if (len_text.empty() || len_text.size() > 3) return std::nullopt;
    length = 0;
    for (char c : len_text) {
      if (c < '0' || c > '9') return std::nullopt;
      length = length * 10 + (c - '0');
    }
    if (length > ip->bit_length()) return std::nullopt;
  }
  IpPrefix prefix(*ip, length);
  if (strict && prefix.address_ != *ip) return std::nullopt;
  return prefix;
}

bool IpPrefix::Contains(const IpAddress& ip) const {
  return ip.family() == address_.family() && ip.Masked(length_) == address_;
}

bool IpPrefix::Contains(const IpPrefix& other) const {
  return other.length_ >= length_ && Contains(other.address_);
}

std::string IpPrefix::ToString() const {
  return address_.ToString() + "/" + std::to_string(length_);
}

}  // namespace kr
