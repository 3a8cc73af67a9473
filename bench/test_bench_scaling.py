"""Scaling over CPUs (issue 10): N producer threads pinned one per CPU (bench/loadgen -t N -c 1-N)
make syscalls flat out against lbd's probe (libbpf), with ONE ring shared by all CPUs
(cpus_per_ring = the CPUs: the former design) and with a ring per CPU (cpus_per_ring = 1, the
default), side by side in one run, read by lbd.Collector with 1 consumer thread and with 4 (where
there are at least 4 rings).

Workloads: getppid (one record per call), and an open/read/close loop (openat + read + close of a
small file: three records per iteration).  N: 1, 2, 4, 8, ... up to the CPUs less one (the
consumer's), and that last (LBD_BENCH_SCALING_N overrides: on the 16-core device 1,2,4,8,15).
The producers run on CPUs 1..N; the consumer threads on the CPUs left (CPU 0 when none is).

Per case, one round (LBD_BENCH_SCALING_ROUNDS) of: the producers for LBD_BENCH_SCALING_BASE_S
seconds with no probe (every probe's syscall programs detached), then for LBD_BENCH_SCALING_S
seconds with the probe and the consumer running, then the consumer empties the rings; one more
no-probe run closes the case.  Reported (the last round's, the added cost's median): the added
CPU ns per syscall (the producers' mean, against the no-probe runs around it), the whole host's
syscalls/s, delivered % of what the probe offered (written + dropped for a full ring), the drops of
each ring, events/s delivered and the consumer's CPU ns per event (its threads' CPU time).
"""
from __future__ import annotations

import os

import pytest

import benchlib as bl

CPUS = bl.NCPUS
_default_n = sorted({n for n in (1, 2, 4, 8, 16, 32, 64, 128) if n <= CPUS - 1} | {max(1, CPUS - 1)})
N_LIST = bl.env_ints("LBD_BENCH_SCALING_N", _default_n)
CONSUMER_COUNTS = bl.env_ints("LBD_BENCH_SCALING_CONSUMERS", (1, 4))
SECONDS = bl.env_float("LBD_BENCH_SCALING_S", 1.0)
BASE_SECONDS = bl.env_float("LBD_BENCH_SCALING_BASE_S", 0.5)
ROUNDS = bl.env_int("LBD_BENCH_SCALING_ROUNDS", 1)

LAYOUTS = {"one shared ring": 0, "ring per CPU": 1}        # cpus_per_ring (0: all the CPUs)
WORKLOADS = {"getppid": ("getppid", ["getppid"]), "open/read/close": ("orc", ["openat", "read", "close"])}

SCALING = bl.group(
    "scaling",
    f"Scaling: N producer threads pinned one per CPU (of {CPUS}), libbpf probe capturing them, lbd.Collector "
    f"consuming; {SECONDS:g} s per case",
    [("added_ns", "added ns/syscall", ".0f"), ("calls_per_s", "host syscalls/s", "si"),
     ("delivered_pct", "delivered %", ".3f"), ("dropped", "dropped", "d"), ("drops_by_ring", "drops by ring", "s"),
     ("events_per_s", "events/s", "si"), ("cpu_ns_per_event", "consumer CPU ns/event", ".1f")],
)


