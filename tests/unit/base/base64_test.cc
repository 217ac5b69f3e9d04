#include "kube_router/base/base64.h"

#include <gtest/gtest.h>

#include <random>

namespace kr {
namespace {

// The cases of the three copies this replaced (kubeconfig data, basic auth, BGP passwords).
TEST(Base64, Decodes) {
  EXPECT_EQ(Base64Decode("aGVsbG8="), "hello");
  EXPECT_EQ(Base64Decode("aGVsbG8"), "hello");
  EXPECT_EQ(Base64Decode("aGVs\nbG8h"), "hello!");
  EXPECT_EQ(Base64Decode(" c2VjcmV0 "), "secret");
  EXPECT_EQ(Base64Decode("YQ=="), "a");
  EXPECT_EQ(Base64Decode("YQ"), "a");
  EXPECT_EQ(Base64Decode(""), "");
}

TEST(Base64, RefusesWhatIsNotBase64) {
  for (const char* bad :
       {"a", "aGVs*G8=", "aG=Vs", "YQ=", "YWI==", "YQ===", "-_-_", "aGVsbG8=\x01"}) {
    EXPECT_FALSE(Base64Decode(bad).has_value()) << bad;
  }
}

TEST(Base64, RoundTripsEveryLength) {
  std::mt19937 rng(1);
  for (size_t len = 0; len < 100; ++len) {
    std::string bytes(len, '\0');
    for (char& c : bytes) c = static_cast<char>(rng());
    std::string encoded = Base64Encode(bytes);
    EXPECT_EQ(encoded.size() % 4, 0u);
    EXPECT_EQ(Base64Decode(encoded), bytes) << len;
  }
  EXPECT_EQ(Base64Encode("user:pass"), "dXNlcjpwYXNz");
}

}  // namespace
}  // namespace kr
