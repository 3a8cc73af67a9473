"""The Falco plugin end to end: liblbd.so in the Falco-style host (tests/plugin_host), capturing a
workload's syscalls live; every field, in every argument form, must say what the workload did.

One workload runs under two hosts at once (module fixture): one extracts from the events of
next_batch as Falco does (the batch's enrichment arrays), the other from copies of them (the
record-only fallback) and writes the seed's file (putfile).
"""
from __future__ import annotations

import ctypes
import json
import os
import re
import socket
import time
from pathlib import Path

import pytest

from tests.conftest import require_bpf
from tests.plugin_host.host import LiveHost, script

SYSCALLS = ["openat", "close", "mkdir", "mkdirat", "rmdir", "connect", "sendto", "bind", "accept", "accept4",
            "execve", "exit_group", "socket"]
ARGS = ("pathname", "filename", "uservaddr", "addr", "umyaddr", "upeer_sockaddr", "fd", "argv", "nope")
COMM = "lbd-plugin-wl"
EXEC_ARG = "lbd-plugin-test-arg"


def _free_port(family=socket.AF_INET, kind=socket.SOCK_STREAM, host="127.0.0.1") -> int:
    with socket.socket(family, kind) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


class Workload:
    """A forked child that waits for go, makes known syscalls, reports what it did, waits for the
    test to let it exec /bin/true."""

    def __init__(self, tmp: Path):
        self.tmp = tmp
        self.tcp = socket.create_server(("127.0.0.1", 0))
        self.tcp_port = self.tcp.getsockname()[1]
        try:
            self.tcp6 = socket.create_server(("::1", 0), family=socket.AF_INET6)
            self.tcp6_port = self.tcp6.getsockname()[1]
        except OSError:
            self.tcp6, self.tcp6_port = None, None
        self.unix_path = str(tmp / "wl.sock")
        self.unix = socket.socket(socket.AF_UNIX)
        self.unix.bind(self.unix_path)
        self.unix.listen(4)
        self.udp_port = _free_port(kind=socket.SOCK_DGRAM)
        self.bind_port = _free_port()
        go_r, self.go_w = os.pipe()
        self.rep_r, rep_w = os.pipe()
        done_r, self.done_w = os.pipe()
        self.pid = os.fork()
        if self.pid == 0:
            os.close(self.go_w)
            os.close(self.rep_r)
            os.close(self.done_w)
            code = 0
            try:
                if not os.read(go_r, 1):      # the test gave up before go
                    os._exit(2)
                report = self._work()
                os.write(rep_w, json.dumps(report).encode() + b"\n")
                os.read(done_r, 1)
                os.execv("/bin/true", ["/bin/true", EXEC_ARG])
            except BaseException:
                import traceback

                traceback.print_exc()
                code = 1
            os._exit(code)
        os.close(go_r)
        os.close(rep_w)
        os.close(done_r)
        self.report: dict = {}

    def _work(self) -> dict:
        libc = ctypes.CDLL(None)
        libc.prctl(15, COMM.encode(), 0, 0, 0)            # PR_SET_NAME
        r: dict = {}
        fd = os.open("/etc/shadow", os.O_RDONLY)
        r["shadow_fd"] = fd
        os.close(fd)
        try:
            os.open("/nonexistent-lbd-dir/x", os.O_RDONLY)
        except FileNotFoundError:
            pass
        d = str(self.tmp / "made-by-workload")
        os.mkdir(d, 0o750)
        os.rmdir(d)
        r["dir"] = d
        c = socket.create_connection(("127.0.0.1", self.tcp_port))
        r["tcp_local_port"] = c.getsockname()[1]
        c.close()
        if self.tcp6_port:
            c6 = socket.create_connection(("::1", self.tcp6_port))
            c6.close()
        u = socket.socket(socket.AF_UNIX)
        u.connect(self.unix_path)
        u.close()
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.sendto(b"lbd", ("127.0.0.1", self.udp_port))
        s.close()
        srv = socket.socket()
        srv.bind(("127.0.0.1", self.bind_port))
        srv.listen(1)
        cli = socket.create_connection(("127.0.0.1", self.bind_port))
        conn, peer = srv.accept()
        r["accept_peer_port"] = peer[1]
        for x in (conn, cli, srv):
            x.close()
        with open("/proc/self/cmdline", "rb") as f:
            r["cmdline"] = f.read().rstrip(b"\0").replace(b"\0", b" ").decode()
        r["exe"] = os.readlink("/proc/self/exe")
        r["ppid"] = os.getppid()
        return r

    def start(self) -> None:
        os.write(self.go_w, b"g")

    def wait_report(self, timeout=20.0) -> dict:
        import select

        ready, _, _ = select.select([self.rep_r], [], [], timeout)
        assert ready, "the workload did not report"
        self.report = json.loads(os.read(self.rep_r, 65536))
        return self.report

    def finish(self) -> int:
        os.write(self.done_w, b"d")
        _, status = os.waitpid(self.pid, 0)
        return os.waitstatus_to_exitcode(status)

    def close(self) -> None:
        for x in (self.tcp, self.tcp6, self.unix):
            if x is not None:
                x.close()
        for fd in (self.go_w, self.rep_r, self.done_w):
            try:
                os.close(fd)
            except OSError:
                pass


