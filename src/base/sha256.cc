#include "kube_router/base/sha256.h"

#include <openssl/evp.h>

#include <cstdlib>

namespace kr {

std::array<uint8_t, 32> Sha256(std::string_view data) {
  std::array<uint8_t, 32> digest{};
  unsigned int length = 0;
  // EVP_Digest with the built-in SHA-256 fails only on allocation failure.
  if (EVP_Digest(data.data(), data.size(), digest.data(), &length, EVP_sha256(), nullptr) != 1 ||
      length != digest.size()) {
    std::abort();
  }
  return digest;
}

}  // namespace kr
