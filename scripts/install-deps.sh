#!/usr/bin/env bash
# Installs every build and test dependency from Debian 12 packages. Idempotent: safe to re-run.
set -euo pipefail

export DEBIAN_FRONTEND=noninteractive

# No libipset/libiptc (docs/architecture.md: the agent runs ipset and iptables-restore) and no
# asio: nothing includes them. python3-yaml: the manifest checks (tests/netns/deploy).
build_pkgs=(
  build-essential cmake ninja-build pkg-config clang-format clang-tidy
  # lld: links the ~90 executables of a flavour in about half GNU ld's time (docs/build.md)
  lld
  # clang compiles the ASan+UBSan flavour (about 0.6x GCC's CPU there, docs/build.md).
  # clang-tidy already pulls in the compiler (clang-14) but neither the `clang`/`clang++` names
  # (package clang) nor the sanitizer runtimes: libclang-rt-dev is only a Recommends of
  # libclang-common-14-dev, which --no-install-recommends below leaves out.
  clang libclang-rt-dev
  nlohmann-json3-dev libyaml-cpp-dev
  libnl-3-dev libnl-genl-3-dev libnl-route-3-dev
  # ctnetlink for the proxy's conntrack cleanup (ships libnl-nf-3.a: the agent stays static)
  libnl-nf-3-dev
  libcli11-dev libspdlog-dev libfmt-dev libgtest-dev libgmock-dev libssl-dev
  zlib1g-dev python3 xz-utils patch
)
test_pkgs=(
  ipset iptables iproute2 ipvsadm socat conntrack netcat-openbsd procps psmisc
  bird2 gobgpd containernetworking-plugins prometheus
  busybox-static kmod cpio curl python3-yaml
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

# cpp-httplib: Debian 12's libcpp-httplib-dev is a shared 0.11 only; the static agent compiles
# trixie's security-maintained 0.18.7 source package (scripts/fetch-httplib.sh).
"$(dirname "$0")/fetch-httplib.sh"

# The bird2 and gobgpd packages start system daemons; tests run their own instances.
for svc in bird gobgpd; do
  systemctl disable --now "$svc" >/dev/null 2>&1 || true
done
echo "install-deps: all dependencies present"
