"""open_params.path_prefixes: the configuration's checks (shape, lengths, one argument per syscall,
str_max) and the probe's resolution into descriptor slots and prefix-map keys, each problem a
one-line error naming the entry."""
from __future__ import annotations

import struct

import pytest

from lbd import record, syscalls
from lbd.config import MAX_PREFIXES, PREFIX_MAX, Config, ConfigError
from lbd.probe import PREFIX_KEY_SIZE, prefix_key, resolve_path_prefixes


def cfg(*entries, **kw) -> Config:
    return Config.from_dict({"open_params": {"path_prefixes": list(entries), **kw}})


def test_resolves_syscall_slot_and_prefix_bytes():
    got = resolve_path_prefixes(cfg("openat:filename:/etc/", "openat:filename:/usr/", "renameat:newname:/tmp/é",
                                    "openat:filename:/etc/"))
    assert got == {syscalls.lookup("openat").nr: (1, (b"/etc/", b"/usr/")),
                   syscalls.lookup("renameat").nr: (3, ("/tmp/é".encode(),))}
    assert resolve_path_prefixes(Config.default()) == {}


def test_limits_are_the_kernels():
    # lbd.config keeps its own copies (it imports nothing of lbd): they must be the header's
    assert (PREFIX_MAX, MAX_PREFIXES) == (record.CONSTANTS["LBD_PREFIX_MAX"], record.CONSTANTS["LBD_MAX_PREFIXES"])


def test_key_layout():
    k = prefix_key(257, b"/etc/")
    assert len(k) == PREFIX_KEY_SIZE == 260
    assert struct.unpack_from("<I", k)[0] == 8 * (2 + 5)          # bits: the number, then the prefix
    assert k[4:6] == b"\x01\x01" and k[6:11] == b"/etc/" and set(k[11:]) == {0}


@pytest.mark.parametrize("entries,message", [
    (["openat"], "open_params.path_prefixes[0]: 'openat' is not SYSCALL:ARGUMENT:PREFIX (openat:filename:/etc/)"),
    (["openat:filename:" + "x" * 255], "the prefix is 255 bytes, at most 254 allowed"),
    (["openat:filename:/a", "openat:dfd:/b"], "'openat:dfd:/b': openat has prefixes on filename already"),
    (["openat:filename:/" + "x" * 40], "the prefix is longer than str_max (32 bytes captured)"),
    ([f"openat:filename:/{k}" for k in range(65)], "open_params.path_prefixes: 65 entries, at most 64 allowed"),
])
def test_configuration_errors(entries, message):
    with pytest.raises(ConfigError) as e:
        cfg(*entries, str_max=32)
    assert message in str(e.value) and "\n" not in str(e.value)


@pytest.mark.parametrize("entry,message", [
    ("opnat:filename:/", "'opnat' is not a known syscall"),
    ("openat:pathname:/", "openat has no path or string argument 'pathname' (it has: filename)"),
    ("openat:flags:/", "openat has no path or string argument 'flags'"),
    ("execve:filename:/", "the kernel cannot check execve's arguments against prefixes"),
])
def test_resolution_errors(entry, message):
    with pytest.raises(ConfigError) as e:
        resolve_path_prefixes(cfg(entry))
    assert str(e.value).startswith(f"open_params.path_prefixes: {entry!r}: ") and message in str(e.value)
