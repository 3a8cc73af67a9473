#!/usr/bin/env bash
# Build libbpf as a position-independent static library for lbd's loader (lbd/_libbpf.pyx links it
# in, so an installed lbd needs no libbpf package).  Debian's libbpf-dev ships libbpf.a without
# -fPIC, which cannot go into a Python extension module, so this builds the same release from
# Debian's source tarball (checked against its sha256) with -fPIC.
#
# Output: build/libbpf/libbpf.a and build/libbpf/include/bpf/*.h.  Idempotent: does nothing when
# they exist for this version.  Prints one line per action; any failure is one error line.
# LBD_LIBBPF_TARBALL=path: use this tarball instead of downloading (hosts without network).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
version=1.1.2
sha256=b50ab60637fb713db78aa98e6ca911ddf13c0799d498a1f6ec03ebffc7dca588
urls=(
    "http://deb.debian.org/debian/pool/main/libb/libbpf/libbpf_${version}.orig.tar.gz"
    "https://snapshot.debian.org/archive/debian/20230101T000000Z/pool/main/libb/libbpf/libbpf_${version}.orig.tar.gz"
)
out="$here/build/libbpf"
stamp="$out/.version"

say()  { printf 'setup: %s\n' "$*"; }
fail() { printf 'setup: error: %s\n' "$*" >&2; exit 1; }

if [ -f "$out/libbpf.a" ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$version" ]; then
    exit 0
fi
command -v cc >/dev/null || fail "no C compiler (cc) to build libbpf"

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
tarball=${LBD_LIBBPF_TARBALL:-}
if [ -z "$tarball" ]; then
    tarball="$work/libbpf.tar.gz"
    ok=0
    for url in "${urls[@]}"; do
        say "downloading libbpf $version source ($url)"
        if curl -sSfL --retry 2 -o "$tarball" "$url"; then ok=1; break; fi
    done
    [ $ok -eq 1 ] || fail "cannot download libbpf $version source (set LBD_LIBBPF_TARBALL to a copy)"
fi
echo "$sha256  $tarball" | sha256sum -c --quiet - 2>/dev/null \
    || fail "libbpf source $tarball: sha256 differs from $sha256"

say "building libbpf $version (static, -fPIC) into $out"
tar xzf "$tarball" -C "$work"
src=$(ls -d "$work"/libbpf-*/src | head -n 1)
rm -rf "$out"
mkdir -p "$out" "$work/obj"   # libbpf's make writes libbpf.pc there before it creates it (a race under -j)
make -s -C "$src" -j"$(nproc)" BUILD_STATIC_ONLY=1 OBJDIR="$work/obj" DESTDIR="$out/root" \
    EXTRA_CFLAGS="-fPIC -O2" PREFIX=/ LIBDIR=/lib INCLUDEDIR=/include install >/dev/null \
    || fail "building libbpf failed (needs libelf-dev, zlib1g-dev, make)"
mv "$out/root/lib/libbpf.a" "$out/libbpf.a"
mv "$out/root/include" "$out/include"
rm -rf "$out/root"
echo "$version" > "$stamp"
