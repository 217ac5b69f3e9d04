#!/usr/bin/env bash
# Installs every build and test dependency from Debian 12 packages. Idempotent: safe to re-run.
set -euo pipefail

export DEBIAN_FRONTEND=noninteractive

build_pkgs=(
  build-essential cmake ninja-build pkg-config clang-format clang-tidy
  libcpp-httplib-dev nlohmann-json3-dev libyaml-cpp-dev
  libnl-3-dev libnl-genl-3-dev libnl-route-3-dev
  libipset-dev libip4tc-dev libip6tc-dev
  libcli11-dev libspdlog-dev libfmt-dev libgtest-dev libgmock-dev libssl-dev libasio-dev
  zlib1g-dev libbrotli-dev
)
test_pkgs=(
  ipset iptables iproute2 ipvsadm socat conntrack netcat-openbsd procps psmisc
  bird2 gobgpd containernetworking-plugins prometheus
  busybox-static kmod cpio curl python3
  openssl
)

missing=()
for p in "${build_pkgs[@]}" "${test_pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
# qemu without recommends (recommends pull a GUI stack).
dpkg-query -W -f='${Status}' qemu-system-x86 2>/dev/null | grep -q "install ok installed" ||
  need_qemu=1
# kubernetes-client conflicts with other kubectl packages: only when no kubectl exists.
command -v kubectl >/dev/null 2>&1 || missing+=(kubernetes-client)

if [ ${#missing[@]} -gt 0 ] || [ -n "${need_qemu:-}" ]; then
  apt-get update -qq
  [ ${#missing[@]} -gt 0 ] && apt-get install -y -qq --no-install-recommends "${missing[@]}"
  [ -n "${need_qemu:-}" ] && apt-get install -y -qq --no-install-recommends qemu-system-x86
fi

# The bird2 and gobgpd packages start system daemons; tests run their own instances.
for svc in bird gobgpd; do
  systemctl disable --now "$svc" >/dev/null 2>&1 || true
done
echo "install-deps: all dependencies present"
