"""Invariants of the syscall table (lbd/syscall_table.json, lbd/syscalls.py) and its generator."""
from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from lbd import flags, record, syscalls
from lbd.syscalls import BY_NAME, BY_NR, TABLE, lookup

ROOT = Path(__file__).resolve().parents[2]
GEN_PATH = ROOT / "tools" / "gen_syscalls.py"
LIVE_UNISTD = Path("/usr/include/x86_64-linux-gnu/asm/unistd_64.h")


def _load_gen():
    spec = importlib.util.spec_from_file_location("gen_syscalls", GEN_PATH)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod  # dataclasses look their module up there
    spec.loader.exec_module(mod)
    return mod


gen = _load_gen()


def _unistd(text: str) -> dict[str, int]:
    return {m[1]: int(m[2]) for m in re.finditer(r"^#define __NR_(\w+)\s+(\d+)\s*$", text, re.M)}


def _tracefs_events() -> Path:
    """The live syscalls event directory, or skip (fail under LBD_REQUIRE_BPF=1)."""
    for base in (Path("/sys/kernel/tracing"), Path("/sys/kernel/debug/tracing")):
        d = base / "events" / "syscalls"
        try:
            if any(d.glob("sys_enter_*")) and (d / "sys_enter_openat" / "format").read_text():
                return d
        except OSError:
            continue
    reason = ("tracefs syscall events are not readable (mount tracefs at /sys/kernel/tracing "
              "and run as root)")
    if os.environ.get("LBD_REQUIRE_BPF") == "1":
        pytest.fail(reason + "; LBD_REQUIRE_BPF=1 requires them")
    pytest.skip(reason)


# --- numbers -------------------------------------------------------------------------------------
def test_numbers_match_the_snapshot_header():
    header = _unistd((ROOT / "tools" / "data" / "unistd_64.h").read_text())
    assert len(header) == 362
    for name, nr in header.items():
        assert BY_NR[nr].name == name, (name, nr)


def test_numbers_match_the_installed_header():
    if not LIVE_UNISTD.is_file():
        pytest.skip(f"{LIVE_UNISTD} not installed (Debian package linux-libc-dev)")
    header = _unistd(LIVE_UNISTD.read_text())
    assert header, "no __NR_ defines found"
    for name, nr in header.items():
        assert nr in BY_NR, f"__NR_{name} {nr} missing from the table"
        assert BY_NR[nr].name == name, (name, nr, BY_NR[nr].name)


def test_table_covers_every_x86_64_number_once_sorted():
    nrs = [s.nr for s in TABLE]
    assert nrs == sorted(nrs) and len(set(nrs)) == len(nrs)
    assert set(nrs) == set(range(0, 337)) | set(range(424, 471))
    names = [s.name for s in TABLE]
    assert len(set(names)) == len(names)


@pytest.mark.parametrize("nr,name", [
    (335, "uretprobe"), (336, "uprobe"), (451, "cachestat"), (452, "fchmodat2"),
    (453, "map_shadow_stack"), (454, "futex_wake"), (455, "futex_wait"), (456, "futex_requeue"),
    (457, "statmount"), (458, "listmount"), (459, "lsm_get_self_attr"),
    (460, "lsm_set_self_attr"), (461, "lsm_list_modules"), (462, "mseal"), (463, "setxattrat"),
    (464, "getxattrat"), (465, "listxattrat"), (466, "removexattrat"), (467, "open_tree_attr"),
    (468, "file_getattr"), (469, "file_setattr"), (470, "listns"),
])
def test_numbers_newer_than_the_header(nr, name):
    assert BY_NR[nr].name == name
    assert BY_NR[nr].implemented


@pytest.mark.parametrize("name,entry", [
    ("stat", "newstat"), ("fstat", "newfstat"), ("lstat", "newlstat"), ("uname", "newuname"),
    ("sendfile", "sendfile64"), ("umount2", "umount"), ("openat", "openat"),
])
def test_entry_points(name, entry):
    sc = lookup(name)
    assert sc.entry == entry
    assert sc.tracepoint == entry
    assert BY_NAME[entry] is sc


UNIMPLEMENTED = {
    "create_module", "get_kernel_syms", "query_module", "nfsservctl", "getpmsg", "putpmsg",
    "afs_syscall", "tuxcall", "security", "set_thread_area", "get_thread_area", "lookup_dcookie",
    "epoll_ctl_old", "epoll_wait_old", "vserver", "uselib", "_sysctl",
}


