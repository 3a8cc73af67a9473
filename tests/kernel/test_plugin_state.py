"""The Falco plugin shows the state engine's context (tests/plugin_host, the real liblbd.so live):
linux.ppid, linux.pcomm, linux.cmdline, linux.fullpath and linux.fds say what the workload's
processes were at each event, and the example rule "lbd shell spawned by a service"
(examples/falco/rules.yaml) fires for a service binary named nginx running /bin/sh -c ...,
evaluated on the extracted field values.

The workload: a process named eaw execs a binary named nginx (an exec rename: the case that used
to show the comm from before the exec as the child's parent comm), which runs `/bin/sh -c ...`;
a child of the workload opens a file and connects a TCP socket and reports its own truth.
"""
from __future__ import annotations

import json
import os
import re
import select
import socket
from pathlib import Path

import yaml

from tests.conftest import require_bpf
from tests.kernel.conftest import set_comm
from tests.plugin_host.host import LiveHost

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "examples" / "falco" / "rules.yaml"
SYSCALLS = ["execve", "exit_group", "openat", "connect", "getppid"]


def _rule(name: str) -> tuple[str, dict[str, list[str]]]:
    doc = yaml.safe_load(RULES.read_text())
    lists = {d["list"]: [str(x) for x in d["items"]] for d in doc if "list" in d}
    (rule,) = [d for d in doc if d.get("rule") == name]
    return " ".join(rule["condition"].split()), lists


_CLAUSE = re.compile(r"^(linux\.[a-z_.]+(?:\[[^\]]*\])?) (=|in) (.+)$")


def matches(condition: str, lists: dict, fields: dict) -> bool:
    """Falco's semantics for the conjunctions of `=` and `in (...)` the example rules use, on the
    plugin's extracted values (a field's value list; lists expanded)."""
    for clause in condition.split(" and "):
        m = _CLAUSE.match(clause.strip())
        assert m, f"clause outside what this evaluator knows: {clause!r}"
        name, op, rhs = m.groups()
        values = fields.get(name)
        assert values is not None, f"the host extracted no {name}"
        if not values:
            return False
        got = values[0]
        got = str(got).lower() if isinstance(got, bool) else str(got)
        if op == "=":
            if got != rhs.strip('"'):
                return False
        else:
            items = [x.strip().strip('"') for x in rhs.strip("()").split(",")]
            allowed = {y for x in items for y in (lists.get(x, [x]))}
            if got not in allowed:
                return False
    return True


def test_rule_evaluator_on_plain_values():
    cond, lists = _rule("lbd shell spawned by a service")
    ok = {"linux.syscall": ["execve"], "linux.failed": [False], "linux.arg[filename]": ["/bin/sh"],
          "linux.pcomm": ["nginx"]}
    assert matches(cond, lists, ok)
    assert not matches(cond, lists, {**ok, "linux.pcomm": ["eaw"]})
    assert not matches(cond, lists, {**ok, "linux.failed": [True]})
    assert not matches(cond, lists, {**ok, "linux.arg[filename]": []})


def test_plugin_fields_show_the_state_and_the_service_rule_fires(tmp_path):
    require_bpf()
    nginx = tmp_path / "nginx"
    nginx.symlink_to("/bin/sh")
    target = tmp_path / "opened.txt"
    srv = socket.create_server(("127.0.0.1", 0))
    port = srv.getsockname()[1]
    go_r, go_w = os.pipe()
    rep_r, rep_w = os.pipe()
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            os.close(go_w)
            os.close(rep_r)
            if os.read(go_r, 1) == b"g":
                set_comm("eaw")
                kid = os.fork()
                if kid == 0:
                    fd = os.open(target, os.O_RDWR | os.O_CREAT, 0o600)
                    c = socket.create_connection(("127.0.0.1", port))
                    os.getppid()
                    os.write(rep_w, json.dumps({"pid": os.getpid(), "fd": fd, "sock": c.fileno(),
                                                "local": c.getsockname()[1]}).encode())
                    os._exit(0)
                os.waitpid(kid, 0)
                os.execv(str(nginx), ["nginx", "-c", "/bin/sh -c 'true lbd-plugin-state'; exit 0"])
        finally:
            os._exit(code)
    os.close(go_r)
    os.close(rep_w)
    params = json.dumps({"syscalls": SYSCALLS, "only_pids": [pid], "follow": True})
    try:
        with LiveHost("", params, args=("filename", "fd")) as host:
            host.opened()
            os.write(go_w, b"g")
            ready, _, _ = select.select([rep_r], [], [], 30)
            assert ready, "the workload did not report"
            truth = json.loads(os.read(rep_r, 4096))
            conn, _ = srv.accept()
            _, status = os.waitpid(pid, 0)
            assert os.waitstatus_to_exitcode(status) == 0
            host.wait_for(lambda d: "fields" in d and d["fields"]["linux.syscall"] == ["exit_group"]
                          and d["fields"]["linux.pid.num"] == [pid])
            s = host.stop()
        events = host.events()
    finally:
        os.close(go_w)
        os.close(rep_r)
        srv.close()
    assert s["layout_errors"] == 0 and s["extract_errors"] == 0, s

    # the child that reported (forked, no exec): its getppid event
    (g,) = [f for f in events if f["linux.syscall"] == ["getppid"] and f["linux.pid.num"] == [truth["pid"]]]
    assert g["linux.ppid.num"] == [pid] and g["linux.pcomm"] == ["eaw"]
    assert g["linux.cmdline"] == [Path("/proc/self/cmdline").read_bytes().rstrip(b"\0").replace(b"\0", b" ").decode()]
    assert g["linux.fullpath"] == [os.readlink("/proc/self/exe")]
    fds = dict(x.split("(", 1) for x in g["linux.fds"])
    assert fds[str(truth["fd"])] == f"{target})"
    want_sock = f"tcp 127.0.0.1:{truth['local']}->127.0.0.1:{port}"
    assert fds[str(truth["sock"])] in (f"{want_sock})", f"tcp ->127.0.0.1:{port})")   # CO-RE / bcc

    # the service: eaw exec'd nginx; nginx's child runs /bin/sh: the rule fires on that execve
    cond, lists = _rule("lbd shell spawned by a service")
    fired = [f for f in events if matches(cond, lists, f)]
    assert len(fired) == 1, [(f["linux.syscall"], f["linux.pcomm"], f["linux.arg[filename]"]) for f in events]
    f = fired[0]
    assert f["linux.pcomm"] == ["nginx"] and f["linux.ppid.num"] == [pid]
    assert f["linux.cmdline"] == ["/bin/sh -c true lbd-plugin-state"]
    assert f["linux.fullpath"][0] in ("/bin/sh", os.path.realpath("/bin/sh"))
    ng = [e for e in events if e["linux.syscall"] == ["exit_group"] and e["linux.pid.num"] == [pid]]
    assert ng and ng[0]["linux.cmdline"] == ["nginx -c /bin/sh -c 'true lbd-plugin-state'; exit 0"]
