#!/usr/bin/env bash
# Fetches cpp-httplib from Debian trixie's source package (security-maintained; Debian 12's
# libcpp-httplib-dev is shared-only and too old), applies Debian's patches (the CVE fixes) and
# splits it into httplib.h + httplib.cc, which CMake compiles once into a static library.
# apt runs with a private sources list and state directory: the machine's apt configuration is
# not changed. Idempotent: a finished tree (stamp file) is left alone.
#   scripts/fetch-httplib.sh [DEST]   (default $KR_DEPS_DIR or /opt/kube-router-deps)
set -euo pipefail

version=0.18.7
debian_revision=1+deb13u1
orig_sha256=c88f6495da71e778c82c22995b547a92ceb41cc4016f9028df67106a24b9210d
debian_sha256=00ea33189a7421a434b6d9ccb431ef4debce086534d249e8efa89050e7593198

deps_dir=${1:-${KR_DEPS_DIR:-/opt/kube-router-deps}}
dest="$deps_dir/cpp-httplib-$version-$debian_revision"
stamp="$dest/.complete"
if [ -f "$stamp" ]; then
  echo "fetch-httplib: $dest present"
  exit 0
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/kr-httplib.XXXXXX")
chmod 0755 "$work"  # apt fetches as its sandbox user
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/apt/lists/partial" "$work/download"
echo 'deb-src http://deb.debian.org/debian trixie main' >"$work/apt/sources.list"
apt_opts=(
  -o "Dir::Etc::SourceList=$work/apt/sources.list"
  -o "Dir::Etc::SourceParts=/dev/null"
  -o "Dir::State::Lists=$work/apt/lists"
  -o "Dir::Cache=$work/apt/cache"
)
apt-get "${apt_opts[@]}" -qq update
# The download directory must be writable by apt's sandbox user.
chmod 0777 "$work/download"
(cd "$work/download" &&
  apt-get "${apt_opts[@]}" -qq source --download-only "cpp-httplib=$version-$debian_revision")

orig="$work/download/cpp-httplib_$version.orig.tar.xz"
deb="$work/download/cpp-httplib_$version-$debian_revision.debian.tar.xz"
echo "$orig_sha256  $orig" | sha256sum --check --quiet
echo "$debian_sha256  $deb" | sha256sum --check --quiet

src="$work/src"
mkdir -p "$src"
tar -C "$src" --strip-components=1 -xJf "$orig"
tar -C "$src" -xJf "$deb"
while read -r patch; do
  case "$patch" in '' | '#'*) continue ;; esac
  patch -d "$src" -p1 --quiet --forward <"$src/debian/patches/$patch"
done <"$src/debian/patches/series"

python3 "$src/split.py" --out "$work/split"
rm -rf "$dest"
mkdir -p "$dest/include" "$dest/src"
cp "$work/split/httplib.h" "$dest/include/"
cp "$work/split/httplib.cc" "$dest/src/"
cp "$src/LICENSE" "$dest/"
cp "$src/debian/patches/series" "$dest/patches.series"
touch "$stamp"
echo "fetch-httplib: $dest ready"