@pytest.fixture(scope="module")
def capture(tmp_path_factory):
    """Run the workload under two hosts; their events of the workload and its file output."""
    require_bpf()
    tmp = tmp_path_factory.mktemp("plugin")
    wl = Workload(tmp)
    logfile = tmp / "events.log"
    params = json.dumps({"syscalls": SYSCALLS, "only_pids": [wl.pid]})
    live = LiveHost(json.dumps({"str_max_size": 1024}), params, args=ARGS)
    copy = LiveHost(json.dumps({"putfile": True, "path": str(logfile)}), params, args=ARGS, extra=("--copy",))
    try:
        live.opened()
        copy.opened()
        wl.start()
        report = wl.wait_report()
        is_wl = lambda d: "fields" in d and d["fields"]["linux.pid.num"] == [wl.pid]  # noqa: E731
        for h in (live, copy):     # its last syscall before it reported: accept's socket closed
            h.wait_for(lambda d: is_wl(d) and d["fields"]["linux.syscall"] == ["accept4"])
        assert wl.finish() == 0
        for h in (live, copy):
            h.wait_for(lambda d: is_wl(d) and d["fields"]["linux.syscall"] == ["exit_group"])
        summaries = (live.stop(), copy.stop())
        yield {
            "wl": wl, "report": report, "summaries": summaries, "logfile": logfile,
            "live": [f for f in live.events() if f["linux.pid.num"] == [wl.pid]],
            "copy": [f for f in copy.events() if f["linux.pid.num"] == [wl.pid]],
            "host_pids": [next(d["pid"] for d in h.lines if "init" in d) for h in (live, copy)],
        }
    finally:
        for h in (live, copy):
            h.__exit__(None, None, None)
        wl.close()


def one(events, syscall, pred=lambda f: True):
    found = [f for f in events if f["linux.syscall"] == [syscall] and pred(f)]
    assert len(found) == 1, f"{len(found)} {syscall} events: {[f['linux.args'] for f in found]}"
    return found[0]


def test_hosts_saw_clean_batches(capture):
    for s in capture["summaries"]:
        assert s["layout_errors"] == 0 and s["extract_errors"] == 0 and s["success_empty"] == 0, s
        assert s["events"] > 0 and s["batches"] > 0
        assert s["max_timeout_ms"] < 500, s       # TIMEOUT comes after batch_timeout_ms, not later