def test_unimplemented_exactly():
    assert {s.name for s in TABLE if not s.implemented} == UNIMPLEMENTED
    for name in UNIMPLEMENTED:
        sc = lookup(name)
        assert sc.tracepoint is None and not sc.default and sc.entry == name


def test_noreturn_exactly_exit_and_exit_group():
    assert {s.name for s in TABLE if s.noreturn} == {"exit", "exit_group"}


SEED_MISSING = [
    "uname", "uselib", "_sysctl", "get_kernel_syms", "query_module", "nfsservctl", "getpmsg",
    "putpmsg", "afs_syscall", "tuxcall", "security", "set_thread_area", "get_thread_area",
    "lookup_dcookie", "vserver", "landlock_create_ruleset", "landlock_add_rule",
    "landlock_restrict_self",
]


@pytest.mark.parametrize("name", SEED_MISSING)
def test_the_seeds_missing_syscalls_are_described(name):
    sc = lookup(name)
    if name == "uname":
        assert (sc.nr, sc.entry, sc.tracepoint) == (63, "newuname", "newuname")
        assert [(a.name, a.kind) for a in sc.args] == [("name", "ptr")]
    elif name.startswith("landlock_"):
        assert sc.implemented and sc.tracepoint == name and sc.args
    else:
        assert not sc.implemented


def test_prototypes_from_the_man_pages():
    assert [(a.name, a.type, a.kind) for a in lookup("uselib").args] == [
        ("library", "const char *", "path")]
    assert [(a.name, a.kind) for a in lookup("init_module").args] == [
        ("module_image", "buf"), ("len", "uint"), ("param_values", "str")]
    assert lookup("init_module").args[0].len_arg == 1
    assert [(a.name, a.kind) for a in lookup("kexec_file_load").args] == [
        ("kernel_fd", "fd"), ("initrd_fd", "fd"), ("cmdline_len", "uint"), ("cmdline", "str"),
        ("flags", "hex")]
    assert [a.name for a in lookup("set_thread_area").args] == ["u_info"]
    assert lookup("afs_syscall").args == ()


# --- the live kernel -----------------------------------------------------------------------------
def _format_fields(text: str) -> list[str]:
    return [name for _, name in gen.parse_format(text)]


def test_every_live_tracepoint_is_in_the_table_with_its_arguments():
    events = _tracefs_events()
    by_tp = {s.tracepoint: s for s in TABLE if s.tracepoint}
    entries = {s.entry: s for s in TABLE}
    seen = 0
    for ev in sorted(events.glob("sys_enter_*")):
        tp = ev.name[len("sys_enter_"):]
        sc = by_tp.get(tp) or entries.get(tp)
        assert sc is not None, f"tracepoint syscalls:{ev.name} has no table entry"
        live = _format_fields((ev / "format").read_text())
        assert [a.name for a in sc.args] == live, f"{sc.name}: arguments differ from {ev}/format"
        seen += 1
    assert seen >= 300


def test_every_tracepoint_of_the_table_exists_on_the_live_kernel():
    events = _tracefs_events()
    live = {p.name[len("sys_enter_"):] for p in events.glob("sys_enter_*")}
    snapshot_release = json.loads(syscalls.TABLE_PATH.read_text())["sources"]["tracefs_kernel"]
    # the same kernel version in another build (6.18.44-fc-v595, 6.18.44-fc-v1252) has the same syscalls
    if os.uname().release.split("-")[0] != snapshot_release.split("-")[0]:
        pytest.skip(f"the table's tracepoints come from kernel {snapshot_release}, this is "
                    f"{os.uname().release}")
    assert {s.tracepoint for s in TABLE if s.tracepoint} == live


# --- arguments -----------------------------------------------------------------------------------
INTEGERISH = {"int", "uint", "out_int"}


