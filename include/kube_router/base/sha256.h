// SHA-256 (FIPS 180-4). kube-router derives chain, ipset and tunnel names from SHA-256 digests;
// the agent links fully static, so this small implementation avoids a crypto dependency for it.
#pragma once

#include <array>
#include <cstdint>
#include <string_view>

namespace kr {

std::array<uint8_t, 32> Sha256(std::string_view data);

}  // namespace kr
