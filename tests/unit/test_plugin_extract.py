"""liblbd.so's extract_fields against lbd's Python reference, on synthetic records (no kernel).

Records come from lbd.ringimage (every argument kind, invalid UTF-8, control characters, NULL
pointers, empty values, read faults, exits without enter, sched records, failed calls), go
through the real decoder into a Batch, and reach the plugin as Falco events the host copied: the
path of an event that is not in the plugin's current batch, so the enrichment fields take the
record's values.  The argument text must be what the normal output prints for args
(lbd.output.reference), at several str_max_size limits.
"""
from __future__ import annotations

import ipaddress
import json
import re
import stat

import pytest

from lbd import args as _args, flags as lbd_flags, record
from lbd.args import decode_sockaddr
from lbd.batch import Batch
from lbd.falco import FIELDS, PLUGIN_ID
from lbd.output import reference
from lbd.output.reference import escape_text, format_args, format_time, format_value
from lbd.ringimage import image_of, make_record, random_cases, sockaddr_in, sockaddr_in6, sockaddr_un
from tests.plugin_host.host import extract

WALL = 1_700_000_000_000_000_000          # the ring's wall_offset: prefix ts = record ts + this
ARG_NAMES = ("fd", "filename", "pathname", "flags", "mode", "buf", "uservaddr", "argv", "dfd", "count",
             "addr", "umyaddr", "upeer_sockaddr", "newname", "oldname", "pid", "sig", "filedes", "name")


def decode_all(records: list[bytes]):
    """Run records through the decoder: [(falco event bytes, nr, header dict, args, payloads)]."""
    size = 1 << max(16, (sum(len(r) + 16 for r in records) * 2).bit_length())
    img = image_of(records, size=size)
    ring = img.ring(wall_offset=WALL)
    out = []
    batch = Batch(256, 1 << 22)
    while True:
        n = ring.fill(batch)
        if not n:
            break
        ev = batch.events
        for i in range(n):
            e = ev[i].copy()                 # a row of the reused batch: copy it
            payloads = [batch.payload(i, k) for k in range(record.MAX_ARGS)]
            out.append((bytes(batch.falco_event(i)), int(e["nr"]), e, exact_args(e, payloads), payloads))
    assert len(out) == len(records), "the decoder dropped synthetic records"
    return out


def exact_args(e, payloads, capture_env: bool = False, secret_pattern: str = "") -> dict:
    """The event's arguments as the output formats see them (reference.exact_args)."""
    return reference.exact_args(int(e["nr"]), int(e["flags"]), e["args"], payloads, capture_env, secret_pattern,
                                [int(o) for o in e["slot"]["off"]])


def plain(s: str) -> str:
    return escape_text(s, "plain")


def sockaddr_of(nr: int, flags: int, payloads) -> tuple | None:
    """The first socket address argument with 2+ bytes, as the plugin's sockaddr fields see it."""
    specs = _args.arg_specs(nr)
    if specs is None or flags & record.F_NOENTER:
        return None
    for k, a in enumerate(specs):
        if a.kind in ("sockaddr", "out_sockaddr") and payloads[k] is not None and len(payloads[k]) >= 2:
            return decode_sockaddr(payloads[k], "surrogateescape"), payloads[k]
    return None


_MODE_BITS = ("S_ISUID", "S_ISGID", "S_ISVTX", "S_IRUSR", "S_IWUSR", "S_IXUSR", "S_IRGRP", "S_IWGRP", "S_IXGRP",
              "S_IROTH", "S_IWOTH", "S_IXOTH")


def flag_names(nr: int, name: str, args: dict) -> list[str]:
    """linux.flags[name]: lbd.flags.names() of a flags argument split at '|'; a mode argument by the
    <sys/stat.h> bit names (as plugin/gen_tables.py builds that set)."""
    if name not in args:
        return []
    spec = next(a for a in _args.arg_specs(nr) if a.name == name)
    if spec.kind == "mode":
        v, out = int(args[name]), []
        for bit in _MODE_BITS:
            if v & getattr(stat, bit):
                out.append(bit)
                v &= ~getattr(stat, bit)
        return out + ([hex(v)] if v else []) or ["0"]
    if spec.kind != "flags" or not spec.flags:
        return []
    return lbd_flags.names(spec.flags, int(args[name])).split("|")


