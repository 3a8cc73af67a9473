"""liblbd.so through the Falco-style host, without capturing: loading, Falco's checks, the
configuration errors of init and open, the embedded Python's installation (python_home).

Opening a capture needs eBPF: tests/kernel/test_plugin*.py.  Every configuration error here is
found before the probe loads, so it runs anywhere.
"""
from __future__ import annotations

import json
import subprocess

import jsonschema
import pytest

from lbd import falco
from lbd.config import Config, init_schema
from tests.plugin_host import host
from tests.plugin_host.host import LIB, ROOT, checks, info, run_host, script

DEFAULT = json.loads((ROOT / "lbd" / "default_config.json").read_text())
PIDS_65 = json.dumps({"filter_pids": list(range(1, 66))})


def test_falco_would_load_it():
    rc, lines = info(json.dumps(DEFAULT["init_config"]))
    c = checks(lines)
    assert rc == 0, lines
    for name in ("symbols", "api_version", "version", "capabilities", "fields", "init_schema", "init_schema_default"):
        assert c[name]["ok"], c[name]
    assert c["capabilities"]["id"] == 27182 and c["capabilities"]["source"] == "linux_ebpf"
    assert c["capabilities"]["name"] == "lbd"
    assert c["capabilities"]["get_metrics"] is True          # get_metrics (plugin API 3.6.0)
    assert c["init_schema_config"]["ok"], c["init_schema_config"]
    listed = next(d["field_list"] for d in lines if "field_list" in d)
    assert [f["name"] for f in listed] == [f.name for f in falco.FIELDS]


@pytest.mark.parametrize("framework,ok", [("3.12.0", True), ("3.6.0", True), ("3.6.9", True),
                                          ("3.5.9", False), ("3.0.0", False), ("2.9.0", False),
                                          ("4.0.0", False)])
def test_api_version_rule(framework, ok):
    rc, lines = info(framework=framework)
    c = checks(lines)["api_version"]
    assert c["ok"] is ok, c
    assert "required 3.6.0" in c["detail"]


def test_dynamic_symbols_are_only_the_plugin_api():
    out = subprocess.run(["nm", "-D", "--defined-only", str(LIB)], capture_output=True, text=True, check=True).stdout
    names = {line.split()[-1] for line in out.splitlines() if line.strip()}
    assert names, out
    assert all(n.startswith("plugin_") for n in names), sorted(n for n in names if not n.startswith("plugin_"))
    for n in ("plugin_init", "plugin_next_batch", "plugin_extract_fields", "plugin_get_init_schema",
              "plugin_list_open_params"):
        assert n in names


def test_init_schema_is_lbd_config_and_validates_like_it():
    # the schema Falco validates init_config with accepts the defaults, rejects what lbd.config rejects
    jsonschema.Draft7Validator.check_schema(init_schema())
    good = [DEFAULT["init_config"], {"putfile": "true"}, {"format": "json", "log_level": "DEBUG"}]
    bad = [{"format": "xml"}, {"nope": 1}, {"batch_size": 0}, {"putfile": "yes"}, {"path": "x" * 257}]
    rc, lines = info(*[json.dumps(c) for c in good + bad])
    results = [d for d in lines if d.get("check") == "init_schema_config"]
    assert [d["ok"] for d in results] == [True] * len(good) + [False] * len(bad), results
    for c in bad:
        with pytest.raises(ValueError):
            Config.from_plugin(json.dumps(c), "")
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(c, init_schema())


def test_init_config_is_checked_against_the_schema_as_falco_does():
    # what Falco refuses before init: text that is not JSON (NaN included), a value the schema rejects
    # "null": what Falco 0.44 passes for `init_config: {}` in falco.yaml (it failed there before)
    rc, lines = info("{bad", '{"batch_size": NaN}', "[1, 2]", '{"format": "xml"}', "", " {} ", "null")
    assert rc == 0, lines
    results = [d for d in lines if d.get("check") == "init_schema_config"]
    assert [d["ok"] for d in results] == [False, False, False, False, True, True, True], results
    assert Config.from_plugin("null", "") == Config.default()
    assert all("not a valid json" in d["detail"] for d in results[:2]), results
    assert "$.format" in results[3]["detail"] and "xml" in results[3]["detail"], results[3]
    xml, empty = script('init:{"format": "xml"}', "init:")
    assert xml["schema_ok"] is False and "xml" in xml["schema_error"], xml
    assert empty["schema_ok"] is True and "schema_error" not in empty, empty
    with pytest.raises(AssertionError, match="rejected by the plugin's init schema"):
        host.check_init('{"batch_size": 0}')


def test_a_schema_falco_could_not_use_fails_the_check():
    # the host only checks that get_init_schema is a JSON object; host.py checks that it is a schema
    lines = [{"check": "init_schema", "ok": True, "detail": "a JSON object", "schema": {"type": 5}}]
    line = host._schema_line(lines)
    assert line["ok"] is False and "not a valid JSON schema" in line["detail"] and "schema" not in line, line
    assert host._schema_line([{"check": "init_schema", "ok": True, "schema": None}])["schema"] is None
    assert host.validate_init(None, "{bad") is None                 # no schema: Falco checks nothing


