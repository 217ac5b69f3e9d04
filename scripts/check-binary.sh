#!/usr/bin/env bash
# Checks the agent binary as the image ships it: fully static (no NSS, no loader), no debug info
# (split into <binary>.debug, which gdb finds through the .gnu_debuglink section) and at most
# KR_MAX_BINARY_BYTES (15 MB; README.md states the size).
set -euo pipefail
bin=${1:-build/kube-router}
max=${KR_MAX_BINARY_BYTES:-15000000}
fail() { echo "check-binary: $bin: $*" >&2; exit 1; }
[ -x "$bin" ] || fail "missing"
# ldd exits non-zero for a static executable, so read its words rather than its status.
ldd_out=$(ldd "$bin" 2>&1 || true)
grep -q "not a dynamic executable" <<<"$ldd_out" || fail "not a static executable: $ldd_out"
sections=$(objdump -h "$bin" | awk '{print $2}')
if grep -q '^\.debug_info$' <<<"$sections"; then fail "carries debug info"; fi
grep -q '^\.gnu_debuglink$' <<<"$sections" || fail "has no .gnu_debuglink to its debug file"
[ -s "$bin.debug" ] || fail "its debug info file $bin.debug is missing"
size=$(stat -c %s "$bin")
[ "$size" -le "$max" ] || fail "$size bytes, more than the bound of $max"
echo "check-binary: $bin is static, stripped ($size bytes <= $max), debug info in $bin.debug"
