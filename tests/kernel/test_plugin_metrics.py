"""The plugin's counters in Falco: get_metrics (through the Falco-style host, which calls it as
Falco's metrics collector does, also from another thread while the capture runs), the drop
warning and the closing summary in Falco's log (the init input's log_fn), and the values held to
lbd.Collector.stats() of the same capture.
"""
from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest

from tests.conftest import require_bpf
from tests.plugin_host.host import LiveHost, run_host

CALLS = 20000


def _gated(calls: int) -> subprocess.Popen:
    """A Python child that waits for a line on stdin, then makes `calls` getppid and exits."""
    code = f"import os, sys\nsys.stdin.readline()\nfor _ in range({calls}): os.getppid()\n"
    return subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE, text=True)


def _values(lines: list[dict], key: str) -> dict:
    found = [d[key] for d in lines if key in d]
    assert found, f"no {key!r} line: {lines[-5:]}"
    return found[-1]["values"]


def test_metrics_count_what_the_host_got():
    """After a known load is drained: handed == what next_batch gave, delivered == handed + hidden
    + filtered, nothing lost, the rings' counters sum to the totals; get_metrics from a second
    thread all along does not disturb the capture."""
    require_bpf()
    child = _gated(CALLS)
    try:
        params = json.dumps({"syscalls": ["getppid"], "only_pids": [child.pid]})
        with LiveHost("", params, fields=("linux.syscall",), extra=("--quiet", "--metrics-thread", "2")) as h:
            h.opened()
            child.stdin.write("go\n")
            child.stdin.flush()
            child.wait(60)
            time.sleep(0.5)                 # the last records through the merge window
            summary = h.stop()
        lines = h.lines
    finally:
        if child.poll() is None:
            child.kill()
    assert CALLS <= summary["events"] <= CALLS + 5, summary     # (the interpreter's own start: a few)
    assert summary["metrics_calls"] > 0, summary
    m = _values(lines, "metrics")
    assert m["events_handed"] == summary["events"]
    assert m["events_delivered"] == m["events_handed"] + m["events_hidden_state"] + m["events_filtered_user"]
    assert m["events_filtered_user"] == 0
    assert m["drops"] == m["drops_ring_full"] == m["drops_malformed"] == 0
    rings = sorted({k.split("_")[0] for k in m if k.startswith("ring") and k[4].isdigit()})
    assert rings, m
    for what in ("emitted", "delivered", "drops"):
        assert sum(m[f"{r}_{what}"] for r in rings) == m[{"emitted": "events_emitted", "delivered": "events_delivered",
                                                          "drops": "drops"}[what]], what
    assert m["events_emitted"] >= m["events_delivered"]       # (other processes' state records go on)
    assert m["filtered_kernel"] >= m["filtered_kernel_syscall"] > 0
    types = next(d["metrics"]["types"] for d in lines if "metrics" in d)
    assert types["events_handed"] == "monotonic" and types["ring_pending_bytes"] == "non_monotonic"
    after = _values(lines, "metrics_after_close")           # close keeps the capture's last counters
    assert after["events_handed"] == summary["events"] and after["events_delivered"] >= m["events_delivered"]
    closing = [d for d in lines if "log" in d and d["log"].startswith("capture closed")]
    assert len(closing) == 1 and closing[0]["severity"] == 6 and closing[0]["owner_ok"], closing
    assert " 0 lost" in closing[0]["log"], closing


def test_drops_are_warned_once_per_interval_and_summarised():
    """A 64 KiB ring nobody drains while getppid calls arrive: get_metrics counts the loss by
    reason and ring, Falco's log gets one warning (two bursts within the interval: still one)
    and a closing summary at warning level."""
    require_bpf()
    # 100k getppid once the probe is attached (the host's signal step after open: bcc's load
    # takes seconds); a 64 KiB ring holds a few hundred records
    code = ("import os, signal, sys\nsignal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGUSR1})\n"
            "print('ready', flush=True)\nsignal.sigwait({signal.SIGUSR1})\n"
            "for _ in range(100_000): os.getppid()\n")
    child = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline() == "ready\n"
        params = json.dumps({"syscalls": ["getppid"], "only_pids": [child.pid], "ring_size": 65536,
                             "track_state": False})
        rc, lines, err = run_host("script", "init:{}", f"open:{params}", f"signal:{child.pid}", "sleep:3000",
                                  "next:200", "metrics", "sleep:200", "next:200", "close", "metrics", "destroy",
                                  timeout=120)
        assert child.wait(60) == 0
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    assert rc == 0, err
    steps = [d for d in lines if "step" in d]
    assert all(d["rc"] == 0 for d in steps), steps
    m = next(d["metrics"]["values"] for d in steps if d["step"] == "metrics")
    assert m["drops_ring_full"] > 0 and m["drops"] >= m["drops_ring_full"]
    assert sum(v for k, v in m.items() if k.startswith("ring") and k.endswith("_drops")) == m["drops"]
    assert m["events_handed"] > 0
    warnings = [d for d in lines if "log" in d and "events lost" in d["log"]]
    assert len(warnings) == 1, warnings
    assert warnings[0]["severity"] == 4 and "ring_size" in warnings[0]["log"]
    closing = [d for d in lines if "log" in d and d["log"].startswith("capture closed")]
    assert len(closing) == 1 and closing[0]["severity"] == 4, closing
    final = [d for d in steps if d["step"] == "metrics"][-1]["metrics"]["values"]
    assert f"{final['drops']} lost" in closing[0]["log"], (closing, final)


