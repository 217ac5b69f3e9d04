#!/bin/sh
# Prepares a node for the pod network, as upstream's install-cni init container does. The
# DaemonSet's init container runs it with the host's /opt/cni/bin and /etc/cni/net.d mounted:
# - copies the CNI plugins the config uses (bridge, host-local, portmap) and loopback (every
#   runtime needs it) from this image into /opt/cni/bin where missing; a node's own are kept;
# - removes stray *.conf files: the runtime takes the first config in sort order, and an old
#   10-kuberouter.conf (or another network's .conf) sorts before 10-kuberouter.conflist;
# - installs the conflist once; kube-router then adds the node's pod CIDR to it.
# Every file is written under a temporary name and renamed, so a runtime never reads half a file.
set -eu
plugins_src=${KR_CNI_PLUGINS_SRC:-/usr/lib/cni}
bin_dir=${KR_CNI_BIN_DIR:-/opt/cni/bin}
conf_dir=${KR_CNI_CONF_DIR:-/etc/cni/net.d}
conf_src=${KR_CNI_CONF_SRC:-/etc/kube-router/cni-conf.json}
conf=$conf_dir/10-kuberouter.conflist

mkdir -p "$bin_dir" "$conf_dir"
for plugin in bridge host-local loopback portmap; do
  if [ -x "$bin_dir/$plugin" ]; then
    continue
  fi
  cp "$plugins_src/$plugin" "$bin_dir/.$plugin.kube-router-tmp"
  chmod 0755 "$bin_dir/.$plugin.kube-router-tmp"
  mv -f "$bin_dir/.$plugin.kube-router-tmp" "$bin_dir/$plugin"
  echo "install-cni: installed $bin_dir/$plugin"
done

for stray in "$conf_dir"/*.conf; do
  [ -e "$stray" ] || continue
  rm -f "$stray"
  echo "install-cni: removed $stray (it would be used instead of $conf)"
done

if [ ! -f "$conf" ]; then
  cp "$conf_src" "$conf_dir/.10-kuberouter.conflist.tmp"
  mv -f "$conf_dir/.10-kuberouter.conflist.tmp" "$conf"
  echo "install-cni: installed $conf"
fi
