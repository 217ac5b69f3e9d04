#!/usr/bin/env bash
# clang-tidy (the checks in .clang-tidy) over every file under src/, with the flags of a
# configured build (its compile_commands.json), one process per core. Any finding fails.
# The same parse also runs clang's -Wthread-safety analysis (the KR_GUARDED_BY annotations of
# kube_router/base/mutex.h): one clang pass over src/ instead of two. It first proves that the
# analysis rejects tests/thread_safety/violation.cc.
#   scripts/check-tidy.sh [build-dir]     (KR_CLANG_TIDY: the clang-tidy to use)
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build}
tidy=${KR_CLANG_TIDY:-clang-tidy}
thread_safety=(--checks='clang-diagnostic-thread-safety*' --extra-arg=-Wthread-safety)

if out=$("$tidy" --quiet --warnings-as-errors='*' "${thread_safety[@]}" \
  tests/thread_safety/violation.cc -- -std=c++20 -Iinclude 2>&1) ||
  ! grep -q "requires holding mutex" <<<"$out"; then
  echo "check-tidy: $tidy did not reject tests/thread_safety/violation.cc:" >&2
  echo "$out" >&2
  exit 1
fi

files=$(python3 -c '
import json, os, sys
root = os.path.join(os.getcwd(), "src") + os.sep
for e in json.load(open(sys.argv[1])):
    if os.path.realpath(e["file"]).startswith(root):
        print(e["file"])' "$build/compile_commands.json" | sort -u)
[ -n "$files" ] || { echo "check-tidy: no file under src/ in $build/compile_commands.json" >&2; exit 1; }
# The compiler warnings (gcc's -Werror set, clang's own view of them) are the build's business;
# clang-tidy enforces the checks of .clang-tidy and the thread-safety analysis.
xargs -P "$(nproc)" -n 4 "$tidy" -p "$build" --quiet --warnings-as-errors='*' \
  "${thread_safety[@]}" --extra-arg=-Wno-unknown-warning-option --extra-arg=-Wno-error <<<"$files"
echo "check-tidy: $(wc -l <<<"$files") files under src/ pass .clang-tidy and -Wthread-safety"
