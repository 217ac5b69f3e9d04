#!/usr/bin/env bash
# Runs one command inside a Debian guest kernel under qemu and returns its exit status.
#
#   vm.sh --cache DIR [--timeout SECONDS] [--memory MB] [--modules "ip_vs ipip ..."]
#         [--out DIR] -- COMMAND [ARGS...]
#
# The guest mounts the host's root file system read-only over 9p and runs COMMAND chrooted into
# it, so binaries built on the host run unchanged. Inside the guest /etc, /tmp, /var/tmp and
# $HOME (/root) are writable overlays kept in guest memory (tests may edit
# /etc/iproute2/rt_tables; nothing reaches the host), /run is a fresh tmpfs, and /lib/modules
# holds the guest kernel's modules, so both `modprobe` and the kernel's module autoloading
# work. The guest has no network device.
#
# The kernel is fetched from Debian (apt-get download; the versioned package is resolved from
# linux-image-amd64's Depends at run time), unpacked, and cached in the --cache directory
# together with a small initramfs; concurrent invocations share the cache under a lock.
#
# COMMAND's stdout and stderr are copied to ours. Exit status: COMMAND's, or 125 when the
# guest failed to boot, hung past --timeout, or never reported a result; 128+N when this script
# got signal N (SIGTERM, SIGHUP, SIGINT), after stopping the guest.
#
# Each run has its own directory under <cache>/runs (unless --out names one). It stays only when
# COMMAND ran and failed (for inspection); any other end removes it, a killed guest's included.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
cache=
timeout_s=300
memory_mb=1024
modules="ip_vs ip_vs_rr ip_vs_wrr ip_vs_lc ip_vs_sh ip_vs_dh ipip ip6_tunnel dummy veth"
out=

usage() {
  sed -n '2,20p' "$0" >&2
  exit 2
}

while [ $# -gt 0 ]; do
  case "$1" in
    --cache) cache=$2; shift 2 ;;
    --timeout) timeout_s=$2; shift 2 ;;
    --memory) memory_mb=$2; shift 2 ;;
    --modules) modules=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    --) shift; break ;;
    *) usage ;;
  esac
done
[ -n "$cache" ] && [ $# -gt 0 ] || usage

fail() {
  echo "vm.sh: $*" >&2
  exit 125
}

[ "$(id -u)" -eq 0 ] || fail "must run as root (apt-get download, qemu with a 9p export of /)"
for tool in qemu-system-x86_64 dpkg-deb depmod modprobe cpio busybox flock timeout; do
  command -v "$tool" >/dev/null || fail "missing $tool (run scripts/install-deps.sh)"
done

mkdir -p "$cache"
# Physical path: the guest sees the host under /host, where a symlinked cache (build-dev/vm-cache
# -> /work/vm-cache) would point outside.
cache=$(cd "$cache" && pwd -P)

# ---- kernel and initramfs (once per cache directory) ----

apt_download() {
  # apt-get download needs package lists; a machine where install-deps.sh found everything
  # installed may never have run `apt-get update`. A concurrent apt run holding the lists lock
  # makes `apt-get update` fail for a moment, hence a few attempts.
  apt-get download "$1" >/dev/null 2>&1 && return 0
  local attempt
  for attempt in 1 2 3; do
    apt-get update -qq >/dev/null 2>&1 && apt-get download "$1" >/dev/null 2>&1 && return 0
    sleep "$attempt"
  done
  fail "apt-get download $1 failed (after apt-get update); is the Debian archive reachable?"
}

fetch_kernel() {
  local work=$cache/work.$$
  rm -rf "$work"
  mkdir -p "$work"
  (
    cd "$work"
    apt_download linux-image-amd64
    local pkg
    pkg=$(dpkg-deb -f linux-image-amd64_*.deb Depends | tr ',' '\n' | grep -o 'linux-image-[^ ]*' |
      head -n1)
    [ -n "$pkg" ] || fail "cannot read the kernel package from linux-image-amd64's Depends"
    apt_download "$pkg"
    dpkg-deb -x "$pkg"_*.deb root
  )
  local version
  version=$(ls "$work/root/lib/modules")
  [ -n "$version" ] && [ -f "$work/root/boot/vmlinuz-$version" ] ||
    fail "unexpected kernel package layout"
  depmod -b "$work/root" "$version"
  rm -rf "$cache/kernel"
  mkdir -p "$cache/kernel"
  mv "$work/root/boot/vmlinuz-$version" "$cache/kernel/vmlinuz"
  # Under TCG, decompressing the kernel costs seconds per boot: keep the uncompressed ELF
  # image (Debian's kernel has a PVH entry, so qemu boots it directly). Without it, boot the
  # compressed one.
  python3 - "$cache/kernel/vmlinuz" "$cache/kernel/vmlinux" <<'PY' ||
import lzma, sys
data = open(sys.argv[1], "rb").read()
start = data.find(b"\xfd7zXZ\x00")
if start < 0:
    sys.exit("no xz payload in the kernel image")
elf = lzma.LZMADecompressor(format=lzma.FORMAT_XZ).decompress(data[start:])
if not elf.startswith(b"\x7fELF"):
    sys.exit("the xz payload is not an ELF image")
open(sys.argv[2], "wb").write(elf)
PY
    echo "vm.sh: booting the compressed kernel (no uncompressed image)" >&2
  mv "$work/root/lib/modules" "$cache/kernel/modules"
  echo "$version" >"$cache/kernel/version"
  rm -rf "$work"
}

# The initramfs only needs what mounts the host root (virtio, 9p) and overlayfs; everything
# else is loaded from the full module tree after the chroot.
build_initrd() {
  local version initrd=$cache/initrd.$$
  version=$(cat "$cache/kernel/version")
  rm -rf "$initrd"
  mkdir -p "$initrd"/{bin,sbin,proc,sys,dev,host,rw,modules}
  cp /bin/busybox "$initrd/bin/busybox"
  for applet in sh mount umount mkdir chmod cat echo insmod chroot poweroff sleep sync grep sed; do
    ln -s busybox "$initrd/bin/$applet"
  done
  local order=$initrd/modules/order
  : >"$order"
  # modprobe -d wants <dir>/lib/modules/<version>.
  local tree=$cache/tree.$$
  mkdir -p "$tree/lib"
  ln -s "$cache/kernel/modules" "$tree/lib/modules"
  for m in virtio_pci 9pnet_virtio 9p overlay; do
    modprobe -d "$tree" -S "$version" --show-depends "$m" | awk '$1 == "insmod" {print $2}' |
      while read -r ko; do
        base=$(basename "$ko")
        grep -qx "$base" "$order" && continue
        cp "$ko" "$initrd/modules/$base"
        echo "$base" >>"$order"
      done
  done
  rm -rf "$tree"
  cp "$here/guest-init.sh" "$initrd/init"
  chmod 755 "$initrd/init"
  (cd "$initrd" && find . | cpio -o -H newc --quiet) >"$cache/kernel/initrd.cpio.new"
  mv "$cache/kernel/initrd.cpio.new" "$cache/kernel/initrd.cpio"
  rm -rf "$initrd"
}

(
  flock 9
  [ -f "$cache/kernel/version" ] || fetch_kernel
  # A changed guest init (or this script) must reach the initramfs.
  initrd=$cache/kernel/initrd.cpio
  if [ ! -f "$initrd" ] || [ "$here/guest-init.sh" -nt "$initrd" ] || [ "$0" -nt "$initrd" ]; then
    build_initrd
  fi
) 9>"$cache/lock"
version=$(cat "$cache/kernel/version")
kernel_image=$cache/kernel/vmlinux
[ -f "$kernel_image" ] || kernel_image=$cache/kernel/vmlinuz

# ---- one boot ----

# On any end: the guest is stopped (a signal to this script would otherwise leave qemu running
# in timeout's process group), then this run's own directory goes unless keep_out says it stays.
# Only the directory mktemp made for this run: concurrent runs share runs/.
# The guest is this script's only background job: $! names it from its start, whenever the
# signal comes.
guest_running=
own_out=
keep_out=
finish() {
  if [ -n "$guest_running" ] && [ -n "${!-}" ]; then
    kill -TERM "$!" 2>/dev/null || true
    wait "$!" 2>/dev/null || true
  fi
  if [ -n "$own_out" ] && [ -z "$keep_out" ]; then rm -rf "$own_out"; fi
}
trap finish EXIT
trap 'exit 129' HUP
trap 'exit 130' INT
trap 'exit 143' TERM

if [ -z "$out" ]; then
  mkdir -p "$cache/runs"
  out=$(mktemp -d "$cache/runs/run.XXXXXX")
  own_out=$out
fi
mkdir -p "$out"
out=$(cd "$out" && pwd)
case "$out$cache$PWD" in *[[:space:]]*) fail "paths with white space are not supported" ;; esac
rm -f "$out/exit_code" "$out/output" "$out/console.log"