def test_openat_every_seed_field(capture):
    ev, r = capture["live"], capture["report"]
    f = one(ev, "openat", lambda f: f["linux.arg[filename]"] == ["/etc/shadow"])
    wl = capture["wl"]
    pid = str(wl.pid)
    assert f["linux.type"] == ["257(openat)"] and f["linux.type[key]"] == ["257"] and f["linux.type[value]"] == ["openat"]
    assert f["linux.user"] == ["0(root)"] and f["linux.user[key]"] == ["0"] and f["linux.user[value]"] == ["root"]
    assert f["linux.group"] == ["0(root)"] and f["linux.group[key]"] == ["0"] and f["linux.group[value]"] == ["root"]
    # glibc passes the mode only with O_CREAT
    assert f["linux.args"] == [f"dfd=-100, filename=/etc/shadow, flags={os.O_RDONLY | os.O_CLOEXEC}, mode=0"]
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{9}", f["linux.time"][0])
    assert f["linux.dir"] == ["<"]
    assert f["linux.comm"] == [COMM]
    assert f["linux.pid"] == [pid] and f["linux.tid"] == [pid]
    assert f["linux.ppid"] == [str(os.getpid())] == [str(r["ppid"])]
    assert f["linux.cmdline"] == [r["cmdline"]]
    assert f["linux.fullpath"] == [r["exe"]]
    # fds: fd(path) pairs, and [key] / [value] the two halves of the same list
    fds = f["linux.fds"]
    assert fds and all(re.fullmatch(r"-?\d+\(.*\)", x, re.S) for x in fds), fds
    assert [x.split("(", 1)[0] for x in fds] == f["linux.fds[key]"]
    assert [x.split("(", 1)[1][:-1] for x in fds] == f["linux.fds[value]"]
    assert "0" in f["linux.fds[key]"]


def test_openat_typed_fields(capture):
    f = one(capture["live"], "openat", lambda f: f["linux.arg[filename]"] == ["/etc/shadow"])
    wl, r = capture["wl"], capture["report"]
    assert f["linux.syscall"] == ["openat"] and f["linux.syscall_id"] == [257]
    assert f["linux.res"] == [r["shadow_fd"]] and f["linux.failed"] == [False] and f["linux.errno"] == [0]
    assert f["linux.latency"][0] > 0
    assert f["linux.pid.num"] == [wl.pid] and f["linux.tid.num"] == [wl.pid] and f["linux.ppid.num"] == [os.getpid()]
    assert f["linux.user.num"] == [0] and f["linux.group.num"] == [0]
    assert f["linux.pcomm"] == [Path(f"/proc/{os.getpid()}/comm").read_text().strip()]
    assert f["linux.arg[nope]"] == [] and f["linux.arg[pathname]"] == []
    assert f["linux.sockaddr.ip"] == [] and f["linux.sockaddr.family"] == []


def test_failed_syscall(capture):
    f = one(capture["live"], "openat", lambda f: f["linux.arg[filename]"] == ["/nonexistent-lbd-dir/x"])
    assert f["linux.failed"] == [True] and f["linux.errno"] == [2] and f["linux.res"] == []


def test_close_of_the_shadow_fd(capture):
    fd = capture["report"]["shadow_fd"]
    opened = one(capture["live"], "openat", lambda f: f["linux.arg[filename]"] == ["/etc/shadow"])
    closes = sorted((f for f in capture["live"] if f["linux.syscall"] == ["close"]
                     and f["linux.time"][0] > opened["linux.time"][0]), key=lambda f: f["linux.time"][0])
    f = closes[0]                     # the fd number is reused later by the sockets
    assert f["linux.args"] == [f"fd={fd}"] and f["linux.arg[fd]"] == [str(fd)] and f["linux.res"] == [0]


def test_argument_by_name_pathname(capture):
    d = capture["report"]["dir"]
    made = [f for f in capture["live"] if f["linux.syscall"][0] in ("mkdir", "mkdirat")]
    assert len(made) == 1 and made[0]["linux.arg[pathname]"] == [d]
    assert f"mode={0o750}" in made[0]["linux.args"][0]
    f = one(capture["live"], "rmdir")
    assert f["linux.arg[pathname]"] == [d] and f["linux.args"] == [f"pathname={d}"]


def test_connect_ipv4(capture):
    wl = capture["wl"]
    f = one(capture["live"], "connect", lambda f: f["linux.sockaddr.port"] == [wl.tcp_port])
    assert f["linux.sockaddr.ip"] == ["127.0.0.1"] and f["linux.sockaddr.family"] == ["AF_INET"]
    assert f["linux.arg[uservaddr]"] == [f"127.0.0.1:{wl.tcp_port}"]
    assert f["linux.sockaddr.path"] == []


def test_connect_ipv6(capture):
    wl = capture["wl"]
    if not wl.tcp6_port:
        pytest.skip("no IPv6 loopback on this host")
    f = one(capture["live"], "connect", lambda f: f["linux.sockaddr.port"] == [wl.tcp6_port])
    assert f["linux.sockaddr.ip"] == ["::1"] and f["linux.sockaddr.family"] == ["AF_INET6"]
    assert f["linux.arg[uservaddr]"] == [f"[::1]:{wl.tcp6_port}"]