def expected(nr: int, e, args: dict, payloads, limit: int, arg_names=ARG_NAMES) -> dict:
    """What every field must hold for an event outside the current batch (record values only)."""
    uid, gid, pid, tid, ppid = (int(e[k]) for k in ("uid", "gid", "pid", "tid", "ppid"))
    comm = plain(bytes(e["comm"]).split(b"\0", 1)[0].decode("utf-8", "surrogateescape"))
    name = _args.syscall_name(nr)
    exit_ = chr(int(e["dir"])) == "<"
    res = int(e["res"])
    x = {
        "linux.type": [f"{nr}({name})"], "linux.type[key]": [str(nr)], "linux.type[value]": [name],
        "linux.user": [f"{uid}({uid})"], "linux.user[key]": [str(uid)], "linux.user[value]": [str(uid)],
        "linux.group": [f"{gid}({gid})"], "linux.group[key]": [str(gid)], "linux.group[value]": [str(gid)],
        "linux.fds": [], "linux.fds[key]": [], "linux.fds[value]": [],
        "linux.args": [format_args(args, limit)],
        "linux.time": [format_time(int(e["ts"]))],
        "linux.dir": [chr(int(e["dir"]))], "linux.comm": [comm],
        "linux.pid": [str(pid)], "linux.tid": [str(tid)], "linux.ppid": [str(ppid)],
        "linux.cmdline": [comm], "linux.fullpath": [],
        "linux.syscall": [name], "linux.syscall_id": [nr],
        "linux.res": [res] if exit_ and res >= 0 else [],
        "linux.failed": [res < 0] if exit_ else [],
        "linux.errno": [-res if res < 0 else 0] if exit_ else [],
        "linux.latency": [int(e["latency"])],
        "linux.pid.num": [pid], "linux.tid.num": [tid], "linux.ppid.num": [ppid],
        "linux.user.num": [uid], "linux.group.num": [gid], "linux.pcomm": [],
        "linux.cgroup_id": [int(e["cgroup_id"])],
        "linux.pidns": [int(e["pidns"])] if int(e["pidns"]) else [],
        "linux.mntns": [int(e["mntns"])] if int(e["mntns"]) else [],
        "linux.loginuid": [int(e["loginuid"])] if int(e["pidns"]) or int(e["loginuid"]) else [],
    }
    for a in arg_names:
        x[f"linux.arg[{a}]"] = [plain(format_value(args[a], limit))] if a in args else []
        x[f"linux.flags[{a}]"] = flag_names(nr, a, args)
        x[f"linux.fd[{a}]"] = []                  # not a number, and no fd table outside a batch
    sa = sockaddr_of(nr, int(e["flags"]), payloads)
    fam = ip = port = path = []
    if sa is not None:
        s, raw = sa
        fam = [s.family]
        if s.addr is not None:
            ip, port = [s.addr], [s.port]
        if s.path is not None:
            path = [plain(s.path)]
    x.update({"linux.sockaddr.family": fam, "linux.sockaddr.ip": ip, "linux.sockaddr.port": port,
              "linux.sockaddr.path": path})
    return x


def compare(got: dict, want: dict, where: str) -> None:
    assert set(got) == set(want), f"{where}: labels differ: {set(got) ^ set(want)}"
    for label, w in want.items():
        g = got[label]
        if label == "linux.sockaddr.ip":   # the host prints inet_ntop's form: compare addresses
            g = [ipaddress.ip_address(v) for v in g]
            w = [ipaddress.ip_address(v) for v in w]
        assert g == w, f"{where}: {label}: plugin {g!r}, reference {w!r}"


