"""No value can be forged into the output: the normal format's escaping (a parser reads every
line back, field by field, exactly), unambiguous JSON strings, and the environment (envp)
written only with capture_env, its secret values masked; in the bulk formatter, the reference
and the plugin's linux.args alike."""
from __future__ import annotations

import ctypes as ct
import json

import pytest
from hypothesis import given, settings, strategies as st

from lbd import syscalls
from lbd._format import Formatter
from lbd.config import Config, ConfigError
from lbd.output import reference
from lbd.ringimage import sockaddr_un
from tests.data.fakeproc import FakeHost, batch_of, rec
from tests.data.normal_parser import parse_line

PATTERN = Config.default().secret_pattern


def formatted(batch, fmt, limit=0, **env) -> list[str]:
    """The lines of the bulk formatter, checked against the reference byte for byte."""
    f = Formatter(fmt, limit, **env)
    f.format(batch)
    got = f.getvalue()
    assert got == reference.format_batch(batch, fmt, limit, **env)
    return got.decode().split("\n")[:-1]      # not splitlines(): JSON strings may hold U+0085


# ---- the forgeries of the issue ----------------------------------------------------------------------

def test_a_path_cannot_add_fields_to_the_line():
    evil = b"/tmp/x, comm=(sshd), cmdline=(sshd), pid=1, tid=1, ppid=0(), args=(fd=3), fds=[]"
    b = batch_of(rec("openat", {"dfd": -100, "filename": evil, "flags": 0}, pid=4242, comm="attacker", res=3))
    (line,) = formatted(b, "normal")
    assert line.count("comm=(") == 1 and line.count(" pid=") == 1 and ", pid=1," not in line
    ev = parse_line(line)
    assert (ev["comm"], ev["pid"]) == (b"attacker", 4242)
    assert dict(ev["args"])["filename"] == evil
    assert "filename=/tmp/x\\, comm\\=\\(sshd\\)\\, cmdline\\=" in line


def test_a_backslash_is_not_an_undecodable_byte():
    """b'\\\\xff' (four characters) and b'\\xff' (one byte) were the same text; no longer."""
    literal, byte = b"/a\\xff", b"/a\xff"
    b = batch_of(*(rec("openat", {"dfd": -100, "filename": p, "flags": 0}, res=-2) for p in (literal, byte)))
    normal = [dict(parse_line(x)["args"])["filename"] for x in formatted(b, "normal")]
    assert normal == [literal, byte]
    lines = formatted(b, "json")
    assert '"filename":"/a\\\\\\\\xff"' in lines[0] and '"filename":"/a\\\\xff"' in lines[1]
    values = [json.loads(x)["args"]["filename"] for x in lines]
    assert values == ["/a\\\\xff", "/a\\xff"]
    assert [reference.unescape_text(v) for v in values] == [literal, byte]


def test_ordinary_values_keep_the_seed_shape(tmp_path):
    h = FakeHost(tmp_path)
    h.add_process(1, "systemd", 0, ["/sbin/init"])
    h.add_process(50, "sd-rmrf", 1, ["sd-rmrf"], fds={0: "/dev/null", 1: "pipe:[4242]", 2: "socket:[77]"})
    en = h.enricher()
    b = batch_of(rec("unlinkat", {"dfd": -100, "pathname": "/var/tmp/systemd-private-x", "flag": 512}, pid=50,
                     comm="sd-rmrf", uid=0))
    en.enrich(b)
    (line,) = formatted(b, "normal")
    assert line.endswith("user=root, comm=(sd-rmrf), cmdline=(sd-rmrf), pid=50, tid=50, ppid=1(systemd), "
                         "args=(dfd=-100, pathname=/var/tmp/systemd-private-x, flag=512), "
                         "fds=[0(/dev/null), 1(pipe), 2(socket:[77])]")         # the state engine names a pipe "pipe"


def test_enrichment_text_is_escaped(tmp_path):
    """cmdline, parent comm and fd paths come from /proc, which the attacker writes too."""
    h = FakeHost(tmp_path)
    h.add_process(1, "init", 0, ["/sbin/init"])
    h.add_process(60, "x), pid=(1", 1, ["sh", "-c", "a=1, b=(2)\\"], fds={0: "/tmp/f, 1(/etc/shadow)"})
    h.add_process(61, "child", 60, ["child"])
    en = h.enricher()
    b = batch_of(rec("getpid", pid=61, ppid=60, comm="child"), rec("getppid", pid=60, ppid=1, comm="x), pid=(1"))
    en.enrich(b)
    first, second = (parse_line(x) for x in formatted(b, "normal"))
    assert first["pcomm"] == b"x), pid=(1"
    assert second["comm"] == b"x), pid=(1" and second["pid"] == 60
    assert second["cmdline"] == b"sh -c a=1, b=(2)\\"
    assert second["fds"] == [(0, b"/tmp/f, 1(/etc/shadow)")]


