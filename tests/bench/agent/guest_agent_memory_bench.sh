#!/usr/bin/env bash
# The whole-agent memory benchmark with the service proxy on (docs/memory.md): runs
# agent_memory_bench --proxy inside the qemu guest kernel, which has ip_vs (the host has none).
# Not a ctest test. As root, from a worktree with a built build directory:
#
#   tests/bench/agent/guest_agent_memory_bench.sh BUILD_DIR [agent_memory_bench options...]
#   e.g. tests/bench/agent/guest_agent_memory_bench.sh build-dev --baseline=/tmp/main/kube-router
#   The issue's scale under TCG on a loaded host (about 45 min for the full, idle, firewall,
#   router and proxy runs with release binaries; docs/memory.md):
#   KR_BENCH_GUEST_MB=6144 tests/bench/agent/guest_agent_memory_bench.sh build-dev \
#     --agent=REL/kube-router --fake-apiserver=REL/fake-apiserver --sync-timeout=1800
#
# BUILD_DIR must hold kube-router, fake-apiserver and tests/bench/agent/agent_memory_bench. The
# guest gets 4 GiB by default (KR_BENCH_GUEST_MB; fake-apiserver holds the cluster's JSON; the
# agent, BIRD and the kernel's IPVS table of 20,000 services / 200,000 destinations come on top)
# and up to 3 hours (each full-cluster run programs that table under TCG).
set -euo pipefail

[ $# -ge 1 ] || { sed -n '2,16p' "$0" >&2; exit 2; }
build=$(cd "$1" && pwd -P)
shift
bench=$build/tests/bench/agent/agent_memory_bench
[ -x "$bench" ] || { echo "no $bench: build agent_memory_bench first" >&2; exit 2; }
here=$(cd "$(dirname "$0")" && pwd)
exec "$here/../../vm/vm.sh" --cache "$build/vm-cache" --memory "${KR_BENCH_GUEST_MB:-4096}" \
  --timeout "${KR_BENCH_GUEST_TIMEOUT:-10800}" -- "$bench" --proxy "$@"
