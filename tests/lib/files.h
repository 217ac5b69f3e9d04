// Whole-file reads for tests, benchmarks and test tools (header-only, so that fake-apiserver and
// the unit tests use it without linking the root-only helpers of kr_testlib).
#pragma once

#include <fstream>
#include <sstream>
#include <string>

namespace kr::testing {

// The bytes of `path` as they are; "" when it cannot be read (a caller that must tell an absent
// file from an empty one checks for it first).
inline std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream text;
  text << in.rdbuf();
  return text.str();
}

}  // namespace kr::testing
