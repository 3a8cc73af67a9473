"""Drive build/plugin_host (the Falco-style host, plugin_host.c) from pytest.

    ensure_built()                        make -C plugin, once per session (fails the test if it fails)
    info(*configs) -> (rc, list[dict])    the host's load checks, then init_config against the schema
    script(*steps) -> list[dict]          the step lines of `plugin_host script`
    extract(events, ...) -> list[dict]    fields of events (bytes) that are not in a batch
    LiveHost(init, open, ...)             `plugin_host run` in the background; lines as they come
    validate_init(schema, config)         Falco's init_config check against get_init_schema

Every host line is a JSON object (see plugin_host.c).  Falco validates init_config against the
plugin's get_init_schema before init (with valijson); the host prints the schema in its
"init_schema" line and this module does that validation with the jsonschema package: info's
"init_schema_default" / "init_schema_config" checks, "schema_ok" / "schema_error" on script's
init steps, and before `run` (LiveHost) and `extract` start the host with an init_config.
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

import jsonschema

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
    for line in text.split("\n"):        # not splitlines(): values may hold U+0085, U+2028, \x1c..
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
    r = subprocess.run(cmd + list(args), capture_output=True, text=True, errors="surrogateescape", timeout=timeout,
                       env={**os.environ, **(env or {})})
    return r.returncode, _lines(r.stdout), r.stderr


def _not_json(name: str):
    raise ValueError(f"{name} is not JSON")


def validate_init(schema: dict | None, config: str | None) -> str | None:
    """Falco's validate_config (libsinsp plugin.cpp): "" becomes "{}", the text must be JSON and
    match the plugin's init schema (None: the plugin has none).  None when valid, else the reason."""
    if schema is None:
        return None
    try:
        doc = json.loads(config or "{}", parse_constant=_not_json)      # no NaN / Infinity
    except (ValueError, RecursionError) as e:
        return f"init config is not a valid json ({e})"
    cls = jsonschema.validators.validator_for(schema, default=jsonschema.Draft7Validator)
    error = jsonschema.exceptions.best_match(cls(schema).iter_errors(doc))
    return None if error is None else f"{error.json_path}: {error.message}"


def _schema_line(lines: list[dict]) -> dict | None:
    """The host's "init_schema" check line (None if the host stopped before it).  Its "schema" is the
    plugin's schema, null when it has none, absent when it is not a JSON object; a schema the
    jsonschema package rejects (SchemaError) fails the check here and loses its "schema" too."""
    line = next((d for d in lines if d.get("check") == "init_schema"), None)
    schema = line.get("schema") if line else None
    if schema is not None:
        try:
            jsonschema.validators.validator_for(schema, default=jsonschema.Draft7Validator).check_schema(schema)
        except jsonschema.SchemaError as e:
            line.update(ok=False, detail=f"not a valid JSON schema: {e.message}")
            del line["schema"]
    return line


def info(*configs: str, **kw) -> tuple[int, list[dict]]:
    """`plugin_host info`, then "{}" (check init_schema_default: a failure fails rc) and each config
    (check init_schema_config, with "config"; expected rejections are not failures) against the
    plugin's schema, once the host got that far."""
    rc, lines, _ = run_host("info", **kw)
    line = _schema_line(lines)
    if line is None:
        return rc, lines
    if "schema" not in line:
        return rc or 1, lines
    why = validate_init(line["schema"], "")
    lines.append({"check": "init_schema_default", "ok": why is None, "detail": why or '"{}" is valid'})
    if why is not None:
        rc = rc or 1
    for c in configs:
        why = validate_init(line["schema"], c)
        lines.append({"check": "init_schema_config", "ok": why is None, "config": c, "detail": why})
    return rc, lines


_schemas: dict = {}


def init_schema(lib: Path | str = LIB) -> dict | None:
    """The plugin's init schema (None: it has none), from `plugin_host info`; cached per library file."""
    ensure_built()
    st = os.stat(lib)
    key = (str(lib), st.st_mtime_ns, st.st_size)
    if key not in _schemas:
        rc, lines, err = run_host("info", lib=lib)
        line = _schema_line(lines)
        assert line is not None and "schema" in line, f"no usable init schema from the host (exit {rc}): {line}\n{err}"
        _schemas[key] = line["schema"]
    return _schemas[key]


def check_init(config: str, lib: Path | str = LIB) -> None:
    """As Falco before init: AssertionError when config does not match the plugin's init schema."""
    why = validate_init(init_schema(lib), config)
    assert why is None, f"init_config {config!r} is rejected by the plugin's init schema: {why}"


def checks(lines: list[dict]) -> dict[str, dict]:
    return {d["check"]: d for d in lines if "check" in d}


def script(*steps: str, **kw) -> list[dict]:
    """The step lines; each init step with "schema_ok" (and "schema_error" when false): whether Falco
    would have let its init_config through (the host calls init either way)."""
    rc, lines, err = run_host("script", *steps, **kw)
    assert rc == 0, f"plugin_host script exited {rc}: {err}"
    out = [d for d in lines if "step" in d]
    assert len(out) == len(steps), f"{len(out)} step lines for {len(steps)} steps: {lines}\n{err}"
    line = _schema_line(lines)
    assert line is not None and "schema" in line, f"no usable init schema from the host: {line}"
    for d in out:
        if d["step"] == "init":
            why = validate_init(line["schema"], d["arg"])
            d["schema_ok"] = why is None
            if why is not None:
                d["schema_error"] = why
    return out


def write_events(path: Path, events: list[bytes]) -> None:
    with open(path, "wb") as f:
        for e in events:
            f.write(struct.pack("<I", len(e)))
            f.write(e)


def extract(events: list[bytes], *, init: str = "", fields: tuple = (), args: tuple = (),
            bench: bool = False) -> tuple[list[dict], dict]:
    """Extract every field (or `fields`) of each event: (one dict of label -> values per event, summary)."""
    check_init(init)
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
    An init that the plugin's init schema rejects is an AssertionError here, before the host starts
    (Falco would not call init with it).
    """

    def __init__(self, init: str = "", open_params: str = "", *, fields: tuple = (), args: tuple = (),
                 extra: tuple = (), duration: float = 60.0):
        check_init(init)
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
