"""Shared fixtures.  Kernel tests need root and a working eBPF stack: without them they skip with
the reason, unless LBD_REQUIRE_BPF=1 (CI), where they fail instead."""
from __future__ import annotations

import os

import pytest

REQUIRE_BPF = os.environ.get("LBD_REQUIRE_BPF") == "1"


def bpf_unavailable_reason() -> str | None:
    """Why kernel tests cannot run here, or None when they can."""
    from lbd import doctor

    bad = [c for c in doctor.run_checks() if not c.ok and c.essential]
    if bad:
        return "eBPF capture unavailable: " + "; ".join(f"{c.name}: {c.detail}" for c in bad)
    return None


_reason_cache: list = []


def require_bpf() -> None:
    """Skip (or, under LBD_REQUIRE_BPF=1, fail) when eBPF cannot be used."""
    if not _reason_cache:
        _reason_cache.append(bpf_unavailable_reason())
    reason = _reason_cache[0]
    if reason is None:
        return
    if REQUIRE_BPF:
        pytest.fail(f"LBD_REQUIRE_BPF=1 but {reason}", pytrace=False)
    pytest.skip(reason)


@pytest.fixture
def seed_tz(monkeypatch):
    """The seed's time zone (tests/data/golden.TZ) for the test, as the golden lines were made in."""
    import time

    from tests.data import golden

    monkeypatch.setenv("TZ", golden.TZ)
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()
