// Collision-proof kernel object names (chains, ipsets, links) derived from API object data.
//
// Every name an agent derives from object names (namespace, name, rule index, address, ...)
// hashes an unambiguous encoding of the fields: each field is written as "<length>:<bytes>", so
// ("team-a", "bx") and ("team-ab", "x") encode differently (plain concatenation makes both
// "team-abx"). The prefix is the first field, so names of different kinds never share input.
// A real hash collision is still possible in principle (names are truncated digests): callers
// record the owner of every name with NameOwners and refuse a second, different owner.
#pragma once

#include <cstddef>
#include <initializer_list>
#include <map>
#include <optional>
#include <string>
#include <string_view>

namespace kr {

// "<len>:<field>" for every field, concatenated (a netstring without the trailing comma).
std::string EncodeNameFields(std::initializer_list<std::string_view> fields);

// `prefix` + the first `digits` characters of base32(sha256(EncodeNameFields({prefix,
// fields...}))), RFC 4648 alphabet (A-Z, 2-7). 16 digits = 80 bits. `digits` is at most 51.
std::string HashedName(std::string_view prefix, std::initializer_list<std::string_view> fields,
                       size_t digits = 16);

// Who holds which derived name. Claim() is idempotent for the same owner; a different owner
// of a name already held is refused and gets the holder back (the caller logs both and skips
// the second).
class NameOwners {
 public:
  // nullopt: `owner` holds `name` now (or already did). Else the other owner holding it.
  std::optional<std::string> Claim(const std::string& name, const std::string& owner);
  void Release(const std::string& name);
  void Clear() { owners_.clear(); }
  const std::string* OwnerOf(const std::string& name) const;
  size_t size() const { return owners_.size(); }

 private:
  std::map<std::string, std::string> owners_;
};

// The default digest of HashedName: the first `digits` base32 characters of sha256(encoded).
std::string NameDigest(std::string_view encoded, size_t digits);

// Tests only: while alive, HashedName hashes the encoding with `digest` (returning the name's
// hash characters) instead of SHA-256, so a test can force two owners onto one name.
class ScopedNameHashForTesting {
 public:
  using Digest = std::string (*)(std::string_view encoded, size_t digits);
  explicit ScopedNameHashForTesting(Digest digest);
  ~ScopedNameHashForTesting();
  ScopedNameHashForTesting(const ScopedNameHashForTesting&) = delete;
  ScopedNameHashForTesting& operator=(const ScopedNameHashForTesting&) = delete;

 private:
  Digest previous_;
};

}  // namespace kr
