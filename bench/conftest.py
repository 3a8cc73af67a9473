"""Benchmark fixtures and the end-of-session summary.

Run with `make bench` (saves the results) or `make bench-compare` (fails on a slowdown against the
last saved run); see the README's "Benchmarks" section.  bench/ is outside `tests/` on purpose:
`make test` never runs it.

Kernel benchmarks load lbd's probe once per module, under the libbpf loader (the CO-RE object)
and, where a benchmark compares the loaders, under bcc too; they skip without root or the native
helpers (`make bench-tools`), unless LBD_REQUIRE_BPF=1, where they fail instead.  The bcc
alternatives (the bcc loader, bcc's ring consumer) skip where bcc is not installed, with that
reason (fail under LBD_REQUIRE_BCC=1).  Every benchmark records its figures (events/s, drops, CPU seconds) in
`benchmark.extra_info` and in `benchlib.RESULTS`, which `pytest_terminal_summary` prints as tables
with the ratios between the alternatives of the same run, and the issues' targets met or missed;
LBD_BENCH_SUMMARY=path also writes them as JSON.
"""
from __future__ import annotations

import json
import os
import platform

import pytest

import benchlib


@pytest.fixture(scope="module")
def live_probe():
    """lbd's probe under libbpf with the default rings (8 MiB per CPU), capturing only the load
    generator's getppid."""
    probe = benchlib.load_probe("libbpf")
    try:
        yield probe
    finally:
        benchlib.close_probe(probe)


@pytest.fixture(scope="module")
def bcc_probe():
    """The same probe loaded by bcc, its syscall programs detached until a benchmark attaches them
    (two probes on the syscall path would each pay for the other)."""
    probe = benchlib.load_probe("bcc")
    benchlib.SyscallPrograms(probe).detach()
    try:
        yield probe
    finally:
        benchlib.close_probe(probe)


@pytest.fixture(scope="module")
def drain_probe():
    """lbd's probe (libbpf) with large rings (LBD_BENCH_DRAIN_RING, 256 MiB) to pre-fill and drain;
    one ring for all CPUs (the load generator writes from one CPU: the others' rings would only
    take memory)."""
    probe = benchlib.load_probe("libbpf", ring_size=benchlib.DRAIN_RING, cpus_per_ring=benchlib.NCPUS)
    try:
        yield probe
    finally:
        benchlib.close_probe(probe)


def pytest_report_header(config):
    return (f"lbd bench: {os.cpu_count()} CPUs, kernel {platform.release()}; loadgen on CPU {benchlib.LOADGEN_CPU}, "
            f"consumers on CPU {benchlib.CONSUMER_CPU}; {benchlib.CALLS} calls x {benchlib.ROUNDS} rounds live, "
            f"{benchlib.DRAIN_RECORDS} records drained; {benchlib.bcc_missing() or 'bcc available'}")


def _machine() -> dict:
    return {
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
        "bcc": benchlib.bcc_missing() or "available",
    }


def pytest_benchmark_update_machine_info(config, machine_info):
    """Saved with every run: what the figures depend on besides the code."""
    machine_info["lbd_bench"] = _machine()


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
        path = os.environ.get("LBD_BENCH_SUMMARY")
        if path:
            with open(path, "w") as f:
                json.dump({"machine": _machine(), **benchlib.summary_json()}, f, indent=1, default=str)
