"""Shared machinery of the benchmarks: the load generator, the three ring consumers, the probe's
counters, and the registry the session summary (bench/conftest.py) prints as ratio tables.

The consumers all read the SAME probe's ring buffer, one at a time:

* `LbdConsumer`    lbd's own loop: `lbd.Collector.next_batch()` (Ring.fill into a Batch, GIL released)
* `BccConsumer`    bcc's per-record Python callback: `b["events"].open_ring_buffer(cb)` + `ring_buffer_poll`;
                   `parse=True` also reads the header fields through ctypes, as bcc tools do
* `LibbpfConsumer` libbpf's `ring_buffer__poll/__consume` with a C callback (bench/libbpf_consumer.so)

Each has run(stop) (consume while the load generator runs, then empty the ring) and drain() (empty
the ring), both in the calling thread, so `time.thread_time()` around them is the consumer's CPU
time.  test_bench_plugin.py (the Falco plugin's owner) uses this module too: keep its names.
"""
from __future__ import annotations

import ctypes as ct
import json
import os
import re
import resource
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

BENCH_DIR = Path(__file__).resolve().parent
ROOT = BENCH_DIR.parent
LOADGEN = BENCH_DIR / "loadgen"
LIBBPF_SO = BENCH_DIR / "libbpf_consumer.so"
# The name bench/loadgen gives itself (prctl), unique to this session: the probe selects it with
# only_comms, and a concurrent session on the same machine uses another one.
LOADGEN_COMM = f"lbdlg-{os.getpid()}"

REQUIRE_BPF = os.environ.get("LBD_REQUIRE_BPF") == "1"


def env_int(name: str, default: int) -> int:
    v = os.environ.get(name)
    return int(v) if v else default


# Sizes of the runs (environment overrides for quick or long runs; the saved results record them).
CALLS = env_int("LBD_BENCH_CALLS", 3_000_000)        # getppid calls per live-capture round
ROUNDS = env_int("LBD_BENCH_ROUNDS", 3)               # rounds per kernel benchmark
DRAIN_RECORDS = env_int("LBD_BENCH_DRAIN", 1_000_000)  # records pre-filled for the drain benchmark
DRAIN_RING = env_int("LBD_BENCH_DRAIN_RING", 256 << 20)
LOADGEN_CPU = env_int("LBD_BENCH_LOADGEN_CPU", (os.cpu_count() or 2) - 1)
CONSUMER_CPU = env_int("LBD_BENCH_CONSUMER_CPU", 0)
POLL_MS = 30                                           # the consumers' poll timeout (Collector's default)


# ---- skipping ---------------------------------------------------------------------------------

def require_kernel() -> None:
    """Skip (fail under LBD_REQUIRE_BPF=1) unless root with bcc and the native helpers built."""
    reason = None
    if os.geteuid() != 0:
        reason = "kernel benchmarks need root"
    else:
        try:
            import bcc  # noqa: F401
        except Exception as e:  # ImportError, or libbcc failing to load
            reason = f"cannot import bcc: {e}"
    if reason is None:
        missing = [p.name for p in (LOADGEN, LIBBPF_SO) if not p.exists()]
        if missing:
            reason = f"bench/{', bench/'.join(missing)} not built: run `make bench-tools`"
    if reason is None:
        return
    if REQUIRE_BPF:
        pytest.fail(f"LBD_REQUIRE_BPF=1 but {reason}", pytrace=False)
    pytest.skip(reason)


# ---- timing -----------------------------------------------------------------------------------

def cpu_timer() -> float:
    """CPU seconds: the calling thread's plus those of the child processes reaped so far (the load
    generator).  Unlike wall time, it does not grow while other processes hold the CPU."""
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.thread_time() + ru.ru_utime + ru.ru_stime


def time_by_cpu(benchmark) -> None:
    """Make a kernel benchmark's time (what bench-compare compares) CPU seconds (cpu_timer): the
    load generator's, so a slower probe shows, plus the consumer's when it runs in this thread.
    pytest-benchmark (4, 5) reads `_timer` when pedantic() builds its runner; it has no public
    per-benchmark timer option."""
    benchmark._timer = cpu_timer


