#!/bin/sh
# /init of the vm.sh guest (busybox sh, PID 1). Mounts the host root read-only over 9p at /host,
# makes the places tests write to writable, runs the command vm.sh wrote into the per-run share,
# records its exit status there and powers off. Any failure before the command runs is printed
# to the console; vm.sh then reports "no result".
export PATH=/bin:/sbin

say() { echo "kr-vm: $*"; }
die() {
  say "$*"
  poweroff -f
}

mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev

for m in $(cat /modules/order); do
  insmod "/modules/$m" || say "insmod $m failed"
done

for word in $(cat /proc/cmdline); do
  case "$word" in
    kr.out=*) out=${word#kr.out=} ;;
    kr.modules_dir=*) modules_dir=${word#kr.modules_dir=} ;;
    kr.modules=*) modules=$(echo "${word#kr.modules=}" | sed 's/,/ /g') ;;
  esac
done

# cache=loose: the guest keeps what it read of the (read-only, for this boot unchanging) host
# root in its page cache. Without it every lookup makes a new inode, so every process start
# reads its binary and libraries over 9p again: a third of a process-heavy guest's CPU (a
# netfilter test took 37 CPU seconds, 23 with it).
mount -t 9p -o trans=virtio,version=9p2000.L,ro,msize=262144,cache=loose hostroot /host ||
  die "cannot mount the host root"
mount -t proc proc /host/proc
mount -t sysfs sys /host/sys
mount -t devtmpfs dev /host/dev
mkdir -p /host/dev/pts /host/dev/shm 2>/dev/null
mount -t devpts devpts /host/dev/pts
mount -t tmpfs shm /host/dev/shm
mount -t tmpfs -o mode=755 tmpfs /host/run || die "cannot mount tmpfs on /run"

# Writable views of host directories: an overlay whose upper layer lives in guest memory, so
# the host's files stay visible (a build directory under /tmp still runs) and writes never
# reach the host. The overlay's root takes the upper directory's mode.
mount -t tmpfs tmpfs /rw
writable() {  # <dir> <mode>
  name=$(echo "$1" | sed 's|/|_|g')
  mkdir -p "/rw/$name-upper" "/rw/$name-work"
  chmod "$2" "/rw/$name-upper"
  mount -t overlay overlay \
    -o "lowerdir=/host$1,upperdir=/rw/$name-upper,workdir=/rw/$name-work" "/host$1"
}
writable /etc 755 || die "cannot make /etc writable"
writable /tmp 1777 || die "cannot make /tmp writable"
writable /var/tmp 1777 || die "cannot make /var/tmp writable"
writable /root 700 || die "cannot make /root writable"

# The guest kernel's modules where modprobe looks for them. The host may have no /lib/modules
# at all, so the directory is made in a writable view of the (merged-/usr) lib directory.
libdir=$(chroot /host readlink -f /lib)
writable "$libdir" 755 || die "cannot make $libdir writable"
mkdir -p "/host$libdir/modules"
mount -o bind "/host$modules_dir" "/host$libdir/modules" || die "cannot bind the module tree"
# The kernel's own module requests run in this initramfs: send them into the chroot. The
# wrapper sits at /sbin/modprobe, the path of the chroot's own modprobe, so that programs in the
# chroot which run the modprobe named in /proc/sys/kernel/modprobe themselves (iptables-legacy
# loading ip_tables) find a real one as well.
mkdir -p /sbin
cat >/sbin/modprobe <<'EOF'
#!/bin/sh
exec chroot /host /sbin/modprobe "$@"
EOF
chmod 755 /sbin/modprobe
echo /sbin/modprobe >/proc/sys/kernel/modprobe
# One modprobe for all of them: every process start is expensive under emulation.
[ -z "$modules" ] || chroot /host /sbin/modprobe -a $modules || say "modprobe of $modules failed"

# The per-run share, writable, at the same path as on the host.
mkdir -p "/host$out" 2>/dev/null
mount -t 9p -o trans=virtio,version=9p2000.L,msize=262144 krout "/host$out" ||
  die "cannot mount the result share"

chroot /host /sbin/ip link set lo up || say "cannot bring lo up"

HOME=/root chroot /host /bin/sh "$out/command.sh" >"/host$out/output" 2>&1
status=$?
echo "$status" >"/host$out/exit_code"
sync
say "command exited with status $status"
poweroff -f
