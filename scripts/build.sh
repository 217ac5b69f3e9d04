#!/usr/bin/env bash
# Configures and builds one flavour:
#   release (default) -> build/       static kube-router (debug info split into
#                                     kube-router.debug), tests, tools (RelWithDebInfo)
#   asan              -> build-asan/  AddressSanitizer + UndefinedBehaviorSanitizer, dynamic, -O0,
#                                     compiled by clang (Debian's clang 14: about 0.6x GCC's
#                                     compile CPU at -O0 with the sanitizers; docs/build.md)
#   tsan              -> build-tsan/  ThreadSanitizer, dynamic, -O1 (CI builds kr_tsan_tests)
#   dev               -> build-dev/   Debug, dynamic (fast links while iterating)
# The CI flavours compile tests with line tables only (-g1), the sanitizer ones all code (their
# reports need file:line, not variables), and spdlog's implementation once (docs/build.md).
# The release flavour's libraries and kube-router get full -g unless KR_RELEASE_DEBUG_INFO=lines
# (-g1; test.sh sets it: the same machine code, a quarter less compile time). The asan and tsan
# flavours' tests run the fake-apiserver at KR_FAKE_APISERVER (absolute path; test.sh: the release
# build's) instead of building a sanitized one, when it is set.
# The dev flavour keeps the compile commands the shared ccache holds.
# Extra arguments are passed to `cmake --build` (e.g. a target name via --target).
set -euo pipefail
cd "$(dirname "$0")/.."
flavour=${1:-release}
shift || true
light=(-DKR_LIGHT_TEST_DEBUG_INFO=ON -DKR_SPDLOG_COMPILED=ON)
cxx=  # the C++ compiler a flavour asks for (empty: CMake's default, GCC)
case "$flavour" in
  release) dir=build; args=(-DCMAKE_BUILD_TYPE=RelWithDebInfo -DKR_STATIC=ON "${light[@]}"
                             "-DKR_RELEASE_DEBUG_INFO=${KR_RELEASE_DEBUG_INFO:-full}") ;;
  asan) dir=build-asan; cxx=clang++
        args=(-DCMAKE_BUILD_TYPE=Debug -DKR_SANITIZE=ON "${light[@]}"
                             -DCMAKE_C_COMPILER=clang -DCMAKE_CXX_COMPILER=$cxx
                             -DCMAKE_CXX_FLAGS_DEBUG=-g1 -DCMAKE_C_FLAGS_DEBUG=-g1
                             "-DKR_FAKE_APISERVER=${KR_FAKE_APISERVER:-}") ;;
  tsan) dir=build-tsan; args=(-DCMAKE_BUILD_TYPE=Debug -DKR_TSAN=ON "${light[@]}"
                             "-DCMAKE_CXX_FLAGS_DEBUG=-O1 -g1" "-DCMAKE_C_FLAGS_DEBUG=-O1 -g1"
                             "-DKR_FAKE_APISERVER=${KR_FAKE_APISERVER:-}") ;;
  dev) dir=build-dev; args=(-DCMAKE_BUILD_TYPE=Debug -DKR_STATIC=OFF) ;;
  *) echo "usage: $0 [release|asan|tsan|dev] [cmake --build args...]" >&2; exit 2 ;;
esac
dir=${KR_BUILD_DIR:-$dir}  # helpers working side by side use their own build dirs
# A directory configured with another C++ compiler (build-asan was GCC's until 2026-12-07): CMake
# would notice, delete its cache and configure without the -D options given here (a build-asan
# without the sanitizers), so configure it afresh instead.
if [ -n "$cxx" ] && [ -f "$dir/CMakeCache.txt" ] &&
  ! grep -qx "CMAKE_CXX_COMPILER:[A-Z]*=\(.*/\)\?$cxx" "$dir/CMakeCache.txt"; then
  rm -rf "$dir/CMakeCache.txt" "$dir/CMakeFiles"
fi
cmake -S . -B "$dir" -G Ninja "${args[@]}" >/dev/null
cmake --build "$dir" "$@"
