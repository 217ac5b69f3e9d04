#!/usr/bin/env bash
# Configures and builds one flavour:
#   release (default) -> build/       static kube-router, tests, tools (RelWithDebInfo)
#   asan              -> build-asan/  AddressSanitizer + UndefinedBehaviorSanitizer, dynamic
#   dev               -> build-dev/   Debug, dynamic (fast links while iterating)
# Extra arguments are passed to `cmake --build` (e.g. a target name via --target).
set -euo pipefail
cd "$(dirname "$0")/.."
flavour=${1:-release}
shift || true
case "$flavour" in
  release) dir=build; args=(-DCMAKE_BUILD_TYPE=RelWithDebInfo -DKR_STATIC=ON) ;;
  asan) dir=build-asan; args=(-DCMAKE_BUILD_TYPE=Debug -DKR_SANITIZE=ON) ;;
  dev) dir=build-dev; args=(-DCMAKE_BUILD_TYPE=Debug -DKR_STATIC=OFF) ;;
  *) echo "usage: $0 [release|asan|dev] [cmake --build args...]" >&2; exit 2 ;;
esac
dir=${KR_BUILD_DIR:-$dir}  # helpers working side by side use their own build dirs
cmake -S . -B "$dir" -G Ninja "${args[@]}" >/dev/null
cmake --build "$dir" "$@"
