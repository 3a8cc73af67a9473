"""The start-up of lbd's Python API, phase by phase, in a fresh interpreter (bench/test_bench_startup.py
runs it as a subprocess, once per round and loader).

    python bench/startup_child.py SPAWN_NS MARKER_PID

SPAWN_NS: the parent's time.time_ns() just before it started this process.  The child imports lbd,
opens a Collector capturing getppid of MARKER_PID (a load generator making one getppid per
millisecond), waits for its first event, and prints one JSON line: seconds from SPAWN_NS to the
end of each phase (interpreter and imports, Collector.__enter__ returning: the probe loaded and
attached, the first marker event in a batch), the loader used, and the peak RSS (VmHWM) in KiB.
The loader is chosen as lbd chooses it (LBD_LOADER, set by the parent).
"""
from __future__ import annotations

import json
import sys
import time


def vm_hwm_kib() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    return 0


def main() -> int:
    spawn_ns, marker = int(sys.argv[1]), int(sys.argv[2])

    def since() -> float:
        return (time.time_ns() - spawn_ns) / 1e9

    from lbd.collector import Collector

    t_import = since()
    deadline = time.monotonic() + 60
    with Collector({"syscalls": ["getppid"], "only_pids": [marker], "track_state": False}) as col:
        t_enter = since()
        kind = col.probe.kind
        first = None
        while first is None and time.monotonic() < deadline:
            b = col.next_batch()
            if len(b) and (b.events["pid"] == marker).any():
                first = since()
    print(json.dumps({"loader": kind, "import_s": t_import, "loaded_s": t_enter, "first_event_s": first,
                      "rss_kib": vm_hwm_kib()}), flush=True)
    return 0 if first is not None else 1


if __name__ == "__main__":
    sys.exit(main())
