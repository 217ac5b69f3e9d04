#!/usr/bin/env bash
# clang-tidy (the checks in .clang-tidy) over every file under src/, with the flags of a
# configured build (its compile_commands.json), one process per core. Any finding fails.
# The same parse also runs clang's -Wthread-safety analysis (the KR_GUARDED_BY annotations of
# kube_router/base/mutex.h): one clang pass over src/ instead of two. It first proves that the
# analysis rejects tests/thread_safety/violation.cc.
#   scripts/check-tidy.sh [build-dir]     (KR_CLANG_TIDY: the clang-tidy to use)
# It needs only a configured build directory (compile_commands.json and the unity files CMake
# writes when it generates), nothing built: test.sh starts it beside the first build.
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

# The libraries build as unity files (KR_UNITY_BUILD): compile_commands.json lists each batch of
# up to 8 sources as one unity file that #includes them. Two passes (docs/build.md, "The clang
# checks"):
#  1. every check and the thread-safety analysis over each unity file of src/ (and each source
#     outside a batch): a batch's headers are parsed and matched once, not once per source. The
#     sources are headers to that parse and .clang-tidy's HeaderFilterRegex covers them.
#  2. misc-unused-using-decls looks at the main file only, so it would not see the batched
#     sources: each batched source with a using-declaration is parsed on its own, with that
#     check only (and each gets its unity file's command: the same flags).
# Copies of the compile commands (the build may regenerate its own while this runs).
commands=$(mktemp -d /tmp/kr-tidy.XXXXXX)
trap 'rm -rf "$commands"' EXIT
mkdir "$commands/batches" "$commands/sources"
python3 -c '
import json, os, re, sys
build, out = sys.argv[1], sys.argv[2]
root = os.path.join(os.getcwd(), "src") + os.sep
in_src = lambda path: os.path.realpath(path).startswith(root)
# A using-declaration (not a using-directive): "using" and a qualified name before the next ";"
# (a superset: aliases with "::", class-scope ones and comments match too).
using_declaration = re.compile(r"\busing\s+(?!namespace\b)[^=;{}]*::[^=;{}]*;")
batches, sources, units, using_files = [], [], [], []
for e in json.load(open(os.path.join(build, "compile_commands.json"))):
    path = os.path.join(e["directory"], e["file"])
    if not re.search(r"/Unity/unity_[^/]*\.cxx$", path):
        batches.append(e)
        if in_src(path):
            units.append(path)
        continue
    with open(path, encoding="utf-8") as unity:
        included = re.findall(r"^#include \"([^\"]+)\"$", unity.read(), re.MULTILINE)
    if not included:
        sys.exit("check-tidy: no source in unity file " + path)
    batches.append(e)
    if any(in_src(s) for s in included):
        units.append(path)
    for source in included:
        sources.append(dict(e, file=source, command=e["command"].replace(e["file"], source)))
        if in_src(source):
            with open(source, encoding="utf-8") as text:
                if using_declaration.search(text.read()):
                    using_files.append(source)
for name, entries in (("batches", batches), ("sources", sources)):
    json.dump(entries, open(os.path.join(out, name, "compile_commands.json"), "w"), indent=1)
open(os.path.join(out, "units"), "w").write("".join(u + "\n" for u in sorted(set(units))))
open(os.path.join(out, "using"), "w").write("".join(u + "\n" for u in sorted(set(using_files))))
' "$build" "$commands"
[ -s "$commands/units" ] ||
  { echo "check-tidy: no file under src/ in $build/compile_commands.json" >&2; exit 1; }
# The compiler warnings (gcc's -Werror set, clang's own view of them) are the build's business;
# clang-tidy enforces the checks of .clang-tidy and the thread-safety analysis. One file per
# process, so neither core idles at the end while the other works through a queue.
common=(--quiet --warnings-as-errors='*' --extra-arg=-Wno-unknown-warning-option
        --extra-arg=-Wno-error)
status=0
xargs -P "$(nproc)" -n 1 "$tidy" -p "$commands/batches" "${common[@]}" "${thread_safety[@]}" \
  <"$commands/units" || status=1
if [ -s "$commands/using" ]; then
  xargs -P "$(nproc)" -n 1 "$tidy" -p "$commands/sources" "${common[@]}" \
    --checks='-*,misc-unused-using-decls' <"$commands/using" || status=1
fi
[ $status -eq 0 ] || { echo "check-tidy: findings above" >&2; exit 1; }
echo "check-tidy: $(wc -l <"$commands/units") units under src/ pass .clang-tidy and" \
  "-Wthread-safety; $(wc -l <"$commands/using") batched sources with using-declarations pass" \
  "misc-unused-using-decls"