def test_line_breaks_of_other_readers_are_escaped():
    """C1 controls (a CSI for some terminals) and U+2028/U+2029 (line breaks to some readers)."""
    name = "a\u0085b\u009b[31mc\u2028d".encode()
    b = batch_of(rec("mkdir", {"pathname": name, "mode": 0o755}))
    (line,) = formatted(b, "normal")
    assert "\\xc2\\x85" in line and "\\xc2\\x9b" in line and "\\xe2\\x80\\xa8" in line
    assert len(line.splitlines()) == 1 and dict(parse_line(line)["args"])["pathname"] == name


# ---- the round trip, for any bytes ---------------------------------------------------------------------

_text = st.binary(max_size=40).filter(lambda b: b"\0" not in b)
_hard = st.lists(st.sampled_from([b",", b"(", b")", b"=", b"\\", b"\\x41", b"[", b"]", b" ", b"\xff", b"\n",
                                  "é".encode(), b"\xc2\x85", b"x", b", pid=1"]), max_size=12).map(b"".join)


@settings(max_examples=200, deadline=None)
@given(path=st.one_of(_text, _hard), argv=st.lists(st.one_of(_text, _hard), max_size=4),
       comm=st.one_of(_text, _hard).map(lambda b: b[:15]), sock=st.one_of(_text, _hard),
       limit=st.sampled_from([0, 0, 3, 11]))
def test_every_line_parses_back_to_the_values(path, argv, comm, sock, limit):
    sock = b"/" + sock.replace(b"\0", b"")
    b = batch_of(rec("openat", {"dfd": -100, "filename": path, "flags": 0}, comm=comm, res=-2),
                 rec("execve", {"filename": path, "argv": argv, "envp": None}, comm=comm),
                 rec("connect", {"fd": 3, "uservaddr": sockaddr_un(sock), "addrlen": 2 + len(sock)}, comm=comm))

    def cut(v: bytes) -> bytes:
        return reference.truncate(v.decode("utf-8", "surrogateescape"), limit).encode("utf-8", "surrogateescape")

    lines = formatted(b, "normal", limit)
    assert len(lines) == 3
    evs = [parse_line(x) for x in lines]
    shown_comm = comm.split(b"\0")[0]
    for ev in evs:
        assert ev["comm"] == shown_comm and ev["cmdline"] == cut(shown_comm)
    assert dict(evs[0]["args"])["filename"] == cut(path)
    assert dict(evs[1]["args"]) == {"filename": cut(path), "argv": cut(b" ".join(argv)), "envp": b"NULL"}
    assert dict(evs[2]["args"])["uservaddr"] == cut(sock)
    objs = [json.loads(x) for x in formatted(b, "json", limit)]
    assert reference.unescape_text(objs[0]["args"]["filename"]) == cut(path)
    assert [reference.unescape_text(a) for a in objs[1]["args"]["argv"]] == [cut(a) for a in argv]
    assert reference.unescape_text(objs[2]["comm"]) == shown_comm


# ---- the environment ---------------------------------------------------------------------------------------

ENV = [b"PATH=/usr/bin", b"GITHUB_TOKEN=ghp_123", b"aws_secret_access_key=abc", b"DB_PASSWORD=pw",
       b"SSH_AUTH_SOCK=/run/x", b"LANG=C", b"KEYRING=1", b"NOEQUALS", b"MY_SECRET", "Ü_KEY=ä".encode()]


def execve(env):
    return batch_of(rec("execve", {"filename": "/bin/true", "argv": [b"true"], "envp": env}, comm="sh"))


def test_envp_is_not_written_by_default():
    b = execve(ENV)
    assert Config.default().capture_env is False
    (line,) = formatted(b, "normal")
    assert "envp=NULL" in line and "ghp_" not in line and "PATH" not in line
    (obj,) = formatted(b, "json")
    assert "envp" not in json.loads(obj)["args"]            # no value: left out, like every such argument


def test_envp_secrets_are_masked_when_captured():
    b = execve(ENV)
    env = dict(capture_env=True, secret_pattern=PATTERN)
    (obj,) = formatted(b, "json", **env)
    assert json.loads(obj)["args"]["envp"] == [
        "PATH=/usr/bin", "GITHUB_TOKEN=***", "aws_secret_access_key=***", "DB_PASSWORD=***",
        "SSH_AUTH_SOCK=/run/x", "LANG=C", "KEYRING=***", "NOEQUALS", "MY_SECRET", "Ü_KEY=***"]
    (line,) = formatted(b, "normal", **env)
    value = dict(parse_line(line)["args"])["envp"]
    assert value == (b"PATH=/usr/bin GITHUB_TOKEN=*** aws_secret_access_key=*** DB_PASSWORD=*** "
                     b"SSH_AUTH_SOCK=/run/x LANG=C KEYRING=*** NOEQUALS MY_SECRET " + "Ü_KEY=***".encode())
    for secret in (b"ghp_123", b"abc", b"=pw", "=ä".encode()):
        assert secret not in line.encode()