def test_every_argument_is_well_formed():
    for sc in TABLE:
        assert len(sc.args) <= record.MAX_ARGS
        names = [a.name for a in sc.args]
        assert len(set(names)) == len(names), sc.name
        for i, a in enumerate(sc.args):
            where = f"{sc.name}.{a.name}"
            assert a.kind in record.KINDS and a.kind != "none", where
            assert a.kind_id == record.KINDS[a.kind], where
            assert a.bits in (32, 64), where
            assert a.type, where
            if a.kind_id in record.LEN_KINDS:
                assert a.len_arg is not None and 0 <= a.len_arg < len(sc.args), where
                assert a.len_arg != i, where
                target = sc.args[a.len_arg]
                assert target.kind in INTEGERISH, f"{where}: length {target.name} is {target.kind}"
                if a.kind == "out_sockaddr":
                    assert target.kind == "out_int", where
            elif a.kind_id in record.SIZED_KINDS:
                assert a.size and a.size % 8 == 0 and a.size <= 2040, where
                assert a.len_arg is None or sc.args[a.len_arg].kind in INTEGERISH, where
            else:
                assert a.len_arg is None, where
            assert (a.layout is not None) == (a.kind in ("struct", "out_struct")), where
            if a.kind == "flags":
                assert a.flags in flags.FLAG_SETS, where
            else:
                assert a.flags is None, where
            if "*" in a.type:
                assert a.bits == 64, where
            if a.kind in ("fd", "dirfd", "pid", "uid", "gid"):
                assert a.bits == 32, where


def test_bits_follow_the_c_type():
    assert [a.bits for a in lookup("openat").args] == [32, 64, 32, 32]
    assert [a.bits for a in lookup("mmap").args] == [64, 64, 64, 64, 32, 64]  # unsigned long fd
    assert [a.bits for a in lookup("ptrace").args] == [64, 32, 64, 64]        # long pid
    assert lookup("readv").args[0].bits == 32
    assert [a.bits for a in lookup("lseek").args] == [32, 64, 32]
    assert [a.bits for a in lookup("chown").args] == [64, 32, 32]
    assert lookup("kill").args[0].bits == 32
    # the decoder sign-extends from bits: AT_FDCWD passed in a 64-bit register reads -100
    dfd = lookup("openat").args[0]
    raw = 0xFFFFFF9C
    sign = 1 << (dfd.bits - 1)
    assert ((raw & ((1 << dfd.bits) - 1)) ^ sign) - sign == -100


def _a(name, kind, len_arg=None, fl=None):
    return (name, kind, len_arg, fl)


