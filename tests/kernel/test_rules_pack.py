"""rules/lbd_rules.yaml on real workloads: every rule fires on its trigger workload and stays quiet
on its look-alike, judged on the field values liblbd.so extracts live (the Falco-style host), with
the conditions evaluated as Falco evaluates them (tests/plugin_host/falco_rules.py).

One capture for all the workloads (module fixture): a driver process runs them one after the
other, each in its own process; the capture keeps the driver and what it starts (only_pids +
follow) and the events are grouped by process ancestry (linux.ppid.num).

A real-Falco tier runs the same workloads under Falco when FALCO=/path/to/falco is set.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import yaml

from tests.conftest import require_bpf
from tests.plugin_host.falco_rules import RuleSet
from tests.plugin_host.host import LIB, LiveHost, ensure_built

ROOT = Path(__file__).resolve().parents[2]
PACK = ROOT / "rules" / "lbd_rules.yaml"

#: rule -> the workload pair in tests/kernel/rules_workloads.py (<key>_trigger, <key>_quiet)
WORKLOADS = {
    "lbd sensitive file opened": "sensitive",
    "lbd shell spawned by a service": "shell_service",
    "lbd write below etc": "write_etc",
    "lbd write below binary directory": "write_bin",
    "lbd execution from tmp or shm": "exec_tmp",
    "lbd fileless execution": "fileless",
    "lbd reverse shell": "reverse_shell",
    "lbd setuid to root by a non-root process": "setuid_root",
    "lbd ptrace attach": "ptrace",
    "lbd kernel module load": "module",
    "lbd bpf program load by an unexpected process": "bpf",
    "lbd mount": "mount",
    "lbd namespace change": "namespace",
    "lbd setuid or setgid bit set": "chmod_suid",
    "lbd crontab changed": "crontab",
    "lbd sudoers changed": "sudoers",
    "lbd ssh key access": "ssh_key",
    "lbd history or log truncated": "history",
    "lbd outbound connection to a suspect port": "suspect_port",
    "lbd ld preload in environment": "ld_preload",
    "lbd raw socket opened": "raw_socket",
}

DRIVER = """
import subprocess, sys
for line in sys.stdin:
    name = line.strip()
    if not name:
        break
    p = subprocess.Popen([sys.executable, "-m", "tests.kernel.rules_workloads", name])
    print(name, p.pid, flush=True)
    print("done", name, p.wait(), flush=True)
