#!/usr/bin/env bash
# cni/install-cni.sh against a fake node (temporary directories): missing plugins installed and
# executable, a node's own plugin kept, stray *.conf files removed (other files kept), the
# conflist installed once and never overwritten, and a second run changing nothing.
set -euo pipefail
script=${1:?usage: install_cni_test.sh path/to/install-cni.sh}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }

mkdir -p "$tmp/image/plugins" "$tmp/node/bin" "$tmp/node/net.d" "$tmp/image/cfg"
for p in bridge host-local loopback portmap ptp; do echo "image $p" >"$tmp/image/plugins/$p"; done
echo '{"image": "conflist"}' >"$tmp/image/cfg/cni-conf.json"
printf '#!/bin/sh\necho node bridge\n' >"$tmp/node/bin/bridge"
chmod 0755 "$tmp/node/bin/bridge"
echo '{"old": true}' >"$tmp/node/net.d/10-kuberouter.conf"
echo '{"other": true}' >"$tmp/node/net.d/05-other.conf"
echo '{"keep": true}' >"$tmp/node/net.d/99-keep.conflist"

run() {
  KR_CNI_PLUGINS_SRC=$tmp/image/plugins KR_CNI_BIN_DIR=$tmp/node/bin \
    KR_CNI_CONF_DIR=$tmp/node/net.d KR_CNI_CONF_SRC=$tmp/image/cfg/cni-conf.json sh "$script"
}
run >"$tmp/first.log"

for p in host-local loopback portmap; do
  [ -x "$tmp/node/bin/$p" ] || fail "$p not installed as an executable"
  [ "$(cat "$tmp/node/bin/$p")" = "image $p" ] || fail "$p has the wrong content"
done
[ "$(tail -n 1 "$tmp/node/bin/bridge")" = "echo node bridge" ] || fail "the node's own bridge was replaced"
[ ! -e "$tmp/node/bin/ptp" ] || fail "a plugin the config does not use was installed"
[ ! -e "$tmp/node/net.d/10-kuberouter.conf" ] || fail "the stray 10-kuberouter.conf is still there"
[ ! -e "$tmp/node/net.d/05-other.conf" ] || fail "the stray 05-other.conf is still there"
[ -e "$tmp/node/net.d/99-keep.conflist" ] || fail "another .conflist was removed"
[ "$(cat "$tmp/node/net.d/10-kuberouter.conflist")" = '{"image": "conflist"}' ] ||
  fail "the conflist was not installed"
[ -z "$(find "$tmp/node" -name ".*")" ] || fail "a temporary file was left behind"

# kube-router writes the node's pod CIDR into the conflist: a restart must keep it.
echo '{"with": "podCIDR"}' >"$tmp/node/net.d/10-kuberouter.conflist"
echo '{"old": true}' >"$tmp/node/net.d/10-kuberouter.conf"
run >"$tmp/second.log"
[ "$(cat "$tmp/node/net.d/10-kuberouter.conflist")" = '{"with": "podCIDR"}' ] ||
  fail "a second run overwrote the conflist"
[ ! -e "$tmp/node/net.d/10-kuberouter.conf" ] || fail "a second run kept a stray .conf"
grep -q installed "$tmp/second.log" && fail "a second run installed again: $(cat "$tmp/second.log")"
echo "install-cni: plugins, stray configs and the conflist as expected"