def test_connect_unix(capture):
    wl = capture["wl"]
    f = one(capture["live"], "connect", lambda f: f["linux.sockaddr.family"] == ["AF_UNIX"])
    assert f["linux.sockaddr.path"] == [wl.unix_path] and f["linux.sockaddr.ip"] == []
    assert f["linux.sockaddr.port"] == []


def test_sendto_and_bind(capture):
    wl = capture["wl"]
    f = one(capture["live"], "sendto")
    assert f["linux.sockaddr.ip"] == ["127.0.0.1"] and f["linux.sockaddr.port"] == [wl.udp_port]
    assert f["linux.arg[addr]"] == [f"127.0.0.1:{wl.udp_port}"] and f["linux.res"] == [3]
    b = one(capture["live"], "bind", lambda f: f["linux.sockaddr.port"] == [wl.bind_port])
    assert b["linux.sockaddr.ip"] == ["127.0.0.1"] and b["linux.arg[umyaddr]"] == [f"127.0.0.1:{wl.bind_port}"]


def test_accept_peer(capture):
    port = capture["report"]["accept_peer_port"]
    f = one(capture["live"], "accept4")
    assert f["linux.sockaddr.ip"] == ["127.0.0.1"] and f["linux.sockaddr.port"] == [port]
    assert f["linux.arg[upeer_sockaddr]"] == [f"127.0.0.1:{port}"]


def test_execve_and_the_new_image(capture):
    f = one(capture["live"], "execve")
    assert f["linux.arg[filename]"] == ["/bin/true"]
    assert f["linux.arg[argv]"] == [f"/bin/true {EXEC_ARG}"]
    assert f["linux.res"] == [0]
    x = one(capture["live"], "exit_group")
    assert x["linux.comm"] == ["true"]
    assert x["linux.dir"] == [">"] or x["linux.dir"] == ["<"]
    assert x["linux.cmdline"] == [f"/bin/true {EXEC_ARG}"]
    # the path execve named, or the same file through /proc/PID/exe (/bin -> usr/bin on Debian)
    assert x["linux.fullpath"] in (["/bin/true"], [os.path.realpath("/bin/true")])


def test_copies_give_the_record_values(capture):
    """Events Falco copied are not in the batch: same record fields, enrichment from the record."""
    # two probes saw the same syscalls (each with its own timestamps): compare them in order
    by_time = lambda evs: sorted(evs, key=lambda f: f["linux.time"][0])  # noqa: E731
    live, copies = by_time(capture["live"]), by_time(capture["copy"])
    assert [f["linux.syscall"] for f in copies] == [f["linux.syscall"] for f in live]
    same = ("linux.type", "linux.type[key]", "linux.type[value]", "linux.args", "linux.dir",
            "linux.comm", "linux.pid", "linux.tid", "linux.syscall", "linux.syscall_id", "linux.res",
            "linux.failed", "linux.errno", "linux.pid.num", "linux.user.num",
            "linux.sockaddr.ip", "linux.sockaddr.port", "linux.sockaddr.path") + tuple(f"linux.arg[{a}]" for a in ARGS)
    for c, f in zip(copies, live):
        for label in same:
            assert c[label] == f[label], (label, c[label], f[label])
        assert c["linux.user"] == ["0(0)"] and c["linux.user[value]"] == ["0"]     # no name without enrichment
        assert c["linux.fds"] == [] and c["linux.fullpath"] == [] and c["linux.pcomm"] == []
        assert c["linux.cmdline"] == c["linux.comm"]


def test_putfile_writes_the_seed_format(capture):
    text = capture["logfile"].read_text()
    wl = capture["wl"]
    lines = [ln for ln in text.splitlines() if f", pid={wl.pid}, " in ln]
    shadow = [ln for ln in lines if "filename=/etc/shadow" in ln]
    assert len(shadow) == 1, lines[:5]
    assert re.match(r"\[\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{9}\]: openat, syscall_id=257, dir=<, res=\d+, user=root, "
                    rf"comm=\({COMM}\), ", shadow[0]), shadow[0]