EXPECTED = {
    "openat": [_a("dfd", "dirfd"), _a("filename", "path"), _a("flags", "flags", fl="open_flags"),
               _a("mode", "mode")],
    "open": [_a("filename", "path"), _a("flags", "flags", fl="open_flags"), _a("mode", "mode")],
    "creat": [_a("pathname", "path"), _a("mode", "mode")],
    "openat2": [_a("dfd", "dirfd"), _a("filename", "path"), _a("how", "struct", 3), _a("usize", "uint")],
    "unlinkat": [_a("dfd", "dirfd"), _a("pathname", "path"), _a("flag", "flags", fl="at_flags")],
    "renameat2": [_a("olddfd", "dirfd"), _a("oldname", "path"), _a("newdfd", "dirfd"),
                  _a("newname", "path"), _a("flags", "flags", fl="rename_flags")],
    "read": [_a("fd", "fd"), _a("buf", "out_buf", 2), _a("count", "uint")],
    "pread64": [_a("fd", "fd"), _a("buf", "out_buf", 2), _a("count", "uint"), _a("pos", "int")],
    "write": [_a("fd", "fd"), _a("buf", "buf", 2), _a("count", "uint")],
    "close": [_a("fd", "fd")],
    "dup": [_a("fildes", "fd")],
    "dup2": [_a("oldfd", "fd"), _a("newfd", "fd")],
    "dup3": [_a("oldfd", "fd"), _a("newfd", "fd"), _a("flags", "flags", fl="dup3_flags")],
    "pipe": [_a("fildes", "out_fd2")],
    "pipe2": [_a("fildes", "out_fd2"), _a("flags", "flags", fl="pipe2_flags")],
    "socketpair": [_a("family", "flags", fl="socket_family"),
                   _a("type", "flags", fl="socket_type"), _a("protocol", "int"),
                   _a("usockvec", "out_fd2")],
    "clone": [_a("clone_flags", "flags", fl="clone_flags"), _a("newsp", "ptr"),
              _a("parent_tidptr", "ptr"), _a("child_tidptr", "ptr"), _a("tls", "hex")],
    "clone3": [_a("uargs", "struct", 1), _a("size", "uint")],
    "execve": [_a("filename", "path"), _a("argv", "strarr"), _a("envp", "strarr")],
    "execveat": [_a("fd", "dirfd"), _a("filename", "path"), _a("argv", "strarr"),
                 _a("envp", "strarr"), _a("flags", "flags", fl="at_flags")],
    "exit": [_a("error_code", "int")],
    "exit_group": [_a("error_code", "int")],
    "kill": [_a("pid", "pid"), _a("sig", "flags", fl="signal")],
    "tkill": [_a("pid", "pid"), _a("sig", "flags", fl="signal")],
    "tgkill": [_a("tgid", "pid"), _a("pid", "pid"), _a("sig", "flags", fl="signal")],
    "socket": [_a("family", "flags", fl="socket_family"), _a("type", "flags", fl="socket_type"),
               _a("protocol", "flags", fl="socket_protocol")],
    "connect": [_a("fd", "fd"), _a("uservaddr", "sockaddr", 2), _a("addrlen", "int")],
    "bind": [_a("fd", "fd"), _a("umyaddr", "sockaddr", 2), _a("addrlen", "int")],
    "accept": [_a("fd", "fd"), _a("upeer_sockaddr", "out_sockaddr", 2),
               _a("upeer_addrlen", "out_int")],
    "accept4": [_a("fd", "fd"), _a("upeer_sockaddr", "out_sockaddr", 2),
                _a("upeer_addrlen", "out_int"), _a("flags", "flags", fl="socket_type")],
    "getsockname": [_a("fd", "fd"), _a("usockaddr", "out_sockaddr", 2),
                    _a("usockaddr_len", "out_int")],
    "getpeername": [_a("fd", "fd"), _a("usockaddr", "out_sockaddr", 2),
                    _a("usockaddr_len", "out_int")],
    "sendto": [_a("fd", "fd"), _a("buff", "buf", 2), _a("len", "uint"),
               _a("flags", "flags", fl="msg_flags"), _a("addr", "sockaddr", 5),
               _a("addr_len", "int")],
    "recvfrom": [_a("fd", "fd"), _a("ubuf", "out_buf", 2), _a("size", "uint"),
                 _a("flags", "flags", fl="msg_flags"), _a("addr", "out_sockaddr", 5),
                 _a("addr_len", "out_int")],
    "setuid": [_a("uid", "uid")],
    "setgid": [_a("gid", "gid")],
    "setresuid": [_a("ruid", "uid"), _a("euid", "uid"), _a("suid", "uid")],
    "setresgid": [_a("rgid", "gid"), _a("egid", "gid"), _a("sgid", "gid")],
    "chmod": [_a("filename", "path"), _a("mode", "mode")],
    "fchmodat": [_a("dfd", "dirfd"), _a("filename", "path"), _a("mode", "mode")],
    "chown": [_a("filename", "path"), _a("user", "uid"), _a("group", "gid")],
    "lchown": [_a("filename", "path"), _a("user", "uid"), _a("group", "gid")],
    "fchownat": [_a("dfd", "dirfd"), _a("filename", "path"), _a("user", "uid"),
                 _a("group", "gid"), _a("flag", "flags", fl="at_flags")],
    "mmap": [_a("addr", "hex"), _a("len", "uint"), _a("prot", "flags", fl="mmap_prot"),
             _a("flags", "flags", fl="mmap_flags"), _a("fd", "fd"), _a("off", "uint")],
    "mprotect": [_a("start", "hex"), _a("len", "uint"), _a("prot", "flags", fl="mmap_prot")],
    "getcwd": [_a("buf", "out_buf", 1), _a("size", "uint")],
    "readlink": [_a("path", "path"), _a("buf", "out_buf", 2), _a("bufsiz", "int")],
    "readlinkat": [_a("dfd", "dirfd"), _a("pathname", "path"), _a("buf", "out_buf", 3),
                   _a("bufsiz", "int")],
    "mkdir": [_a("pathname", "path"), _a("mode", "mode")],
    "mkdirat": [_a("dfd", "dirfd"), _a("pathname", "path"), _a("mode", "mode")],
    "rmdir": [_a("pathname", "path")],
    "link": [_a("oldname", "path"), _a("newname", "path")],
    "linkat": [_a("olddfd", "dirfd"), _a("oldname", "path"), _a("newdfd", "dirfd"),
               _a("newname", "path"), _a("flags", "flags", fl="at_flags")],
    "symlink": [_a("oldname", "path"), _a("newname", "path")],
    "symlinkat": [_a("oldname", "path"), _a("newdfd", "dirfd"), _a("newname", "path")],
    "chdir": [_a("filename", "path")],
    "chroot": [_a("filename", "path")],
    "mount": [_a("dev_name", "path"), _a("dir_name", "path"), _a("type", "str"),
              _a("flags", "flags", fl="mount_flags"), _a("data", "str")],
    "umount2": [_a("name", "path"), _a("flags", "flags", fl="umount_flags")],
    "ptrace": [_a("request", "flags", fl="ptrace_request"), _a("pid", "pid"), _a("addr", "hex"),
               _a("data", "hex")],
    "prctl": [_a("option", "flags", fl="prctl_option"), _a("arg2", "flags", fl="prctl_arg2"),
              _a("arg3", "flags", fl="prctl_arg3"),
              _a("arg4", "hex"), _a("arg5", "hex")],
    "fcntl": [_a("fd", "fd"), _a("cmd", "flags", fl="fcntl_cmd"), _a("arg", "hex")],
    "lseek": [_a("fd", "fd"), _a("offset", "int"), _a("whence", "flags", fl="seek_whence")],
    "access": [_a("filename", "path"), _a("mode", "flags", fl="access_mode")],
    "faccessat": [_a("dfd", "dirfd"), _a("filename", "path"),
                  _a("mode", "flags", fl="access_mode")],
}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_argument_kinds(name):
    got = [(a.name, a.kind, a.len_arg, a.flags) for a in lookup(name).args]
    assert got == EXPECTED[name]


