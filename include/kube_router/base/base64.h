// Standard base64 (RFC 4648 §4), the one codec of the tree, on OpenSSL's libcrypto.
#pragma once

#include <optional>
#include <string>
#include <string_view>

namespace kr {

// With padding.
std::string Base64Encode(std::string_view bytes);
// Accepts padded and unpadded input and ignores whitespace (kubeconfig data fields may be
// folded); nullopt for any other character, padding not at the end or a truncated group.
std::optional<std::string> Base64Decode(std::string_view text);

}  // namespace kr
