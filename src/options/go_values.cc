// Go-style value syntax (strconv.ParseBool, time.ParseDuration, Duration.String), written
// from the Go documentation of those functions.
#include <cctype>
#include <cstdint>
#include <limits>
#include <string>

#include "kube_router/options/options.h"

namespace kr {

Result<bool> ParseGoBool(const std::string& text) {
  if (text == "1" || text == "t" || text == "T" || text == "true" || text == "TRUE" ||
      text == "True") {
    return true;
  }
  if (text == "0" || text == "f" || text == "F" || text == "false" || text == "FALSE" ||
      text == "False") {
    return false;
  }
  return Status::Error("\"" + text + "\" is not a boolean (use true or false)");
}

namespace {

constexpr int64_t kNs = 1;
constexpr int64_t kUs = 1000 * kNs;
constexpr int64_t kMs = 1000 * kUs;
constexpr int64_t kSecond = 1000 * kMs;
constexpr int64_t kMinute = 60 * kSecond;
constexpr int64_t kHour = 60 * kMinute;

// Unit suffix at `text[pos]`; advances pos. 0 when there is no known unit.
int64_t ReadUnit(const std::string& text, size_t& pos) {
  struct Unit {
    const char* name;
    int64_t ns;
  };
  // Longest names first so "ms" is not read as "m".
  static const Unit kUnits[] = {{"ns", kNs}, {"us", kUs},    {"\xC2\xB5s", kUs}, {"\xCE\xBCs", kUs},
                                {"ms", kMs}, {"s", kSecond}, {"m", kMinute},     {"h", kHour}};
  for (const Unit& u : kUnits) {
    std::string name = u.name;
    if (text.compare(pos, name.size(), name) == 0) {
      pos += name.size();
      return u.ns;
    }
  }
  return 0;
}

}  // namespace

Result<int64_t> ParseGoDurationNanos(const std::string& text) {
  auto bad = [&](const std::string& why) {
    return Status::Error("\"" + text + "\" is not a duration (" + why +
                         "; examples: 300ms, 5s, 1m0s, 2h45m)");
  };
  size_t pos = 0;
  bool negative = false;
  if (pos < text.size() && (text[pos] == '-' || text[pos] == '+')) {
    negative = text[pos] == '-';
    ++pos;
  }
  if (text.substr(pos) == "0") return int64_t{0};
  if (pos == text.size()) return bad("empty");
  // Accumulate in long double for the fraction, then check the range once per component.
  long double total = 0;
  while (pos < text.size()) {
    size_t start = pos;
    long double whole = 0;
    while (pos < text.size() && std::isdigit(static_cast<unsigned char>(text[pos]))) {
      whole = whole * 10 + (text[pos] - '0');
      ++pos;
    }
    bool had_whole = pos > start;
    long double fraction = 0;
    bool had_fraction = false;
    if (pos < text.size() && text[pos] == '.') {
      ++pos;
      long double scale = 0.1L;
      while (pos < text.size() && std::isdigit(static_cast<unsigned char>(text[pos]))) {
        fraction += (text[pos] - '0') * scale;
        scale /= 10;
        had_fraction = true;
        ++pos;
      }
    }
    if (!had_whole && !had_fraction) return bad("expected a number");
    int64_t unit = ReadUnit(text, pos);
    if (unit == 0) return bad("missing or unknown unit");
    total += (whole + fraction) * static_cast<long double>(unit);
    if (total > static_cast<long double>(std::numeric_limits<int64_t>::max())) {
      return bad("out of range");
    }
  }
  auto ns = static_cast<int64_t>(total);
  return negative ? -ns : ns;
}

std::string FormatGoDuration(milliseconds d) {
  int64_t ms = d.count();
  if (ms == 0) return "0s";
  std::string sign = ms < 0 ? "-" : "";
  if (ms < 0) ms = -ms;
  if (ms < 1000) return sign + std::to_string(ms) + "ms";
  int64_t hours = ms / 3'600'000;
  int64_t minutes = ms / 60'000 % 60;
  int64_t seconds = ms / 1000 % 60;
  int64_t millis = ms % 1000;
  std::string out = sign;
  // Go prints hours and minutes only when a larger unit is present: 1h0m0s, 1m0s, 5s.
  if (hours > 0) out += std::to_string(hours) + "h";
  if (hours > 0 || minutes > 0) out += std::to_string(minutes) + "m";
  out += std::to_string(seconds);
  if (millis > 0) {
    std::string frac = std::to_string(millis);
    frac = std::string(3 - frac.size(), '0') + frac;
    while (!frac.empty() && frac.back() == '0') frac.pop_back();
    out += "." + frac;
  }
  return out + "s";
}

}  // namespace kr
