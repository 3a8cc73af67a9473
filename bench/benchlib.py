"""Shared machinery of the benchmarks: the load generator, the probe under either loader, the ring
consumers, the probe's counters, and the registry the session summary (bench/conftest.py) prints
as ratio tables.

The probe is lbd.probe.Probe, loaded by libbpf (the CO-RE object, the default) or by bcc
(`load_probe(loader=...)`); it writes into one BPF ring per cpus_per_ring CPUs (`probe.ring_fds`).
The consumers all read the SAME probe's rings, one consumer at a time, every ring each:

* `LbdConsumer`    lbd's own loop: `lbd.Collector.next_batch()` (Rings.fill: the rings merged in emit
                   order into a Batch, GIL released), with 1 or more consumer threads
* `BccConsumer`    bcc's per-record Python callback: libbcc's ring buffer manager
                   (`bpf_new_ringbuf` + `bpf_add_ringbuf` per ring fd, `bpf_poll_ringbuf`), what
                   `b["events"].open_ring_buffer(cb)` + `ring_buffer_poll` do; `parse=True` also reads
                   the header fields through ctypes, as bcc tools do.  Needs bcc's Python package
                   (not the bcc loader: it takes the rings' fds)
* `LibbpfConsumer` libbpf's `ring_buffer__poll/__consume` with a C callback, one manager over every
                   ring (bench/libbpf_consumer.so)

Each has run(stop) (consume while the load generator runs, then empty the rings) and drain() (empty
the rings), in the calling thread (LbdConsumer with consumers > 1: its threads plus the calling
one), so the CPU time around them is the consumer's.  test_bench_plugin.py (the Falco plugin's
owner) uses this module too: keep its names.
"""
from __future__ import annotations

import contextlib
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
from unittest import mock

import pytest

BENCH_DIR = Path(__file__).resolve().parent
ROOT = BENCH_DIR.parent
LOADGEN = BENCH_DIR / "loadgen"
LIBBPF_SO = BENCH_DIR / "libbpf_consumer.so"
# The name bench/loadgen gives itself (prctl), unique to this session: the probe selects it with
# only_comms, and a concurrent session on the same machine uses another one.
LOADGEN_COMM = f"lbdlg-{os.getpid()}"

REQUIRE_BPF = os.environ.get("LBD_REQUIRE_BPF") == "1"
#: fail instead of skipping the bcc alternatives (the bcc loader, bcc's consumer) when bcc is missing
REQUIRE_BCC = os.environ.get("LBD_REQUIRE_BCC") == "1"
LOADERS = ("libbpf", "bcc")


def env_int(name: str, default: int) -> int:
    v = os.environ.get(name)
    return int(v) if v else default


def env_float(name: str, default: float) -> float:
    v = os.environ.get(name)
    return float(v) if v else default


def env_ints(name: str, default) -> list[int]:
    """A comma-separated list of ints from the environment (e.g. LBD_BENCH_SCALING_N=1,2,4)."""
    v = os.environ.get(name)
    return [int(x) for x in v.split(",") if x.strip()] if v else list(default)


NCPUS = os.cpu_count() or 2
# Sizes of the runs (environment overrides for quick or long runs; the saved results record them).
CALLS = env_int("LBD_BENCH_CALLS", 3_000_000)        # getppid calls per live-capture round
ORC_CALLS = env_int("LBD_BENCH_ORC_CALLS", 300_000)  # open/read/close iterations per round (3 syscalls each)
ROUNDS = env_int("LBD_BENCH_ROUNDS", 3)               # rounds per kernel benchmark
DRAIN_RECORDS = env_int("LBD_BENCH_DRAIN", 1_000_000)  # records pre-filled for the drain benchmark
DRAIN_RING = env_int("LBD_BENCH_DRAIN_RING", 256 << 20)
LOADGEN_CPU = env_int("LBD_BENCH_LOADGEN_CPU", NCPUS - 1)
CONSUMER_CPU = env_int("LBD_BENCH_CONSUMER_CPU", 0)
POLL_MS = 30                                           # the consumers' poll timeout (Collector's default)
ORC_FILE = "/etc/hostname" if os.access("/etc/hostname", os.R_OK) else "/etc/passwd"
#: a file outside /etc for the same loop (rules on /etc never match its opens)
OUTSIDE_FILE = "/usr/lib/os-release" if os.access("/usr/lib/os-release", os.R_OK) else str(LOADGEN)