def _cases():
    out = []
    for workload in WORKLOADS:
        for n in N_LIST:
            for layout, per in LAYOUTS.items():
                rings = 1 if per == 0 else -(-CPUS // per)
                for k in CONSUMER_COUNTS:
                    if k == 1 or rings >= k:
                        out.append((workload, n, layout, k))
    return out


CASES = _cases()


@pytest.fixture(scope="module")
def layout_probes():
    """One libbpf probe per ring layout, loaded on first use, all detached but the one in use."""
    probes = {}

    def get(layout: str):
        if layout not in probes:
            from lbd.probe import possible_cpus

            per = LAYOUTS[layout] or possible_cpus()
            probes[layout] = bl.load_probe("libbpf", cpus_per_ring=per)
            bl.SyscallPrograms(probes[layout]).detach()
        return probes[layout]

    yield get
    for p in probes.values():
        bl.close_probe(p)


def _drops(c: bl.Counters) -> str:
    """Drops per ring, the non-zero ones (all zero: "-")."""
    parts = [f"r{i}:{d}" for i, d in enumerate(c.per_ring_dropped) if d]
    return " ".join(parts) if parts else "-"


@pytest.mark.parametrize("workload,n,layout,consumers", CASES,
                         ids=[f"{w}-N{n}-{lay.replace(' ', '_')}-c{k}" for w, n, lay, k in CASES])
def test_scaling(benchmark, layout_probes, workload, n, layout, consumers):
    bl.require_kernel()
    if n > CPUS - 1 and CPUS > 1:
        pytest.skip(f"N={n} producers need {n + 1} CPUs (one for the consumer); this machine has {CPUS}")
    mode, syscalls = WORKLOADS[workload]
    probe = layout_probes(layout)
    base_cfg = probe.config
    producer_cpus = list(range(1, n + 1)) if CPUS > 1 else [0]
    consumer_cpus = sorted(set(range(CPUS)) - set(producer_cpus)) or [0]
    cpu_list = ",".join(map(str, producer_cpus))
    load = {"threads": n, "mode": mode, "cpu": cpu_list}
    benchmark.group = "scaling"
    bl.time_by_cpu(benchmark)
    runs = []
    probe.update(base_cfg.replace(syscalls=syscalls))
    try:
        with bl.pinned(consumer_cpus):
            consumer = bl.LbdConsumer(probe, consumers=consumers)   # its threads inherit the CPUs

            def setup():
                bl.sample_foreign()
                bl.only_attached(None)
                base = bl.run_loadgen(seconds=BASE_SECONDS, **load)
                bl.only_attached(probe)
                bl.drain_all(probe)
                return (base,), {}

            def target(base):
                s0 = probe.stats()
                proc = bl.start_loadgen(seconds=SECONDS, **load)
                r = consumer.run(bl.Stop(proc))
                lg = bl.finish_loadgen(proc)
                runs.append((base, lg, r, bl.Counters.between(s0, probe.stats())))

            try:
                benchmark.pedantic(target, setup=setup, rounds=ROUNDS, iterations=1)
            finally:
                consumer.close()
        bl.only_attached(None)
        closing = bl.run_loadgen(seconds=BASE_SECONDS, **load)        # no probe again, after
    finally:
        bl.only_attached(None)
        probe.update(base_cfg)
        bl.drain_all(probe)
    ov = bl.overhead([b for b, *_ in runs] + [closing], [x[1] for x in runs])
    base, lg, r, c = runs[-1]
    name = f"{workload}, N={n}, {layout}, {consumers} consumer{'s' if consumers > 1 else ''}"
    bl.record(benchmark, "scaling", name, workload=workload, n=n, layout=layout, consumers=consumers,
              added_ns=ov.ns, unstable_rounds=ov.unstable, ns_per_call=lg.ns_per_call,
              no_probe_ns_per_call=ov.no_probe_ns, calls_per_s=lg.calls_per_s,
              no_probe_calls_per_s=base.calls_per_s, offered=c.offered, delivered=r.delivered,
              delivered_pct=100.0 * r.delivered / c.offered if c.offered else 0.0, dropped=c.dropped,
              drops_by_ring=_drops(c), per_ring_dropped=list(c.per_ring_dropped),
              events_per_s=r.delivered / r.wall_s if r.wall_s else 0.0,
              cpu_ns_per_event=1e9 * r.cpu_s / r.delivered if r.delivered else 0.0, consumer_cpu_s=r.cpu_s,
              rings=probe.nrings, producer_cpus=cpu_list, consumer_cpus=",".join(map(str, consumer_cpus)),
              rounds=len(runs))
    if bl.FOREIGN_SEEN and max(bl.FOREIGN_SEEN) > 0:
        SCALING.notes[:] = [f"NOTE: other processes had up to {max(bl.FOREIGN_SEEN)} BPF programs on raw_syscalls "
                            "during these runs; they ran on every syscall (the no-probe runs too)"]
    assert os.sched_getaffinity(0)      # (the block restored this thread's CPUs)