# --- selection -----------------------------------------------------------------------------------
def test_default_selection():
    sel = {BY_NR[nr].name for nr in syscalls.default_selection()}
    must = {
        "open", "openat", "openat2", "creat", "unlink", "unlinkat", "rename", "renameat2",
        "link", "symlink", "chmod", "fchmodat", "chown", "fchownat", "truncate", "mount",
        "umount2", "clone", "clone3", "fork", "vfork", "execve", "execveat", "exit",
        "exit_group", "kill", "tkill", "tgkill", "ptrace", "setuid", "setresuid", "setgid",
        "capset", "prctl", "unshare", "setns", "init_module", "finit_module", "delete_module",
        "kexec_load", "kexec_file_load", "bpf", "memfd_create", "pidfd_open", "socket",
        "connect", "bind", "listen", "accept", "accept4", "sendto", "socketpair", "shutdown",
        "close", "close_range", "dup", "dup2", "dup3", "pipe", "pipe2", "fcntl",
    }
    assert must <= sel, must - sel
    noise = {
        "read", "write", "futex", "poll", "ppoll", "epoll_wait", "epoll_pwait", "select",
        "pselect6", "clock_gettime", "clock_nanosleep", "nanosleep", "mmap", "munmap", "brk",
        "madvise", "getpid", "getuid", "geteuid", "gettid", "recvfrom",
    }
    assert not (noise & sel), noise & sel
    assert all(BY_NR[nr].implemented for nr in syscalls.default_selection())
    assert syscalls.default_selection() == frozenset(s.nr for s in TABLE if s.default)


# --- API -----------------------------------------------------------------------------------------
def test_lookup():
    assert lookup("uname") is lookup("newuname") is lookup(63) is lookup("63") is BY_NR[63]
    assert lookup("stat").nr == 4
    with pytest.raises(KeyError, match="unknown syscall name 'nosuchcall'"):
        lookup("nosuchcall")
    with pytest.raises(KeyError, match="no x86_64 syscall number 400"):
        lookup(400)
    with pytest.raises(KeyError, match="not a syscall name or number"):
        lookup(2.0)


def test_to_json_list():
    rows = syscalls.to_json_list()
    assert len(rows) == len(TABLE)
    connect = next(r for r in rows if r["name"] == "connect")
    assert connect == {
        "name": "connect", "nr": 42, "implemented": True, "selected": True,
        "args": [{"name": "fd", "kind": "fd"},
                 {"name": "uservaddr", "kind": "sockaddr", "len_arg": 2},
                 {"name": "addrlen", "kind": "int"}],
    }
    kill = next(r for r in rows if r["name"] == "kill")
    assert kill["args"][1] == {"name": "sig", "kind": "flags", "flags": "signal"}
    assert [r["nr"] for r in rows if r["selected"]] == sorted(syscalls.default_selection())
    rows = syscalls.to_json_list(frozenset({0}))
    assert [r["name"] for r in rows if r["selected"]] == ["read"]
    json.dumps(rows)


