"""lbd.config: defaults, sources, every limit, error messages, immutability, schema."""
from __future__ import annotations

import dataclasses
import json
import os
import pickle

import jsonschema
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lbd import config as C
from lbd.config import (
    DESCRIPTIONS,
    INIT_KEYS,
    OPEN_KEYS,
    Config,
    ConfigError,
    InitConfig,
    OpenParams,
    coerce,
    init_schema,
    open_params_list,
)

DEFAULT_JSON = os.path.join(os.path.dirname(C.__file__), "default_config.json")


def raises(*fragments, fn, **kw):
    """Call fn(**kw), expect ConfigError, check every fragment appears in the message."""
    with pytest.raises(ConfigError) as ei:
        fn(**kw) if kw else fn()
    msg = str(ei.value)
    for f in fragments:
        assert f in msg, f"{f!r} not in {msg!r}"
    return msg


def bad(*fragments, **changes):
    """A replace() on the defaults must fail with a message holding every fragment."""
    return raises(*fragments, fn=Config.default().replace, **changes)


# ---------------------------------------------------------------------------- table and defaults

def test_key_tables():
    assert INIT_KEYS[:7] == ("rich_value_size", "str_max_size", "putfile", "path", "format",
                             "log_level", "log_file")
    assert INIT_KEYS[7:] == ("batch_size", "batch_timeout_ms", "consumers", "merge_window_us", "python_home",
                             "spool_dir", "spool_max_bytes", "secret_pattern", "rotate_size", "rotate_keep")
    assert OPEN_KEYS[:7] == ("filter_own", "filter_falco", "filter_pids", "filter_comms", "drop_mode",
                             "drop_failed", "interest_syscall_file")
    assert OPEN_KEYS[7:] == ("ring_size", "cpus_per_ring", "loader", "track_state", "follow", "only_tids",
                             "filter_uids", "only_uids", "failed_only", "capture_env", "syscall_stats",
                             "str_max", "buf_max", "argv_max", "emit_enter", "wake_bytes", "only_pids",
                             "only_comms", "syscalls", "filter", "path_prefixes")
    assert not set(INIT_KEYS) & set(OPEN_KEYS)
    assert set(DESCRIPTIONS) == set(INIT_KEYS) | set(OPEN_KEYS)
    assert all(DESCRIPTIONS.values())
    assert [f.name for f in dataclasses.fields(InitConfig)] == list(INIT_KEYS)
    assert [f.name for f in dataclasses.fields(OpenParams)] == list(OPEN_KEYS)


def test_defaults():
    c = Config.default()
    assert c.init == InitConfig(
        rich_value_size=65536, str_max_size=1024, putfile=False, path="/var/log/lbd/events.log",
        format="normal", log_level="INFO", log_file="", batch_size=512, batch_timeout_ms=30,
        consumers=1, merge_window_us=1000, python_home="", spool_dir="/var/lib/lbd/spool",
        spool_max_bytes=1 << 30, secret_pattern="*TOKEN*|*SECRET*|*PASSWORD*|*KEY*", rotate_size=0, rotate_keep=5)
    assert c.open == OpenParams(
        filter_own=True, filter_falco=True, filter_pids=(), filter_comms=(), drop_mode=False,
        drop_failed=False, interest_syscall_file="", ring_size=8 << 20, cpus_per_ring=1, loader="auto",
        track_state=True, follow=False, only_tids=(), filter_uids=(), only_uids=(), failed_only=False,
        capture_env=False, syscall_stats=False, str_max=256, buf_max=32,
        argv_max=16, emit_enter=False, wake_bytes=0, only_pids=(), only_comms=(), syscalls=(), filter="",
        path_prefixes=())
    assert c.open.wake_threshold == (8 << 20) // 4
    assert Config.default() is Config.default()  # cached: immutable, so sharing is safe


def test_default_file_is_complete_and_the_source_of_defaults():
    with open(DEFAULT_JSON) as f:
        doc = json.load(f)
    assert list(doc["init_config"]) == list(INIT_KEYS)
    assert list(doc["open_params"]) == list(OPEN_KEYS)
    assert Config.default().to_dict() == doc