@pytest.mark.parametrize("limit", [1024, 0, 7, 64])
def test_every_field_matches_the_reference(limit):
    cases = random_cases(1500, seed=limit + 1, long=200)
    decoded = decode_all([c.record for c in cases])
    got, summary = extract([d[0] for d in decoded], init=json.dumps({"str_max_size": limit}), args=ARG_NAMES)
    assert summary["events"] == len(decoded)
    for k, ((_, nr, e, args, payloads), fields) in enumerate(zip(decoded, got)):
        compare(fields, expected(nr, e, args, payloads, limit), f"event {k} ({_args.syscall_name(nr)})")


def test_text_edge_cases():
    """Invalid UTF-8 (each bad byte \\xNN, one character), surrogates, overlongs, control
    characters and NUL, backslashes and the separators , ( ) = (escaped in linux.args), cuts next to
    an escape, argv joins, empty values behind non-NULL pointers."""
    texts = [b"plain", "päth/日本/😀".encode(), b"\xe2\x82", b"\xed\xa0\x80x", b"\xc0\xafy", b"\xf4\x90\x80\x80",
             b"a\tb\nc\x7fd\x00e", b"\xff" * 40, b"x" * 3000, b"", b"a\\xff\\\\b", b"/x, comm=(sshd), pid=1",
             b"[::1]=(a,b)\\"]
    recs = []
    from lbd import syscalls

    mkdir = syscalls.lookup("mkdir").nr
    execve = syscalls.lookup("execve").nr
    for t in texts:
        recs.append(make_record(mkdir, {"pathname": t, "mode": 0o755}))
    recs.append(make_record(execve, {"filename": "/bin/true", "argv": [b"a", b"", b"\xff\n", b"d"], "envp": []}))
    recs.append(make_record(execve, {"filename": "/bin/true", "argv": [], "envp": None}))
    decoded = decode_all(recs)
    for limit in (0, 1, 2, 3, 5, 17, 1024):
        got, _ = extract([d[0] for d in decoded], init=json.dumps({"str_max_size": limit}), args=("pathname", "argv"))
        for (_, nr, e, args, payloads), fields in zip(decoded, got):
            compare(fields, expected(nr, e, args, payloads, limit, ("pathname", "argv")), f"limit {limit}, {args}")


def test_word_at_a_time_edges():
    """The 8-bytes-at-a-time paths of the text writers: a 16-byte comm with no NUL, comms with
    an escape at byte 0, 7, 8 or 15, plain runs cut by str_max_size at and around 8 and 16
    characters, separators inside long plain runs (escaped in linux.args, not in linux.arg)."""
    from lbd import syscalls

    mkdir = syscalls.lookup("mkdir").nr
    comms = [b"a" * 16, b"abcdefghijklmno", b"abcdefgh", b"abcdefg", b""]
    for at in (0, 7, 8, 15):
        for bad in (b"\n", b"\xff", b"\\", b","):
            c = bytearray(b"c" * 16)
            c[at:at + 1] = bad
            comms.append(bytes(c[:16]))
    paths = [b"abcdefghijklmnop", b"abcdefghijklmnopq", b"abcdefg", b"abcdefgh", b"abcdefghi",
             b"abcdefgh,ijklmnop(qrstuvwx)=yz01234567", b"abcdefghijklmno=", b"/usr/lib/x86_64-linux-gnu/" * 3]
    recs = [make_record(mkdir, {"pathname": p, "mode": 0o700}, comm=c) for c in comms for p in paths[:2]]
    recs += [make_record(mkdir, {"pathname": p, "mode": 0o700}, comm=b"plain") for p in paths]
    decoded = decode_all(recs)
    for limit in (0, 7, 8, 9, 15, 16, 17, 1024):
        got, _ = extract([d[0] for d in decoded], init=json.dumps({"str_max_size": limit}), args=("pathname",))
        for (_, nr, e, args, payloads), fields in zip(decoded, got):
            compare(fields, expected(nr, e, args, payloads, limit, ("pathname",)),
                    f"limit {limit}, comm {bytes(e['comm'])!r}, {args}")


