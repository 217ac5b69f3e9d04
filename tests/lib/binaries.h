// The programs of this build that tests run as real processes. KR_BINARY_DIR is the build
// directory (kr_test passes it as a compile definition), so a release and a sanitizer build
// each run the binaries they built themselves.
#pragma once

#include <string>

#ifndef KR_BINARY_DIR
#error "KR_BINARY_DIR must name the build directory (kr_test defines it)"
#endif

namespace kr::testing {

inline const std::string kAgentBinary = KR_BINARY_DIR "/kube-router";
// KR_FAKE_APISERVER_BINARY: another flavour's fake-apiserver (CMake's KR_FAKE_APISERVER).
#ifdef KR_FAKE_APISERVER_BINARY
inline const std::string kFakeApiServerBinary = KR_FAKE_APISERVER_BINARY;
#else
inline const std::string kFakeApiServerBinary = KR_BINARY_DIR "/fake-apiserver";
#endif

}  // namespace kr::testing