def test_docstring_documents_every_key_and_default():
    lines = C.__doc__.splitlines()
    defaults = Config.default().to_dict()
    for section in ("init_config", "open_params"):
        for key, value in defaults[section].items():
            i = next(i for i, ln in enumerate(lines) if ln.split()[:1] == [key])
            near = " ".join(lines[i:i + 3])  # the default may sit on a continuation line
            assert json.dumps(value) in near, (key, value)


def test_getattr_delegates():
    c = Config.default()
    assert c.str_max_size == c.init.str_max_size == 1024
    assert c.filter_pids == c.open.filter_pids == ()
    with pytest.raises(AttributeError):
        c.no_such_key  # noqa: B018
    assert "ring_size" in dir(c)


def test_pickle_and_hash():
    c = Config.default().replace(filter_pids=[3, 4])
    assert pickle.loads(pickle.dumps(c)) == c
    assert hash(c) == hash(Config.default().replace(filter_pids=(3, 4)))


# ---------------------------------------------------------------------------- sources

def test_json_file(tmp_path):
    p = tmp_path / "lbd.json"
    p.write_text(json.dumps({"init_config": {"format": "json", "putfile": "true"},
                             "open_params": {"filter_pids": [1, 2], "drop_failed": True}}))
    c = Config.from_file(p)
    assert (c.format, c.putfile, c.filter_pids, c.drop_failed) == ("json", True, (1, 2), True)
    assert c.str_max_size == 1024  # missing keys are defaults
    assert Config.from_file(str(p)) == c


def test_yaml_file(tmp_path):
    p = tmp_path / "lbd.yaml"
    p.write_text("init_config:\n  log_level: DEBUG\n  putfile: false\n"
                 "open_params:\n  filter_comms: [sshd, cron]\n  ring_size: 0x1000000\n"
                 "  drop_mode: \"true\"\n")
    c = Config.from_file(p)
    assert (c.log_level, c.putfile, c.filter_comms, c.ring_size, c.drop_mode) == (
        "DEBUG", False, ("sshd", "cron"), 16 << 20, True)
    q = tmp_path / "lbd.yml"
    q.write_text("open_params:\n  drop_failed: true\n")  # one section only
    assert Config.from_file(q).drop_failed is True


@pytest.mark.parametrize("name,text", [
    ("empty.json", ""), ("blank.json", " \n"), ("empty.yaml", ""), ("nulls.yaml", "init_config:\n"),
    ("empty-sections.json", '{"init_config": {}, "open_params": {}}'),
])
def test_empty_files_are_defaults(tmp_path, name, text):
    p = tmp_path / name
    p.write_text(text)
    assert Config.from_file(p) == Config.default()


