// IPv4/IPv6 addresses and prefixes as plain value types (no libc structs in interfaces).
#pragma once

#include <array>
#include <compare>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace kr {

class IpAddress {
 public:
  enum class Family : uint8_t { kV4, kV6 };

  IpAddress() = default;  // 0.0.0.0
  static IpAddress V4(uint32_t host_order);
  static IpAddress V6(const std::array<uint8_t, 16>& bytes);
  // Accepts dotted-quad IPv4 and any RFC 4291 text form of IPv6; nullopt otherwise.
  static std::optional<IpAddress> Parse(std::string_view text);

  Family family() const { return family_; }
  bool is_v4() const { return family_ == Family::kV4; }
  bool is_v6() const { return family_ == Family::kV6; }
  int bit_length() const { return is_v4() ? 32 : 128; }
  // Network-order bytes; IPv4 uses the first 4.
  const std::array<uint8_t, 16>& bytes() const { return bytes_; }
  uint32_t v4_host_order() const;
  std::string ToString() const;

  // Keeps the first `bits` bits and zeroes the rest.
  IpAddress Masked(int bits) const;

  auto operator<=>(const IpAddress&) const = default;

 private:
  Family family_ = Family::kV4;
  std::array<uint8_t, 16> bytes_{};
};

class IpPrefix {
 public:
  IpPrefix() = default;
  // Normalises the address to the network address of the prefix.
  IpPrefix(IpAddress address, int length);
  // "10.0.0.0/8", "fd00::/64"; a bare address means a host prefix (/32 or /128). Rejects a
  // prefix whose host bits are set when `strict` is true.
  static std::optional<IpPrefix> Parse(std::string_view text, bool strict = false);

  const IpAddress& address() const { return address_; }
  int length() const { return length_; }
  bool is_v4() const { return address_.is_v4(); }
  bool Contains(const IpAddress& ip) const;
  bool Contains(const IpPrefix& other) const;
  std::string ToString() const;

  auto operator<=>(const IpPrefix&) const = default;

 private:
  IpAddress address_;
  int length_ = 0;
};

}  // namespace kr