def test_socket_addresses():
    from lbd import syscalls

    connect = syscalls.lookup("connect").nr
    addrs = [sockaddr_in("127.0.0.1", 8080), sockaddr_in6("::1", 443), sockaddr_in6("fe80::1:0:0:2", 1),
             sockaddr_in6("::ffff:1.2.3.4", 53), sockaddr_in6("2001:db8::", 0), sockaddr_in6("1:0:0:1:0:0:0:1", 9),
             sockaddr_un("/run/docker.sock"), b"\x01\x00\x00abstract", sockaddr_un(b""),
             b"\x10\x00" + bytes(10), b"\x02\x00\x01", b"\x07\x00", b"\x02"]
    recs = [make_record(connect, {"fd": 3, "uservaddr": a, "addrlen": len(a)}) for a in addrs]
    decoded = decode_all(recs)
    got, _ = extract([d[0] for d in decoded], args=("uservaddr",))
    for (_, nr, e, args, payloads), fields in zip(decoded, got):
        compare(fields, expected(nr, e, args, payloads, 1024, ("uservaddr",)), repr(payloads[1]))
    assert got[0]["linux.sockaddr.ip"] == ["127.0.0.1"] and got[0]["linux.sockaddr.port"] == [8080]
    assert got[0]["linux.arg[uservaddr]"] == ["127.0.0.1:8080"]
    assert got[1]["linux.sockaddr.ip"] == ["::1"] and got[1]["linux.arg[uservaddr]"] == ["[::1]:443"]
    assert got[6]["linux.sockaddr.path"] == ["/run/docker.sock"] and got[6]["linux.sockaddr.ip"] == []
    assert got[7]["linux.sockaddr.path"] == ["@abstract"]


def test_time_is_local_wall_clock():
    from lbd import syscalls

    ts = WALL + 5_000_000_007
    rec = make_record(syscalls.lookup("close").nr, {"fd": 43}, ts=ts - WALL)
    (event, nr, e, args, payloads), = decode_all([rec])
    got, _ = extract([event], fields=("linux.time", "linux.args", "linux.type"))
    assert got[0]["linux.time"] == [format_time(ts)]
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.000000007", got[0]["linux.time"][0])
    assert got[0]["linux.args"] == ["fd=43"]          # SPEC.md table 4: close renders (fd=43)
    assert got[0]["linux.type"] == ["3(close)"]


def test_foreign_events_are_refused_without_crashing(tmp_path):
    """Events that are not lbd's: FAILURE with a message, and the host goes on."""
    from tests.plugin_host.host import run_host, write_events

    from lbd import syscalls

    (good, *_), = decode_all([make_record(syscalls.lookup("close").nr, {"fd": 1})])
    bad_version = bytearray(good)
    bad_version[38] = 99                                    # record version
    bad_slot = bytearray(good)
    bad_slot[38 + 120: 38 + 124] = (200).to_bytes(2, "little") + (60000).to_bytes(2, "little")
    other_plugin = bytearray(good)
    other_plugin[34:38] = (999).to_bytes(4, "little")
    path = tmp_path / "ev.bin"
    write_events(path, [bytes(bad_version), bytes(bad_slot), bytes(other_plugin), good])
    rc, lines, err = run_host("extract", "--events", str(path), "--field", "linux.args")
    errors = [d["extract_error"] for d in lines if "extract_error" in d]
    assert len(errors) == 2, lines
    assert "version 99" in errors[0] and "outside the record" in errors[1]
    # another plugin's event: the host (as Falco) never hands it to lbd
    assert [d["layout_error"] for d in lines if "layout_error" in d] == ["plugin id 999, expected 27182"]
    assert [d["fields"]["linux.args"] for d in lines if "fields" in d] == [["fd=1"]]
    assert rc == 1        # the host reports the failures, after going through every event


def test_plugin_id_is_the_documented_one():
    assert PLUGIN_ID == 27182
    assert len({f.name for f in FIELDS}) == len(FIELDS)
