#!/usr/bin/env bash
# tests/vm/vm.sh's run directory and guest on every way a run ends, with a stand-in for
# qemu-system-x86_64 (the boot itself is what the vm tier tests) and a prepared kernel cache:
#   the command passed    -> its output printed, status 0, the run directory removed;
#   the command failed    -> its status, the run directory kept for inspection;
#   the guest hung        -> 125 after --timeout, the guest stopped, the directory removed;
#   SIGTERM / SIGHUP      -> 128+N at once, the guest stopped, the directory removed (--out: kept).
# Every case also checks that another run's directory under runs/ is left alone.
#   vm_sh_cleanup_test.sh PATH/TO/vm.sh
set -euo pipefail
vm_sh=$1
[ "$(id -u)" -eq 0 ] || { echo "vm.sh runs as root only: skipped"; exit 77; }

work=$(mktemp -d /tmp/kr-vm-sh-test.XXXXXX)
bin=$work/bin cache=$work/cache pids=$work/guest-pids
touch "$pids"
started=()
# Whatever a broken vm.sh leaves running (each guest stand-in, each vm.sh started here) ends with
# the test.
cleanup() {
  local pid
  for pid in "${started[@]}" $(cat "$pids"); do kill -KILL "$pid" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT

failures=0
check() { # DESCRIPTION COMMAND...
  local what=$1
  shift
  if "$@"; then echo "ok: $what"; else echo "FAILED: $what" >&2; failures=$((failures + 1)); fi
}
is() { [ "$1" = "$2" ] || { echo "  got '$1', want '$2'" >&2; return 1; }; }
gone() { ! kill -0 "$1" 2>/dev/null; }
runs_are() { # WANTED... (the directories under runs/, in any order)
  # Both sides sorted the same way: a run's random suffix may sort before or after another name.
  is "$(cd "$cache/runs" && ls | LC_ALL=C sort | tr '\n' ' ')" \
    "$(printf '%s\n' "$@" | LC_ALL=C sort | tr '\n' ' ')"
}
# Polls (with a deadline) until COMMAND succeeds.
wait_until() { # SECONDS COMMAND...
  local deadline=$((SECONDS + $1))
  shift
  until "$@"; do
    [ "$SECONDS" -lt "$deadline" ] || return 1
    sleep 0.05
  done
}

# The stand-in: FAKE_QEMU=exit:N writes what the guest's init writes for a command that exited
# with N; FAKE_QEMU=hang never ends (a hung guest). It appends its pid to $FAKE_QEMU_PIDS.
mkdir -p "$bin"
cat >"$bin/qemu-system-x86_64" <<'QEMU'
#!/usr/bin/env bash
out=
while [ $# -gt 0 ]; do
  if [ "$1" = -append ]; then
    for word in $2; do case $word in kr.out=*) out=${word#kr.out=} ;; esac; done
  fi
  shift
done
echo $$ >>"$FAKE_QEMU_PIDS"
case $FAKE_QEMU in
  exit:*) echo "guest output" >"$out/output"; echo "${FAKE_QEMU#exit:}" >"$out/exit_code" ;;
  hang) exec sleep 1000 ;;
esac
QEMU
# vm.sh checks that the kernel tools exist; with the prepared cache none of them runs.
for tool in dpkg-deb depmod modprobe cpio busybox; do
  command -v "$tool" >/dev/null || printf '#!/bin/sh\necho "%s must not run" >&2; exit 1\n' \
    "$tool" >"$bin/$tool"
done
chmod +x "$bin"/*
mkdir -p "$cache/kernel/modules" "$cache/runs/run.concurrent"
echo 6.1.0-test >"$cache/kernel/version"
touch "$cache/kernel/vmlinux" "$cache/kernel/initrd.cpio" "$cache/runs/run.concurrent/console.log"

export FAKE_QEMU_PIDS=$pids
guests() { wc -l <"$pids"; }
more_guests_than() { [ "$(guests)" -gt "$1" ]; }
last_guest() { tail -n 1 "$pids"; }
run_vm() { # MODE TIMEOUT [vm.sh flags]
  local mode=$1 timeout=$2
  shift 2
  PATH="$bin:$PATH" FAKE_QEMU=$mode "$vm_sh" --cache "$cache" --timeout "$timeout" "$@" -- true
}

status=0
output=$(run_vm exit:0 60 2>"$work/err") || status=$?
check "a passing command's status" is "$status" 0
check "a passing command's output" is "$output" "guest output"
check "a passing run leaves no directory" runs_are run.concurrent

status=0
run_vm exit:3 60 >/dev/null 2>"$work/err" || status=$?
check "a failing command's status" is "$status" 3
kept=$(sed -n 's/^vm.sh: kept //p' "$work/err")
check "a failing run's directory is kept and named" runs_are run.concurrent "$(basename "$kept")"
check "the kept directory holds the command's status" is "$(cat "$kept/exit_code")" 3
rm -rf "$kept"

status=0
run_vm hang 1 >/dev/null 2>"$work/err" || status=$?
check "a hung guest gives 125" is "$status" 125
check "the hung guest was stopped" gone "$(last_guest)"
check "a hung guest's run leaves no directory" runs_are run.concurrent

# A signal while the guest runs: vm.sh stops it and removes its own directory at once.
for signal in TERM HUP; do
  for out_flag in "" --out; do
    before=$(guests)
    extra=()
    [ -z "$out_flag" ] || extra=(--out "$cache/runs/run.callers")
    # vm.sh itself in the background (not a function's subshell): $! is its pid.
    PATH="$bin:$PATH" FAKE_QEMU=hang "$vm_sh" --cache "$cache" --timeout 300 "${extra[@]}" \
      -- true >/dev/null 2>"$work/err" &
    vm=$!
    started+=("$vm")
    wait_until 30 more_guests_than "$before" || { echo "FAILED: no guest started" >&2; exit 1; }
    guest=$(last_guest)
    kill -"$signal" "$vm"
    signalled=$SECONDS
    status=0
    wait "$vm" || status=$?
    want=143
    [ "$signal" = TERM ] || want=129
    check "SIG$signal ${out_flag:-(own directory)}: exit status" is "$status" "$want"
    check "SIG$signal ${out_flag:-(own directory)}: stopped within 15 s" \
      test $((SECONDS - signalled)) -le 15
    check "SIG$signal ${out_flag:-(own directory)}: the guest was stopped" gone "$guest"
    if [ -z "$out_flag" ]; then
      check "SIG$signal: the run's own directory is removed" runs_are run.concurrent
    else
      check "SIG$signal --out: the caller's directory stays" runs_are run.callers run.concurrent
      rm -rf "$cache/runs/run.callers"
    fi
  done
done

[ "$failures" -eq 0 ] || { echo "$failures check(s) failed" >&2; exit 1; }
echo "all checks passed"
