// SPDX-License-Identifier: Apache-2.0
// Streaming decoder of HTTP/1.1 chunked transfer coding (RFC 9112 section 7.1). Bytes may
// arrive split anywhere; the payload comes out as soon as it is received, which is what a
// watch needs (events must not wait for the end of the response). Not thread-safe.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "kube_router/base/status.h"

namespace kr::k8s {

class ChunkedDecoder {
 public:
  // Decodes `in`, appending payload bytes to `out`. After an error the decoder stays failed.
  // Bytes after the final chunk's trailers are ignored.
  Status Feed(std::string_view in, std::string* out);
  // The last (zero-size) chunk and its trailer section have been read.
  bool done() const { return state_ == State::kDone; }

 private:
  enum class State {
    kSize,
    kExtension,
    kSizeLf,
    kData,
    kDataCr,
    kDataLf,
    kTrailer,
    kDone,
    kFailed
  };
  Status Fail(const std::string& why);

  State state_ = State::kSize;
  uint64_t remaining_ = 0;
  int size_digits_ = 0;
  size_t line_length_ = 0;  // of the current size or trailer line, to bound it
  bool trailer_line_empty_ = true;
};

}  // namespace kr::k8s