# The command, quoted for the guest's /bin/sh; run from the same directory as on the host.
{
  echo "cd $(printf '%q' "$PWD") 2>/dev/null || cd /"
  printf 'exec'
  printf ' %q' "$@"
  echo
} >"$out/command.sh"

# no_timer_check: on a loaded host the emulated timer can miss the kernel's early IO-APIC check,
# which then panics ("IO-APIC + timer doesn't work!"; seen once at a load average of 13).
append="console=ttyS0 quiet loglevel=3 panic=-1 tsc=reliable no_timer_check kr.out=$out"
append+=" kr.modules_dir=$cache/kernel/modules kr.version=$version kr.modules=${modules// /,}"

# In the background, so that a trapped signal interrupts the wait at once (bash runs a trap only
# after the foreground command ends). timeout relays our TERM to qemu.
guest_running=1
timeout --kill-after=10 "$timeout_s" qemu-system-x86_64 \
  -machine q35 -cpu max,la57=off,erms=off,fsrm=off -smp 1 -m "$memory_mb" \
  -nodefaults -display none -no-reboot \
  -serial "file:$out/console.log" -monitor none \
  -kernel "$kernel_image" -initrd "$cache/kernel/initrd.cpio" -append "$append" \
  -virtfs local,path=/,mount_tag=hostroot,security_model=none,readonly=on,multidevs=remap \
  -virtfs "local,path=$out,mount_tag=krout,security_model=none,multidevs=remap" &
qemu_status=0
wait "$!" || qemu_status=$?
guest_running=

[ -f "$out/output" ] && cat "$out/output"
if [ ! -f "$out/exit_code" ]; then
  echo "vm.sh: the guest reported no result (qemu status $qemu_status; 124 = timeout after" \
    "${timeout_s}s). Last console lines:" >&2
  tail -n 40 "$out/console.log" >&2 || true
  exit 125
fi
status=$(cat "$out/exit_code")
case "$status" in
  '' | *[!0-9]*) echo "vm.sh: unreadable exit status '$status' from the guest" >&2; exit 125 ;;
esac
if [ "$status" -ne 0 ]; then
  echo "vm.sh: command exited with status $status; last console lines:" >&2
  tail -n 20 "$out/console.log" >&2 || true
  # A failed run's directory (console.log, output, command.sh) stays for inspection.
  keep_out=1
  [ -z "$own_out" ] || echo "vm.sh: kept $out" >&2
fi
exit "$status"
