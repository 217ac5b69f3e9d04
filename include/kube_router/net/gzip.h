// SPDX-License-Identifier: Apache-2.0
// Streaming gzip decoder (RFC 1952, zlib) for HTTP bodies with `Content-Encoding: gzip`.
// Compressed bytes may arrive split anywhere; inflated bytes come out as soon as zlib
// produces them, so a gzipped watch is decoded event by event, never buffered whole.
// Concatenated gzip members are decoded one after another. Not thread-safe.
#pragma once

#include <memory>
#include <string>
#include <string_view>

#include "kube_router/base/status.h"

namespace kr::net {

class GzipDecoder {
 public:
  GzipDecoder();
  ~GzipDecoder();
  GzipDecoder(const GzipDecoder&) = delete;
  GzipDecoder& operator=(const GzipDecoder&) = delete;

  // Inflates `in`, appending the output to `out`. A corrupt stream (bad header, bad data,
  // CRC or length mismatch) is an error; after an error the decoder stays failed.
  Status Feed(std::string_view in, std::string* out);
  // True between members: every byte fed so far belongs to complete gzip members (and at
  // least one member was seen). A body that ends while this is false was truncated.
  bool done() const { return state_ == State::kBetweenMembers; }

 private:
  enum class State { kStart, kInMember, kBetweenMembers, kFailed };
  struct Z;
  std::unique_ptr<Z> z_;
  State state_ = State::kStart;
  std::string error_;
};

}  // namespace kr::net