def test_yaml_words_are_not_booleans(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("open_params:\n  drop_failed: yes\n")
    raises(str(p), "open_params.drop_failed", "'yes'", '"true" or "false"', fn=Config.from_file, path=p)
    p.write_text("open_params:\n  drop_failed: True\n")
    raises("open_params.drop_failed", "'True'", fn=Config.from_file, path=p)


@pytest.mark.parametrize("s", ["", "   ", "\n\t ", "{}", " {} ", "null"])
def test_plugin_strings_meaning_defaults(s):
    assert Config.from_plugin(s, s) == Config.default()
    assert Config.from_plugin(s.encode(), s.encode()) == Config.default()


def test_plugin_strings():
    c = Config.from_plugin('{"putfile": "true", "path": "/tmp/e.log", "format": "json"}',
                           '{"filter_own": "false", "drop_failed": "true", "filter_pids": [7]}')
    assert (c.putfile, c.path, c.format) == (True, "/tmp/e.log", "json")
    assert (c.filter_own, c.drop_failed, c.filter_pids) == (False, True, (7,))
    assert Config.from_plugin(*c.plugin_strings()) == c


def test_with_open_params_keeps_init_and_resets_open():
    c = Config.from_plugin('{"log_level": "ERROR"}', '{"filter_pids": [5], "drop_failed": true}')
    d = c.with_open_params('{"drop_mode": "true"}')
    assert d.init is c.init
    assert (d.drop_mode, d.drop_failed, d.filter_pids) == (True, False, ())
    assert c.with_open_params("").open == Config.default().open
    raises("open_params.ring_size", fn=c.with_open_params, open_params_json='{"ring_size": 3}')


def test_from_dict_sectioned_and_flat():
    a = Config.from_dict({"init_config": {"batch_size": 64}, "open_params": {"emit_enter": True}})
    b = Config.from_dict({"batch_size": 64, "emit_enter": True})
    assert a == b and a.batch_size == 64 and a.emit_enter is True
    assert Config.from_dict({}) == Config.default()
    assert Config.from_dict({"init_config": None}) == Config.default()


def test_coerce(tmp_path):
    assert coerce(None) == Config.default()
    c = Config.default().replace(argv_max=3)
    assert coerce(c) is c
    assert coerce({"argv_max": 3}) == c
    p = tmp_path / "c.json"
    p.write_text(c.to_json())
    assert coerce(p) == c and coerce(str(p)) == c
    with pytest.raises(TypeError):
        coerce(42)


def test_booleans_strings():
    c = Config.default()
    for key in ("putfile", "filter_own", "filter_falco", "drop_mode", "drop_failed", "emit_enter"):
        assert getattr(c.replace(**{key: "true"}), key) is True
        assert getattr(c.replace(**{key: "false"}), key) is False
        assert getattr(c.replace(**{key: True}), key) is True
        for v in (1, 0, "yes", "True", "FALSE", "1", None, 1.0):
            bad(f".{key}", "not a boolean", '"true" or "false"', **{key: v})


def test_duplicates_collapsed_in_order():
    c = Config.default().replace(filter_pids=[3, 1, 3, 2, 1], syscalls=["read", "read", "open"],
                                 filter_comms=("a", "b", "a"))
    assert c.filter_pids == (3, 1, 2)
    assert c.syscalls == ("read", "open")
    assert c.filter_comms == ("a", "b")
    bad("65 entries, at most 64", filter_pids=[1] * 65)  # the limit counts entries as given


def test_limits_accepted_at_the_edges():
    c = Config.default().replace(
        filter_pids=list(range(63)) + [(1 << 22) - 1], filter_comms=["c" * 16] * 16,
        only_pids=[0], only_comms=["x"], path="p" * 256, log_file="l" * 256,
        interest_syscall_file="i" * 256, python_home="h" * 256, rich_value_size=(1 << 32) - 1,
        str_max_size=0, ring_size=1 << 30, wake_bytes=(1 << 30) - 1, str_max=2040, buf_max=0,
        argv_max=64, batch_size=65536, batch_timeout_ms=1, syscalls=["s" * 64] * 512)
    assert len(c.filter_pids) == 64 and c.ring_size == 1 << 30
    assert Config.default().replace(ring_size=64 << 10).ring_size == 65536


# ---------------------------------------------------------------------------- rejections

def test_malformed_json_file(tmp_path):
    p = tmp_path / "c.json"
    p.write_text('{\n  "init_config": {"format": "json",}\n}\n')
    raises(str(p), "malformed JSON", "line 2", "column", fn=Config.from_file, path=p)


def test_malformed_yaml_file(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("init_config:\n  format: [json\n")
    raises(str(p), "malformed YAML", "line 3", fn=Config.from_file, path=p)
    p.write_text("init_config:\n  format: json\n  format: normal\n")
    raises(str(p), "duplicate key 'format'", "line 3", fn=Config.from_file, path=p)


@pytest.mark.parametrize("which", ["init_config", "open_params"])
def test_malformed_plugin_string(which):
    args = {"init_config": "", "open_params": ""}
    args[which] = '{"x": '
    raises(f"{which}: malformed JSON at line 1, column 7", fn=Config.from_plugin, **args)
    args[which] = '{"a": 1, "a": 2}'
    raises(f"{which}: duplicate key 'a'", fn=Config.from_plugin, **args)
    args[which] = '{"str_max": NaN}'
    raises(which, "NaN", fn=Config.from_plugin, **args)
    args[which] = "[1, 2]"
    raises(which, "an array, expected a mapping", fn=Config.from_plugin, **args)


def test_unknown_key_with_suggestion(tmp_path):
    bad("filter_pid: unknown key", "did you mean 'filter_pids'", filter_pid=[1])
    raises("open_params.ring_sise: unknown key", "did you mean 'ring_size'",
           fn=Config.from_plugin, init_config="", open_params='{"ring_sise": 65536}')
    raises("init_config.filter_pids", "belongs in open_params",
           fn=Config.from_plugin, init_config='{"filter_pids": []}', open_params="")
    raises("zzz: unknown key", "known keys", fn=Config.from_dict, d={"zzz": 1})
    raises("extra: unknown top-level key", fn=Config.from_dict, d={"init_config": {}, "extra": 1})
    p = tmp_path / "c.yaml"
    p.write_text("open_params:\n  drop_faild: true\n")
    raises(str(p), "open_params.drop_faild: unknown key", "did you mean 'drop_failed'",
           fn=Config.from_file, path=p)


INT_KEYS = ["rich_value_size", "str_max_size", "batch_size", "batch_timeout_ms", "ring_size",
            "str_max", "buf_max", "argv_max", "wake_bytes"]
STR_KEYS = ["path", "log_file", "python_home", "interest_syscall_file", "format", "log_level"]
ARRAY_KEYS = ["filter_pids", "filter_comms", "only_pids", "only_comms", "syscalls"]


@pytest.mark.parametrize("key", INT_KEYS)
@pytest.mark.parametrize("value,typename", [
    (True, "a boolean"), (1.0, "a float"), ("12", "a string"), (None, "null"), ([1], "an array")])
def test_int_keys_reject_other_types(key, value, typename):
    msg = bad(f".{key}: ", typename, "expected an integer", **{key: value})
    assert ".." in msg  # the range is named


@pytest.mark.parametrize("key", STR_KEYS)
@pytest.mark.parametrize("value", [1, True, None, ["a"], {"a": 1}])
def test_string_keys_reject_other_types(key, value):
    bad(f".{key}: ", **{key: value})


@pytest.mark.parametrize("key", ARRAY_KEYS)
@pytest.mark.parametrize("value,typename", [
    ("1,2", "a string"), (5, "an integer"), ({"a": 1}, "a mapping")])
def test_array_keys_reject_other_types(key, value, typename):
    bad(f".{key}: ", typename, "expected an array of at most", **{key: value})


@pytest.mark.parametrize("key", ["filter_pids", "only_pids"])
def test_pid_limits(key):
    bad(f"open_params.{key}: 65 entries, at most 64 allowed", **{key: list(range(65))})
    bad(f"open_params.{key}[0]: 4194304 is out of range 0..4194303", **{key: [1 << 22]})
    bad(f"open_params.{key}[1]: -1 is out of range 0..4194303", **{key: [1, -1]})
    bad(f"open_params.{key}[0]: '5' is a string, expected an integer", **{key: ["5"]})
    bad(f"open_params.{key}[0]: true is a boolean", **{key: [True]})


@pytest.mark.parametrize("key", ["filter_comms", "only_comms"])
def test_comm_limits(key):
    bad(f"open_params.{key}: 17 entries, at most 16 allowed", **{key: [f"c{i}" for i in range(17)]})
    bad(f"open_params.{key}[0]: 'abcdefghijklmnopq' is 17 bytes long, at most 16 allowed",
        **{key: ["abcdefghijklmnopq"]})
    bad(f"open_params.{key}[1]: '' is empty, 1..16 bytes required", **{key: ["ok", ""]})
    bad(f"open_params.{key}[0]: 'ééééééééé' is 18 bytes long", **{key: ["é" * 9]})  # 9 chars, 18 bytes
    bad(f"open_params.{key}[0]: 3 is an integer, expected a string", **{key: [3]})


def test_syscalls_limits():
    bad("open_params.syscalls: 513 entries, at most 512 allowed", syscalls=[f"s{i}" for i in range(513)])
    bad("open_params.syscalls[0]: '' is empty, 1..64 characters required", syscalls=[""])
    bad("open_params.syscalls[0]:", "65 characters long, at most 64 allowed", syscalls=["s" * 65])


@pytest.mark.parametrize("key", ["path", "log_file", "interest_syscall_file", "python_home"])
def test_path_length(key):
    msg = bad(f".{key}: 'ppp", "257 characters long, at most 256 allowed", **{key: "p" * 257})
    assert len(msg) < 200  # the long value is shortened in the message
    bad(f".{key}:", "NUL", **{key: "a\0b"})


def test_enums():
    bad("init_config.log_level: 'debug' is not one of DEBUG, INFO, WARNING, ERROR, FATAL", log_level="debug")
    bad("init_config.format: 'xml' is not one of normal, json, parquet", format="xml")
    for level in ("DEBUG", "INFO", "WARNING", "ERROR", "FATAL"):
        assert Config.default().replace(log_level=level).log_level == level


def test_int_ranges():
    bad("init_config.rich_value_size: 4294967296 is out of range 0..4294967295", rich_value_size=1 << 32)
    bad("init_config.str_max_size: -1 is out of range 0..4294967295", str_max_size=-1)
    bad("init_config.batch_size: 0 is out of range 1..65536", batch_size=0)
    bad("init_config.batch_timeout_ms: 1001 is out of range 1..1000", batch_timeout_ms=1001)
    bad("open_params.str_max: 15 is out of range 16..2040", str_max=15)
    bad("open_params.buf_max: 1025 is out of range 0..1024", buf_max=1025)
    bad("open_params.argv_max: 65 is out of range 0..64", argv_max=65)


def test_ring_size():
    bad("open_params.ring_size: 100000 is not a power of two", "65536..1073741824", ring_size=100000)
    bad("open_params.ring_size: 32768 is out of range 65536..1073741824", ring_size=32768)
    bad("open_params.ring_size: 2147483648 is out of range 65536..1073741824", ring_size=1 << 31)
    bad("open_params.ring_size: 0 is not a power of two", ring_size=0)


def test_wake_bytes_below_ring_size():
    bad("open_params.wake_bytes: 8388608 must be less than ring_size (8388608)", wake_bytes=8 << 20)
    bad("open_params.wake_bytes: 65536 must be less than ring_size (65536)",
        ring_size=65536, wake_bytes=65536)
    c = Config.default().replace(ring_size=1 << 20, wake_bytes=4096)
    assert c.open.wake_threshold == 4096
    # shrinking the ring below the current wake_bytes is caught too
    raises("wake_bytes", "ring_size (65536)", fn=c.replace, ring_size=65536, wake_bytes=1 << 19)


def test_putfile_needs_a_path():
    bad("init_config.path: '' is empty, but putfile is true", putfile=True, path="")
    assert Config.default().replace(path="").path == ""  # fine while putfile is false


def test_unreadable_file(tmp_path, monkeypatch):
    missing = tmp_path / "nope.json"
    raises(str(missing), "cannot read", "No such file or directory", fn=Config.from_file, path=missing)
    d = tmp_path / "dir.yaml"
    d.mkdir()
    raises(str(d), "the configuration file is a directory, not a regular file", fn=Config.from_file, path=d)
    p = tmp_path / "secret.json"
    p.write_text("{}")
    if os.geteuid() != 0:
        p.chmod(0)
    else:  # root reads anything: inject the fault instead

        real_open = os.open

        def denied(name, *a, **kw):
            if os.fspath(name) == str(p):
                raise PermissionError(13, "Permission denied", name)
            return real_open(name, *a, **kw)

        monkeypatch.setattr(os, "open", denied)
    raises(str(p), "cannot read", "Permission denied", fn=Config.from_file, path=p)
    monkeypatch.undo()
    b = tmp_path / "bin.json"
    b.write_bytes(b'{"init_config": {"path": "\xff"}}')
    raises(str(b), "not UTF-8", fn=Config.from_file, path=b)


def test_unknown_file_type(tmp_path):
    p = tmp_path / "c.toml"
    p.write_text("")
    raises(str(p), "'.toml'", ".json, .yaml or .yml", fn=Config.from_file, path=p)


@pytest.mark.parametrize("name,text,what", [
    ("c.json", "[1, 2]", "an array"), ("c.json", '"x"', "a string"), ("c.json", "3", "an integer"),
    ("c.yaml", "- a\n- b\n", "an array"), ("c.yaml", "just text\n", "a string"),
])
def test_top_level_not_a_mapping(tmp_path, name, text, what):
    p = tmp_path / name
    p.write_text(text)
    raises(str(p), f"top level is {what}, expected a mapping", fn=Config.from_file, path=p)


def test_section_not_a_mapping(tmp_path):
    p = tmp_path / "c.json"
    p.write_text('{"open_params": [1]}')
    raises(str(p), "open_params: [1] is an array, expected a mapping", fn=Config.from_file, path=p)
    raises("init_config: 'x' is a string", fn=Config.from_dict, d={"init_config": "x"})


def test_all_problems_reported_together():
    with pytest.raises(ConfigError) as ei:
        Config.default().replace(format="xml", ring_size=3, filter_pids=[-1])
    assert len(ei.value.problems) == 3
    assert [p.split(":")[0] for p in ei.value.problems] == [
        "init_config.format", "open_params.filter_pids[0]", "open_params.ring_size"]
    assert isinstance(ei.value, ValueError)


def test_direct_construction_is_validated():
    good = Config.default().init
    with pytest.raises(ConfigError, match="init_config.format"):
        dataclasses.replace(good, format="xml")
    with pytest.raises(dataclasses.FrozenInstanceError):
        good.format = "json"  # type: ignore[misc]
    with pytest.raises(TypeError):
        Config({"format": "json"}, Config.default().open)  # type: ignore[arg-type]


# ---------------------------------------------------------------------------- immutability

def test_nothing_half_applied():
    c = Config.default()
    before = c.to_dict()
    with pytest.raises(ConfigError):
        c.replace(str_max_size=10, format="xml")  # one good key, one bad
    with pytest.raises(ConfigError):
        c.replace(drop_failed=True, ring_size=12345)  # same section: good then bad
    with pytest.raises(ConfigError):
        c.replace(batch_size=7, nonsense=1)
    assert c.to_dict() == before
    assert c == Config.default()
    d = c.replace(str_max_size=10)
    assert d.str_max_size == 10 and c.str_max_size == 1024 and d is not c


def test_failed_file_load_does_not_touch_the_cached_default(tmp_path):
    p = tmp_path / "c.json"
    p.write_text('{"init_config": {"batch_size": 9, "format": "xml"}}')
    with pytest.raises(ConfigError):
        Config.from_file(p)
    assert Config.default().batch_size == 512


# ---------------------------------------------------------------------------- round trips

def test_to_dict_round_trip():
    c = Config.default().replace(putfile="true", format="json", filter_pids=[9, 8],
                                 filter_comms=["bash"], syscalls=["openat"], emit_enter="true",
                                 ring_size=1 << 20, wake_bytes=100)
    d = c.to_dict()
    assert json.loads(json.dumps(d)) == d
    assert d["open_params"]["filter_pids"] == [9, 8] and d["init_config"]["putfile"] is True
    assert Config.from_dict(d) == c
    assert Config.from_dict({**d["init_config"], **d["open_params"]}) == c
    assert Config.from_plugin(json.dumps(d["init_config"]), json.dumps(d["open_params"])) == c


def test_file_round_trip(tmp_path):
    import yaml
    c = Config.default().replace(log_level="WARNING", only_comms=["nginx"], drop_failed=True)
    j = tmp_path / "c.json"
    j.write_text(c.to_json())
    y = tmp_path / "c.yaml"
    y.write_text(yaml.safe_dump(c.to_dict()))
    assert Config.from_file(j) == c == Config.from_file(y)


_pids = st.lists(st.integers(0, (1 << 22) - 1), max_size=64)
_comms = st.lists(st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7e), min_size=1, max_size=16),
                  max_size=16)


