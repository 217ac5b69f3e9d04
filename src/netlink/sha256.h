// SHA-256 (FIPS 180-4), only for kube-router's tunnel names: the agent links fully static and
// this avoids pulling a crypto library in for 15 characters.
#pragma once

#include <array>
#include <cstdint>
#include <string_view>

namespace kr::netlink {

std::array<uint8_t, 32> Sha256(std::string_view data);

}  // namespace kr::netlink
