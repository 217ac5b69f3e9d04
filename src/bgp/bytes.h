// SPDX-License-Identifier: Apache-2.0
// Bounds-checked big-endian readers and writers for the BGP codec. A Reader never reads past
// its span: every Get* reports failure instead, so a lying length field cannot overrun.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

namespace kr::bgp::detail {

class Reader {
 public:
  explicit Reader(std::span<const uint8_t> data) : data_(data) {}

  size_t remaining() const { return data_.size() - pos_; }
  bool empty() const { return remaining() == 0; }
  size_t position() const { return pos_; }

  bool U8(uint8_t& out) {
    if (remaining() < 1) return false;
    out = data_[pos_++];
    return true;
  }
  bool U16(uint16_t& out) {
    if (remaining() < 2) return false;
    out = static_cast<uint16_t>((data_[pos_] << 8) | data_[pos_ + 1]);
    pos_ += 2;
    return true;
  }
  bool U32(uint32_t& out) {
    if (remaining() < 4) return false;
    out = (static_cast<uint32_t>(data_[pos_]) << 24) |
          (static_cast<uint32_t>(data_[pos_ + 1]) << 16) |
          (static_cast<uint32_t>(data_[pos_ + 2]) << 8) | data_[pos_ + 3];
    pos_ += 4;
    return true;
  }
  bool Bytes(size_t n, std::span<const uint8_t>& out) {
    if (remaining() < n) return false;
    out = data_.subspan(pos_, n);
    pos_ += n;
    return true;
  }
  std::span<const uint8_t> Rest() {
    auto out = data_.subspan(pos_);
    pos_ = data_.size();
    return out;
  }

 private:
  std::span<const uint8_t> data_;
  size_t pos_ = 0;
};

class Writer {
 public:
  void U8(uint8_t v) { out_.push_back(v); }
  void U16(uint16_t v) {
    out_.push_back(static_cast<uint8_t>(v >> 8));
    out_.push_back(static_cast<uint8_t>(v));
  }
  void U32(uint32_t v) {
    for (int shift = 24; shift >= 0; shift -= 8) out_.push_back(static_cast<uint8_t>(v >> shift));
  }
  void Bytes(std::span<const uint8_t> v) { out_.insert(out_.end(), v.begin(), v.end()); }
  size_t size() const { return out_.size(); }
  // Overwrites a previously reserved 16-bit field at `at`.
  void PatchU16(size_t at, uint16_t v) {
    out_[at] = static_cast<uint8_t>(v >> 8);
    out_[at + 1] = static_cast<uint8_t>(v);
  }
  std::vector<uint8_t>& bytes() { return out_; }

 private:
  std::vector<uint8_t> out_;
};

}  // namespace kr::bgp::detail
