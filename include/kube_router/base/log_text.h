// Text from API objects (names, labels, annotations, error messages quoting them) is chosen by
// tenants. Before it reaches a log line it is made inert: control characters (C0, DEL, the C1
// range and the Unicode line/paragraph separators) become visible escapes, so an object name
// with "\n" cannot forge a log line or move a terminal's cursor, and the text is capped so one
// huge annotation cannot flood the log. Every KR_LOG line goes through SafeForLog; callers may
// also use it on single values with a tighter cap.
#pragma once

#include <algorithm>
#include <cstdio>
#include <string>
#include <string_view>

namespace kr::log {

// A whole log line's message; object names are at most 253 bytes, so this keeps any message
// about a few objects whole.
inline constexpr size_t kMaxLogText = 4096;

inline std::string SafeForLog(std::string_view text, size_t max_bytes = kMaxLogText) {
  std::string out;
  out.reserve(std::min(text.size(), max_bytes) + 16);
  auto hex = [&](const char* prefix, unsigned value, int digits) {
    char buf[16];
    std::snprintf(buf, sizeof buf, "%s%0*x", prefix, digits, value);
    out += buf;
  };
  size_t i = 0;
  for (; i < text.size() && out.size() < max_bytes; ++i) {
    unsigned char c = static_cast<unsigned char>(text[i]);
    if (c == '\n') {
      out += "\\n";
    } else if (c == '\r') {
      out += "\\r";
    } else if (c == '\t') {
      out += "\\t";
    } else if (c < 0x20 || c == 0x7f) {
      hex("\\x", c, 2);
    } else if (c == 0xc2 && i + 1 < text.size() &&
               static_cast<unsigned char>(text[i + 1]) >= 0x80 &&
               static_cast<unsigned char>(text[i + 1]) <= 0x9f) {
      hex("\\u", static_cast<unsigned char>(text[++i]), 4);  // C1 control, e.g. U+009B CSI
    } else if (c == 0xe2 && i + 2 < text.size() &&
               static_cast<unsigned char>(text[i + 1]) == 0x80 &&
               (static_cast<unsigned char>(text[i + 2]) == 0xa8 ||
                static_cast<unsigned char>(text[i + 2]) == 0xa9)) {
      hex("\\u", 0x2000u + static_cast<unsigned char>(text[i + 2]) - 0x80u, 4);  // U+2028/9
      i += 2;
    } else {
      out += static_cast<char>(c);
    }
  }
  if (i < text.size()) out += "...(" + std::to_string(text.size() - i) + " more bytes)";
  return out;
}

}  // namespace kr::log