# ---- the load generator -----------------------------------------------------------------------

@dataclass
class Loadgen:
    """One load generator run: `calls` getppid in `ns` (wall) and `cpu_ns` (its thread's CPU time,
    which other processes taking the CPU do not inflate: the per-call figures use it)."""

    calls: int
    ns: int
    cpu_ns: int
    utime_ns: int
    stime_ns: int

    @property
    def ns_per_call(self) -> float:
        return self.cpu_ns / self.calls

    @property
    def wall_ns_per_call(self) -> float:
        return self.ns / self.calls

    @property
    def calls_per_s(self) -> float:
        return self.calls * 1e9 / self.cpu_ns


def start_loadgen(calls: int, cpu: int = LOADGEN_CPU) -> subprocess.Popen:
    return subprocess.Popen([str(LOADGEN), "-c", str(cpu), "-C", LOADGEN_COMM, "-n", str(calls)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def finish_loadgen(proc: subprocess.Popen) -> Loadgen:
    out, err = proc.communicate()
    if proc.returncode != 0:
        raise RuntimeError(f"loadgen failed ({proc.returncode}): {err.strip()}")
    kv = dict(item.split("=", 1) for item in out.split())
    return Loadgen(int(kv["calls"]), int(kv["ns"]), int(kv["cpu_ns"]), int(kv["utime_ns"]), int(kv["stime_ns"]))


def run_loadgen(calls: int, cpu: int = LOADGEN_CPU) -> Loadgen:
    return finish_loadgen(start_loadgen(calls, cpu))


# ---- the probe --------------------------------------------------------------------------------

BENCH_CONFIG = {"syscalls": ["getppid"], "only_comms": [LOADGEN_COMM]}


@dataclass
class Counters:
    """Probe counter deltas over a run.  `offered` is what the probe tried to write to the ring:
    syscall records plus process-tree records, written or dropped because the ring was full."""

    emitted: int
    sched: int
    dropped: int

    @classmethod
    def between(cls, a, b) -> Counters:
        return cls(b["emitted"] - a["emitted"], b["sched"] - a["sched"], b["drop_ringfull"] - a["drop_ringfull"])

    @property
    def written(self) -> int:
        return self.emitted + self.sched

    @property
    def offered(self) -> int:
        return self.written + self.dropped


class Tracepoints:
    """Detach and re-attach the probe's raw_syscalls programs (the loaded programs are kept), to
    time the load generator with no probe on the syscall path, within the same run.  Works for
    both attach types the probe may use: a classic tracepoint (TRACEPOINT_PROBE(raw_syscalls, X))
    or a raw tracepoint (RAW_TRACEPOINT_PROBE(X))."""

    EVENTS = (b"sys_enter", b"sys_exit")
    CLASSIC = {e: (b"raw_syscalls:" + e, b"tracepoint__raw_syscalls__" + e) for e in EVENTS}
    RAW = {e: (e, b"raw_tracepoint__" + e) for e in EVENTS}

    def __init__(self, probe):
        self.bpf = probe.bpf
        self.points = []               # (raw?, tracepoint, function name)
        for e in self.EVENTS:
            if self.CLASSIC[e][0] in self.bpf.tracepoint_fds:
                self.points.append((False, *self.CLASSIC[e]))
            elif self.RAW[e][0] in self.bpf.raw_tracepoint_fds:
                self.points.append((True, *self.RAW[e]))
            else:
                raise RuntimeError(f"the probe has no program attached to raw_syscalls:{e.decode()}")

    def detach(self) -> None:
        for raw, tp, _ in self.points:
            if raw and tp in self.bpf.raw_tracepoint_fds:
                self.bpf.detach_raw_tracepoint(tp=tp)
            elif not raw and tp in self.bpf.tracepoint_fds:
                self.bpf.detach_tracepoint(tp=tp)

    def attach(self) -> None:
        for raw, tp, fn in self.points:
            if raw and tp not in self.bpf.raw_tracepoint_fds:
                self.bpf.attach_raw_tracepoint(tp=tp, fn_name=fn)
            elif not raw and tp not in self.bpf.tracepoint_fds:
                self.bpf.attach_tracepoint(tp=tp, fn_name=fn)

    @property
    def kind(self) -> str:
        return "raw tracepoint" if self.points[0][0] else "tracepoint"


class FloorPrograms:
    """Empty BPF programs on raw_syscalls sys_enter + sys_exit, as a classic tracepoint (what bcc's
    TRACEPOINT_PROBE and lbd's probe use) and as a raw tracepoint: the cost any probe of that
    kind pays per syscall on this machine before doing anything.  Loaded detached."""

    SOURCE = """
    TRACEPOINT_PROBE(raw_syscalls, sys_enter) { return 0; }
    TRACEPOINT_PROBE(raw_syscalls, sys_exit) { return 0; }
    RAW_TRACEPOINT_PROBE(sys_enter) { return 0; }
    RAW_TRACEPOINT_PROBE(sys_exit) { return 0; }
    """

    def __init__(self):
        import bcc

        self.bpf = bcc.BPF(text=self.SOURCE.encode())
        self.detach()

    def attach(self, kind: str) -> None:
        if kind == "tracepoint":
            for tp, fn in Tracepoints.CLASSIC.values():
                self.bpf.attach_tracepoint(tp=tp, fn_name=fn)
        else:
            for tp, fn in Tracepoints.RAW.values():
                self.bpf.attach_raw_tracepoint(tp=tp, fn_name=fn)

    def detach(self) -> None:
        for tp in list(self.bpf.tracepoint_fds):
            self.bpf.detach_tracepoint(tp=tp)
        for tp in list(self.bpf.raw_tracepoint_fds):
            self.bpf.detach_raw_tracepoint(tp=tp)

    def close(self) -> None:
        self.bpf.cleanup()


def bpf_stats_enabled() -> bool:
    """kernel.bpf_stats_enabled: when on (someone enabled run-time stats), every BPF program run
    pays two extra clock reads, which inflates the probe's per-syscall cost."""
    try:
        return Path("/proc/sys/kernel/bpf_stats_enabled").read_text().strip() != "0"
    except OSError:
        return False


def foreign_syscall_programs() -> int:
    """BPF programs other processes have attached to raw_syscalls sys_enter / sys_exit (they run
    on every syscall, the load generator's too): -1 when bpftool cannot tell."""
    try:
        out = subprocess.run(["bpftool", "perf", "list", "-j"], capture_output=True, text=True, timeout=10).stdout
        links = json.loads(out or "[]")
    except (OSError, ValueError, subprocess.TimeoutExpired):
        return -1
    me = os.getpid()
    return sum(1 for e in links if e.get("tracepoint") in ("sys_enter", "sys_exit") and e.get("pid") != me)


FOREIGN_SEEN: list[int] = []     # foreign_syscall_programs() samples taken between rounds


def sample_foreign() -> int:
    n = foreign_syscall_programs()
    FOREIGN_SEEN.append(n)
    return n


class _ProgInfo(ct.Structure):
    # struct bpf_prog_info up to run_cnt (linux/bpf.h: id at 4, run_time_ns at 192, run_cnt at 200)
    _fields_ = [("type", ct.c_uint32), ("id", ct.c_uint32), ("_a", ct.c_uint8 * 184),
                ("run_time_ns", ct.c_uint64), ("run_cnt", ct.c_uint64), ("_b", ct.c_uint8 * 24)]


class BpfRunStats:
    """Per-program run time (BPF_ENABLE_STATS, only while this is open: it costs two clock reads
    per program run, so it is never on while syscalls are timed)."""

    def __init__(self, probe):
        self.funcs = {name.decode() if isinstance(name, bytes) else name: fn.fd
                      for name, fn in probe.bpf.funcs.items()}
        self.fd = -1

    def __enter__(self):
        from lbd.bpfsys import BPF_ENABLE_STATS, bpf

        attr = (ct.c_uint32 * 16)()          # union bpf_attr { struct { __u32 type; } enable_stats; }
        self.fd = bpf(BPF_ENABLE_STATS, attr)  # type 0: BPF_STATS_RUN_TIME
        return self

    def __exit__(self, *exc):
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def sample(self) -> dict[str, tuple[int, int]]:
        """{program name: (run_time_ns, run_cnt)} for the probe's programs."""
        from lbd.bpfsys import obj_info

        out = {}
        for name, fd in self.funcs.items():
            info = _ProgInfo()
            if obj_info(fd, info):
                out[name] = (info.run_time_ns, info.run_cnt)
        return out


# ---- consumers --------------------------------------------------------------------------------

class Stop:
    """Set by a watcher thread when the load generator exits (consumer loops poll .flag; the C
    consumer reads .c_flag)."""

    def __init__(self, proc: subprocess.Popen):
        self.flag = False
        self.c_flag = ct.c_int(0)
        self.proc = proc
        self.thread = threading.Thread(target=self._watch, daemon=True)
        self.thread.start()

    def _watch(self):
        self.proc.wait()
        self.flag = True
        self.c_flag.value = 1


@dataclass
class ConsumerRun:
    delivered: int          # records handed to the consumer's code
    cpu_s: float            # the consumer thread's CPU seconds
    wall_s: float


class LbdConsumer:
    """lbd.Collector's loop (next_batch) on an already loaded probe."""

    def __init__(self, probe, batch_size: int | None = None):
        from lbd.collector import Collector, wall_offset_ns
        from lbd._decode import Ring
        from lbd.batch import Batch

        class _ProbeCollector(Collector):
            # The Collector loop unchanged, on a probe the benchmark owns (it loads once per module).
            def __enter__(self):
                self.probe = probe
                self.ring = Ring(probe.ring_fd, probe.ring_size, wall_offset=wall_offset_ns())
                self.batch = Batch(self.batch_size)
                return self

            def close(self):
                ring, self.ring = self.ring, None
                if ring is not None:
                    ring.close()
                self.probe = None

        self.collector = _ProbeCollector(probe.config, batch_size=batch_size).__enter__()
        self.batch_size = self.collector.batch_size
        self.name = "lbd"
        if batch_size:
            self.name += f", batch {batch_size}"

    def run(self, stop: Stop) -> ConsumerRun:
        c = self.collector
        n = 0
        w0, c0 = time.perf_counter(), time.thread_time()
        while not stop.flag:
            n += len(c.next_batch())
        while True:                    # what is left in the ring once the producer is done
            k = len(c.next_batch(0))
            if not k:
                break
            n += k
        return ConsumerRun(n, time.thread_time() - c0, time.perf_counter() - w0)

    def drain(self) -> ConsumerRun:
        c = self.collector
        n = 0
        w0, c0 = time.perf_counter(), time.thread_time()
        while True:
            k = len(c.next_batch(0))
            if not k:
                break
            n += k
        return ConsumerRun(n, time.thread_time() - c0, time.perf_counter() - w0)

    def close(self):
        self.collector.close()


def hdr_ctype():
    """struct lbd_hdr as a ctypes Structure, derived from lbd.record.HDR_DTYPE (not retyped)."""
    import numpy as np
    from lbd import record

    scalar = {np.dtype("<u1"): ct.c_uint8, np.dtype("<u2"): ct.c_uint16, np.dtype("<u4"): ct.c_uint32,
              np.dtype("<u8"): ct.c_uint64, np.dtype("<i8"): ct.c_int64}
    fields = []
    for name in record.HDR_DTYPE.names:
        dt = record.HDR_DTYPE.fields[name][0]
        base, shape = (dt.subdtype if dt.subdtype else (dt, ()))
        if base.kind == "S":
            ctype = ct.c_char * base.itemsize
        elif base.names:                                  # struct lbd_slot: (off, len)
            ctype = ct.c_uint32
        else:
            ctype = scalar[base.newbyteorder("<")]
        for n in reversed(shape):
            ctype = ctype * n
        fields.append((name, ctype))

    class Hdr(ct.Structure):
        _pack_ = 1
        _fields_ = fields

    assert ct.sizeof(Hdr) == record.HDR_SIZE, (ct.sizeof(Hdr), record.HDR_SIZE)
    return Hdr


class _BccRing:
    """bcc's ring buffer manager on one probe (bcc keeps one per BPF object and cannot remove a
    ring from it, so the callback is registered once and switches on `parse`)."""

    def __init__(self, probe):
        self.bpf = probe.bpf
        self.count = 0
        self.parse = False
        self.last = None
        self.hdr_p = ct.POINTER(hdr_ctype())
        self.bpf[b"events"].open_ring_buffer(self._on_record)

    def _on_record(self, ctx, data, size):
        self.count += 1
        if self.parse:      # the usual bcc tool: view the record as its struct, take the fields
            h = ct.cast(data, self.hdr_p).contents
            self.last = (h.pid, h.tid, h.nr, h.res, h.ts, h.comm)
        return 0

    @classmethod
    def of(cls, probe) -> _BccRing:
        ring = getattr(probe, "_bench_bcc_ring", None)
        if ring is None:
            ring = probe._bench_bcc_ring = cls(probe)
        return ring


class BccConsumer:
    """bcc's ring buffer API: a Python callback per record.  parse=False only counts (bcc's best
    case); parse=True also reads the header fields through ctypes, as bcc tools do."""

    def __init__(self, probe, parse: bool = False):
        self.ring = _BccRing.of(probe)
        self.bpf = probe.bpf
        self.parse = parse
        self.name = "bcc callback, fields" if parse else "bcc callback"

    def _drain(self):
        r = self.ring
        while True:
            before = r.count
            self.bpf.ring_buffer_consume()
            if r.count == before:
                return

    def run(self, stop: Stop) -> ConsumerRun:
        r = self.ring
        r.parse = self.parse
        start = r.count
        w0, c0 = time.perf_counter(), time.thread_time()
        while not stop.flag:
            self.bpf.ring_buffer_poll(POLL_MS)
        self._drain()
        return ConsumerRun(r.count - start, time.thread_time() - c0, time.perf_counter() - w0)

    def drain(self) -> ConsumerRun:
        r = self.ring
        r.parse = self.parse
        start = r.count
        w0, c0 = time.perf_counter(), time.thread_time()
        self._drain()
        return ConsumerRun(r.count - start, time.thread_time() - c0, time.perf_counter() - w0)

    def close(self):
        self.ring.parse = False


_libbpf = None


def libbpf_lib():
    global _libbpf
    if _libbpf is None:
        lib = ct.CDLL(str(LIBBPF_SO), use_errno=True)
        lib.lbdc_open.restype = ct.c_void_p
        lib.lbdc_open.argtypes = [ct.c_int]
        lib.lbdc_run.restype = ct.c_int64
        lib.lbdc_run.argtypes = [ct.c_void_p, ct.c_int, ct.POINTER(ct.c_int)]
        lib.lbdc_drain.restype = ct.c_int64
        lib.lbdc_drain.argtypes = [ct.c_void_p]
        for f in ("lbdc_records", "lbdc_bytes", "lbdc_nr_sum", "lbdc_cpu_ns"):
            getattr(lib, f).restype = ct.c_uint64
            getattr(lib, f).argtypes = [ct.c_void_p]
        lib.lbdc_close.argtypes = [ct.c_void_p]
        _libbpf = lib
    return _libbpf


class LibbpfConsumer:
    """libbpf's ring_buffer__poll loop with a C callback (bench/libbpf_consumer.c)."""

    name = "libbpf C"

    def __init__(self, probe):
        self.lib = libbpf_lib()
        self.c = self.lib.lbdc_open(probe.ring_fd)
        if not self.c:
            raise OSError(ct.get_errno(), "ring_buffer__new on the probe's ring")

    def run(self, stop: Stop) -> ConsumerRun:
        w0, c0 = time.perf_counter(), time.thread_time()
        n = self.lib.lbdc_run(self.c, POLL_MS, ct.byref(stop.c_flag))
        if n < 0:
            raise OSError(-n, f"ring_buffer__poll: {os.strerror(-n)}")
        return ConsumerRun(n, time.thread_time() - c0, time.perf_counter() - w0)

    def drain(self) -> ConsumerRun:
        w0, c0 = time.perf_counter(), time.thread_time()
        n = self.lib.lbdc_drain(self.c)
        if n < 0:
            raise OSError(-n, f"ring_buffer__consume: {os.strerror(-n)}")
        return ConsumerRun(n, time.thread_time() - c0, time.perf_counter() - w0)

    def close(self):
        if self.c:
            self.lib.lbdc_close(self.c)
            self.c = None


_Stop = Stop     # the name test_bench_plugin.py uses


CONSUMERS = {
    "lbd": LbdConsumer,
    "bcc": BccConsumer,
    "bcc-fields": lambda probe: BccConsumer(probe, parse=True),
    "libbpf": LibbpfConsumer,
}


class pinned:
    """Pin the calling thread (and threads it starts) to one CPU for the block."""

    def __init__(self, cpu: int):
        self.cpu = cpu

    def __enter__(self):
        self.saved = os.sched_getaffinity(0)
        os.sched_setaffinity(0, {self.cpu})

    def __exit__(self, *exc):
        os.sched_setaffinity(0, self.saved)


def drain_all(probe) -> int:
    """Empty the probe's ring (so a run starts from nothing); returns the records thrown away."""
    from lbd._decode import Ring
    from lbd.batch import Batch

    ring = Ring(probe.ring_fd, probe.ring_size)
    b = Batch(4096)
    n = 0
    try:
        while True:
            k = ring.fill(b)
            if not k:
                return n
            n += k
    finally:
        ring.close()


# ---- results and the summary ------------------------------------------------------------------

@dataclass
class Row:
    name: str
    metrics: dict = field(default_factory=dict)


@dataclass
class Group:
    title: str
    columns: list                  # (metric key, header, format spec or "si")
    base: str | None = None        # the row the ratio columns divide by
    ratios: list = field(default_factory=list)   # (metric key, header): row / base, plainly
    notes: list = field(default_factory=list)
    rows: dict = field(default_factory=dict)


RESULTS: dict[str, Group] = {}


def group(key: str, title: str, columns, base=None, ratios=()) -> Group:
    g = RESULTS.get(key)
    if g is None:
        g = RESULTS[key] = Group(title, list(columns), base, list(ratios))
    return g


def record(benchmark, group_key: str, name: str, prefix: str = "", **metrics) -> None:
    """Keep a benchmark's figures for the summary and in its saved JSON (extra_info, each key
    with `prefix` when one benchmark records several rows)."""
    g = RESULTS[group_key]
    g.rows[name] = Row(name, metrics)
    for k, v in metrics.items():
        benchmark.extra_info[prefix + k] = round(v, 6) if isinstance(v, float) else v


def fmt_si(v: float) -> str:
    for div, unit in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(v) >= div:
            return f"{v / div:.2f}{unit}"
    return f"{v:.1f}"


def _cell(v, f) -> str:
    if v is None:
        return "-"
    return fmt_si(v) if f == "si" else format(v, f)


def summary_lines() -> list[str]:
    lines = []
    for g in RESULTS.values():
        if not g.rows:
            continue
        lines.append("")
        lines.append(g.title)
        base = g.rows.get(g.base) if g.base else None
        ratios = g.ratios if base is not None else []
        headers = ["", *[h for _, h, _ in g.columns], *[f"{h} / {g.base}" for _, h in ratios]]
        table = [headers]
        for row in g.rows.values():
            cells = [row.name] + [_cell(row.metrics.get(k), f) for k, _, f in g.columns]
            for key, _ in ratios:
                a, b = row.metrics.get(key), base.metrics.get(key)
                cells.append(f"{a / b:.3g}" if a and b else "-")
            table.append(cells)
        widths = [max(len(r[i]) for r in table) for i in range(len(headers))]
        for k, r in enumerate(table):
            lines.append("  " + "  ".join(c.ljust(w) if i == 0 else c.rjust(w)
                                          for i, (c, w) in enumerate(zip(r, widths))))
            if k == 0:
                lines.append("  " + "  ".join("-" * w for w in widths))
        lines.extend("  " + n for n in g.notes)
    return lines


def _metric(group_key: str, row: str, key: str):
    g = RESULTS.get(group_key)
    r = g.rows.get(row) if g else None
    return None if r is None else r.metrics.get(key)


def target_lines() -> list[str]:
    """The issue's targets against this run's figures: met / MISSED (never a test failure: the
    machine is shared, timings are not asserted)."""
    checks = []

    def check(text, ok, value):
        if ok is not None:
            checks.append(f"  {'met   ' if ok else 'MISSED'}  {text}: {value}")

    for group, suffix in (("live", ""), ("live_enter", ", enter+exit")):
        lbd_pct = _metric(group, "lbd" + suffix, "delivered_pct")
        if lbd_pct is not None:
            check(f"live: lbd{suffix} delivers >= 99.9% of what the probe offered", lbd_pct >= 99.9,
                  f"{lbd_pct:.3f}%")
        for name in ("bcc callback", "bcc callback, fields"):
            pct = _metric(group, name + suffix, "delivered_pct")
            if pct is not None:
                check(f"live: {name}{suffix} loses most (delivers < 50%)", pct < 50, f"delivers {pct:.3f}%")
    lbd_cpu, c_cpu = _metric("live", "lbd", "cpu_ns_per_event"), _metric("live", "libbpf C", "cpu_ns_per_event")
    if lbd_cpu and c_cpu:
        check("live: lbd consumer CPU/event <= 2x libbpf C", lbd_cpu <= 2 * c_cpu,
              f"{lbd_cpu:.1f} ns vs {c_cpu:.1f} ns = {lbd_cpu / c_cpu:.2f}x")
    if lbd_cpu:
        check("live: lbd consumer CPU/event < 50 ns", lbd_cpu < 50, f"{lbd_cpu:.1f} ns")
    over = _metric("cost", "captured, lbd consuming", "overhead_ns")
    if over is not None:
        check("probe overhead per captured getppid within Falco's ~220-270 ns", over <= 270, f"{over:.0f} ns")
    for row in ("lbd", "lbd, batch 8192"):
        rate = _metric("drain", row, "records_per_cpu_s")
        if rate:
            check(f"drain: {row} >= 50M records/s (per CPU second)", rate >= 50e6, fmt_si(rate) + "/s")
            for base in ("bcc callback", "bcc callback, fields"):
                b = _metric("drain", base, "records_per_cpu_s")
                if b:
                    check(f"drain: {row} >= 50x {base}", rate >= 50 * b, f"{rate / b:.1f}x")
    fast, ref = _metric("decode", "Ring.fill", "records_per_s"), _metric("decode", "reference", "records_per_s")
    if fast and ref:
        check("decode: Ring.fill >= 20x the reference", fast >= 20 * ref, f"{fast / ref:.0f}x")
    g = RESULTS.get("enrich")
    for mix, row in (g.rows.items() if g else ()):
        rate = row.metrics.get("compiled_eps")
        if rate:
            check(f"enrich: {mix} >= 1M events/s on one core (compiled)", rate >= 1e6, fmt_si(rate) + "/s")
            if mix == "openclose":
                check("enrich: openclose >= 5M events/s on one core (compiled)", rate >= 5e6, fmt_si(rate) + "/s")
    return ["", "Targets:", *checks] if checks else []


def safe_name(s: str) -> str:
    return re.sub(r"\W+", "_", s).strip("_")
