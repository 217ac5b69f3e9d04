// Timestamps as Kubernetes writes them (RFC 3339 in UTC, whole seconds:
// "2026-12-06T21:19:47Z"), for the objects the test tools make (header-only: fake-apiserver
// links none of kr_testlib).
#pragma once

#include <ctime>
#include <string>

namespace kr::testing {

inline std::string UtcTimestamp(std::time_t t) {
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[32];
  return std::string(buf, std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm));
}

}  // namespace kr::testing