# ---- skipping ---------------------------------------------------------------------------------

def _skip_or_fail(reason: str, required: bool) -> None:
    if required:
        pytest.fail(f"{reason} (and it is required here)", pytrace=False)
    pytest.skip(reason)


def bcc_missing() -> str | None:
    """Why bcc's Python package cannot be used here, or None."""
    try:
        import bcc  # noqa: F401
    except Exception as e:  # ImportError, or libbcc failing to load
        return f"bcc is not installed or does not load ({e}): the bcc alternatives are skipped"
    return None


def require_kernel(loader: str = "libbpf", libbpf_consumer: bool = False) -> None:
    """Skip (fail under LBD_REQUIRE_BPF=1) unless root with the load generator built; the bcc
    loader also needs bcc (skipped without it; fails under LBD_REQUIRE_BCC=1)."""
    reason = None
    if os.geteuid() != 0:
        reason = "kernel benchmarks need root"
    if reason is None:
        need = [LOADGEN] + ([LIBBPF_SO] if libbpf_consumer else [])
        missing = [p.name for p in need if not p.exists()]
        if missing:
            reason = f"bench/{', bench/'.join(missing)} not built: run `make bench-tools`"
    if reason is not None:
        _skip_or_fail(reason, REQUIRE_BPF)
    if loader == "bcc":
        require_bcc()


def require_bcc() -> None:
    reason = bcc_missing()
    if reason is not None:
        _skip_or_fail(reason, REQUIRE_BCC)


# ---- timing -----------------------------------------------------------------------------------

def cpu_timer() -> float:
    """CPU seconds: this process's (the consumer threads') plus those of the child processes
    reaped so far (the load generator).  Unlike wall time, it does not grow while other processes
    hold the CPU."""
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.process_time() + ru.ru_utime + ru.ru_stime


def time_by_cpu(benchmark) -> None:
    """Make a kernel benchmark's time (what bench-compare compares) CPU seconds (cpu_timer): the
    load generator's, so a slower probe shows, plus the consumer's.  pytest-benchmark (4, 5) reads
    `_timer` when pedantic() builds its runner; it has no public per-benchmark timer option."""
    benchmark._timer = cpu_timer


# ---- the load generator -----------------------------------------------------------------------

@dataclass
class Loadgen:
    """One load generator run: `calls` syscalls in `ns` (wall, from the threads' start to the last
    one's end) and `cpu_ns` (the threads' CPU time, which other processes taking the CPU do not
    inflate: the per-call figures use it)."""

    calls: int
    ns: int
    cpu_ns: int
    utime_ns: int
    stime_ns: int
    threads: int = 1
    max_ns_per_call: float = 0.0

    @property
    def ns_per_call(self) -> float:
        return self.cpu_ns / self.calls

    @property
    def wall_ns_per_call(self) -> float:
        return self.ns / self.calls

    @property
    def calls_per_s(self) -> float:
        """The whole process's rate (all threads, wall time)."""
        return self.calls * 1e9 / self.ns if self.ns else 0.0


def loadgen_cmd(calls: int = 0, cpu: int | str | None = LOADGEN_CPU, *, threads: int = 0, mode: str = "getppid",
                seconds: float = 0.0, comm: str = LOADGEN_COMM, sleep_us: int = 0,
                orc_file: str = ORC_FILE) -> list[str]:
    cmd = [str(LOADGEN), "-C", comm, "-m", mode]
    if cpu is not None:
        cmd += ["-c", str(cpu)]
    if threads:
        cmd += ["-t", str(threads)]
    if mode == "orc":
        cmd += ["-f", orc_file]
    if sleep_us:
        cmd += ["-s", str(sleep_us)]
    cmd += ["-d", str(seconds)] if seconds else ["-n", str(calls)]
    return cmd


def start_loadgen(calls: int = 0, cpu: int | str | None = LOADGEN_CPU, **kw) -> subprocess.Popen:
    return subprocess.Popen(loadgen_cmd(calls, cpu, **kw), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)


