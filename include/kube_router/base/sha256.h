// SHA-256 (OpenSSL's EVP implementation; the agent links libcrypto statically already).
// Names of kernel objects hash through HashedName (base/hashed_name.h), not this directly.
#pragma once

#include <array>
#include <cstdint>
#include <string_view>

namespace kr {

std::array<uint8_t, 32> Sha256(std::string_view data);

}  // namespace kr
