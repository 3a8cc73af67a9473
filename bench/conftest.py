"""Benchmark fixtures and the end-of-session summary.

Run with `make bench` (saves the results) or `make bench-compare` (fails on a slowdown against the
last saved run); see the README's "Benchmarks" section.  bench/ is outside `tests/` on purpose:
`make test` never runs it.

Kernel benchmarks load lbd's probe once per module (bcc compiles it in a second or two) and skip
without root, bcc or the native helpers (`make bench-tools`), unless LBD_REQUIRE_BPF=1, where they
fail instead.  Every benchmark records its figures (events/s, drops, CPU seconds) in
`benchmark.extra_info` and in `benchlib.RESULTS`, which `pytest_terminal_summary` prints as tables
with the ratios between the alternatives of the same run.
"""
from __future__ import annotations

import os
import platform

import pytest

import benchlib


def _load_probe(**config):
    benchlib.require_kernel()
    from lbd.probe import Probe, ProbeError

    try:
        probe = Probe({**benchlib.BENCH_CONFIG, **config})
    except (ProbeError, OSError) as e:
        if benchlib.REQUIRE_BPF:
            pytest.fail(f"LBD_REQUIRE_BPF=1 but the probe did not load: {e}", pytrace=False)
        pytest.skip(f"the probe did not load: {e}")
    return probe


@pytest.fixture(scope="module")
def live_probe():
    """lbd's probe with the default ring (8 MiB), capturing only the load generator's getppid."""
    probe = _load_probe()
    try:
        yield probe
    finally:
        probe.close()


@pytest.fixture(scope="module")
def drain_probe():
    """lbd's probe with a large ring (LBD_BENCH_DRAIN_RING, 256 MiB) to pre-fill and drain."""
    probe = _load_probe(ring_size=benchlib.DRAIN_RING)
    try:
        yield probe
    finally:
        probe.close()


def pytest_report_header(config):
    return (f"lbd bench: {os.cpu_count()} CPUs, kernel {platform.release()}; loadgen on CPU {benchlib.LOADGEN_CPU}, "
            f"consumers on CPU {benchlib.CONSUMER_CPU}; {benchlib.CALLS} calls x {benchlib.ROUNDS} rounds live, "
            f"{benchlib.DRAIN_RECORDS} records drained")


def pytest_benchmark_update_machine_info(config, machine_info):
    """Saved with every run: what the figures depend on besides the code."""
    machine_info["lbd_bench"] = {
        "kernel": platform.release(),
        "cpus": os.cpu_count(),
        "loadgen_cpu": benchlib.LOADGEN_CPU,
        "consumer_cpu": benchlib.CONSUMER_CPU,
        "calls": benchlib.CALLS,
        "rounds": benchlib.ROUNDS,
        "drain_records": benchlib.DRAIN_RECORDS,
        "drain_ring": benchlib.DRAIN_RING,
        "foreign_raw_syscalls_programs": max(benchlib.FOREIGN_SEEN) if benchlib.FOREIGN_SEEN else None,
        "bpf_stats_enabled": benchlib.bpf_stats_enabled(),
        "loadavg": os.getloadavg(),
    }


@pytest.hookimpl(hookwrapper=True)
def pytest_terminal_summary(terminalreporter, exitstatus, config):
    # After pytest-benchmark's tables, and also when it raised for a regression (--benchmark-compare-fail).
    try:
        yield
    finally:
        lines = benchlib.summary_lines()
        if lines:
            terminalreporter.section("lbd benchmark summary (same run: read the ratios, not the absolute figures)")
            for line in lines + benchlib.target_lines():
                terminalreporter.write_line(line)