def test_own_and_falco_process_filters():
    """filter_falco / filter_own drop the host's own syscalls (the plugin runs in its process)."""
    require_bpf()
    seen = {}
    for name, params in (("default", {}), ("off", {"filter_falco": False, "filter_own": False}),
                         ("own", {"filter_falco": False, "filter_own": True})):
        p = {"syscalls": ["openat", "close"], **params}
        with LiveHost("", json.dumps(p), fields=("linux.pid.num",), duration=30) as h:
            h.opened()
            pid = next(d["pid"] for d in h.lines if "init" in d)
            for _ in range(3):          # make the enrichment read /proc in the host: new processes
                os.system("true")
                time.sleep(0.1)
            h.stop()
        seen[name] = sum(1 for f in h.events() if f["linux.pid.num"] == [pid])
    assert seen["default"] == 0 and seen["own"] == 0, seen
    assert seen["off"] > 0, seen


def test_batches_and_timeouts_follow_the_config():
    require_bpf()
    init = json.dumps({"batch_size": 8, "batch_timeout_ms": 5})
    go_r, go_w = os.pipe()
    pid = os.fork()
    if pid == 0:                          # on go: a burst of getppid calls, then quiet
        try:
            os.close(go_w)                # so that a parent that fails first means EOF, not a hang
            if os.read(go_r, 1):
                for _ in range(3000):
                    os.getppid()
        finally:
            os._exit(0)
    os.close(go_r)
    try:
        with LiveHost(init, json.dumps({"syscalls": ["getppid"], "only_pids": [pid]}),
                      fields=("linux.syscall",), duration=30) as h:
            h.opened()
            os.write(go_w, b"g")
            os.waitpid(pid, 0)
            time.sleep(0.3)
            s = h.stop()
    finally:
        os.close(go_w)
        try:
            os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            pass
    assert s["events"] >= 3000 and s["max_batch"] == 8, s
    assert s["timeouts"] > 0 and s["max_timeout_ms"] < 200, s


def test_bad_open_params_then_a_good_open():
    require_bpf()
    steps = script(
        "init:{}",
        "open:" + json.dumps({"filter_pids": list(range(65))}),
        "open:" + json.dumps({"filter_comms": ["a" * 17]}),
        "open:" + json.dumps({"interest_syscall_file": "/nonexistent/x.json"}),
        "open:{bad",
        "bpffds",
        "open:" + json.dumps({"syscalls": ["getppid"]}),
        "bpffds",
        "next:3",
        "close",
        "bpffds",
        "open:{}",
        "next:2",
        "close",
        "destroy",
    )
    init, pids, comms, missing, malformed, fds0, good, fds1, nxt, close1, fds2, again, nxt2, close2, destroy = steps
    assert pids["rc"] == 1 and "filter_pids: 65 entries, at most 64" in pids["error"]
    assert comms["rc"] == 1 and "17 bytes long, at most 16" in comms["error"]
    assert missing["rc"] == 1 and "/nonexistent/x.json" in missing["error"]
    assert malformed["rc"] == 1 and "malformed JSON" in malformed["error"]
    assert fds0["bpf_progs"] == 0                          # nothing left behind by the failures
    assert good["rc"] == 0 and fds1["bpf_progs"] > 0
    assert nxt["rc"] == 0
    assert fds2["bpf_progs"] == 0 and fds2["bpf_maps"] == 0 and fds2["perf_events"] == 0   # close detaches
    assert again["rc"] == 0 and nxt2["rc"] == 0 and destroy["rc"] == 0


def test_openblas_runs_no_worker_threads_in_falco(monkeypatch):
    """numpy's OpenBLAS started worker threads when the plugin imported lbd, which spun on
    Falco's CPUs; the plugin sets OPENBLAS_NUM_THREADS=1 unless Falco's environment sets it."""
    require_bpf()

    def threads_after_open() -> int:
        with LiveHost("", json.dumps({"only_pids": [4194303]})) as h:
            h.opened()
            n = len(os.listdir(f"/proc/{h.proc.pid}/task"))
            h.stop()
        return n

    monkeypatch.delenv("OPENBLAS_NUM_THREADS", raising=False)
    default = threads_after_open()
    monkeypatch.setenv("OPENBLAS_NUM_THREADS", "1")
    one = threads_after_open()
    monkeypatch.setenv("OPENBLAS_NUM_THREADS", "3")
    assert default == one < threads_after_open()     # the environment's choice stands