def finish_loadgen(proc: subprocess.Popen) -> Loadgen:
    out, err = proc.communicate()
    if proc.returncode != 0:
        raise RuntimeError(f"loadgen failed ({proc.returncode}): {err.strip()}")
    kv = dict(item.split("=", 1) for item in out.split())
    return Loadgen(int(kv["calls"]), int(kv["ns"]), int(kv["cpu_ns"]), int(kv["utime_ns"]), int(kv["stime_ns"]),
                   int(kv.get("threads", 1)), float(kv.get("max_ns_per_call", 0.0)))


def run_loadgen(calls: int = 0, cpu: int | str | None = LOADGEN_CPU, **kw) -> Loadgen:
    return finish_loadgen(start_loadgen(calls, cpu, **kw))


def gated_loadgen(calls: int, mode: str = "getppid", orc_file: str = ORC_FILE) -> subprocess.Popen:
    """bench/loadgen on LOADGEN_CPU, started but waiting for a line on stdin (exec keeps the pid):
    a capture can select it by pid before it runs, so another process named lbd-loadgen on a
    shared machine is not counted.  Write "go\\n" to its stdin, then finish_loadgen()."""
    return subprocess.Popen(["sh", "-c", 'read go && exec "$0" "$@"',
                             *loadgen_cmd(calls, LOADGEN_CPU, mode=mode, orc_file=orc_file)],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def plugin_host_round(open_params: dict, fields: tuple, calls: int, mode: str = "getppid",
                      init: dict | None = None, orc_file: str = ORC_FILE) -> tuple[list[dict], Loadgen]:
    """One round of the Falco plugin under load: the plugin host (tests/plugin_host, --bench, on
    CONSUMER_CPU) opens a capture of the gated load generator's process only (open_params plus
    only_pids), the load runs, the host drains what the rings still hold and stops.  The host's
    JSON lines and the load generator's figures."""
    from tests.plugin_host.host import HOST, LIB

    lgp = gated_loadgen(calls, mode, orc_file)
    cmd = [str(HOST), "--lib", str(LIB), "run"]
    if init is not None:
        cmd += ["--init", json.dumps(init)]
    cmd += ["--open", json.dumps({"only_pids": [lgp.pid], **open_params}), "--stdin-stop", "--bench",
            "--duration", "600"]
    for f in fields:
        cmd += ["--field", f]
    if not fields:
        cmd.append("--no-fields")
    host = subprocess.Popen(["taskset", "-c", str(CONSUMER_CPU)] + cmd, stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        for line in host.stdout:          # wait until the capture is open
            d = json.loads(line) if line.startswith("{") else {}
            if "open" in d:
                assert d["open"] == 0, d
                break
            if d.get("init", 0) != 0:
                raise AssertionError(d)
        lgp.stdin.write("go\n")
        lgp.stdin.flush()                 # finish_loadgen's communicate() closes it
        lg = finish_loadgen(lgp)
        time.sleep(0.5)                   # the host drains what the rings still hold
        host.stdin.close()
        out = host.stdout.read()
        host.wait(120)
    finally:
        for p in (host, lgp):
            if p.poll() is None:
                p.kill()
    return [json.loads(ln) for ln in out.splitlines() if ln.startswith("{")], lg


@dataclass
class Overhead:
    """A probe's added CPU ns per syscall from rounds of (no-probe run, run with the probe), each
    round's run set against the mean of the no-probe runs around it (its own and the next
    round's, or a closing one): other processes' programs on the syscall path that come and go
    between rounds (a shared machine) then shift both sides alike.  `ns` is the median over the
    rounds; `unstable`: rounds whose two no-probe runs differ by more than 10%."""

    ns: float
    low: float
    high: float
    no_probe_ns: float
    unstable: int


def overhead(bases: list, runs: list) -> Overhead:
    """bases: len(runs) + 1 no-probe Loadgen runs (before each round, then one after the last)."""
    import statistics

    per, unstable = [], 0
    for i, lg in enumerate(runs):
        a, b = bases[i].ns_per_call, bases[min(i + 1, len(bases) - 1)].ns_per_call
        if abs(a - b) > 0.1 * min(a, b):
            unstable += 1
        per.append(lg.ns_per_call - (a + b) / 2)
    return Overhead(statistics.median(per), min(per), max(per), min(b.ns_per_call for b in bases), unstable)


# ---- the probe --------------------------------------------------------------------------------

#: getppid of the load generator only; no state records (track_state would also write every
#: other process's fd and process syscalls into the rings: the open/read/close benchmarks turn it
#: on explicitly)
BENCH_CONFIG = {"syscalls": ["getppid"], "only_comms": [LOADGEN_COMM], "track_state": False}


@contextlib.contextmanager
def loader_env(loader: str):
    """LBD_LOADER=loader for the block (it overrides the configuration's `loader`)."""
    old = os.environ.get("LBD_LOADER")
    os.environ["LBD_LOADER"] = loader
    try:
        yield
    finally:
        if old is None:
            os.environ.pop("LBD_LOADER", None)
        else:
            os.environ["LBD_LOADER"] = old


def load_probe(loader: str = "libbpf", **config):
    """lbd's probe under `loader` with BENCH_CONFIG plus `config`; skips (fails under
    LBD_REQUIRE_BPF=1, or LBD_REQUIRE_BCC=1 for bcc) when it cannot be loaded."""
    require_kernel(loader)
    from lbd.probe import Probe, ProbeError

    try:
        with loader_env(loader):
            probe = Probe({**BENCH_CONFIG, **config, "loader": loader})
    except (ProbeError, OSError) as e:
        _skip_or_fail(f"the probe did not load under {loader}: {e}", REQUIRE_BPF or (loader == "bcc" and REQUIRE_BCC))
    assert probe.kind == loader, (probe.kind, loader)
    LOADED.append(probe)
    return probe


#: the probes load_probe() loaded and close_probe() has not closed (a cost benchmark detaches the
#: syscall programs of all but the one it times)
LOADED: list = []


def only_attached(probe=None) -> None:
    """Detach the syscall programs of every loaded probe except `probe` (None: of all), and attach
    `probe`'s."""
    for p in LOADED:
        if p is not probe:
            SyscallPrograms(p).detach()
    if probe is not None:
        SyscallPrograms(probe).attach()


def close_probe(probe) -> None:
    """Free what the benchmarks attached to a probe (bcc's ring manager), then the probe."""
    ring = _BCC_RINGS.pop(id(probe), None)
    if ring is not None:
        ring.free()
    if probe in LOADED:
        LOADED.remove(probe)
    probe.close()


@dataclass
class Counters:
    """Probe counter deltas over a run.  `offered` is what the probe tried to write to the rings:
    syscall records plus process-tree records, written or dropped because a ring was full.
    `per_ring_dropped`: the drops of each ring."""

    emitted: int
    sched: int
    dropped: int
    per_ring_dropped: tuple = ()
    per_ring_written: tuple = ()

    @classmethod
    def between(cls, a, b) -> Counters:
        per_d = tuple(rb["drop_ringfull"] - ra["drop_ringfull"] for ra, rb in zip(a.per_ring, b.per_ring))
        per_w = tuple(rb["emitted"] + rb["sched"] - ra["emitted"] - ra["sched"] for ra, rb in zip(a.per_ring, b.per_ring))
        return cls(b["emitted"] - a["emitted"], b["sched"] - a["sched"], b["drop_ringfull"] - a["drop_ringfull"],
                   per_d, per_w)

    @property
    def written(self) -> int:
        return self.emitted + self.sched

    @property
    def offered(self) -> int:
        return self.written + self.dropped


SYSCALL_PROGRAMS = ("sys_enter", "sys_exit")


class SyscallPrograms:
    """Detach and re-attach the probe's raw_syscalls programs (sys_enter, sys_exit; the loaded
    programs and maps are kept), to time the load generator with no probe on the syscall path,
    within the same run.  Works under both loaders (Probe.loader.detach_program/attach_program)."""

    def __init__(self, probe):
        self.probe = probe

    @property
    def attached(self) -> bool:
        return getattr(self.probe, "_bench_syscalls_attached", True)

    def detach(self) -> None:
        if self.attached and self.probe.loader is not None:
            for name in SYSCALL_PROGRAMS:
                self.probe.loader.detach_program(name)
            self.probe._bench_syscalls_attached = False

    def attach(self) -> None:
        if not self.attached and self.probe.loader is not None:
            for name in SYSCALL_PROGRAMS:
                self.probe.loader.attach_program(name)
            self.probe._bench_syscalls_attached = True

    @property
    def kind(self) -> str:
        return {"libbpf": "BTF raw tracepoint (tp_btf)", "bcc": "raw tracepoint"}.get(self.probe.kind, "?")


Tracepoints = SyscallPrograms     # the former name


# ---- empty programs: the floor -----------------------------------------------------------------

BPF_PROG_LOAD = 5
BPF_RAW_TRACEPOINT_OPEN = 17
BPF_PROG_TYPE_RAW_TRACEPOINT = 17


class _ProgLoadAttr(ct.Structure):
    # union bpf_attr for BPF_PROG_LOAD, up to prog_name (linux/bpf.h); the rest stays zero
    _fields_ = [("prog_type", ct.c_uint32), ("insn_cnt", ct.c_uint32), ("insns", ct.c_uint64),
                ("license", ct.c_uint64), ("log_level", ct.c_uint32), ("log_size", ct.c_uint32),
                ("log_buf", ct.c_uint64), ("kern_version", ct.c_uint32), ("prog_flags", ct.c_uint32),
                ("prog_name", ct.c_char * 16), ("_rest", ct.c_uint8 * 64)]


class _RawTpAttr(ct.Structure):
    _fields_ = [("name", ct.c_uint64), ("prog_fd", ct.c_uint32), ("pad", ct.c_uint32), ("_rest", ct.c_uint8 * 16)]


class FloorPrograms:
    """Empty BPF programs (`r0 = 0; exit`) on the raw tracepoints sys_enter and sys_exit: the cost
    any probe on the syscall path pays per syscall on this machine before doing anything (lbd's
    probe is a BTF raw tracepoint under libbpf, a raw tracepoint under bcc: the same kernel hook).
    Loaded with bpf(2) directly (no bcc, no libbpf), detached until attach()."""

    INSNS = bytes.fromhex("b700000000000000" "9500000000000000")   # mov64 r0, 0; exit

    def __init__(self):
        from lbd.bpfsys import bpf

        self._bpf = bpf
        insns = ct.create_string_buffer(self.INSNS, len(self.INSNS))
        lic = ct.create_string_buffer(b"GPL")
        attr = _ProgLoadAttr(prog_type=BPF_PROG_TYPE_RAW_TRACEPOINT, insn_cnt=len(self.INSNS) // 8,
                             insns=ct.addressof(insns), license=ct.addressof(lic), prog_name=b"lbd_bench_floor")
        self.prog_fd = bpf(BPF_PROG_LOAD, attr)
        self.links: list[int] = []

    def attach(self, kind: str = "raw") -> None:
        if self.links:
            return
        for tp in (b"sys_enter", b"sys_exit"):
            name = ct.create_string_buffer(tp)
            self.links.append(self._bpf(BPF_RAW_TRACEPOINT_OPEN, _RawTpAttr(name=ct.addressof(name), prog_fd=self.prog_fd)))

    def detach(self) -> None:
        links, self.links = self.links, []
        for fd in links:
            os.close(fd)

    def close(self) -> None:
        self.detach()
        if self.prog_fd >= 0:
            os.close(self.prog_fd)
            self.prog_fd = -1


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
        self.funcs = dict(probe.loader.program_fds())
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
    cpu_s: float            # the consumer's CPU seconds (its threads')
    wall_s: float


def _pending(probe) -> int:
    """Bytes waiting in the probe's rings (a Ring per fd, mapped for the look)."""
    from lbd._decode import Ring

    n = 0
    for fd in probe.ring_fds:
        r = Ring(fd, probe.ring_size)
        try:
            n += r.pending_bytes()
        finally:
            r.close()
    return n


class LbdConsumer:
    """lbd.Collector's loop (next_batch) on an already loaded probe: the Collector's own code
    (its Rings merge, its batch pool, its consumer threads when consumers > 1), with the probe the
    benchmark owns (it loads once per module) standing in for the one it would load."""

    def __init__(self, probe, batch_size: int | None = None, consumers: int = 1):
        import lbd.probe
        from lbd.collector import Collector

        class _ProbeCollector(Collector):
            def close(self):
                self.probe = None          # the benchmark's: not closed here
                super().close()

        self.probe = probe
        self.consumers = consumers
        col = _ProbeCollector(probe.config, batch_size=batch_size, consumers=consumers)
        with mock.patch.object(lbd.probe, "Probe", lambda *a, **k: probe):
            col.__enter__()
        self.collector = col
        self.batch_size = col.batch_size
        self.threads = len(col._threads) or 1
        self.name = "lbd"
        if batch_size:
            self.name += f", batch {batch_size}"
        if self.threads > 1:
            self.name += f", {self.threads} consumers"

    def _clock(self) -> float:
        # one consumer: the calling thread is the consumer; several: the process (its threads)
        return time.thread_time() if self.threads == 1 else time.process_time()

    def _rest(self) -> int:
        """Take what the rings still hold once the producer is done."""
        c = self.collector
        n = 0
        if self.threads == 1:
            while True:
                k = len(c.next_batch(0, flush=True))
                if not k:
                    return n
                n += k
        idle = 0
        while idle < 3:                # the threads drain on their own: until nothing comes
            k = len(c.next_batch(POLL_MS))
            n += k
            idle = idle + 1 if not k and _pending(self.probe) == 0 else 0
        return n

    def run(self, stop: Stop) -> ConsumerRun:
        c = self.collector
        n = 0
        w0, c0 = time.perf_counter(), self._clock()
        while not stop.flag:
            n += len(c.next_batch())
        n += self._rest()
        return ConsumerRun(n, self._clock() - c0, time.perf_counter() - w0)

    def drain(self) -> ConsumerRun:
        w0, c0 = time.perf_counter(), self._clock()
        n = self._rest()
        return ConsumerRun(n, self._clock() - c0, time.perf_counter() - w0)

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


_BCC_RINGS: dict = {}


class _BccRing:
    """libbcc's ring buffer manager over every ring of one probe (bcc's `open_ring_buffer` keeps one
    per BPF object and cannot remove a ring from it; here the manager is made from the rings' fds,
    so it works whichever loader loaded the probe).  The callback is registered once and switches
    on `parse`."""

    def __init__(self, probe):
        from bcc.libbcc import _RINGBUF_CB_TYPE, lib

        self.lib = lib
        self.count = 0
        self.parse = False
        self.last = None
        self.hdr_p = ct.POINTER(hdr_ctype())
        self.cb = _RINGBUF_CB_TYPE(self._on_record)      # kept alive: libbcc holds the pointer
        fds = list(probe.ring_fds)
        self.mgr = lib.bpf_new_ringbuf(fds[0], self.cb, None)
        if not self.mgr:
            raise OSError(ct.get_errno(), "bcc: bpf_new_ringbuf on the probe's ring 0")
        for i, fd in enumerate(fds[1:], 1):
            if lib.bpf_add_ringbuf(self.mgr, fd, self.cb, None) < 0:
                self.free()
                raise OSError(ct.get_errno(), f"bcc: bpf_add_ringbuf on the probe's ring {i}")

    def _on_record(self, ctx, data, size):
        self.count += 1
        if self.parse:      # the usual bcc tool: view the record as its struct, take the fields
            h = ct.cast(data, self.hdr_p).contents
            self.last = (h.pid, h.tid, h.nr, h.res, h.ts, h.comm)
        return 0

    def poll(self, timeout_ms: int) -> None:
        self.lib.bpf_poll_ringbuf(self.mgr, timeout_ms)

    def consume(self) -> None:
        self.lib.bpf_consume_ringbuf(self.mgr)

    def free(self) -> None:
        if self.mgr:
            self.lib.bpf_free_ringbuf(self.mgr)
            self.mgr = None

    @classmethod
    def of(cls, probe) -> _BccRing:
        ring = _BCC_RINGS.get(id(probe))
        if ring is None:
            ring = _BCC_RINGS[id(probe)] = cls(probe)
        return ring


class BccConsumer:
    """bcc's ring buffer API: a Python callback per record.  parse=False only counts (bcc's best
    case); parse=True also reads the header fields through ctypes, as bcc tools do."""

    def __init__(self, probe, parse: bool = False):
        require_bcc()
        self.ring = _BccRing.of(probe)
        self.parse = parse
        self.name = "bcc callback, fields" if parse else "bcc callback"

    def _drain(self):
        r = self.ring
        while True:
            before = r.count
            r.consume()
            if r.count == before:
                return

    def run(self, stop: Stop) -> ConsumerRun:
        r = self.ring
        r.parse = self.parse
        start = r.count
        w0, c0 = time.perf_counter(), time.thread_time()
        while not stop.flag:
            r.poll(POLL_MS)
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
        if not LIBBPF_SO.exists():
            _skip_or_fail(f"bench/{LIBBPF_SO.name} not built: run `make bench-tools`", REQUIRE_BPF)
        lib = ct.CDLL(str(LIBBPF_SO), use_errno=True)
        lib.lbdc_open_many.restype = ct.c_void_p
        lib.lbdc_open_many.argtypes = [ct.POINTER(ct.c_int), ct.c_int]
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
    """libbpf's ring_buffer__poll loop with a C callback over every ring (bench/libbpf_consumer.c)."""

    name = "libbpf C"

    def __init__(self, probe):
        self.lib = libbpf_lib()
        fds = (ct.c_int * len(probe.ring_fds))(*probe.ring_fds)
        self.c = self.lib.lbdc_open_many(fds, len(probe.ring_fds))
        if not self.c:
            raise OSError(ct.get_errno(), "ring_buffer__new / __add on the probe's rings")

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
    """Pin the calling thread (and threads it starts) to a CPU, or a set of CPUs, for the block."""

    def __init__(self, cpu):
        self.cpus = {cpu} if isinstance(cpu, int) else set(cpu)

    def __enter__(self):
        self.saved = os.sched_getaffinity(0)
        os.sched_setaffinity(0, self.cpus)

    def __exit__(self, *exc):
        os.sched_setaffinity(0, self.saved)


def drain_all(probe) -> int:
    """Empty the probe's rings (so a run starts from nothing); returns the records thrown away."""
    from lbd._decode import Ring
    from lbd.batch import Batch

    b = Batch(4096)
    n = 0
    for fd in probe.ring_fds:
        ring = Ring(fd, probe.ring_size)
        try:
            while True:
                k = ring.fill(b)
                if not k:
                    break
                n += k
        finally:
            ring.close()
    return n


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
    """The issues' targets against this run's figures: met / MISSED (never a test failure: the
    machine is shared, timings are not asserted)."""
    checks = []

    def check(text, ok, value):
        if ok is not None:
            checks.append(f"  {'met   ' if ok else 'MISSED'}  {text}: {value}")

    # issue 9: per-syscall cost under the CO-RE loader no worse than the bcc-era figures
    for loader in LOADERS:
        cap = _metric("cost", f"{loader}: getppid captured, lbd consuming", "overhead_ns")
        if cap is not None:
            check(f"cost ({loader}): captured getppid <= +467 ns (issue 9)", cap <= 467, f"+{cap:.0f} ns")
        uns = _metric("cost", f"{loader}: getppid not selected", "overhead_ns")
        if uns is not None:
            check(f"cost ({loader}): getppid not selected <= +179 ns (issue 9)", uns <= 179, f"+{uns:.0f} ns")
    # issue 9: start-up
    t = _metric("startup", "libbpf: lbd run", "capture_s")
    if t is not None:
        check("start-up (libbpf): lbd run to capturing <= 0.5 s (issue 9)", t <= 0.5, f"{t:.3f} s")
    rss = _metric("startup", "libbpf: lbd run", "rss_mb")
    if rss is not None:
        check("start-up (libbpf): lbd run peak RSS <= 60 MB (issue 9)", rss <= 60, f"{rss:.0f} MiB")
        rings = _metric("startup", "libbpf: lbd run", "rss_rings_mb")
        if rings:
            check("start-up (libbpf): lbd run peak RSS less the rings' mappings <= 60 MB", rss - rings <= 60,
                  f"{rss - rings:.0f} MiB ({rings:.0f} MiB of mapped rings)")
    # issue 10: merge, drain, scaling
    g = RESULTS.get("merge")
    for name, row in (g.rows.items() if g else ()):
        cost = row.metrics.get("merge_ns_per_event")
        if cost is not None and row.metrics.get("rings", 1) > 1:
            check(f"merge: {name} <= 5 ns per event over a single Ring (issue 10)", cost <= 5, f"{cost:.2f} ns")
    g = RESULTS.get("merge")
    for name, row in (g.rows.items() if g else ()):
        rate = row.metrics.get("events_per_s")
        if rate and (name == "Ring" or row.metrics.get("rings", 1) == max(r.metrics.get("rings", 1) for r in g.rows.values())):
            check(f"drain into Batches, one consumer, {name}: >= 20M events/s (issue 10)", rate >= 20e6,
                  fmt_si(rate) + "/s")
    g = RESULTS.get("scaling")
    if g and g.rows:
        for workload in ("getppid", "open/read/close"):
            rows = [r.metrics for r in g.rows.values()
                    if r.metrics.get("workload") == workload and r.metrics.get("layout") == "ring per CPU"
                    and r.metrics.get("consumers") == 1]
            if len(rows) >= 2:
                lo = min(rows, key=lambda m: m["n"])
                hi = max(rows, key=lambda m: m["n"])
                check(f"scaling, {workload}, ring per CPU: added cost at N={hi['n']} <= at N=1 (issue 10)",
                      hi["added_ns"] <= lo["added_ns"] * 1.1 + 10,
                      f"+{hi['added_ns']:.0f} ns vs +{lo['added_ns']:.0f} ns")
        for r in g.rows.values():
            m = r.metrics
            if m.get("layout") == "ring per CPU" and m.get("n") == 1 and m.get("consumers") == 1:
                check(f"scaling, {m['workload']}, N=1: 100% delivered (issue 10)", m["delivered_pct"] >= 99.999,
                      f"{m['delivered_pct']:.3f}%")
        for workload in ("getppid", "open/read/close"):
            one = {m["n"]: m for m in (r.metrics for r in g.rows.values())
                   if m.get("workload") == workload and m.get("layout") == "ring per CPU" and m.get("consumers") == 1}
            for r in g.rows.values():
                m = r.metrics
                if m.get("workload") == workload and m.get("consumers", 1) >= 4 and m["n"] in one:
                    base = one[m["n"]]["events_per_s"]
                    if base and one[m["n"]]["delivered_pct"] < 99.9:
                        check(f"scaling, {workload}, N={m['n']}: 4 consumers >= 3x one consumer's events/s "
                              "(issue 10; where one consumer drops)", m["events_per_s"] >= 3 * base,
                              f"{m['events_per_s'] / base:.2f}x")
    # earlier targets
    for group_key, suffix in (("live", ""), ("live_enter", ", enter+exit")):
        lbd_pct = _metric(group_key, "lbd" + suffix, "delivered_pct")
        if lbd_pct is not None:
            check(f"live: lbd{suffix} delivers >= 99.9% of what the probe offered", lbd_pct >= 99.9,
                  f"{lbd_pct:.3f}%")
    lbd_cpu, c_cpu = _metric("live", "lbd", "cpu_ns_per_event"), _metric("live", "libbpf C", "cpu_ns_per_event")
    if lbd_cpu and c_cpu:
        check("live: lbd consumer CPU/event <= 2x libbpf C", lbd_cpu <= 2 * c_cpu,
              f"{lbd_cpu:.1f} ns vs {c_cpu:.1f} ns = {lbd_cpu / c_cpu:.2f}x")
    if lbd_cpu:
        check("live: lbd consumer CPU/event < 50 ns", lbd_cpu < 50, f"{lbd_cpu:.1f} ns")
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


def summary_json() -> dict:
    """The summary as data (LBD_BENCH_SUMMARY=path writes it: scripts/device_check.sh)."""
    return {
        "groups": {key: {"title": g.title, "notes": g.notes,
                         "rows": {name: r.metrics for name, r in g.rows.items()}}
                   for key, g in RESULTS.items() if g.rows},
        "targets": [ln.strip() for ln in target_lines()[2:]],
    }


def safe_name(s: str) -> str:
    return re.sub(r"\W+", "_", s).strip("_")
