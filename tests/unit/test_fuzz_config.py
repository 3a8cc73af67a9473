"""Fuzzing (CI-sized) of what lbd reads from users: the configuration file (JSON and YAML), the
syscall-selection file, and the plugin's init_config / open_params strings.  Whatever the input,
the answer is a valid configuration or one clear line (naming the source, no Python class name),
never a traceback, a hang or a huge allocation; plus the adversarial cases of the issue (a FIFO,
/dev/zero, 2 MB, deep nesting, YAML aliases, non-UTF-8)."""
from __future__ import annotations

import builtins
import json
import os
import re

import pytest
import yaml
from hypothesis import HealthCheck, given, settings, strategies as st

from lbd.config import DESCRIPTIONS, Config, ConfigError
from lbd.interesting import InterestingError, load_interesting_file, parse_interesting
from lbd.syscalls import TABLE

#: the class names an error message must never show (Python's, YAML's, JSON's and lbd's own)
CLASS_NAMES = ({n for n, v in vars(builtins).items() if isinstance(v, type) and issubclass(v, BaseException)}
               | {n for n, v in vars(yaml).items() if isinstance(v, type) and issubclass(v, BaseException)}
               | {"JSONDecodeError", "ConfigError", "InterestingError", "ProbeError", "OutputError", "InputFileError",
                  "PrivateFileError", "Traceback"})
FUZZ = settings(max_examples=150, deadline=2000, suppress_health_check=[HealthCheck.function_scoped_fixture])


def clean(msg: str, source: str, given: bytes | str = b"") -> None:
    """One line, names its source, no class name (unless the input itself holds that word)."""
    assert "\n" not in msg and msg.strip() == msg and msg, repr(msg)
    assert source in msg, (source, msg)
    text = given.decode("utf-8", "replace") if isinstance(given, bytes) else given
    leaked = [n for n in CLASS_NAMES if re.search(rf"\b{n}\b", msg) and n not in text]
    assert not leaked, (leaked, msg)


_scalar = st.one_of(st.none(), st.booleans(), st.integers(-(1 << 70), 1 << 70), st.floats(allow_nan=False),
                    st.text(max_size=20), st.sampled_from(["true", "false", "normal", "json", "DEBUG", "/x"]))
_value = st.recursive(_scalar, lambda inner: st.one_of(st.lists(inner, max_size=5),
                                                       st.dictionaries(st.text(max_size=8), inner, max_size=4)),
                      max_leaves=12)
_key = st.one_of(st.sampled_from(sorted(DESCRIPTIONS)), st.text(max_size=12))
_section = st.dictionaries(_key, _value, max_size=6)
_doc = st.one_of(st.fixed_dictionaries({}, optional={"init_config": st.one_of(st.none(), _section, _value),
                                                     "open_params": st.one_of(st.none(), _section, _value)}),
                 _section, _value)


def _json_bytes(doc) -> bytes:
    return json.dumps(doc).encode()


_mutated = st.tuples(_doc, st.integers(0, 200), st.binary(max_size=6)).map(
    lambda t: (lambda b: b[:t[1]] + t[2] + b[t[1]:])(_json_bytes(t[0])))
_file_bytes = st.one_of(_doc.map(_json_bytes), _mutated, st.binary(max_size=200),
                        st.text(alphabet="{}[]:,\"'- \n\tab01*&!|>%", max_size=120).map(str.encode))


def _load(path, data: bytes):
    path.write_bytes(data)
    try:
        cfg = Config.from_file(path)
    except ConfigError as e:
        clean(str(e), str(path), data)
        return None
    assert isinstance(cfg, Config)
    return cfg


@FUZZ
@given(_file_bytes)
def test_fuzz_configuration_file_json(tmp_path, data):
    _load(tmp_path / "c.json", data)


@FUZZ
@given(_file_bytes)
def test_fuzz_configuration_file_yaml(tmp_path, data):
    _load(tmp_path / "c.yaml", data)


@FUZZ
@given(st.one_of(_file_bytes, _doc.map(_json_bytes)), st.one_of(_file_bytes, _doc.map(_json_bytes)))
def test_fuzz_plugin_strings(init, params):
    for a, b in ((init, params), (init.decode("utf-8", "replace"), params.decode("utf-8", "replace"))):
        try:
            cfg = Config.from_plugin(a, b)
        except ConfigError as e:
            assert str(e).startswith(("init_config", "open_params")), str(e)
            clean(str(e), str(e).split(":")[0].split(".")[0], a + b)
            continue
        assert isinstance(cfg, Config)


_names = st.sampled_from([sc.name for sc in TABLE[:40]] + ["_comment", "nope", ""])
_entry = st.one_of(st.fixed_dictionaries({"syscall_id": st.integers(-1, 400), "interesting": st.sampled_from([0, 1, 2])}),
                   _value)
_selection = st.one_of(st.dictionaries(_names, _entry, max_size=6).map(_json_bytes), _file_bytes)


