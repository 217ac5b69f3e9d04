#include "kube_router/base/base64.h"

#include <openssl/evp.h>

namespace kr {

std::string Base64Encode(std::string_view bytes) {
  std::string out(4 * ((bytes.size() + 2) / 3) + 1, '\0');
  int n = EVP_EncodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                          reinterpret_cast<const unsigned char*>(bytes.data()),
                          static_cast<int>(bytes.size()));
  out.resize(n < 0 ? 0 : static_cast<size_t>(n));
  return out;
}

std::optional<std::string> Base64Decode(std::string_view text) {
  std::string clean;
  clean.reserve(text.size());
  for (char c : text) {
    if (c == ' ' || c == '\t' || c == '\r' || c == '\n') continue;
    clean.push_back(c);
  }
  size_t padding = 0;
  while (!clean.empty() && clean.back() == '=' && padding < 2) {
    clean.pop_back();
    ++padding;
  }
  if (clean.find('=') != std::string::npos) return std::nullopt;  // padding in the middle
  size_t tail = clean.size() % 4;
  if (tail == 1) return std::nullopt;                                  // 6 bits cannot make a byte
  if (padding != 0 && padding != (4 - tail) % 4) return std::nullopt;  // wrong padding
  if (clean.empty()) return std::string();
  // EVP_DecodeBlock wants whole groups and counts padded positions as zero bytes.
  size_t pad_to_group = tail == 0 ? 0 : 4 - tail;
  clean.append(pad_to_group, '=');
  std::string out(clean.size() / 4 * 3, '\0');
  int n = EVP_DecodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                          reinterpret_cast<const unsigned char*>(clean.data()),
                          static_cast<int>(clean.size()));
  if (n < 0) return std::nullopt;  // a character outside the alphabet
  out.resize(static_cast<size_t>(n) - pad_to_group);
  return out;
}

}  // namespace kr
