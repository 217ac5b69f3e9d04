#!/usr/bin/env bash
# clang -Wthread-safety over every file under src/ that includes kube_router/base/mutex.h (the
# annotated mutex), with the flags of a configured build (its compile_commands.json): a member
# marked KR_GUARDED_BY read or written without its mutex fails. Syntax only, so it costs a
# parse per file. First proves the check bites on tests/thread_safety/violation.cc.
#   scripts/check-thread-safety.sh [build-dir]     (KR_CLANG: the clang++ to use)
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build}
clang=${KR_CLANG:-clang++-14}
flags=(-fsyntax-only -Wthread-safety -Werror=thread-safety)

if out=$("$clang" -std=c++20 -Iinclude "${flags[@]}" tests/thread_safety/violation.cc 2>&1) ||
  ! grep -q "requires holding mutex" <<<"$out"; then
  echo "check-thread-safety: $clang did not reject tests/thread_safety/violation.cc:" >&2
  echo "$out" >&2
  exit 1
fi

python3 - "$build/compile_commands.json" "$clang" "${flags[@]}" <<'PY'
import concurrent.futures, json, os, re, shlex, subprocess, sys

db, clang, flags = sys.argv[1], sys.argv[2], sys.argv[3:]
root = os.getcwd()
include_re = re.compile(r'^\s*#\s*include\s*[<"]([^>"]+)[>"]', re.M)
seen = {}

def reaches_mutex(path, stack=()):
    """Whether a file of ours includes base/mutex.h, directly or through our headers."""
    if path in seen:
        return seen[path]
    seen[path] = False  # cycles
    text = open(path, encoding="utf-8", errors="replace").read()
    found = False
    for spec in include_re.findall(text):
        if spec == "kube_router/base/mutex.h":
            found = True
            break
        for cand in (os.path.join(os.path.dirname(path), spec), os.path.join(root, "include", spec)):
            if os.path.isfile(cand) and reaches_mutex(os.path.realpath(cand)):
                found = True
                break
        if found:
            break
    seen[path] = found
    return found

def clang_args(entry):
    args = shlex.split(entry["command"]) if "command" in entry else list(entry["arguments"])
    while args and os.path.basename(args[0]) in ("ccache", "sccache"):
        args = args[1:]
    out, skip = [clang], False
    for a in args[1:]:
        if skip:
            skip = False
        elif a in ("-o", "-MF", "-MT", "-MQ"):
            skip = True
        elif a in ("-c", "-MD", "-MMD") or a.startswith("-W") or a == entry["file"]:
            pass
        else:
            out.append(a)
    return out + flags + [entry["file"]], entry["directory"]

entries = [e for e in json.load(open(db))
           if os.path.realpath(e["file"]).startswith(os.path.join(root, "src") + os.sep)
           and reaches_mutex(os.path.realpath(e["file"]))]
if not entries:
    sys.exit("check-thread-safety: no file under src/ uses kube_router/base/mutex.h")

def run(entry):
    args, cwd = clang_args(entry)
    try:
        r = subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=1800)
    except subprocess.TimeoutExpired:
        return entry["file"], 1, "clang did not finish within 1800 s"
    return entry["file"], r.returncode, r.stderr

failed = 0
with concurrent.futures.ThreadPoolExecutor(os.cpu_count() or 2) as pool:
    for path, code, err in pool.map(run, entries):
        if code != 0:
            failed += 1
            print(f"check-thread-safety: {os.path.relpath(path, root)}:\n{err}", file=sys.stderr)
if failed:
    sys.exit(f"check-thread-safety: {failed} of {len(entries)} files fail -Wthread-safety")
print(f"check-thread-safety: {len(entries)} files under src/ pass clang -Wthread-safety")
PY