def test_metrics_match_collector_stats():
    """In one process: PluginState.metrics() against Instance.collector.stats() and ring_stats()
    of the same capture, once the load is drained."""
    require_bpf()
    import lbd.falco as falco

    child = _gated(5000)
    state = falco.PluginState("{}")
    try:
        inst = state.open(json.dumps({"syscalls": ["getppid"], "only_pids": [child.pid], "track_state": False}))
        child.stdin.write("go\n")
        child.stdin.flush()
        child.wait(60)
        handed = 0
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            r = inst.next()
            handed += r[0]
            if handed >= 5000 and not r[0]:
                break
        st0 = inst.collector.stats()        # the counters of other processes' syscalls still move:
        m = dict((k, v) for k, v, _ in state.metrics())     # metrics() lies between two reads
        st = inst.collector.stats()
        per_ring = inst.collector.ring_stats()
    finally:
        state.destroy()
        if child.poll() is None:
            child.kill()
    assert m["events_emitted"] == st["emitted"] + st["sched"]
    assert m["events_delivered"] == st["delivered"] >= 5000
    assert m["drops_ring_full"] == st["dropped"] and m["drops_malformed"] == st["malformed"]
    assert st0["filtered"] <= m["filtered_kernel"] <= st["filtered"]
    assert st0["seen"] <= m["syscalls_seen"] <= st["seen"]
    for k, v in st.items():
        if k.startswith("f_"):
            assert st0[k] <= m[f"filtered_kernel_{k[2:]}"] <= v, k
    for i, r in enumerate(per_ring):
        assert m[f"ring{i}_delivered"] == r["delivered"]
        assert m[f"ring{i}_drops"] == r["dropped"] + r["malformed"]
    assert m["enrich_proc_hits"] > 0


@pytest.mark.parametrize("log_fn", [True, False], ids=["log_fn", "no log_fn"])
def test_logs_go_to_falcos_logger(log_fn):
    """With the framework's log_fn every lbd log line goes there; without one, to stderr."""
    require_bpf()
    extra = () if log_fn else ("--no-log-fn",)
    rc, lines, err = run_host(*extra, "script", "init:{}", 'open:{"syscalls": ["getppid"], "only_pids": [1]}',
                              "next:2", "close", "destroy", timeout=120)
    assert rc == 0, err
    logs = [d["log"] for d in lines if "log" in d]
    if log_fn:
        assert any(x.startswith("capture open") for x in logs) and any(x.startswith("capture closed") for x in logs)
        assert "capture closed" not in err
    else:
        assert not logs
        assert "capture open" in err and "capture closed" in err


def test_metrics_in_a_real_falco():
    """With FALCO=/path/to/falco: Falco's metrics snapshot (output_rule) carries lbd's counters."""
    import os
    import shutil
    import tempfile
    from pathlib import Path

    import yaml

    from tests.plugin_host.host import LIB, ensure_built

    falco_bin = os.environ.get("FALCO", "")
    if not falco_bin:
        pytest.skip("no real Falco: set FALCO=/path/to/falco (0.38 or later) to check its metrics output")
    require_bpf()
    ensure_built()
    d = Path(tempfile.mkdtemp(prefix="lbd-falco-metrics-"))
    try:
        rules = [{"rule": "lbd never", "desc": "x", "condition": "linux.syscall = getppid and linux.comm in (lbd-never)",
                  "output": "x", "priority": "DEBUG", "source": "linux_ebpf"}]
        (d / "rules.yaml").write_text(yaml.safe_dump(rules))
        conf = {"engine": {"kind": "nodriver"}, "rules_files": [str(d / "rules.yaml")], "config_files": [],
                "json_output": True, "stdout_output": {"enabled": True}, "log_stderr": True, "log_syslog": False,
                "metrics": {"enabled": True, "interval": "1s", "output_rule": True, "plugins_metrics_enabled": True,
                            "include_empty_values": True},
                "load_plugins": ["lbd"],
                "plugins": [{"name": "lbd", "library_path": str(LIB), "init_config": {},
                             "open_params": json.dumps({"syscalls": ["getppid"]})}]}
        (d / "falco.yaml").write_text(yaml.safe_dump(conf))
        with open(d / "out.txt", "w") as out:
            falco = subprocess.Popen([falco_bin, "-c", str(d / "falco.yaml"), "--disable-source", "syscall"],
                                     stdout=out, stderr=subprocess.STDOUT)
            # Falco writes its metrics snapshot from the event loop: events must flow
            load = subprocess.Popen([sys.executable, "-c", "import os, time\nt = time.time()\n"
                                     "while time.time() - t < 7:\n    os.getppid()"])
            time.sleep(8)
            load.wait(30)
            falco.terminate()
            falco.wait(60)
        text = (d / "out.txt").read_text()
        assert "plugins.lbd.events_handed" in text and "plugins.lbd.drops_ring_full" in text, text[-3000:]
        assert "capture closed" in text, text[-3000:]          # the summary in Falco's log
    finally:
        shutil.rmtree(d, ignore_errors=True)
