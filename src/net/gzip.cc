// SPDX-License-Identifier: Apache-2.0
#include "kube_router/net/gzip.h"

#include <zlib.h>

#include <algorithm>

namespace kr::net {

struct GzipDecoder::Z {
  z_stream s{};
  bool initialized = false;
};

GzipDecoder::GzipDecoder() : z_(std::make_unique<Z>()) {
  // 16 + MAX_WBITS: gzip wrapper only (no zlib or raw deflate).
  if (inflateInit2(&z_->s, 16 + MAX_WBITS) == Z_OK) {
    z_->initialized = true;
  } else {
    state_ = State::kFailed;
    error_ = "gzip: cannot initialise zlib";
  }
}

GzipDecoder::~GzipDecoder() {
  if (z_->initialized) inflateEnd(&z_->s);
}

Status GzipDecoder::Feed(std::string_view in, std::string* out) {
  if (state_ == State::kFailed) return Status::Error(error_);
  char buf[16384];
  while (!in.empty()) {
    if (state_ == State::kBetweenMembers) {
      // Another member follows (RFC 1952 allows several); start a fresh one.
      if (inflateReset(&z_->s) != Z_OK) {
        state_ = State::kFailed;
        error_ = "gzip: cannot reset zlib";
        return Status::Error(error_);
      }
    }
    state_ = State::kInMember;
    size_t take = std::min<size_t>(in.size(), 1u << 30);
    z_->s.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(in.data()));
    z_->s.avail_in = static_cast<uInt>(take);
    int r;
    do {
      z_->s.next_out = reinterpret_cast<Bytef*>(buf);
      z_->s.avail_out = sizeof buf;
      r = inflate(&z_->s, Z_NO_FLUSH);
      if (r == Z_BUF_ERROR && z_->s.avail_in == 0) break;  // needs more input
      if (r != Z_OK && r != Z_STREAM_END) {
        state_ = State::kFailed;
        error_ = std::string("gzip: corrupt compressed body: ") +
                 (z_->s.msg ? z_->s.msg : "zlib error " + std::to_string(r));
        return Status::Error(error_);
      }
      out->append(buf, sizeof buf - z_->s.avail_out);
    } while (r != Z_STREAM_END && (z_->s.avail_in > 0 || z_->s.avail_out == 0));
    size_t used = take - z_->s.avail_in;
    in.remove_prefix(used);
    if (r == Z_STREAM_END) state_ = State::kBetweenMembers;
  }
  return Status::Ok();
}

}  // namespace kr::net
