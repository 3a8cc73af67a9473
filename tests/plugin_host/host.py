"""Drive build/plugin_host (the Falco-style host, plugin_host.c) from pytest.

    ensure_built()                        make -C plugin, once per session (fails the test if it fails)
    info(*configs) -> list[dict]          the host's load checks
    script(*steps) -> list[dict]          the step lines of `plugin_host script`
    extract(events, ...) -> list[dict]    fields of events (bytes) that are not in a batch
    LiveHost(init, open, ...)             `plugin_host run` in the background; lines as they come

Every host line is a JSON object (see plugin_host.c).
"""
from __future__ import annotations

import json
import os
import struct
import subprocess
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
LIB = ROOT / "build" / "liblbd.so"
HOST = ROOT / "build" / "plugin_host"

_built: list = []
_lock = threading.Lock()


def ensure_built() -> None:
    """Build the plugin and the host (make -C plugin; quick when they are up to date)."""
    with _lock:
        if _built:
            return
        r = subprocess.run(["make", "-s", "-C", str(ROOT / "plugin")], capture_output=True, text=True)
        if r.returncode != 0:
            raise AssertionError(f"make -C plugin failed:\n{r.stdout}\n{r.stderr}")
        _built.append(True)


def _lines(text: str) -> list[dict]:
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("{"):
            out.append(json.loads(line))
    return out


def run_host(*args: str, lib: Path | str = LIB, framework: str | None = None, timeout: float = 120,
             env: dict | None = None) -> tuple[int, list[dict], str]:
    """Run the host to completion: (exit status, JSON lines, stderr)."""
    ensure_built()
    cmd = [str(HOST), "--lib", str(lib)]
    if framework:
        cmd += ["--framework-api", framework]
    r = subprocess.run(cmd + list(args), capture_output=True, text=True, timeout=timeout,
                       env={**os.environ, **(env or {})})
    return r.returncode, _lines(r.stdout), r.stderr


def info(*configs: str, **kw) -> tuple[int, list[dict]]:
    args: list[str] = []
    for c in configs:
        args += ["--config", c]
    rc, lines, _ = run_host("info", *args, **kw)
    return rc, lines


def checks(lines: list[dict]) -> dict[str, dict]:
    return {d["check"]: d for d in lines if "check" in d}


def script(*steps: str, **kw) -> list[dict]:
    rc, lines, err = run_host("script", *steps, **kw)
    assert rc == 0, f"plugin_host script exited {rc}: {err}"
    out = [d for d in lines if "step" in d]
    assert len(out) == len(steps), f"{len(out)} step lines for {len(steps)} steps: {lines}\n{err}"
    return out


def write_events(path: Path, events: list[bytes]) -> None:
    with open(path, "wb") as f:
        for e in events:
            f.write(struct.pack("<I", len(e)))
            f.write(e)


def extract(events: list[bytes], *, init: str = "", fields: tuple = (), args: tuple = (),
            bench: bool = False) -> tuple[list[dict], dict]:
    """Extract every field (or `fields`) of each event: (one dict of label -> values per event, summary)."""
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "events.bin"
        write_events(path, events)
        cmd = ["extract", "--events", str(path), "--init", init]
        for f in fields:
            cmd += ["--field", f]
        for a in args:
            cmd += ["--arg", a]
        if bench:
            cmd.append("--bench")
        rc, lines, err = run_host(*cmd)
    errors = [d for d in lines if "extract_error" in d or "layout_error" in d]
    assert not errors, errors[:5]
    assert rc == 0, f"plugin_host extract exited {rc}: {err}"
    summary = next(d["summary"] for d in lines if "summary" in d)
    return [d["fields"] for d in lines if "fields" in d], summary


class LiveHost:
    """`plugin_host run` with --stdin-stop in the background: .lines fills as the host prints.

    Use as a context manager; stop() (also on exit) closes its stdin and waits for the summary.
    """

    def __init__(self, init: str = "", open_params: str = "", *, fields: tuple = (), args: tuple = (),
                 extra: tuple = (), duration: float = 60.0):
        ensure_built()
        cmd = [str(HOST), "--lib", str(LIB), "run", "--init", init, "--open", open_params, "--stdin-stop",
               "--duration", str(duration)]
        for f in fields:
            cmd += ["--field", f]
        for a in args:
            cmd += ["--arg", a]
        cmd += list(extra)
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     text=True, bufsize=1)
        self.lines: list[dict] = []
        self.stderr = ""
        self._cv = threading.Condition()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        self._err_reader = threading.Thread(target=self._read_err, daemon=True)
        self._err_reader.start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            line = line.strip()
            if not line.startswith("{"):
                continue
            d = json.loads(line)
            with self._cv:
                self.lines.append(d)
                self._cv.notify_all()
        with self._cv:
            self.lines.append({"eof": True})
            self._cv.notify_all()

    def _read_err(self) -> None:
        self.stderr = self.proc.stderr.read()

    def wait_for(self, pred, timeout: float = 30.0) -> dict:
        """The first line satisfying pred (waiting for it); AssertionError on timeout or host exit."""
        deadline = time.monotonic() + timeout
        seen = 0
        with self._cv:
            while True:
                for d in self.lines[seen:]:
                    if pred(d):
                        return d
                    if d.get("eof"):
                        raise AssertionError(f"the host ended first: {self.lines[-5:]}\n{self.stderr}")
                seen = len(self.lines)
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"timed out waiting; last lines: {self.lines[-3:]}\n{self.stderr}")
                self._cv.wait(left)

    def opened(self, timeout: float = 60.0) -> dict:
        d = self.wait_for(lambda d: "open" in d or "init" in d and d["init"] != 0, timeout)
        assert d.get("open") == 0, f"open failed: {d}\n{self.stderr}"
        return d

    def events(self) -> list[dict]:
        with self._cv:
            return [d["fields"] for d in self.lines if "fields" in d]

    def stop(self, timeout: float = 60.0) -> dict:
        """Close stdin, wait for the host; its summary line."""
        if self.proc.stdin and not self.proc.stdin.closed:
            self.proc.stdin.close()
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            raise
        self._reader.join(10)
        self._err_reader.join(10)
        for d in self.lines:
            if "summary" in d:
                return d["summary"]
        raise AssertionError(f"no summary from the host (exit {self.proc.returncode}): {self.lines[-5:]}\n{self.stderr}")

    def __enter__(self) -> LiveHost:
        return self

    def __exit__(self, *exc) -> None:
        if self.proc.poll() is None:
            try:
                self.stop()
            except Exception:
                self.proc.kill()
