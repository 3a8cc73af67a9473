"""Error names (lbd.errnos) and the JSON output's "err" key, bulk formatter and reference alike."""
from __future__ import annotations

import errno
import json

import pytest

from lbd import errnos
from lbd._format import Formatter
from lbd.output import reference
from tests.data.fakeproc import batch_of, rec


def test_names_and_numbers():
    assert errnos.name(13) == "EACCES" and errnos.number("EACCES") == 13
    assert errnos.name(errno.EOPNOTSUPP) == "EOPNOTSUPP" and errnos.number("ENOTSUP") == errno.EOPNOTSUPP
    assert errnos.name(errno.EDEADLK) == "EDEADLK" and errnos.number("EDEADLOCK") == errno.EDEADLK
    assert errnos.name(errno.EAGAIN) == "EAGAIN" and errnos.number("EWOULDBLOCK") == errno.EAGAIN
    assert errnos.name(512) == "ERESTARTSYS" and errnos.message(512) == "To be restarted if SA_RESTART is set"
    assert errnos.message(13) == "Permission denied"
    assert errnos.name(41) is None and errnos.number("EFOO") is None
    for n, name in errno.errorcode.items():      # every name Python knows reads back to its number
        assert errnos.number(name) == n
        assert errnos.name(n) is not None
    assert [errnos.error_of(r) for r in (-1, -4095, -4096, 0, 5)] == [1, 4095, None, None, None]


@pytest.mark.parametrize("res, err", [(-13, "EACCES"), (-2, "ENOENT"), (-512, "ERESTARTSYS"), (-41, ""),
                                      (-4096, ""), (-4095, ""), (0, ""), (3, ""), (-(1 << 63), "")])
def test_json_err(res, err):
    b = batch_of(rec("openat", {"dfd": -100, "filename": "/etc/shadow", "flags": 0}, res=res))
    f = Formatter("json", 0)
    f.format(b)
    bulk = f.getvalue()
    assert bulk == reference.format_batch(b, "json", 0)
    obj = json.loads(bulk)
    assert obj["err"] == err                                  # always there: "" without a name
    keys = list(obj)
    assert keys[keys.index("res") + 1] == "err"              # right after res