@settings(max_examples=60, deadline=None)
@given(pids=_pids, comms=_comms, str_max=st.integers(16, 2040), ring_exp=st.integers(16, 30),
       fmt=st.sampled_from(["normal", "json"]), flag=st.sampled_from([True, False, "true", "false"]))
def test_round_trip_property(pids, comms, str_max, ring_exp, fmt, flag):
    c = Config.default().replace(filter_pids=pids, only_comms=comms, str_max=str_max,
                                 ring_size=1 << ring_exp, format=fmt, drop_mode=flag)
    assert c.filter_pids == tuple(dict.fromkeys(pids))
    assert Config.from_dict(json.loads(json.dumps(c.to_dict()))) == c


# ---------------------------------------------------------------------------- schema, open params

def test_init_schema_validates_defaults_and_rejects_bad_values():
    schema = init_schema()
    jsonschema.Draft7Validator.check_schema(schema)
    assert schema["additionalProperties"] is False
    assert set(schema["properties"]) == set(INIT_KEYS)
    defaults = Config.default().to_dict()["init_config"]
    jsonschema.validate(defaults, schema)
    jsonschema.validate({}, schema)
    jsonschema.validate({"putfile": "true", "format": "json"}, schema)
    for bad_doc in ({"format": "xml"}, {"log_level": "debug"}, {"putfile": "yes"}, {"putfile": 1},
                    {"str_max_size": -1}, {"str_max_size": "5"}, {"path": "p" * 257},
                    {"batch_size": 0}, {"unknown": 1}):
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(bad_doc, schema)


