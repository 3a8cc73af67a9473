"""Syscalls per call of a pytest-benchmark benchmark, and the budget against a saved run.

`BenchRounds` records the first rounds of a benchmark: it wraps the benchmark fixture's timer, which
pytest-benchmark reads right before and right after each timed round (`runner()` in its fixture
module).  Once the benchmark's statistics exist (after calibration), the first timer read of a
round starts a recording block and the second one ends it, both outside the timed span (the block
starts before the start time is read, and ends after the end time is read).  A round is
`stats.iterations` calls of the function, so the syscalls per call are the recorded rounds'
counts divided by their calls.  Only the first `rounds` rounds are recorded; the others run as
they would without the plugin.

A `Tolerance` says how much a syscall's count per call may grow over the saved run's:
``10%+0.5`` allows 10% of the saved count plus half a call; per syscall: ``openat=0``; ``any``
never fails.  `exceeded()` lists the syscalls beyond it.
"""
from __future__ import annotations

import functools
import math
import re
from dataclasses import dataclass, field

__all__ = ["BenchRounds", "DEFAULT_TOLERANCE", "Limit", "Tolerance", "exceeded", "per_call_text"]

DEFAULT_TOLERANCE = "10%+0.5"
DEFAULT_ROUNDS = 5



@dataclass(frozen=True)
class Limit:
    """An increase allowed over a saved count: `pct` percent of it plus `abs` calls (per call of
    the benchmarked function); `any`: no limit."""

    pct: float = 0.0
    abs: float = 0.0
    any: bool = False

    def allowed(self, saved: float) -> float:
        return math.inf if self.any else saved * (1 + self.pct / 100) + self.abs

    def __str__(self) -> str:
        if self.any:
            return "any"
        parts = ([f"{self.pct:g}%"] if self.pct else []) + ([f"{self.abs:g}"] if self.abs or not self.pct else [])
        return "+".join(parts)


@dataclass(frozen=True)
class Tolerance:
    default: Limit
    per_syscall: dict = field(default_factory=dict)

    def limit(self, name: str) -> Limit:
        return self.per_syscall.get(name, self.default)

    def __str__(self) -> str:
        return ",".join([str(self.default)] + [f"{k}={v}" for k, v in self.per_syscall.items()])

    @classmethod
    def parse(cls, text: str, what: str = "--syscall-tolerance") -> Tolerance:
        """`[LIMIT][,SYSCALL=LIMIT...]`, LIMIT one of N, N%, N%+M, any.  Raises ValueError with
        one line naming the option, the bad part and the form."""
        form = "a limit is N (calls per call), N% (of the saved count), N%+M, or any; e.g. 10%+0.5,openat=0"
        default = None
        per: dict[str, Limit] = {}
        for part in (p.strip() for p in str(text).split(",")):
            if not part:
                continue
            name, eq, value = part.partition("=")
            if not eq:
                name, value = "", part
            name, value = name.strip(), value.strip()
            limit = _limit(value)
            if limit is None:
                raise ValueError(f"{what}: {part!r}: {form}")
            if name:
                from lbd import syscalls

                sc = syscalls.BY_NAME.get(name)
                if sc is None or sc.name != name:
                    raise ValueError(f"{what}: {part!r}: {name!r} is not a syscall name (`lbd syscalls` lists them)")
                per[name] = limit
            else:
                default = limit
        if default is None:
            default = _limit(DEFAULT_TOLERANCE)
        return cls(default, per)


_NUMBER = re.compile(r"^\d+(?:\.\d+)?$")


def _limit(value: str) -> Limit | None:
    """N, N%, N%+M or any; None when `value` is none of them."""
    if value == "any":
        return Limit(any=True)
    pct, abs_ = "0", value
    if "%" in value:
        pct, _, rest = value.partition("%")
        if rest and not rest.startswith("+"):
            return None
        abs_ = rest[1:] if rest else "0"
    if not (_NUMBER.match(pct) and _NUMBER.match(abs_)):
        return None
    return Limit(float(pct), float(abs_))


def exceeded(saved: dict, now: dict, tol: Tolerance) -> list[str]:
    """The syscalls whose count per call grew beyond the tolerance, one line each."""
    out = []
    for name in sorted(set(saved) | set(now)):
        was, cur = float(saved.get(name, 0)), float(now.get(name, 0))
        limit = tol.limit(name)
        if cur > limit.allowed(was) + 1e-9:
            out.append(f"{name}: {was:g} -> {cur:g} per call (+{cur - was:g}; at most {limit.allowed(was):g} "
                       f"allowed by {limit})")
    return out


def per_call_text(saved: dict | None, now: dict) -> str:
    """One line comparing two per-call count dicts: the syscalls that changed and the totals."""
    if saved is None:
        return f"{sum(now.values()):g} syscalls per call (nothing saved to compare)"
    changed = [f"{n} {float(saved.get(n, 0)):g}->{float(now.get(n, 0)):g}"
               for n in sorted(set(saved) | set(now)) if abs(float(saved.get(n, 0)) - float(now.get(n, 0))) > 1e-9]
    total = f"{sum(map(float, saved.values())):g} -> {sum(now.values()):g} syscalls per call"
    return f"{total}: {', '.join(changed)}" if changed else f"{total} (no change)"


class BenchRounds:
    """Records the first `rounds` timed rounds of one benchmark (see the module docstring)."""

    def __init__(self, bm, fixture, rounds: int):
        self.bm = bm
        self.fx = fixture
        self.rounds = rounds
        self.blocks: list = []
        self.calls = 0
        self._block = None
        self._done = False
        real = bm._timer

        @functools.wraps(real)
        def timer():
            if self._done or bm.stats is None:
                return real()
            if self._block is None:
                self._block = fixture._round()
                return real()
            t = real()
            block, self._block = self._block, None
            block.__exit__(None, None, None)
            self.blocks.append(block)
            self.calls += int(bm.stats.iterations)
            if len(self.blocks) >= self.rounds:
                self._done = True
            return t

        self.timer = timer
        bm._timer = timer

    @staticmethod
    def usable(bm) -> bool:
        """The benchmark fixture is one this class knows how to follow (and is enabled)."""
        return not getattr(bm, "disabled", True) and hasattr(bm, "_timer") and hasattr(bm, "extra_info")

    def per_call(self) -> dict[str, float] | None:
        """Syscalls per call over the rounds recorded so far, most frequent first; None before
        the first round ended."""
        if not self.blocks or not self.calls:
            return None
        from lbd.pytest.capture import Blocks

        counts = Blocks(self.fx._capture, lambda: self.blocks).counts
        return {name: round(n / self.calls, 4) for name, n in counts.items()}

    def finish(self) -> dict[str, float] | None:
        """End a round left open (the function raised), and store the syscalls per call in the
        benchmark's extra_info: `syscalls`, and `syscalls_calls`, the calls they were counted
        over (`syscalls_lost`: records lost to a full ring).  Returns them (None without rounds)."""
        if self._block is not None:
            self._block.__exit__(None, None, None)
            self._block = None
        per = self.per_call()
        if per is None:
            return None
        self.bm.extra_info["syscalls"] = per
        self.bm.extra_info["syscalls_calls"] = self.calls
        if self.fx.lost:
            self.bm.extra_info["syscalls_lost"] = self.fx.lost
        return per
