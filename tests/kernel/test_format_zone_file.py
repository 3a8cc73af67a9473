"""The normal format follows the host's zone file replaced during a run (timedatectl
set-timezone replaces /etc/localtime), as Falco's prefix does: glibc's tzset looks at the file again
(its inode and mtime) when TZ is unset, and lbd._format calls it at most once a second.  Run in a
private mount namespace (root): the zone file is replaced there by bind mounts, nowhere else."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.conftest import require_bpf

ROOT = Path(__file__).resolve().parents[2]
ZONES = Path("/usr/share/zoneinfo")

SCRIPT = r"""
import os, subprocess, sys, time
from lbd import syscalls
from lbd._format import Formatter
from lbd.ringimage import make_record
from tests.unit.test_plugin_enrich import make_batch

def zone(name):
    subprocess.run(["mount", "--bind", f"/usr/share/zoneinfo/{name}", "/etc/localtime"], check=True)

os.environ.pop("TZ", None)
zone("Etc/UTC")
time.tzset()
batch = make_batch([make_record(syscalls.lookup("close").nr, {"fd": 3}, ts=1749754267_666497198)])
f = Formatter("normal", 1024)
f.format(batch)
print(f.getvalue().decode()[:31])
zone("Asia/Tokyo")
time.sleep(1.1)            # the formatter looks at the zone file at most once a second
f.format(batch)
print(f.getvalue().decode()[:31])
"""


def test_normal_format_follows_a_replaced_zone_file():
    require_bpf()                           # root, as the kernel tier
    assert (ZONES / "Asia/Tokyo").exists() and (ZONES / "Etc/UTC").exists(), "tzdata is not installed"
    env = {k: v for k, v in os.environ.items() if k != "TZ"}
    env["PYTHONPATH"] = str(ROOT)
    r = subprocess.run(["unshare", "--mount", "--propagation", "private", sys.executable, "-c", SCRIPT],
                       cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split("\n")[:2] == ["[2025-06-12 18:51:07.666497198]", "[2025-06-13 03:51:07.666497198]"], r.stdout
