"""Start-up: how long from `lbd run` to capturing, and how much memory, under the libbpf loader
(the CO-RE object: no compiler in the process) and under bcc (which compiles the probe with the
LLVM it carries), side by side in one run (issue 9: <= 0.5 s and <= 60 MB for the CO-RE loader;
bcc measured 2.5 s and 178 MB).

Each round starts a fresh process: a marker (bench/loadgen making one getppid per millisecond)
runs, and the benchmark starts

  lbd run     `lbd run --syscall getppid --pid MARKER --format json -q` (the CLI as a user starts
              it: imports, configuration, the /proc scan of the enrichment, the probe's load and
              attach, the consumer).  Reported: to capturing, the first marker event's own
              timestamp (the syscall was captured then) minus the spawn time; to the first line,
              when its JSON line came out of the pipe (the writer flushes a batch at a time); the
              peak RSS (VmHWM) after it ran half a second (the target's figure; not the child's
              ru_maxrss, which keeps the RSS of the forked benchmark process from before the
              exec); its RSS at that moment (VmRSS), of which
              anonymous (RssAnon: the process's own memory; the rest is files and the rings'
              mappings: every ring's data pages are mapped twice and resident, 2 x ring_size per
              ring, which grows with the CPUs under cpus_per_ring 1).
  Collector   bench/startup_child.py: `lbd.Collector` opened in a fresh interpreter, phase by
              phase: imports done, __enter__ returned (probe loaded and attached), first marker
              event in a batch; its VmHWM.

Times are wall clock from the parent's spawn; the figures are the best round's time and the largest
RSS seen.  The bcc rows skip where bcc is not installed.
"""
from __future__ import annotations

import json
import os
import selectors
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import benchlib as bl

STARTUP = bl.group(
    "startup",
    "Start-up: fresh process to capturing (wall s from spawn) and peak RSS (MiB), per loader",
    [("capture_s", "to capturing s", ".3f"), ("first_line_s", "first line s", ".3f"),
     ("import_s", "imports s", ".3f"), ("loaded_s", "loaded s", ".3f"), ("first_event_s", "first event s", ".3f"),
     ("rss_mb", "peak RSS MiB", ".1f"), ("rss_now_mb", "RSS at 0.5 s", ".1f"), ("rss_anon_mb", "of it anon", ".1f"),
     ("rss_rings_mb", "rings mapped", ".1f")],
    base="bcc: lbd run",
    ratios=[("capture_s", "time"), ("rss_mb", "RSS")],
)
STARTUP.notes.append("rings mapped: the default rings (ring_size per cpus_per_ring CPUs), whose data pages the "
                     "consumer maps twice and which count in RSS (as file pages) although they are kernel memory")
ROUNDS = bl.env_int("LBD_BENCH_STARTUP_ROUNDS", bl.ROUNDS)
TIMEOUT_S = 60.0
CHILD = Path(__file__).resolve().parent / "startup_child.py"


def _lbd_cmd() -> list[str]:
    script = Path(sys.executable).parent / "lbd"
    return [str(script)] if script.exists() else [sys.executable, "-m", "lbd.cli"]


def _env(loader: str) -> dict:
    """The children's environment: the loader, and the repository on the path (lbd importable
    where it is built in place and not installed: scripts/device_check.sh)."""
    path = os.pathsep.join(p for p in (str(bl.ROOT), os.environ.get("PYTHONPATH", "")) if p)
    return {**os.environ, "LBD_LOADER": loader, "PYTHONPATH": path}


def _marker() -> subprocess.Popen:
    return bl.start_loadgen(cpu=None, seconds=600, sleep_us=1000, comm=f"lbdmk-{os.getpid()}"[:15])


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.kill()
    proc.communicate()