def test_schema_agrees_with_the_parser_on_samples():
    schema = init_schema()
    samples = [{"format": f} for f in ("normal", "json", "xml", "")] + \
              [{"batch_timeout_ms": v} for v in (0, 1, 1000, 1001, True)] + \
              [{"log_file": "x" * n} for n in (0, 256, 257)]
    for s in samples:
        ok_schema = jsonschema.Draft7Validator(schema).is_valid(s)
        try:
            Config.from_plugin(json.dumps(s), "")
            ok_parser = True
        except ConfigError:
            ok_parser = False
        assert ok_schema == ok_parser, s


def test_open_params_schema_validates_defaults():
    schema = C.open_params_schema()
    jsonschema.Draft7Validator.check_schema(schema)
    jsonschema.validate(Config.default().to_dict()["open_params"], schema)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"ring_size": 100000}, schema)


def test_open_params_list():
    items = open_params_list()
    assert len(items) >= 3
    values = set()
    for item in items:
        assert set(item) == {"value", "desc"} and item["desc"]
        c = Config.default().with_open_params(item["value"])  # each example is valid
        values.add(c.open)
    assert len(values) == len(items)  # and each one is different
    assert Config.default().open in values
    assert any(v.drop_failed for v in values) and any(v.filter_pids for v in values)


