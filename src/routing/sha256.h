// SHA-256 (FIPS 180-4), only to reproduce kube-router's tunnel names; not for security.
#pragma once

#include <array>
#include <cstdint>
#include <string_view>

namespace kr::routing {

std::array<uint8_t, 32> Sha256(std::string_view data);

}  // namespace kr::routing
