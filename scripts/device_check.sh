#!/usr/bin/env bash
# device_check.sh: build lbd on the lent 16-core machine (another distribution and kernel build:
# Ubuntu 24.04, Python 3.12 with numpy and Cython, clang and gcc; no bcc, no bpftool, no libbpf,
# no network), run the kernel test tier under the libbpf loader, then the scaling benchmark (issue
# 10) and the kernel-free merge benchmark, and leave a summary (text and JSON) in $OUT.
#
# Two modes:
#
#   bash scripts/device_check.sh --prepare      HERE (network, root): makes what the device lacks
#       - build/libbpf/ (libbpf.a static -fPIC + headers) and build/lbd.bpf.o: `make build`;
#       - build/wheels/: the Python packages as cp312 manylinux wheels, from pyproject.toml
#         (dependencies, the test extra) plus the build tools and pytest-benchmark, by
#             python3 -m pip download --dest build/wheels --only-binary=:all: \
#                 --python-version 3.12 --implementation cp --abi cp312 --abi abi3 --abi none \
#                 --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
#                 --platform manylinux2014_x86_64 --platform linux_x86_64 \
#                 pip 'setuptools>=77' wheel 'Cython>=3' numpy PyYAML 'lark>=1.1' 'pytest>=7' \
#                 'pytest-benchmark>=4' 'hypothesis>=6' 'jsonschema>=4'
#         (the script derives that list from pyproject.toml; numpy and Cython are only installed
#         there when the machine's own are missing or too old);
#       and prints the device call.  Carry: build/libbpf build/lbd.bpf.o build/wheels (~35 MB).
#
#   bash scripts/device_check.sh                ON THE DEVICE (root), repository root as cwd, $OUT
#       set by the device tool (default build/device-out).  Steps, each logged to $OUT/<step>.log, each
#       with a time limit (env overrides), a failed step recorded and the next one still run:
#         1. env: a venv build/venv-device (--system-site-packages: the machine's numpy and Cython;
#            --without-pip, pip bootstrapped from the carried wheel: no ensurepip needed), the
#            carried wheels installed offline (--no-index --find-links build/wheels);
#         2. build: the Cython extensions in place (setup.py build_ext --inplace; libbpf linked
#            from the carried build/libbpf: libelf and zlib found through build/devlinks when
#            the -dev packages are absent); the CO-RE object: the carried build/lbd.bpf.o, else
#            compiled here with clang (the same command as the Makefile's); also compiled with
#            this machine's clang to build/lbd.bpf.local.o as a check; bench/loadgen;
#         3. doctor: `lbd doctor` with LBD_LOADER=libbpf;
#         4. kernel tests: LBD_LOADER=libbpf LBD_REQUIRE_BPF=1 pytest tests/kernel (the Falco
#            plugin's tests only when the plugin builds here: it needs libcjson-dev and Python's
#            headers); the bcc tier is skipped with its reason (no bcc on this machine);
#         5. bench: the scaling benchmark for N = 1, 2, 4, 8, 15 (LBD_BENCH_SCALING_N) with 1 and 4
#            consumers, the merge benchmark, the start-up and per-syscall cost benchmarks under
#            libbpf (their bcc rows skip: no bcc);
#         6. summary: $OUT/summary.txt and $OUT/summary.json (steps, exit codes, test counts, the
#            benchmark tables and targets), plus $OUT/bench.json (pytest-benchmark's) and
#            $OUT/kernel-tests.xml (JUnit).
#
# Limits (seconds): LBD_CHECK_BUILD_S (240), LBD_CHECK_TEST_S (240), LBD_CHECK_BENCH_S (200):
# with the machine's start, within the device's 10 minutes per command.  LBD_CHECK_SKIP_TESTS=1 /
# LBD_CHECK_SKIP_BENCH=1 skip a step; LBD_CHECK_PLUGIN=0 leaves the plugin out (else it is built
# into build/ against the device venv's Python).  PYTHON: the interpreter (default python3).
set -uo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$here"
PYTHON=${PYTHON:-python3}
WHEELS="$here/build/wheels"
VENV="$here/build/venv-device"

say()  { printf 'device_check: %s\n' "$*"; }
fail() { printf 'device_check: error: %s\n' "$*" >&2; exit 1; }

# ---- --prepare: here, with the network --------------------------------------------------------
requirements() {
    # the packages lbd needs at run and test time, from pyproject.toml, plus the build tools and
    # pytest-benchmark's cpuinfo dependency (pulled in by pip's resolver anyway)
    "$1" - <<'EOF'
import tomllib
p = tomllib.load(open("pyproject.toml", "rb"))
reqs = ["pip", "setuptools>=77", "wheel", "Cython>=3"]
reqs += p["project"]["dependencies"]
for extra in ("test",):
    reqs += p["project"].get("optional-dependencies", {}).get(extra, [])
print("\n".join(dict.fromkeys(reqs)))
EOF
}