@pytest.mark.parametrize("pattern,masked", [("", []), ("PATH", ["PATH"]), ("*_SOCK|lang", ["SSH_AUTH_SOCK", "LANG"]),
                                            ("?ANG", ["LANG"]), ("*", ["PATH", "GITHUB_TOKEN", "SSH_AUTH_SOCK", "LANG"]),
                                            ("|", [])])
def test_secret_pattern_is_globs_case_insensitive(pattern, masked):
    env = [b"PATH=/usr/bin", b"GITHUB_TOKEN=x", b"SSH_AUTH_SOCK=/s", b"LANG=C"]
    (obj,) = formatted(execve(env), "json", capture_env=True, secret_pattern=pattern)
    got = json.loads(obj)["args"]["envp"]
    assert [s.split("=")[0] for s in got if s.endswith("=***")] == masked


@settings(max_examples=100, deadline=None)
@given(st.lists(st.binary(max_size=20).filter(lambda b: b"\0" not in b), max_size=5),
       st.text(alphabet="AB*?|=", max_size=6), st.sampled_from([0, 5]))
def test_envp_bulk_equals_reference(env, pattern, limit):
    b = execve(env)
    for fmt in ("normal", "json"):
        formatted(b, fmt, limit, capture_env=True, secret_pattern=pattern)


def test_config_keys():
    c = Config.default()
    assert c.secret_pattern == "*TOKEN*|*SECRET*|*PASSWORD*|*KEY*"
    assert Config.from_dict({"capture_env": True}).capture_env is True
    with pytest.raises(ConfigError, match=r"open_params.capture_env: 1 is not a boolean"):
        Config.from_dict({"capture_env": 1})
    with pytest.raises(ConfigError, match=r"init_config.secret_pattern: .* at most 256"):
        Config.from_dict({"secret_pattern": "x" * 300})


def test_writer_takes_the_environment_settings(tmp_path):
    from lbd.output.writer import open_writer

    path = tmp_path / "ev.jsonl"
    cfg = Config.default().replace(capture_env=True, secret_pattern="PATH", format="json")
    with open_writer(cfg, str(path)) as w:
        w.write_batch(execve([b"PATH=/x", b"TOKEN=y"]))
    assert json.loads(path.read_text())["args"]["envp"] == ["PATH=***", "TOKEN=y"]


# ---- the plugin's linux.args -------------------------------------------------------------------------------

def test_plugin_args_mask_the_environment():
    """liblbd.so's C core (build/liblbd_extract_test.so) with capture_env and secret_pattern as
    plugin_open / plugin_init set them: linux.args is the reference's text."""
    from tests.unit.test_plugin_enrich import Core

    core = Core()
    core.lib.shim_env.argtypes = [ct.c_void_p, ct.c_int, ct.c_char_p, ct.c_size_t]
    try:
        b = batch_of(rec("execve", {"filename": "/bin/x", "argv": [b"x", b"a=(1)"], "envp": ENV}),
                     rec("openat", {"dfd": -100, "filename": b"/t, pid=1\\", "flags": 0}, res=-2))
        nr = syscalls.lookup("execve").nr
        assert int(b.events["nr"][0]) == nr
        for capture, pattern in ((0, PATTERN), (1, PATTERN), (1, "*")):
            pat = pattern.encode()
            assert core.lib.shim_env(core.x, capture, pat, len(pat)) == 0
            for i in range(2):
                evt = int(b.ptrs[i])
                want = reference.event_fields(b, i, exact=True, capture_env=bool(capture), secret_pattern=pattern)["args"]
                assert core.field(evt, "linux.args") == [reference.format_args(want, 1024)]
                arg = "envp" if i == 0 else "filename"
                assert core.field(evt, f"linux.arg[{arg}]") == [
                    reference.escape_text(reference.format_value(want[arg], 1024), "plain")]
        text = core.field(int(b.ptrs[0]), "linux.args")[0]                     # "*": every name
        assert "PATH\\=***" in text and "ghp_" not in text and "/usr/bin" not in text
        assert core.field(int(b.ptrs[1]), "linux.args")[0] == "dfd=-100, filename=/t\\, pid\\=1\\\\, flags=0, mode=0"
    finally:
        core.close()
