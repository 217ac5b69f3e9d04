// SHA-256 (FIPS 180-4), used only to derive kube-router's chain and ipset names.
#pragma once

#include <array>
#include <cstdint>
#include <string_view>

namespace kr::netpol {

std::array<uint8_t, 32> Sha256(std::string_view data);

}  // namespace kr::netpol