def test_key_info():
    info = C.key_info("ring_size")
    assert info == {"section": "open_params", "type": "int", "range": "power of two, 65536..1073741824",
                    "default": 8 << 20, "description": DESCRIPTIONS["ring_size"]}
    assert C.key_info("filter_comms")["range"] == "at most 16 entries, each 1..16 bytes"
    raises("did you mean 'ring_size'", fn=C.key_info, name="ringsize")


def test_paths_in_a_file_are_relative_to_its_directory(tmp_path, monkeypatch):
    d = tmp_path / "etc" / "lbd"
    d.mkdir(parents=True)
    f = d / "lbd.json"
    f.write_text(json.dumps({
        "init_config": {"putfile": True, "path": "events/ev.log", "log_file": "../log/lbd.log",
                        "spool_dir": "/var/spool/x", "python_home": "venv"},
        "open_params": {"interest_syscall_file": "sel.json"}}))
    monkeypatch.chdir(tmp_path)
    cfg = Config.from_file("etc/lbd/lbd.json")
    assert cfg.init.path == str(d / "events" / "ev.log")
    assert cfg.init.log_file == str(tmp_path / "etc" / "log" / "lbd.log")
    assert cfg.init.spool_dir == "/var/spool/x"                      # absolute: as given
    assert cfg.init.python_home == str(d / "venv")
    assert cfg.open.interest_syscall_file == str(d / "sel.json")
    # flat files too; "" keeps its meaning (the default) and a NATS URL is not a path
    f.write_text(json.dumps({"path": "nats://127.0.0.1:4222/lbd", "interest_syscall_file": "", "log_file": "x.log"}))
    cfg = Config.from_file(f)
    assert cfg.init.path == "nats://127.0.0.1:4222/lbd" and cfg.open.interest_syscall_file == ""
    assert cfg.init.log_file == str(d / "x.log")
    # not from a file: as given
    assert Config.from_dict({"log_file": "x.log"}).init.log_file == "x.log"
    # a bad type is still the validation's one-line error
    f.write_text(json.dumps({"log_file": 3}))
    with pytest.raises(ConfigError, match="log_file"):
        Config.from_file(f)
