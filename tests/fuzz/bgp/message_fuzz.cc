// Fuzz target for the BGP message decoder. Properties: decoding never crashes, and a message
// that decodes cleanly re-encodes to bytes that decode to the same message (with both
// 2-octet and 4-octet AS encodings, selected by the first input byte).
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <span>

#include "kube_router/bgp/codec.h"

namespace {

void Check(bool ok, const char* what) {
  if (!ok) {
    std::fprintf(stderr, "round-trip property violated: %s\n", what);
    std::abort();
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace kr::bgp;  // NOLINT
  if (size == 0) return 0;
  CodecOptions options{(data[0] & 1) == 0};
  std::span<const uint8_t> bytes(data + 1, size - 1);

  // The framer must agree with the decoder about where a message ends.
  auto frame = FrameLength(bytes);
  if (const size_t* len = std::get_if<size_t>(&frame); len && *len > 0 && *len <= bytes.size()) {
    bytes = bytes.first(*len);
  }
  auto first = Decode(bytes, options);
  const Message* message = std::get_if<Message>(&first);
  if (!message) return 0;
  // RFC 7606 outcomes drop information on purpose; only clean messages must round-trip.
  if (const auto* u = std::get_if<UpdateMessage>(message);
      u && (u->treat_as_withdraw || !u->errors.empty()))
    return 0;
  std::vector<uint8_t> encoded = Encode(*message, options);
  if (encoded.size() > kMaxMessageSize) return 0;  // e.g. a re-encoded OPEN cannot grow past it
  auto second = Decode(encoded, options);
  const Message* again = std::get_if<Message>(&second);
  Check(again != nullptr, "re-encoded message does not decode");
  Check(*again == *message, "re-decoded message differs");
  return 0;
}
