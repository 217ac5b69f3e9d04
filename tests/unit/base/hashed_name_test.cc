#include "kube_router/base/hashed_name.h"

#include <gtest/gtest.h>

#include <set>

#include "kube_router/base/sha256.h"

namespace kr {
namespace {

std::string Hex(const std::array<uint8_t, 32>& digest) {
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  for (uint8_t b : digest) {
    out += kHex[b >> 4];
    out += kHex[b & 0xf];
  }
  return out;
}

TEST(Sha256, MatchesPublishedVectors) {
  // FIPS 180-4 examples: one block, two blocks, and the empty message.
  EXPECT_EQ(Hex(Sha256("abc")), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  EXPECT_EQ(Hex(Sha256("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq")),
            "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
  EXPECT_EQ(Hex(Sha256("")), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  EXPECT_EQ(Hex(Sha256(std::string(1000, 'a'))),
            "41edece42d63e8d9bf515a9ba6932e1c20cbc9f5a5d134645adb5db1b9737ea3");
}

TEST(EncodeNameFields, LengthPrefixesEveryField) {
  EXPECT_EQ(EncodeNameFields({"team-a", "bx"}), "6:team-a2:bx");
  EXPECT_EQ(EncodeNameFields({"team-ab", "x"}), "7:team-ab1:x");
  EXPECT_EQ(EncodeNameFields({}), "");
  EXPECT_EQ(EncodeNameFields({""}), "0:");
}

TEST(EncodeNameFields, DifferentFieldListsNeverEncodeEqually) {
  // Every split of a few short strings into fields, including empty fields and fields that
  // look like an encoding themselves: plain concatenation collides on many of these.
  const std::vector<std::vector<std::string_view>> lists = {
      {"team-a", "bx"}, {"team-ab", "x"}, {"team-abx"}, {"team-abx", ""}, {"", "team-abx"},
      {"a", "b", "c"},  {"ab", "c"},      {"a", "bc"},  {"abc"},          {"1:a"},
      {"1:a", ""},      {"a", "1:"},      {"3:1:a"},    {"", ""},         {""},
      {"2:ab"},         {"a", "b"},       {"1:a1:b"},   {"10.0.0.1"},     {"1", "0.0.0.1"},
  };
  std::set<std::string> seen;
  for (const auto& fields : lists) {
    std::string encoded;
    for (auto f : fields) encoded += EncodeNameFields({f});
    EXPECT_TRUE(seen.insert(encoded).second) << encoded;
  }
}

// Expected values computed independently (Python: hashlib.sha256 and base64.b32encode of the
// length-prefixed fields, the prefix first).
TEST(HashedName, IsPrefixPlusBase32OfTheEncoding) {
  EXPECT_EQ(HashedName("KUBE-POD-FW-", {"team-a", "bx"}), "KUBE-POD-FW-4ICQR3UY6PGIAZ3L");
  EXPECT_EQ(HashedName("KUBE-POD-FW-", {"team-ab", "x"}), "KUBE-POD-FW-GLZ4VVWA7C4EQVEP");
  EXPECT_EQ(HashedName("tun-", {"10.0.0.1"}, 11), "tun-PQ5C4ZFSGXK");
  EXPECT_EQ(HashedName("X-", {}, 5), "X-PY5CE");
}

TEST(HashedName, ThePrefixIsPartOfTheInput) {
  std::string a = HashedName("KUBE-SRC-", {"ns", "p"});
  std::string b = HashedName("KUBE-DST-", {"ns", "p"});
  EXPECT_NE(a.substr(9), b.substr(9));
}

TEST(NameOwners, RefusesASecondOwnerAndNamesTheFirst) {
  NameOwners owners;
  EXPECT_EQ(owners.Claim("N", "policy a/b"), std::nullopt);
  EXPECT_EQ(owners.Claim("N", "policy a/b"), std::nullopt);  // idempotent
  EXPECT_EQ(owners.Claim("N", "policy c/d"), "policy a/b");
  ASSERT_NE(owners.OwnerOf("N"), nullptr);
  EXPECT_EQ(*owners.OwnerOf("N"), "policy a/b");
  owners.Release("N");
  EXPECT_EQ(owners.Claim("N", "policy c/d"), std::nullopt);
  EXPECT_EQ(owners.size(), 1u);
}

std::string Constant(std::string_view, size_t digits) { return std::string(digits, 'Q'); }

TEST(ScopedNameHashForTesting, ReplacesTheDigestWhileAlive) {
  std::string real = HashedName("P-", {"x"});
  {
    ScopedNameHashForTesting collide(&Constant);
    EXPECT_EQ(HashedName("P-", {"x"}, 4), "P-QQQQ");
    EXPECT_EQ(HashedName("P-", {"y"}, 4), "P-QQQQ");
  }
  EXPECT_EQ(HashedName("P-", {"x"}), real);
}

}  // namespace
}  // namespace kr