def _vm_kib(pid: int, key: str = "VmHWM") -> int:
    """/proc/PID/status's VmHWM (peak RSS) or VmRSS (now), in KiB."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def _ring_mappings_mib() -> float:
    """MiB of RSS the default rings' mappings take: each ring's data pages are mapped twice (a
    record that wraps is contiguous), all resident (the kernel maps the ring's pages at mmap)."""
    from lbd.config import Config
    from lbd.probe import possible_cpus

    o = Config.default().open
    rings = -(-possible_cpus() // o.cpus_per_ring)
    return rings * 2 * o.ring_size / (1 << 20)


def _lbd_run_round(loader: str) -> dict:
    marker = _marker()
    env = _env(loader)
    try:
        t0 = time.time_ns()
        proc = subprocess.Popen(_lbd_cmd() + ["run", "--syscall", "getppid", "--pid", str(marker.pid),
                                              "--format", "json", "-q"],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
        try:
            sel = selectors.DefaultSelector()
            sel.register(proc.stdout, selectors.EVENT_READ)
            buf = b""
            first = None
            deadline = time.monotonic() + TIMEOUT_S
            while first is None:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise AssertionError(f"lbd run ({loader}) gave no marker event in {TIMEOUT_S:.0f} s: "
                                         f"{proc.stderr.read1(4096).decode(errors='replace') if proc.poll() is not None else ''}")
                if not sel.select(0.5):
                    continue
                chunk = os.read(proc.stdout.fileno(), 1 << 16)
                buf += chunk
                while b"\n" in buf:
                    line, buf = buf.split(b"\n", 1)
                    ev = json.loads(line)
                    if ev.get("pid") == marker.pid and ev.get("syscall") == "getppid":
                        first = (time.time_ns(), ev["ts"])
                        break
            t_line, ts = first
            time.sleep(0.5)                      # steady state: capturing, the writer flushing
            hwm, now, anon = _vm_kib(proc.pid), _vm_kib(proc.pid, "VmRSS"), _vm_kib(proc.pid, "RssAnon")
            proc.send_signal(signal.SIGINT)
            sel.close()
            proc.stdout.close()                  # what it still writes goes nowhere
            proc.wait(TIMEOUT_S)
        finally:
            if proc.returncode is None:
                proc.kill()
                proc.wait()
        return {"capture_s": (ts - t0) / 1e9, "first_line_s": (t_line - t0) / 1e9,
                "rss_mb": hwm / 1024.0, "rss_now_mb": now / 1024.0,
                "rss_anon_mb": anon / 1024.0, "rss_rings_mb": _ring_mappings_mib()}
    finally:
        _stop(marker)


def _collector_round(loader: str) -> dict:
    marker = _marker()
    try:
        t0 = time.time_ns()
        out = subprocess.run([sys.executable, str(CHILD), str(t0), str(marker.pid)], capture_output=True, text=True,
                             timeout=TIMEOUT_S, env=_env(loader))
        assert out.returncode == 0, f"startup_child ({loader}) failed: {out.stderr.strip()[-500:]}"
        d = json.loads(out.stdout.strip().splitlines()[-1])
        assert d["loader"] == loader, d
        return {"import_s": d["import_s"], "loaded_s": d["loaded_s"], "first_event_s": d["first_event_s"],
                "rss_mb": d["rss_kib"] / 1024.0}
    finally:
        _stop(marker)


@pytest.mark.parametrize("what", ["lbd run", "Collector"])
@pytest.mark.parametrize("loader", bl.LOADERS)
def test_startup(benchmark, loader, what):
    bl.require_kernel(loader)
    benchmark.group = "start-up"
    runs = []
    fn = _lbd_run_round if what == "lbd run" else _collector_round
    benchmark.pedantic(lambda: runs.append(fn(loader)), rounds=ROUNDS, iterations=1)
    best = {k: min(r[k] for r in runs) for k in runs[0] if not k.startswith("rss")}
    best.update({k: max(r[k] for r in runs) for k in runs[0] if k.startswith("rss")})
    name = f"{loader}: {what}" if what == "lbd run" else f"{loader}: Collector (Python API)"
    bl.record(benchmark, "startup", name, **best, rounds=len(runs))