@pytest.mark.parametrize("config,needle", [
    ("{bad", "init_config: malformed JSON at line 1, column 2"),
    ('{"nope": 1}', "init_config.nope: unknown key"),
    ('{"str_max_size": -1}', "init_config.str_max_size: -1 is out of range"),
    ('{"format": "xml"}', "init_config.format: 'xml' is not one of normal, json, parquet"),
    ('{"putfile": true, "path": ""}', "path"),
    ("[1, 2]", "init_config: [1, 2] is an array, expected a mapping"),
])
def test_bad_init_config_fails_with_the_reason(config, needle):
    init_bad, init_good = script(f"init:{config}", "init:")
    assert init_bad["rc"] == 1 and needle in init_bad["error"], init_bad
    assert init_good["rc"] == 0, init_good                  # and the process is fine after it
    assert init_good["schema_ok"] is True, init_good


@pytest.mark.parametrize("params,needle", [
    ("{bad", "open_params: malformed JSON"),
    ('{"filter_pid": [1]}', "open_params.filter_pid: unknown key"),
    (PIDS_65, "open_params.filter_pids: 65 entries, at most 64 allowed"),
    ('{"filter_comms": ["abcdefghijklmnopq"]}', "open_params.filter_comms[0]: 'abcdefghijklmnopq' is 17 bytes long, at most 16"),
    ('{"filter_pids": [4194304]}', "open_params.filter_pids[0]: 4194304 is out of range"),
    ('{"interest_syscall_file": "/nonexistent/interesting.json"}', "/nonexistent/interesting.json: cannot read"),
    ('{"syscalls": ["no_such_call"]}', "no_such_call"),
    ('{"ring_size": 1000}', "open_params.ring_size: 1000 is not a power of two"),
])
def test_bad_open_params_fail_with_the_reason(params, needle):
    steps = script("init:{}", f"open:{params}", "next:1", "close", f"open:{params}")
    init, opened, nxt, _, again = steps
    assert init["rc"] == 0
    assert opened["rc"] == 1 and opened["error"].startswith("open: ") and needle in opened["error"], opened
    assert nxt["rc"] == 1                                   # no capture is open
    assert again["rc"] == 1 and again["error"] == opened["error"]


def test_list_open_params_are_valid_open_params():
    init, params = script("init:{}", "params")
    assert params["rc"] == 0 and params["valid"] and params["count"] >= 3
    from lbd.config import open_params_list

    for p in open_params_list():
        Config.from_plugin("", p["value"])


def test_extract_before_init_and_calls_without_state_do_not_crash(tmp_path):
    # a failed init leaves a state that only explains itself
    init, opened, params = script('init:{"nope":1}', "open:{}", "params")
    assert init["rc"] == 1 and opened["rc"] == 1 and params["rc"] == 1
    assert "unknown key" in opened["error"]


def test_python_home_that_does_not_exist(tmp_path):
    bad, good = script(f'init:{{"python_home": "{tmp_path}/nowhere"}}', "init:")
    assert bad["rc"] == 1
    assert f"init_config.python_home: '{tmp_path}/nowhere' is not a directory" in bad["error"], bad
    assert good["rc"] == 0


def test_python_home_without_lbd(tmp_path):
    (tmp_path / "pyvenv.cfg").write_text("home = /usr/bin\ninclude-system-site-packages = false\n")
    bad, good = script(f'init:{{"python_home": "{tmp_path}"}}', "init:")
    assert bad["rc"] == 1
    assert f"cannot import lbd from init_config.python_home '{tmp_path}'" in bad["error"], bad
    assert "No module named 'lbd'" in bad["error"]
    assert good["rc"] == 0, good                            # sys.path was put back


def test_python_home_is_fixed_once_loaded(tmp_path):
    venv = ROOT / ".venv"
    first, second, other = script(f'init:{{"python_home": "{venv}"}}', "init:", f'init:{{"python_home": "{tmp_path}"}}')
    assert first["rc"] == 0 and second["rc"] == 0
    assert other["rc"] == 1 and "already runs lbd from" in other["error"], other


def test_a_library_whose_installation_is_gone(tmp_path):
    """Built against a venv that no longer exists: init fails and says to set python_home."""
    lib = tmp_path / "liblbd-gone.so"
    r = subprocess.run(["make", "-s", "-C", str(ROOT / "plugin"), f"LIB_OUT={lib}", f"BAKE_VENV={tmp_path}/gone",
                        f"{lib}"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    rc, lines, err = run_host("script", "init:{}", f'init:{{"python_home": "{ROOT / ".venv"}"}}', lib=lib)
    steps = [d for d in lines if "step" in d]
    assert steps[0]["rc"] == 1, steps
    assert "the lbd installation liblbd.so was built from" in steps[0]["error"]
    assert "set init_config.python_home" in steps[0]["error"]
    assert steps[1]["rc"] == 0, steps                        # python_home rescues it
