// SPDX-License-Identifier: Apache-2.0
#include "kube_router/k8s/chunked.h"

namespace kr::k8s {
namespace {
constexpr size_t kMaxLine = 4096;                  // size line with extensions, or a trailer line
constexpr uint64_t kMaxChunk = uint64_t{1} << 40;  // far beyond anything sane
int HexValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}
}  // namespace

Status ChunkedDecoder::Fail(const std::string& why) {
  state_ = State::kFailed;
  return Status::Error("malformed chunked encoding: " + why);
}

Status ChunkedDecoder::Feed(std::string_view in, std::string* out) {
  size_t i = 0;
  while (i < in.size()) {
    char c = in[i];
    switch (state_) {
      case State::kFailed:
        return Status::Error("malformed chunked encoding");
      case State::kDone:
        return Status::Ok();
      case State::kSize: {
        int v = HexValue(c);
        if (v >= 0) {
          if (remaining_ > kMaxChunk) return Fail("chunk size too large");
          remaining_ = remaining_ * 16 + static_cast<uint64_t>(v);
          ++size_digits_;
        } else if (size_digits_ == 0) {
          return Fail("chunk size expected");
        } else if (c == ';' || c == ' ' || c == '\t') {
          state_ = State::kExtension;  // chunk extensions are ignored
        } else if (c == '\r') {
          state_ = State::kSizeLf;
        } else {
          return Fail("bad character in chunk size");
        }
        if (++line_length_ > kMaxLine) return Fail("chunk size line too long");
        ++i;
        break;
      }
      case State::kExtension:
        if (c == '\r') state_ = State::kSizeLf;
        if (++line_length_ > kMaxLine) return Fail("chunk size line too long");
        ++i;
        break;
      case State::kSizeLf:
        if (c != '\n') return Fail("LF expected after chunk size");
        ++i;
        line_length_ = 0;
        size_digits_ = 0;
        if (remaining_ == 0) {
          state_ = State::kTrailer;
          trailer_line_empty_ = true;
        } else {
          state_ = State::kData;
        }
        break;
      case State::kData: {
        size_t n = static_cast<size_t>(std::min<uint64_t>(remaining_, in.size() - i));
        out->append(in.data() + i, n);
        i += n;
        remaining_ -= n;
        if (remaining_ == 0) state_ = State::kDataCr;
        break;
      }
      case State::kDataCr:
        if (c != '\r') return Fail("CRLF expected after chunk data");
        state_ = State::kDataLf;
        ++i;
        break;
      case State::kDataLf:
        if (c != '\n') return Fail("CRLF expected after chunk data");
        state_ = State::kSize;
        ++i;
        break;
      case State::kTrailer:
        // Trailer fields end with an empty line; their content is ignored.
        ++i;
        if (c == '\n') {
          if (trailer_line_empty_) {
            state_ = State::kDone;
            return Status::Ok();
          }
          trailer_line_empty_ = true;
          line_length_ = 0;
        } else if (c != '\r') {
          trailer_line_empty_ = false;
          if (++line_length_ > kMaxLine) return Fail("trailer line too long");
        }
        break;
    }
  }
  return state_ == State::kFailed ? Status::Error("malformed chunked encoding") : Status::Ok();
}

}  // namespace kr::k8s
