// Private to the netpol compiler: the text pieces its iptables rules are made of.
#pragma once

#include <algorithm>
#include <cctype>
#include <string>

namespace kr::netpol::compiler_internal {

inline std::string Lower(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return std::tolower(c); });
  return s;
}

// iptables comments: no quotes or control characters, at most 120 bytes (kube-router clamps so).
inline std::string Comment(const std::string& text) {
  std::string clean;
  for (char c : text) {
    if (c != '"' && c != '\\' && static_cast<unsigned char>(c) >= 0x20) clean += c;
  }
  if (clean.size() > 120) clean.resize(120);
  return "-m comment --comment \"" + clean + "\"";
}

inline std::string Join(const std::string& a, const std::string& b) {
  return a.empty() ? b : a + " " + b;
}

inline std::string MatchSet(const std::string& set, const char* direction) {
  return "-m set --match-set " + set + " " + direction;
}

}  // namespace kr::netpol::compiler_internal
