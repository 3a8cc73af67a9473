# lbd: `make run` and `make test` do all the set-up on a fresh Debian 12 machine (as root).
SHELL := /bin/bash
VENV  := .venv
PY    := $(VENV)/bin/python
# The compiled modules (lbd/_*.pyx -> lbd/_*.cpython-311-x86_64-linux-gnu.so); the suffix is known
# once .venv exists, which is why `build` runs `ext` in a second make after `setup`.
SUFFIX = $(shell test -x $(PY) && $(PY) -c 'import sysconfig; print(sysconfig.get_config_var("EXT_SUFFIX"))')
EXTS   = $(patsubst %.pyx,%$(SUFFIX),$(wildcard lbd/*.pyx))

.PHONY: all setup build ext bpf run test test-unit test-kernel test-bcc bench bench-compare clean

all: build

# Idempotent: installs only what is missing, prints one line per action it takes.
setup:
	@bash scripts/setup.sh

# Rebuild the Cython extensions in place, and the CO-RE object, when their sources change.
build: setup
	@$(MAKE) --no-print-directory ext bpf

# libbpf, static and position-independent, for the loader (scripts/build_libbpf.sh)
LIBBPF := build/libbpf/libbpf.a
$(LIBBPF): scripts/build_libbpf.sh
	@bash scripts/build_libbpf.sh

ext: $(EXTS)
$(EXTS) &: $(wildcard lbd/*.pyx lbd/*.pxd lbd/*.h) bpf/lbd_record.h lbd/enrich/lbd_enrich_layout.h setup.py $(LIBBPF)
	$(PY) setup.py -q build_ext --inplace
	@touch $(EXTS)    # setup.py skips up-to-date modules: mark all as built now

# The probe as a CO-RE object (libbpf relocates it against the running kernel's BTF at load
# time): compiled once here, with kernel struct layouts from bpf/lib/core.h, no kernel headers.
BPF_OBJ := build/lbd.bpf.o
bpf: $(BPF_OBJ)
$(BPF_OBJ): bpf/lbd.bpf.c bpf/lbd_record.h $(wildcard bpf/lib/*.h) $(LIBBPF)
	@mkdir -p build
	clang -target bpf -D__TARGET_ARCH_x86 -g -O2 -Wall -Werror -Wno-unused-function \
	    -Ibpf -Ibuild/libbpf/include -I/usr/include/$(shell $(CC) -dumpmachine) \
	    -c bpf/lbd.bpf.c -o $@

run: build
	$(VENV)/bin/lbd run

# The whole suite under the default loader (libbpf, CO-RE), then the kernel tier under bcc.
test: build plugin
	$(PY) -m pytest tests
	LBD_LOADER=bcc $(PY) -m pytest tests/kernel

test-unit: build
	$(PY) -m pytest tests/unit

test-kernel: build
	$(PY) -m pytest tests/kernel

# The kernel tier again under the bcc loader (make test runs it too).
test-bcc: build plugin
	LBD_LOADER=bcc $(PY) -m pytest tests/kernel

# Benchmarks (bench/, never part of `make test`): alternatives side by side in one run, a summary
# table of ratios at the end; every run is saved (.benchmarks/, with the machine info) for
# bench-compare.  LBD_BENCH_CALLS / _ROUNDS / _DRAIN size the runs (bench/benchlib.py).
BENCH_ARGS := --benchmark-only --benchmark-columns=min,median,mean,rounds --benchmark-sort=name

bench: build bench-tools plugin
	$(PY) -m pytest bench $(BENCH_ARGS) --benchmark-autosave

# Compare the current code against the last saved `make bench` run: fail when a benchmark's best
# round (min: the statistic a noisy machine disturbs least) is more than 25% slower.  Without a
# saved run it says so and fails: run `make bench` first.
bench-compare: build bench-tools plugin
	@if ! compgen -G '.benchmarks/*/*.json' >/dev/null; then \
	  echo "bench-compare: no saved benchmark run in .benchmarks/ to compare with; run \`make bench\` first" >&2; \
	  exit 1; fi
	$(PY) -m pytest bench $(BENCH_ARGS) --benchmark-compare --benchmark-compare-fail=min:25%

clean:
	rm -rf build lbd/_*.c lbd/_*.so .pytest_cache
	@if [ -f bench/Makefile ]; then $(MAKE) --no-print-directory -C bench clean; fi

# The C load generator and consumers the benchmarks compare against (bench/Makefile).
.PHONY: bench-tools plugin
bench-tools: setup
	@if [ -f bench/Makefile ]; then $(MAKE) --no-print-directory -C bench; fi

# The Falco plugin, build/liblbd.so (plugin/Makefile).
plugin: build
	@if [ -f plugin/Makefile ]; then $(MAKE) --no-print-directory -C plugin; fi
