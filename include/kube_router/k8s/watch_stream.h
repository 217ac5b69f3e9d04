// SPDX-License-Identifier: Apache-2.0
// Decoder of a Kubernetes watch stream (JSON WatchEvent values, normally one per line). It
// frames on JSON value boundaries rather than on reads or lines, so the events that come out
// are the same however the bytes were split into chunks. A malformed event becomes an error
// entry and the stream goes on with the next value. Not thread-safe.
#pragma once

#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <vector>

#include "kube_router/base/status.h"

namespace kr::k8s {

enum class WatchEventType { kAdded, kModified, kDeleted, kBookmark, kError };

struct WatchEvent {
  WatchEventType type = WatchEventType::kAdded;
  nlohmann::json object;  // the object, or a metav1.Status for kError
};

class WatchStreamDecoder {
 public:
  // Limit for one event; a longer value is reported as an error and skipped.
  explicit WatchStreamDecoder(size_t max_event_bytes = 64 << 20)
      : max_event_bytes_(max_event_bytes) {}

  // Consumes `bytes`; every complete value becomes one entry of `out` (an event or an error
  // naming what was wrong).
  void Feed(std::string_view bytes, std::vector<Result<WatchEvent>>* out);
  // Bytes of an incomplete value held back (non-zero at end of stream = truncated event).
  size_t pending() const { return buffer_.size() - start_; }

 private:
  void Emit(std::string_view value, std::vector<Result<WatchEvent>>* out);

  size_t max_event_bytes_;
  std::string buffer_;
  size_t start_ = 0;  // first byte of the value being framed
  size_t scan_ = 0;   // next byte to look at
  int depth_ = 0;
  bool in_string_ = false;
  bool escape_ = false;
  bool skipping_ = false;  // discarding garbage up to the next newline
};

// Parses one WatchEvent JSON value (exposed for tests and the fuzz target).
Result<WatchEvent> ParseWatchEvent(std::string_view value);

}  // namespace kr::k8s
