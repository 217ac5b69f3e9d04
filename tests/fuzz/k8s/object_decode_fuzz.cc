// Fuzz target: the object decoders. Any input is decoded as one of the six kinds; a decoder
// may reject it but must never crash or throw.
#include <cstdint>
#include <string_view>

#include "kube_router/k8s/decode.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view text(reinterpret_cast<const char*>(data), size);
  using kr::k8s::ResourceKind;
  // The input's length picks the kind, so every kind sees every corpus file's mutations
  // without decoding each input six times.
  static constexpr ResourceKind kKinds[] = {ResourceKind::kService,   ResourceKind::kEndpointSlice,
                                            ResourceKind::kPod,       ResourceKind::kNode,
                                            ResourceKind::kNamespace, ResourceKind::kNetworkPolicy};
  auto decoded = kr::k8s::DecodeObjectText(kKinds[size % 6], text);
  if (decoded.ok() && kr::k8s::MetaOf(*decoded) == nullptr) __builtin_trap();
  return 0;
}