def test_loader_rejects_a_bad_table(tmp_path):
    doc = json.loads(syscalls.TABLE_PATH.read_text())
    doc["syscalls"][0]["args"][0]["kind"] = "nonsense"
    bad = tmp_path / "t.json"
    bad.write_text(json.dumps(doc))
    with pytest.raises(ValueError, match="read.fd: unknown kind 'nonsense'"):
        syscalls._load(bad)
    doc["syscalls"][0]["args"][0]["kind"] = "flags"
    bad.write_text(json.dumps(doc))
    with pytest.raises(ValueError, match="read.fd: flag set None"):
        syscalls._load(bad)


# --- the generator -------------------------------------------------------------------------------
def test_generated_files_say_so():
    doc = json.loads(syscalls.TABLE_PATH.read_text())
    assert next(iter(doc)) == "_generated"
    assert doc["_generated"] == "GENERATED by tools/gen_syscalls.py, do not edit"
    assert doc["count"] == len(doc["syscalls"]) == len(TABLE)
    interesting = json.loads((ROOT / "json_config" / "interesting_syscalls.json").read_text())
    assert "GENERATED by tools/gen_syscalls.py" in interesting["_comment"]


def test_regenerating_changes_nothing():
    assert gen.stale_outputs() == []


def test_check_mode_is_clean_from_anywhere(tmp_path):
    env = dict(os.environ, PYTHONHASHSEED="12345", LC_ALL="C", TZ="Pacific/Apia")
    r = subprocess.run([sys.executable, str(GEN_PATH), "--check"], cwd=tmp_path, env=env,
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr


def test_check_mode_detects_a_change(tmp_path, monkeypatch):
    out = tmp_path / "syscall_table.json"
    out.write_text(syscalls.TABLE_PATH.read_text().replace('"nr": 0,', '"nr": 0, ', 1))
    monkeypatch.setattr(gen, "TABLE_OUT", out)
    monkeypatch.setattr(gen, "INTERESTING_OUT", ROOT / "json_config" / "interesting_syscalls.json")
    assert gen.stale_outputs() == [out]
    assert gen.main(["--check"]) == 1


def test_render_is_pure():
    data = gen.read_inputs()
    assert gen.render(data) == gen.render(dict(data))


def test_generator_rejects_bad_overrides(monkeypatch):
    data = gen.read_inputs()
    monkeypatch.setitem(gen.KIND_OVERRIDES, "openat", {"nosucharg": "fd"})
    with pytest.raises(SystemExit, match="openat"):
        gen.render(data)
    monkeypatch.setitem(gen.KIND_OVERRIDES, "openat", {"flags": "flags:nosuchset"})
    with pytest.raises(SystemExit, match="unknown flag set 'nosuchset'"):
        gen.render(data)
    monkeypatch.setitem(gen.KIND_OVERRIDES, "openat", {"flags": "buf"})
    with pytest.raises(SystemExit, match="length argument"):
        gen.render(data)


def test_parse_format():
    text = (
        "name: sys_enter_openat\nID: 1\nformat:\n"
        "\tfield:unsigned short common_type;\toffset:0;\tsize:2;\tsigned:0;\n"
        "\tfield:int __syscall_nr;\toffset:8;\tsize:4;\tsigned:1;\n"
        "\tfield:int dfd;\toffset:16;\tsize:8;\tsigned:0;\n"
        "\tfield:const char * filename;\toffset:24;\tsize:8;\tsigned:0;\n"
        "\tfield:struct robust_list_head * * head_ptr;\toffset:32;\tsize:8;\tsigned:0;\n\n"
        'print fmt: "dfd: 0x%08lx"\n'
    )
    assert gen.parse_format(text) == [
        ("int", "dfd"), ("const char *", "filename"), ("struct robust_list_head * *", "head_ptr")]


def test_roff_synopsis_to_c():
    lines = [
        '.BI "int syscall(SYS_init_module, void " module_image [. len "], '
        'unsigned long " len ,',
        '.BI "            const char *" param_values );',
        ".PP",
        '.BI "[[deprecated]] int uselib(const char *" library );',
    ]
    flat = " ".join(gen._roff_text(lines).split())
    assert "syscall(SYS_init_module, void module_image[.len], unsigned long len, " \
           "const char *param_values);" in flat
    assert "int uselib(const char *library);" in flat


def test_type_bits():
    assert gen.type_bits("const char *const *") == 64
    assert gen.type_bits("umode_t") == 32
    assert gen.type_bits("const enum landlock_rule_type") == 32
    assert gen.type_bits("loff_t") == 64
    with pytest.raises(SystemExit, match="unknown C type"):
        gen.type_bits("struct foo")
