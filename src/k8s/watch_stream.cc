// SPDX-License-Identifier: Apache-2.0
#include "kube_router/k8s/watch_stream.h"

namespace kr::k8s {

Result<WatchEvent> ParseWatchEvent(std::string_view value) {
  nlohmann::json j = nlohmann::json::parse(value, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) return Status::Error("watch event is not valid JSON");
  if (!j.is_object()) return Status::Error("watch event is not a JSON object");
  auto type = j.find("type");
  if (type == j.end() || !type->is_string()) return Status::Error("watch event without type");
  auto object = j.find("object");
  if (object == j.end() || !object->is_object())
    return Status::Error("watch event " + type->get<std::string>() + " without an object");
  WatchEvent e;
  const std::string& t = type->get_ref<const std::string&>();
  if (t == "ADDED")
    e.type = WatchEventType::kAdded;
  else if (t == "MODIFIED")
    e.type = WatchEventType::kModified;
  else if (t == "DELETED")
    e.type = WatchEventType::kDeleted;
  else if (t == "BOOKMARK")
    e.type = WatchEventType::kBookmark;
  else if (t == "ERROR")
    e.type = WatchEventType::kError;
  else
    return Status::Error("unknown watch event type '" + t.substr(0, 64) + "'");
  e.object = std::move(*object);
  return e;
}

void WatchStreamDecoder::Emit(std::string_view value, std::vector<Result<WatchEvent>>* out) {
  out->push_back(ParseWatchEvent(value));
}

void WatchStreamDecoder::Feed(std::string_view bytes, std::vector<Result<WatchEvent>>* out) {
  buffer_.append(bytes);
  while (scan_ < buffer_.size()) {
    char c = buffer_[scan_];
    if (skipping_) {
      ++scan_;
      if (c == '\n') {
        skipping_ = false;
        start_ = scan_;
      }
      continue;
    }
    if (depth_ == 0) {
      if (c == ' ' || c == '\n' || c == '\r' || c == '\t') {
        start_ = ++scan_;
        continue;
      }
      if (c != '{') {
        out->push_back(Status::Error("watch stream: unexpected byte outside an event"));
        skipping_ = true;  // resynchronise at the next line
        continue;
      }
      start_ = scan_;
    }
    ++scan_;
    if (in_string_) {
      if (escape_)
        escape_ = false;
      else if (c == '\\')
        escape_ = true;
      else if (c == '"')
        in_string_ = false;
    } else if (c == '"') {
      in_string_ = true;
    } else if (c == '{' || c == '[') {
      ++depth_;
    } else if (c == '}' || c == ']') {
      if (--depth_ == 0) {
        Emit(std::string_view(buffer_).substr(start_, scan_ - start_), out);
        start_ = scan_;
      }
    }
    if (depth_ > 0 && scan_ - start_ > max_event_bytes_) {
      out->push_back(Status::Error("watch stream: event larger than " +
                                   std::to_string(max_event_bytes_) + " bytes"));
      depth_ = 0;
      in_string_ = escape_ = false;
      skipping_ = true;
    }
  }
  // Drop what has been consumed so the buffer holds only the value in progress.
  size_t keep_from = (depth_ > 0) ? start_ : scan_;
  buffer_.erase(0, keep_from);
  scan_ -= keep_from;
  start_ = depth_ > 0 ? 0 : scan_;
}

}  // namespace kr::k8s
