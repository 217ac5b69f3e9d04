// SPDX-License-Identifier: Apache-2.0
// Private to the codec: the UPDATE path attribute list (RFC 4271 4.3, 5; RFC 7606 actions)
// and the prefix encoding shared by the UPDATE body and MP_REACH/MP_UNREACH.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <vector>

#include "bytes.h"
#include "kube_router/bgp/codec.h"

namespace kr::bgp::detail {

// RFC 4271 4.3: a length octet, then the fewest octets holding that many bits.
size_t PrefixWireSize(const IpPrefix& prefix);
void WritePrefix(Writer& w, const IpPrefix& prefix);
// False when a length exceeds the family's bits or a prefix overruns `data`.
bool ReadPrefixes(std::span<const uint8_t> data, bool v6, std::vector<IpPrefix>& out);

// Appends the path attributes of `update` (MP_REACH/MP_UNREACH included, AS4_PATH and
// AS4_AGGREGATOR towards 2-octet speakers).
void WriteAttributes(Writer& w, const UpdateMessage& update, const CodecOptions& options);

// Walks the path attribute list of an UPDATE whose withdrawn routes and NLRI are already in
// `update`, filling its attributes, MP_REACH/MP_UNREACH, treat_as_withdraw and errors.
// Returns the error when RFC 7606 says the session must be reset.
std::optional<BgpError> DecodeAttributes(std::span<const uint8_t> attrs,
                                         const CodecOptions& options, UpdateMessage& update);

}  // namespace kr::bgp::detail
