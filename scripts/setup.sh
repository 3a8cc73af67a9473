#!/usr/bin/env bash
# Idempotent host set-up for lbd on Debian 12 (run as root).
#
# Installs the system packages lbd needs, makes bcc's kernel headers usable,
# mounts tracefs/debugfs, creates .venv and installs lbd into it.  It prints one
# line per action it takes; a second run takes no action and finishes in seconds.
# Anything it cannot do is one clear error line and a non-zero exit.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$here"
venv="$here/.venv"
sys_python=/usr/bin/python3

say()  { printf 'setup: %s\n' "$*"; }
fail() { printf 'setup: error: %s\n' "$*" >&2; exit 1; }

[ "$(id -u)" -eq 0 ] || fail "must run as root (apt-get, mount and BPF need it); try: sudo make setup"
command -v apt-get >/dev/null || fail "apt-get not found: lbd's set-up supports Debian/Ubuntu only"

kver=$(uname -r)

have_pkg() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q '^install ok installed$'; }

apt_updated=0
apt_install() {
    local missing=() p
    for p in "$@"; do have_pkg "$p" || missing+=("$p"); done
    [ ${#missing[@]} -eq 0 ] && return 0
    if [ $apt_updated -eq 0 ]; then
        say "apt-get update"
        DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null \
            || fail "apt-get update failed (network or sources.list?)"
        apt_updated=1
    fi
    say "apt-get install ${missing[*]}"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null \
        || fail "apt-get install ${missing[*]} failed"
}

# ---- 1. system packages --------------------------------------------------
[ -x "$sys_python" ] || apt_install python3
pyver=$("$sys_python" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
apt_install python3-bpfcc bpfcc-tools python3-venv "python${pyver}-dev" "libpython${pyver}" \
    linux-libc-dev manpages-dev libbpf-dev bpftool gcc make pkg-config zlib1g-dev libelf-dev libcjson-dev \
    clang llvm curl ca-certificates nats-server strace python3-argcomplete

# ---- 1b. libbpf, static and -fPIC, for the CO-RE loader (build/libbpf) ----
bash "$here/scripts/build_libbpf.sh"

# ---- 2. kernel headers for bcc (the fallback loader; the CO-RE one needs none) ----
if [ ! -e "/lib/modules/$kver/build/include" ]; then
    if apt-cache show "linux-headers-$kver" >/dev/null 2>&1; then
        apt_install "linux-headers-$kver"
    else
        apt_install linux-headers-amd64
        hdr=$(ls -d /usr/src/linux-headers-*-amd64 2>/dev/null | sort -V | tail -n 1)
        [ -n "$hdr" ] || fail "linux-headers-amd64 installed but no /usr/src/linux-headers-*-amd64 directory"
        common=${hdr%-amd64}-common
        [ -d "$common" ] || fail "missing $common (from linux-headers-amd64)"
        mkdir -p "/lib/modules/$kver"
        say "no linux-headers-$kver package: linking /lib/modules/$kver/build -> $hdr"
        ln -sfn "$hdr" "/lib/modules/$kver/build"
        if [ ! -e "/lib/modules/$kver/source" ]; then
            say "linking /lib/modules/$kver/source -> $common"
            ln -sfn "$common" "/lib/modules/$kver/source"
        fi
    fi
fi
[ -e "/lib/modules/$kver/build/include" ] || fail "kernel headers still missing at /lib/modules/$kver/build"

# ---- 3. tracefs / debugfs -------------------------------------------------
if [ ! -d /sys/kernel/tracing/events ]; then
    say "mount -t tracefs nodev /sys/kernel/tracing"
    mount -t tracefs nodev /sys/kernel/tracing || fail "cannot mount tracefs at /sys/kernel/tracing"
fi
if ! mountpoint -q /sys/kernel/debug; then
    say "mount -t debugfs nodev /sys/kernel/debug"
    mount -t debugfs nodev /sys/kernel/debug || fail "cannot mount debugfs at /sys/kernel/debug"
fi
[ -d /sys/kernel/tracing/events/raw_syscalls ] || fail "tracefs has no raw_syscalls events (kernel without CONFIG_FTRACE_SYSCALLS?)"

# ---- 4. virtual environment and lbd --------------------------------------
if [ ! -x "$venv/bin/python" ]; then
    say "creating $venv from $sys_python (--system-site-packages, for bcc)"
    "$sys_python" -m venv --system-site-packages "$venv" || fail "cannot create $venv"
fi
"$venv/bin/python" -c 'import bcc' 2>/dev/null || fail "'import bcc' fails in $venv (python3-bpfcc installed for another Python?)"

# Reinstall when the packaging metadata changed since the last install.
stamp="$venv/.lbd-install-stamp"
want=$(cat pyproject.toml setup.py | sha256sum | cut -d' ' -f1)
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
    say "installing build tools into $venv (pip, setuptools, Cython, numpy)"
    "$venv/bin/python" -m pip install -q --upgrade pip 'setuptools>=77' wheel 'Cython>=3' numpy \
        || fail "pip could not install the build tools"
    say "pip install -e .[test] (builds the Cython extension)"
    "$venv/bin/python" -m pip install -q --no-build-isolation -e '.[test]' \
        || fail "pip install -e .[test] failed"
    echo "$want" > "$stamp"
fi
