#!/usr/bin/env bash
# The one test command: installs dependencies, checks formatting, builds the release (static)
# and ASan+UBSan flavours, checks the shipped binary, and runs every test tier:
#   unit  - pure logic, no root
#   netns - real kernel in throwaway network namespaces (root)
#   vm    - Debian guest kernel under qemu for IPVS/IPIP (root)
#   fuzz  - fuzz corpora replayed with deterministic mutations
# The ASan+UBSan build runs unit, netns and fuzz; the release build runs vm, fuzz (full length)
# and the tests labelled `release` (checks a sanitizer cannot make, and the tests of the shipped
# static binary); the TSan build runs the tests of the threaded code (label tsan: the runtime,
# the informers, the BGP speaker and the controllers). Also checked: module boundaries (ctest
# include_boundaries, unit), and clang-tidy over src/ with clang's -Wthread-safety on the
# annotated mutexes (one parse).
#
# Schedule (docs/build.md): the run is CPU-bound on 2 cores. The guests of the vm tier are one
# serial lane of about one core (one TCG guest at a time): their binaries are built first and the
# lane starts at once, running beside everything else until it is the last thing waited for.
# Each other test tier runs while the next build compiles at a lower priority: the release tests
# beside the ASan build, the ASan tests beside the TSan build. clang's pass needs only the
# configured release build: it starts first, at the lowest priority, and takes the CPU the builds
# leave idle (their serial links and last compiles). Each phase's wall and CPU time is printed at
# the end.
set -euo pipefail
cd "$(dirname "$0")/.."
# The release flavour's code with line tables (-g1), not full -g: the same machine code (GCC's
# code generation does not depend on -g), a quarter less compile time (docs/build.md).
export KR_RELEASE_DEBUG_INFO=lines

jobs=$(nproc)
logs=$(mktemp -d /tmp/kr-test-logs.XXXXXX)
timings=$logs/timings
t0=$SECONDS
# phase NAME COMMAND...: runs COMMAND and records its wall time and CPU time (user + system of
# every process it ran: the subshell's reaped children, nothing else of this script's).
phase() {
  (
    name=$1 start=$SECONDS status=0 self=$BASHPID
    shift
    "$@" || status=$?
    cpu=$(awk '{print $16 + $17}' "/proc/$self/stat")
    printf '%-16s %6ds wall %7ds cpu  exit %d\n' "$name" $((SECONDS - start)) \
      $((cpu / $(getconf CLK_TCK))) "$status" >>"$timings"
    exit $status
  )
}

if [ "$(id -u)" -eq 0 ]; then
  phase install-deps scripts/install-deps.sh
  run_vm=1
  release_filter=(-L 'fuzz|release' -LE vm)
  asan_tiers='unit|netns|fuzz'
  tsan_filter=(-L tsan)
else
  echo "test.sh: not root: dependencies must already be installed; netns and vm tiers need root" >&2
  run_vm=0
  release_filter=(-L 'fuzz|release' -LE 'netns|vm')
  asan_tiers='unit|fuzz'
  tsan_filter=(-L tsan -LE 'netns|vm')
fi

# vm_lane: the guests, from each vm test directory's own ctest file. The build's top one would
# first run the GoogleTest discovery of every test executable that exists, which the release
# build may be linking at that moment.
vm_lane() {
  local dir status=0
  for dir in build/tests/vm/*/; do
    [ -f "$dir/CTestTestfile.cmake" ] || continue
    ctest --test-dir "$dir" -L vm --output-on-failure --no-tests=error || status=1
  done
  return "$status"
}
# background NAME COMMAND...: phase NAME in the background, its output in its own log.
background() {
  local name=$1
  shift
  phase "$name" "$@" >"$logs/$name.log" 2>&1 &
}
# finish NAME PID: waits for a background phase and prints its log.
finish() {
  local status=0
  wait "$2" || status=$?
  echo "==== $1 (exit $status) ===="
  cat "$logs/$1.log"
  return "$status"
}

status=0
phase format scripts/check-format.sh || status=1
# clang-tidy and -Wthread-safety read the release build's compile commands and unity files, which
# CMake writes when it configures (the help target builds nothing), and nothing built.
checks_pid=
if phase configure scripts/build.sh release --target help >/dev/null; then
  background clang-checks nice -n 19 scripts/check-tidy.sh build
  checks_pid=$!
else
  status=1
fi
vm_pid=
if [ $run_vm -eq 1 ]; then
  # What the guests run first (about three quarters of the release build), then the guests, one
  # at a time (RESOURCE_LOCK kr_vm), while the rest compiles beside them.
  phase build-vm scripts/build.sh release --target kr_vm_tests
  background test-vm vm_lane
  vm_pid=$!
fi
release_built=1
phase build-release nice -n 10 scripts/build.sh release --target kr_ci_release ||
  { release_built=0; status=1; }
release_pid=
if [ $release_built -eq 1 ]; then
  phase check-binary scripts/check-binary.sh build/kube-router || status=1
  # One job beside the vm lane, which holds the other core.
  release_jobs=$jobs
  [ $run_vm -eq 0 ] || release_jobs=1
  background test-release ctest --test-dir build "${release_filter[@]}" -j "$release_jobs" \
    --output-on-failure --no-tests=error
  release_pid=$!
fi
# The ASan and TSan tests run the release build's fake-apiserver (a separate process: a sanitizer
# in it would judge only the test tool; its object store is unit-tested under ASan in process), so
# neither sanitizer flavour compiles one. sandbox.sh takes it from KR_FAKE_APISERVER too.
apiserver_env=()
[ $release_built -eq 0 ] || apiserver_env=(KR_FAKE_APISERVER="$PWD/build/fake-apiserver")
asan_built=1
phase build-asan nice -n 10 env "${apiserver_env[@]}" scripts/build.sh asan ||
  { asan_built=0; status=1; }
if [ -n "$release_pid" ]; then
  finish test-release $release_pid || status=1
fi

asan_pid=
if [ $asan_built -eq 1 ]; then
  background test-asan ctest --test-dir build-asan -L "$asan_tiers" -j "$jobs" \
    --output-on-failure --no-tests=error
  asan_pid=$!
fi
tsan_built=1
phase build-tsan nice -n 10 env "${apiserver_env[@]}" scripts/build.sh tsan --target kr_tsan_tests ||
  { tsan_built=0; status=1; }
if [ -n "$asan_pid" ]; then
  finish test-asan $asan_pid || status=1
fi

if [ $tsan_built -eq 1 ]; then
  # A race fails its test at once (halt_on_error), with TSan's report in that test's output.
  TSAN_OPTIONS="halt_on_error=1 second_deadlock_stack=1 ${TSAN_OPTIONS:-}" \
    phase test-tsan ctest --test-dir build-tsan "${tsan_filter[@]}" -j "$jobs" \
    --output-on-failure --no-tests=error || status=1
fi
if [ -n "$checks_pid" ]; then
  finish clang-checks $checks_pid || status=1
fi
if [ -n "$vm_pid" ]; then
  finish test-vm $vm_pid || status=1
fi

echo "==== timings (total $((SECONDS - t0))s) ===="
cat "$timings"
rm -rf "$logs"
exit $status