@FUZZ
@given(_selection)
def test_fuzz_selection_file(tmp_path, data):
    path = tmp_path / "sel.json"
    path.write_bytes(data)
    try:
        sel = load_interesting_file(path)
    except InterestingError as e:
        clean(str(e), str(path), data)
        return
    assert isinstance(sel, frozenset)


# ---- the adversarial cases -----------------------------------------------------------------------------

@pytest.mark.parametrize("ext", [".json", ".yaml"])
def test_unreadable_kinds_and_sizes(tmp_path, ext):
    fifo = tmp_path / f"fifo{ext}"
    os.mkfifo(fifo)
    big = tmp_path / f"big{ext}"
    big.write_bytes(b"[" + b"1," * 1_000_000 + b"1]")            # 2 MB: refused before it is read
    for path, needle in ((fifo, "is a FIFO, not a regular file"), (big, "more than the limit of 1048576 bytes (1 MiB)")):
        with pytest.raises(ConfigError) as e:
            Config.from_file(path)
        clean(str(e.value), str(path))
        assert needle in str(e.value)
    link = tmp_path / f"zero{ext}"
    os.symlink("/dev/zero", link)
    with pytest.raises(ConfigError, match="is a character device, not a regular file"):
        Config.from_file(link)


@pytest.mark.parametrize("ext,text", [(".json", "[" * 100_000 + "]" * 100_000), (".json", "[" * 40 + "]" * 40),
                                      (".yaml", "- " * 40 + "1"), (".yaml", "[" * 20_000 + "]" * 20_000),
                                      (".json", '{"init_config": ' * 5000 + "{}" + "}" * 5000)])
def test_deep_nesting_is_one_line(tmp_path, ext, text):
    path = tmp_path / f"deep{ext}"
    path.write_text(text)
    with pytest.raises(ConfigError) as e:
        Config.from_file(path)
    clean(str(e.value), str(path))
    assert "nested more than 32 levels deep" in str(e.value)


def test_yaml_aliases_are_refused(tmp_path):
    bomb = "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
        f"{chr(98 + k)}: &{chr(98 + k)} [*{chr(97 + k)}, *{chr(97 + k)}, *{chr(97 + k)}, *{chr(97 + k)}]\n" for k in range(20))
    path = tmp_path / "bomb.yaml"
    path.write_text(bomb)
    with pytest.raises(ConfigError) as e:
        Config.from_file(path)
    clean(str(e.value), str(path))
    assert "YAML aliases (*name) are not accepted" in str(e.value)


def test_errors_name_the_byte_offset(tmp_path):
    path = tmp_path / "c.json"
    path.write_bytes('{"init_config": {"path": "é"}, oops}'.encode())
    with pytest.raises(ConfigError, match=r"malformed JSON at line 1, column 32 \(byte 32\)"):
        Config.from_file(path)
    path.write_bytes(b'{"init_config": {"path": "\xff"}}')
    with pytest.raises(ConfigError, match=r"c.json: not UTF-8 text at byte 26 \(invalid start byte\)"):
        Config.from_file(path)
    with pytest.raises(ConfigError, match=r"^init_config: not UTF-8 text at byte 1 \(invalid start byte\)$"):
        Config.from_plugin(b"{\xff}", b"")
    with pytest.raises(ConfigError, match=r"^open_params: \d+ bytes, more than the limit of 1048576 bytes \(1 MiB\)$"):
        Config.from_plugin(b"", b" " * (2 << 20))


def test_selection_file_limits(tmp_path):
    fifo = tmp_path / "sel.json"
    os.mkfifo(fifo)
    for path, needle in ((fifo, "is a FIFO"), ("/dev/zero", "is a character device")):
        with pytest.raises(InterestingError) as e:
            load_interesting_file(path)
        clean(str(e.value), str(path))
        assert needle in str(e.value)
    with pytest.raises(InterestingError, match="nested too deep"):
        parse_interesting("[" * 100_000 + "]" * 100_000, "s.json")


def test_plugin_init_and_open_strings_through_the_host():
    """The C side: a non-UTF-8 init_config and adversarial open strings give one-line errors."""
    from tests.plugin_host.host import script

    steps = script("init:{\"str_max_size\": 1\udcff}", "init:" + "[" * 50_000, "init:{}",
                   "open:" + '{"a":' * 20_000, "open:{\"interest_syscall_file\": \"/dev/zero\"}",
                   "open:\udcfe", "open:{\"syscalls\": []", "destroy")
    errors = [d.get("error") for d in steps[:6] if d["step"] in ("init", "open")]
    assert steps[2]["rc"] == 0
    bad = [steps[k] for k in (0, 1, 3, 4, 5, 6)]
    for d in bad:
        assert d["rc"] == 1 and d["error"], d
        clean(d["error"], d["step"])
    assert "init_config: not UTF-8 text at byte 18" in steps[0]["error"]
    assert "nested" in steps[1]["error"] and "nested" in steps[3]["error"]
    assert "/dev/zero: the syscall selection file is a character device" in steps[4]["error"]
    assert errors