if [ "${1:-}" = "--prepare" ]; then
    command -v make >/dev/null || fail "make is missing"
    say "make build (build/libbpf, build/lbd.bpf.o)"
    make --no-print-directory build >/dev/null || fail "make build failed"
    [ -f build/libbpf/libbpf.a ] || fail "build/libbpf/libbpf.a missing after make build"
    [ -f build/lbd.bpf.o ] || fail "build/lbd.bpf.o missing after make build"
    py=/usr/bin/python3
    mapfile -t reqs < <(requirements "$py")
    say "pip download into build/wheels: ${reqs[*]}"
    mkdir -p "$WHEELS"
    "$py" -m pip download --quiet --dest "$WHEELS" --only-binary=:all: \
        --python-version 3.12 --implementation cp --abi cp312 --abi abi3 --abi none \
        --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
        --platform manylinux2014_x86_64 --platform linux_x86_64 "${reqs[@]}" \
        || fail "pip download failed"
    ls "$WHEELS"/pip-*.whl >/dev/null 2>&1 || fail "no pip wheel in build/wheels"
    say "ready: $(du -sh build/libbpf build/lbd.bpf.o build/wheels | awk '{print $2 " " $1}' | paste -sd' ')"
    say "device call: run(command='bash scripts/device_check.sh', carry=['build/libbpf', 'build/lbd.bpf.o', 'build/wheels'], timeout_s=600)"
    exit 0
