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

# The libraries build as unity files (KR_UNITY_BUILD), which compile_commands.json lists instead
# of the sources they include: each source gets its unity file's command (the same flags), so
# clang-tidy parses every file on its own, and a file that compiles only after its batch's
# earlier files (a missing #include) fails here.
commands=$(mktemp -d /tmp/kr-tidy.XXXXXX)
trap 'rm -rf "$commands"' EXIT
files=$(python3 -c '
import json, os, re, sys
build, out = sys.argv[1], sys.argv[2]
root = os.path.join(os.getcwd(), "src") + os.sep
entries = []
for e in json.load(open(os.path.join(build, "compile_commands.json"))):
    path = os.path.join(e["directory"], e["file"])
    if re.search(r"/Unity/unity_[^/]*\.cxx$", path):
        with open(path, encoding="utf-8") as unity:
            sources = re.findall(r"^#include \"([^\"]+)\"$", unity.read(), re.MULTILINE)
        if not sources:
            sys.exit("check-tidy: no source in unity file " + path)
        for source in sources:
            entries.append(dict(e, file=source, command=e["command"].replace(e["file"], source)))
    else:
        entries.append(e)
json.dump(entries, open(os.path.join(out, "compile_commands.json"), "w"), indent=1)
for e in entries:
    if os.path.realpath(os.path.join(e["directory"], e["file"])).startswith(root):
        print(e["file"])' "$build" "$commands" | sort -u)
[ -n "$files" ] || { echo "check-tidy: no file under src/ in $build/compile_commands.json" >&2; exit 1; }
# The compiler warnings (gcc's -Werror set, clang's own view of them) are the build's business;
# clang-tidy enforces the checks of .clang-tidy and the thread-safety analysis.
xargs -P "$(nproc)" -n 4 "$tidy" -p "$commands" --quiet --warnings-as-errors='*' \
  "${thread_safety[@]}" --extra-arg=-Wno-unknown-warning-option --extra-arg=-Wno-error <<<"$files"
echo "check-tidy: $(wc -l <<<"$files") files under src/ pass .clang-tidy and -Wthread-safety"