"""


def _rules() -> RuleSet:
    return RuleSet.load(PACK)


def open_params(rules: RuleSet, driver_pid: int) -> dict:
    return {"syscalls": sorted(rules.syscalls()), "only_pids": [driver_pid], "follow": True,
            "capture_env": True, "filter_falco": False}


@pytest.fixture(scope="module")
def captured():
    """{workload: [field values of each event of its processes]} for every workload of the pack."""
    require_bpf()
    ensure_built()
    rules = _rules()
    labels = sorted(rules.labels() | {"linux.pid.num", "linux.ppid.num", "linux.arg[argv]"})
    driver = subprocess.Popen([sys.executable, "-c", DRIVER], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              text=True, cwd=ROOT)
    roots: dict[int, str] = {}
    codes: dict[str, int] = {}
    try:
        with LiveHost("", json.dumps(open_params(rules, driver.pid)), fields=tuple(labels),
                      duration=300) as host:
            host.opened()
            for key in WORKLOADS.values():
                for name in (f"{key}_trigger", f"{key}_quiet"):
                    driver.stdin.write(name + "\n")
                    driver.stdin.flush()
                    _, pid = driver.stdout.readline().split()
                    roots[int(pid)] = name
                    done = driver.stdout.readline().split()
                    codes[name] = int(done[2])
            driver.stdin.write("\n")
            driver.stdin.flush()
            driver.wait(30)
            time.sleep(1.0)                   # the last records through the rings' merge window
            summary = host.stop()
            events = host.events()
    finally:
        if driver.poll() is None:
            driver.kill()
    assert summary["extract_errors"] == 0 and summary["layout_errors"] == 0, summary
    failed = {n: c for n, c in codes.items() if c != 0}
    assert not failed, f"workloads that failed: {failed}"
    parent = {}
    for ev in events:
        (pid,), (ppid,) = ev["linux.pid.num"], ev["linux.ppid.num"]
        parent.setdefault(pid, ppid)
    out: dict[str, list] = {name: [] for name in roots.values()}
    launch = f"{sys.executable} -m tests.kernel.rules_workloads "
    for ev in events:
        pid = ev["linux.pid.num"][0]
        if pid in roots and any(a.startswith(launch) for a in ev.get("linux.arg[argv]", [])):
            continue                          # the driver starting the workload: not the workload's
        seen = set()
        while pid not in roots and pid in parent and pid not in seen:
            seen.add(pid)
            pid = parent[pid]
        if pid in roots:
            out[roots[pid]].append(ev)
    return out


def test_every_rule_has_its_workloads():
    rules = _rules()
    assert len(rules.rules) >= 20
    assert set(rules.rules) == set(WORKLOADS)
    import tests.kernel.rules_workloads as w

    for key in WORKLOADS.values():
        assert callable(getattr(w, f"{key}_trigger")) and callable(getattr(w, f"{key}_quiet")), key


@pytest.mark.parametrize("rule", sorted(WORKLOADS))
def test_rule_fires_on_its_trigger_and_not_on_its_look_alike(captured, rule):
    rules = _rules()
    key = WORKLOADS[rule]
    trig, quiet = captured[f"{key}_trigger"], captured[f"{key}_quiet"]
    assert trig, f"no events captured for {key}_trigger"
    assert quiet, f"no events captured for {key}_quiet"
    fired = [ev for ev in trig if rules.matches(rule, ev)]
    assert fired, f"{rule}: no event of {key}_trigger matches; its events: " + \
        json.dumps([{k: v for k, v in ev.items() if v} for ev in trig][-6:])[:3000]
    wrong = [ev for ev in quiet if rules.matches(rule, ev)]
    assert not wrong, f"{rule} fired on {key}_quiet: " + json.dumps(wrong[:2])[:3000]


# ---- a real Falco (FALCO=/path/to/falco) --------------------------------------------------------

def _falco() -> str:
    path = os.environ.get("FALCO", "")
    if not path:
        pytest.skip("no real Falco: set FALCO=/path/to/falco (0.38 or later) to run the pack in it")
    if not os.access(path, os.X_OK):
        pytest.fail(f"FALCO={path}: not an executable file")
    return path


def test_pack_in_a_real_falco():
    """The whole pack loaded by Falco with lbd's plugin, each trigger workload run under it: every
    rule fires (json_output, rule_matching all), and no rule fires on the quiet workloads."""
    falco_bin = _falco()
    require_bpf()
    ensure_built()
    rules = _rules()
    d = Path(tempfile.mkdtemp(prefix="lbd-falco-"))
    try:
        driver = subprocess.Popen([sys.executable, "-c", DRIVER], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                  text=True, cwd=ROOT)
        conf = {
            "engine": {"kind": "nodriver"}, "rules_files": [str(PACK)], "json_output": True,
            "rule_matching": "all", "stdout_output": {"enabled": True}, "log_stderr": True, "log_syslog": False,
            "load_plugins": ["lbd"], "config_files": [],
            "plugins": [{"name": "lbd", "library_path": str(LIB), "init_config": {},
                         "open_params": json.dumps(open_params(rules, driver.pid))}],
        }
        (d / "falco.yaml").write_text(yaml.safe_dump(conf))
        out = open(d / "out.jsonl", "w")
        falco = subprocess.Popen([falco_bin, "-c", str(d / "falco.yaml"), "--disable-source", "syscall"],
                                 stdout=out, stderr=subprocess.PIPE, text=True)
        try:
            time.sleep(5)                     # Falco loads the plugin and opens the capture
            assert falco.poll() is None, falco.stderr.read()
            roots = {}
            for key in WORKLOADS.values():
                for name in (f"{key}_trigger", f"{key}_quiet"):
                    driver.stdin.write(name + "\n")
                    driver.stdin.flush()
                    roots[name] = int(driver.stdout.readline().split()[1])
                    driver.stdout.readline()
            driver.stdin.write("\n")
            driver.stdin.flush()
            time.sleep(3)
        finally:
            falco.terminate()
            falco.wait(30)
            driver.kill()
            out.close()
        alerts = [json.loads(ln) for ln in (d / "out.jsonl").read_text().splitlines() if ln.startswith("{")]
        fired = {a["rule"] for a in alerts}
        missing = set(WORKLOADS) - fired
        assert not missing, f"rules Falco never fired: {sorted(missing)}"
    finally:
        shutil.rmtree(d, ignore_errors=True)