fi
[ $# -eq 0 ] || fail "usage: bash scripts/device_check.sh [--prepare]"

# ---- on the device ------------------------------------------------------------------------------
OUT=${OUT:-$here/build/device-out}
mkdir -p "$OUT"
BUILD_S=${LBD_CHECK_BUILD_S:-240}
TEST_S=${LBD_CHECK_TEST_S:-240}
BENCH_S=${LBD_CHECK_BENCH_S:-200}
T0=$(date +%s)
STEPS="$OUT/steps.tsv"          # step, exit code, seconds, note
: > "$STEPS"
note() { printf '%s\n' "$*" >> "$OUT/notes.txt"; say "$*"; }

# run_step NAME LIMIT_S CMD...: CMD's output to $OUT/NAME.log, its exit code and time in steps.tsv
run_step() {
    local name=$1 limit=$2; shift 2
    local t=$(date +%s) rc
    say "step $name (limit ${limit}s)"
    timeout --kill-after=10 "$limit" "$@" > "$OUT/$name.log" 2>&1
    rc=$?
    printf '%s\t%s\t%s\n' "$name" "$rc" "$(( $(date +%s) - t ))" >> "$STEPS"
    [ $rc -eq 0 ] || { say "step $name: exit $rc (last lines below; all in $OUT/$name.log)"; tail -n 15 "$OUT/$name.log" >&2; }
    return $rc
}

{
    echo "date: $(date -u +%FT%TZ)"
    echo "kernel: $(uname -r)"
    echo "cpus: $(nproc)"
    echo "os: $(. /etc/os-release 2>/dev/null; echo "${PRETTY_NAME:-?}")"
    echo "python: $($PYTHON -c 'import sys; print(sys.version.split()[0])' 2>&1)"
    echo "clang: $(clang --version 2>/dev/null | head -n 1 || echo none)"
    echo "btf: $([ -e /sys/kernel/btf/vmlinux ] && echo present || echo missing)"
    echo "git: $(git rev-parse --short HEAD 2>/dev/null || echo '?') $(git status --porcelain 2>/dev/null | wc -l) changed files"
} > "$OUT/machine.txt"
cat "$OUT/machine.txt"

# 1. env ------------------------------------------------------------------------------------------
step_env() {
    set -e
    [ -d "$WHEELS" ] || { echo "build/wheels missing: carry it (bash scripts/device_check.sh --prepare here)"; exit 1; }
    pipwhl=$(ls "$WHEELS"/pip-*.whl | sort -V | tail -n 1)
    rm -rf "$VENV"
    "$PYTHON" -m venv --system-site-packages --without-pip "$VENV"
    # pip runs from its own wheel (a documented bootstrap) to install itself into the venv
    "$VENV/bin/python" "$pipwhl/pip" install --quiet --no-index --find-links "$WHEELS" pip
    mapfile -t reqs < <(requirements "$VENV/bin/python")
    # satisfied by the machine's packages (numpy, Cython) when they are recent enough, else from wheels
    "$VENV/bin/python" -m pip install --no-index --find-links "$WHEELS" "${reqs[@]}" pytest-benchmark
    "$VENV/bin/python" -c 'import numpy, Cython, setuptools, pytest, pytest_benchmark, lark, yaml, jsonschema; print("numpy", numpy.__version__, "Cython", Cython.__version__, "setuptools", setuptools.__version__)'
}

# 2. build ----------------------------------------------------------------------------------------
step_build() {
    set -e
    [ -f build/libbpf/libbpf.a ] || { echo "build/libbpf/libbpf.a missing: carry build/libbpf (scripts/build_libbpf.sh here)"; exit 1; }
    # libbpf needs libelf and zlib; without their -dev packages only the versioned .so files exist:
    # point the linker at them through unversioned links
    mkdir -p build/devlinks
    for lib in elf z; do
        if ! echo 'int main(void){return 0;}' | cc -x c - -o /dev/null -l$lib 2>/dev/null; then
            so=$(ldconfig -p | awk -v l="lib$lib.so." '$1 ~ "^"l {print $NF; exit}')
            [ -n "$so" ] || { echo "lib$lib.so.* not found on this machine: libbpf cannot be linked"; exit 1; }
            ln -sf "$so" "build/devlinks/lib$lib.so"
            echo "linking -l$lib through build/devlinks/lib$lib.so -> $so"
        fi
    done
    export LIBRARY_PATH="$here/build/devlinks${LIBRARY_PATH:+:$LIBRARY_PATH}"
    "$VENV/bin/python" setup.py -q build_ext --inplace -j "$(nproc)"
    triple=$(cc -dumpmachine)
    bpfcc=(clang -target bpf -D__TARGET_ARCH_x86 -g -O2 -Wall -Werror -Wno-unused-function
           -Ibpf -Ibuild/libbpf/include "-I/usr/include/$triple" -c bpf/lbd.bpf.c)
    if [ -f build/lbd.bpf.o ]; then
        echo "CO-RE object: the carried build/lbd.bpf.o"
        if command -v clang >/dev/null; then
            if "${bpfcc[@]}" -o build/lbd.bpf.local.o; then
                echo "check: bpf/lbd.bpf.c compiles with this machine's $(clang --version | head -n 1)"
            else
                echo "check: bpf/lbd.bpf.c does NOT compile with this machine's clang (the carried object is used)"
            fi
        fi
    else
        echo "CO-RE object: compiled here with $(clang --version | head -n 1)"
        "${bpfcc[@]}" -o build/lbd.bpf.o
    fi
    make --no-print-directory -C bench loadgen
    make --no-print-directory -C bench libbpf_consumer.so || echo "bench/libbpf_consumer.so not built (only the live consumer comparison needs it)"
    "$VENV/bin/python" -c 'import lbd._decode, lbd._libbpf, lbd._enrich, lbd._format, lbd._filter; print("extensions import")'
}

# 4. kernel tests ---------------------------------------------------------------------------------
step_tests() {
    local ignore=()
    if [ "${LBD_CHECK_PLUGIN:-1}" = 0 ]; then
        note "kernel tests: tests/kernel/test_plugin.py skipped (LBD_CHECK_PLUGIN=0)"
        ignore=(--ignore=tests/kernel/test_plugin.py)
    elif ! make --no-print-directory -C plugin VENV="$VENV" >"$OUT/plugin-build.log" 2>&1; then
        note "kernel tests: tests/kernel/test_plugin.py skipped: the Falco plugin does not build here ($(grep -m1 -E 'missing|error' "$OUT/plugin-build.log" || tail -n 1 "$OUT/plugin-build.log"))"
        ignore=(--ignore=tests/kernel/test_plugin.py)
    fi
    LBD_LOADER=libbpf LBD_REQUIRE_BPF=1 "$VENV/bin/python" -m pytest tests/kernel -q -p no:cacheprovider -rfEs \
        --junitxml="$OUT/kernel-tests.xml" "${ignore[@]}"
}

# 5. benchmarks -----------------------------------------------------------------------------------
step_bench() {
    local n=${LBD_BENCH_SCALING_N:-}
    if [ -z "$n" ]; then
        n=$("$VENV/bin/python" -c 'import os; c = os.cpu_count(); print(",".join(map(str, sorted({k for k in (1, 2, 4, 8) if k <= c - 1} | {max(1, c - 1)}))))')
    fi
    LBD_LOADER=libbpf LBD_BENCH_SCALING_N=$n LBD_BENCH_SCALING_CONSUMERS=${LBD_BENCH_SCALING_CONSUMERS:-1,4} \
    LBD_BENCH_CALLS=${LBD_BENCH_CALLS:-1000000} LBD_BENCH_ROUNDS=${LBD_BENCH_ROUNDS:-2} \
    LBD_BENCH_SUMMARY="$OUT/bench-summary.json" \
        "$VENV/bin/python" -m pytest bench/test_bench_scaling.py bench/test_bench_merge.py bench/test_bench_startup.py \
        "bench/test_bench_live.py::test_syscall_cost" \
        -p no:cacheprovider -q --benchmark-only --benchmark-columns=min,median,rounds --benchmark-sort=name \
        --benchmark-json="$OUT/bench.json" -k "not bcc"
}

export -f say requirements note step_env step_build step_tests step_bench
export here WHEELS VENV PYTHON OUT
rc_env=0 rc_build=0 rc_doctor=0 rc_tests=0 rc_bench=0
run_step env 180 bash -c step_env || rc_env=$?
if [ $rc_env -eq 0 ]; then
    run_step build "$BUILD_S" bash -c step_build || rc_build=$?
else
    note "build skipped: the environment step failed"; rc_build=1
fi
if [ $rc_build -eq 0 ]; then
    run_step doctor 60 env LBD_LOADER=libbpf "$VENV/bin/python" -m lbd.cli doctor || rc_doctor=$?
    if [ "${LBD_CHECK_SKIP_TESTS:-0}" = 1 ]; then
        note "kernel tests skipped (LBD_CHECK_SKIP_TESTS=1)"
    else
        run_step kernel-tests "$TEST_S" bash -c step_tests || rc_tests=$?
    fi
    "$VENV/bin/python" -c 'import bcc' >/dev/null 2>&1 \
        && note "bcc tier: bcc is installed here but this check runs the libbpf tier only (make test-bcc runs the other)" \
        || note "bcc tier skipped: bcc is not installed on this machine (the fallback loader; \`make test\` runs it where bcc exists)"
    if [ "${LBD_CHECK_SKIP_BENCH:-0}" = 1 ]; then
        note "benchmarks skipped (LBD_CHECK_SKIP_BENCH=1)"
    else
        run_step bench "$BENCH_S" bash -c step_bench || rc_bench=$?
    fi
else
    note "doctor, kernel tests and benchmarks skipped: the build failed"
fi

# 6. summary --------------------------------------------------------------------------------------
"${VENV}/bin/python" - "$OUT" "$(( $(date +%s) - T0 ))" <<'EOF' 2>>"$OUT/notes.txt" || python3 - "$OUT" "$(( $(date +%s) - T0 ))" <<'EOF2'
import json, os, re, sys
out, total = sys.argv[1], int(sys.argv[2])
def read(name):
    try:
        return open(os.path.join(out, name)).read()
    except OSError:
        return ""
steps = [dict(zip(("step", "rc", "seconds"), line.split("\t"))) for line in read("steps.tsv").splitlines() if line]
tests = None
m = re.findall(r"^=*\s*(.*\d+ (?:passed|failed|error).*?)\s*=*$", read("kernel-tests.log"), re.M)
if m:
    tests = m[-1]
bench = {}
try:
    bench = json.load(open(os.path.join(out, "bench-summary.json")))
except (OSError, ValueError):
    pass
summary = {"machine": dict(l.split(": ", 1) for l in read("machine.txt").splitlines() if ": " in l),
           "seconds": total, "steps": steps, "kernel_tests": tests,
           "notes": read("notes.txt").splitlines(), "bench": bench}
json.dump(summary, open(os.path.join(out, "summary.json"), "w"), indent=1)
lines = ["lbd device check", ""] + read("machine.txt").splitlines() + ["", f"total: {total} s"]
lines += [f"step {s['step']}: exit {s['rc']} in {s['seconds']} s" for s in steps]
lines += ["", f"kernel tests (LBD_LOADER=libbpf): {tests or 'no result'}"] + read("notes.txt").splitlines()
blog = read("bench.log")
i = blog.find("lbd benchmark summary")
if i >= 0:
    lines += ["", blog[blog.rfind("\n", 0, i) + 1:].rstrip()]
open(os.path.join(out, "summary.txt"), "w").write("\n".join(lines) + "\n")
print("\n".join(lines))
EOF
import sys
print("device_check: the summary step failed; see the step logs in", sys.argv[1])
EOF2

[ $rc_env -eq 0 ] && [ $rc_build -eq 0 ] && [ $rc_tests -eq 0 ] && [ $rc_bench -eq 0 ]
