"""`lbd stats`: syscall counts with errors and latency, per syscall or per process (a better syscount).

Two sources, one table:

* the kernel's per-syscall counters (open_params.syscall_stats; `Probe.syscall_stats()`): every
  syscall of the host, selected or not, counted at its exit with errors (-4095 <= res < 0), total
  latency and a log2-ns latency histogram.  Nothing is captured, so nothing is dropped; the
  kernel's counters know no process, so they serve only "per syscall, no filter".  exit and
  exit_group never return and are not counted there;
* captured events (`Counts.add_batch`): what a filter keeps (pids, comms, uids, failed, an
  expression), per syscall or per process (pid, comm), with the same errors, total latency and
  histogram computed from the records (their `latency`: exit time - enter time).

`Counts` is a stage (STYLE.md): it takes a Batch and a mask and keeps sums, never the batch.  P99
comes from the histogram: the upper edge of the power-of-two bucket holding the 99th percentile
(nearest rank), so it is at most twice the true value, in both sources alike.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from lbd import record
from lbd.args import syscall_name

__all__ = ["Row", "Counts", "kernel_counts", "p99_ns", "table"]

BUCKETS = record.LAT_BUCKETS


@dataclass(frozen=True)
class Row:
    """One line of the table: a syscall (`name`, `nr`) or a process (`pid`, `comm`)."""

    count: int
    errors: int
    total_ns: int
    p99_ns: int
    name: str = ""
    nr: int = -1
    pid: int = -1
    comm: str = ""

    def to_json(self) -> dict:
        key = {"name": self.name, "nr": self.nr} if self.nr >= 0 else {"pid": self.pid, "comm": self.comm}
        return {**key, "count": self.count, "errors": self.errors, "total_ns": self.total_ns, "p99_ns": self.p99_ns}


def p99_ns(hist) -> int:
    """The upper edge (ns) of the log2 bucket holding the 99th percentile (nearest rank); 0: no calls.
    Bucket b holds latencies in [2^b, 2^(b+1)) ns (bucket 0 also 0 ns; the last one everything above)."""
    h = np.asarray(hist, dtype=np.int64)
    n = int(h.sum())
    if n == 0:
        return 0
    rank = max(1, math.ceil(0.99 * n))
    b = int(np.searchsorted(np.cumsum(h), rank))
    return 1 << (b + 1)


def buckets(latency: np.ndarray) -> np.ndarray:
    """floor(log2(latency ns)) clipped to the histogram, as the kernel computes it (0 for 0 and 1)."""
    lat = np.maximum(latency.astype(np.uint64), np.uint64(1))
    # frexp gives the exponent exactly for every integer below 2^53 (a latency of 104 days)
    _, exp = np.frexp(lat.astype(np.float64))
    return np.clip(exp - 1, 0, BUCKETS - 1).astype(np.int64)


class Counts:
    """Sums per key: per syscall number (per_process False) or per (pid, comm).

    `add_batch(batch, mask)` adds the syscall records of a batch the mask keeps (the process-tree
    records are not syscalls and are never counted); `rows()` gives the table, most calls first."""

    def __init__(self, per_process: bool = False):
        self.per_process = per_process
        self._sums: dict = {}        # key -> int64 array [count, errors, total_ns, hist...]

    def __len__(self) -> int:
        return len(self._sums)

    @property
    def total(self) -> int:
        return int(sum(v[0] for v in self._sums.values()))

    def add_batch(self, batch, mask=None) -> None:
        ev = batch.events
        keep = ev["nr"] < record.NR_SCHED_FORK
        keep &= ev["dir"] != record.DIR_ENTER
        if mask is not None:
            keep &= mask
        ev = ev[keep]
        if not len(ev):
            return
        keys = ev[["pid", "comm"]] if self.per_process else ev["nr"]
        uniq, inv = np.unique(keys, return_inverse=True)
        inv = inv.reshape(-1)
        k = len(uniq)
        res = ev["res"]
        failed = ((res < 0) & (res >= -4095)).astype(np.int64)
        lat = ev["latency"].astype(np.int64)
        sums = np.zeros((k, 3 + BUCKETS), dtype=np.int64)
        sums[:, 0] = np.bincount(inv, minlength=k)
        sums[:, 1] = np.bincount(inv, weights=failed, minlength=k).astype(np.int64)
        # totals in whole ns: bincount's float weights would round above 2^53 ns
        np.add.at(sums[:, 2], inv, lat)
        hist = np.bincount(inv * BUCKETS + buckets(ev["latency"]), minlength=k * BUCKETS)
        sums[:, 3:] = hist.reshape(k, BUCKETS)
        for i, key in enumerate(uniq.tolist()):
            if self.per_process:
                key = (int(key[0]), key[1].decode("utf-8", "replace"))
            else:
                key = int(key)
            old = self._sums.get(key)
            self._sums[key] = sums[i] if old is None else old + sums[i]

    def add_kernel(self, per_nr: dict[int, dict]) -> None:
        """Add the kernel's counters (Probe.syscall_stats(), or a difference of two of them)."""
        for nr, v in per_nr.items():
            row = np.array([v["count"], v["errors"], v["lat_sum"], *v["hist"]], dtype=np.int64)
            old = self._sums.get(nr)
            self._sums[nr] = row if old is None else old + row

    def rows(self, only_nrs=None) -> list[Row]:
        out = []
        for key, s in self._sums.items():
            if not s[0]:
                continue
            common = dict(count=int(s[0]), errors=int(s[1]), total_ns=int(s[2]), p99_ns=p99_ns(s[3:]))
            if self.per_process:
                out.append(Row(pid=key[0], comm=key[1], **common))
            elif only_nrs is None or key in only_nrs:
                out.append(Row(name=syscall_name(key), nr=key, **common))
        out.sort(key=lambda r: (-r.count, r.name, r.pid))
        return out


def kernel_counts(now: dict[int, dict], before: dict[int, dict] | None = None) -> dict[int, dict]:
    """The kernel's counters of `now` less those of `before` (an earlier snapshot): an interval's."""
    if not before:
        return now
    out = {}
    for nr, v in now.items():
        b = before.get(nr)
        if b is None:
            out[nr] = v
            continue
        d = {k: v[k] - b[k] for k in ("count", "errors", "lat_sum")}
        if d["count"] > 0:
            d["hist"] = [x - y for x, y in zip(v["hist"], b["hist"])]
            out[nr] = d
    return out


def table(rows: list[Row], per_process: bool, top: int) -> str:
    """The text table: a header line, then the `top` rows with the most calls."""
    if per_process:
        lines = [f"{'PID':>7} {'COMM':<16} {'COUNT':>10} {'ERRORS':>8} {'TOTAL_MS':>11} {'P99_US':>10}"]
        for r in rows[:top]:
            lines.append(f"{r.pid:>7} {r.comm:<16} {r.count:>10} {r.errors:>8} {r.total_ns / 1e6:>11.3f} "
                         f"{r.p99_ns / 1e3:>10.1f}")
    else:
        lines = [f"{'SYSCALL':<22} {'COUNT':>10} {'ERRORS':>8} {'TOTAL_MS':>11} {'P99_US':>10}"]
        for r in rows[:top]:
            lines.append(f"{r.name:<22} {r.count:>10} {r.errors:>8} {r.total_ns / 1e6:>11.3f} {r.p99_ns / 1e3:>10.1f}")
    return "\n".join(lines)
