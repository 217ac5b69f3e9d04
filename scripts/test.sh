#!/usr/bin/env bash
# The one test command: installs dependencies, builds the release (static) and ASan+UBSan
# flavours, checks the agent binary is static, and runs every test tier:
#   unit  - pure logic, no root
#   netns - real kernel in throwaway network namespaces (root)
#   vm    - Debian guest kernel under qemu for IPVS/IPIP (root)
#   fuzz  - fuzz corpora replayed with deterministic mutations
# The ASan+UBSan build runs the unit, fuzz and netns tiers again. Also checked: formatting
# (clang-format), module boundaries (ctest include_boundaries), clang -Wthread-safety on the
# annotated mutexes and clang-tidy over src/.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$(id -u)" -eq 0 ]; then
  scripts/install-deps.sh
  tiers='unit|netns|vm|fuzz'
  asan_tiers='unit|netns|fuzz'
else
  echo "test.sh: not root: dependencies must already be installed; netns and vm tiers need root" >&2
  tiers='unit|fuzz'
  asan_tiers='unit|fuzz'
fi

jobs=$(nproc)
status=0
scripts/check-format.sh || status=1
scripts/build.sh release
# ldd exits non-zero for a static executable, so read its words rather than its status.
ldd_out=$(ldd build/kube-router 2>&1 || true)
if ! grep -q "not a dynamic executable" <<<"$ldd_out"; then
  echo "test.sh: build/kube-router is not a static executable:" >&2
  echo "$ldd_out" >&2
  exit 1
fi
echo "test.sh: build/kube-router is fully static"
scripts/build.sh asan

scripts/check-thread-safety.sh build || status=1
scripts/check-tidy.sh build || status=1
ctest --test-dir build -L "$tiers" -j "$jobs" --output-on-failure --no-tests=error || status=1
ctest --test-dir build-asan -L "$asan_tiers" -j "$jobs" --output-on-failure --no-tests=error ||
  status=1
exit $status
