#include "kube_router/base/hashed_name.h"

#include <atomic>

#include "kube_router/base/sha256.h"

namespace kr {

std::string NameDigest(std::string_view encoded, size_t digits) {
  static constexpr char kAlphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
  auto digest = Sha256(encoded);
  std::string out;
  uint32_t buffer = 0;
  int bits = 0;
  for (size_t i = 0; i < digest.size() && out.size() < digits; ++i) {
    buffer = (buffer << 8) | digest[i];
    bits += 8;
    while (bits >= 5 && out.size() < digits) {
      bits -= 5;
      out += kAlphabet[(buffer >> bits) & 0x1f];
    }
  }
  return out;
}

namespace {

std::atomic<ScopedNameHashForTesting::Digest> g_digest{&NameDigest};

void Append(std::string& out, std::string_view field) {
  out += std::to_string(field.size());
  out += ':';
  out += field;
}

}  // namespace

std::string EncodeNameFields(std::initializer_list<std::string_view> fields) {
  std::string out;
  for (auto field : fields) Append(out, field);
  return out;
}

std::string HashedName(std::string_view prefix, std::initializer_list<std::string_view> fields,
                       size_t digits) {
  std::string encoded;
  Append(encoded, prefix);
  for (auto field : fields) Append(encoded, field);
  return std::string(prefix) + g_digest.load()(encoded, digits);
}

std::optional<std::string> NameOwners::Claim(const std::string& name, const std::string& owner) {
  auto [it, inserted] = owners_.try_emplace(name, owner);
  if (inserted || it->second == owner) return std::nullopt;
  return it->second;
}

void NameOwners::Release(const std::string& name) { owners_.erase(name); }

const std::string* NameOwners::OwnerOf(const std::string& name) const {
  auto it = owners_.find(name);
  return it == owners_.end() ? nullptr : &it->second;
}

ScopedNameHashForTesting::ScopedNameHashForTesting(Digest digest)
    : previous_(g_digest.exchange(digest)) {}
ScopedNameHashForTesting::~ScopedNameHashForTesting() { g_digest.store(previous_); }

}  // namespace kr
