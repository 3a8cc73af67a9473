"""The `lbd` command line: run, doctor, syscalls, stats, falco-config.

Errors are one line on stderr and a non-zero exit code; --debug shows the traceback.
"""
from __future__ import annotations

import argparse
import json
import signal
import sys
import time

EXIT_OK, EXIT_ERROR, EXIT_USAGE = 0, 1, 2


class CliError(Exception):
    """An error to print as one line (no traceback)."""


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="lbd", description="Linux behavior detection: capture every syscall with eBPF.")
    p.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")

    run = sub.add_parser("run", help="capture syscalls and write events (stdout by default)")
    run.add_argument("--config", metavar="FILE", help="JSON or YAML configuration (default: the embedded one)")
    run.add_argument("--format", choices=("normal", "json"), help="output format (default: config's format)")
    run.add_argument("--output", "-o", metavar="PATH", help="append events to PATH instead of stdout")
    sel = run.add_mutually_exclusive_group()
    sel.add_argument("--syscalls", metavar="FILE", help="interesting-syscalls JSON file (the seed's format)")
    sel.add_argument("--syscall", metavar="NAME", nargs="+", action="extend", help="capture only these syscalls")
    run.add_argument("--pid", type=int, nargs="+", action="extend", metavar="PID", help="keep only these pids")
    run.add_argument("--comm", nargs="+", action="extend", metavar="NAME", help="keep only these command names")
    run.add_argument("--exclude-pid", type=int, nargs="+", action="extend", metavar="PID", help="drop these pids")
    run.add_argument("--exclude-comm", nargs="+", action="extend", metavar="NAME", help="drop these command names")
    run.add_argument("--drop-failed", action="store_true", help="drop failed syscalls (res < 0)")
    run.add_argument("--enter", action="store_true", help="also emit enter events (dir '>')")
    run.add_argument("--duration", type=float, metavar="S", help="stop after S seconds")
    run.add_argument("--quiet", "-q", action="store_true", help="no live status line on stderr")

    doc = sub.add_parser("doctor", help="check that this host can capture, and say what is missing")
    doc.add_argument("--tracefs", metavar="DIR", help="where tracefs is (default /sys/kernel/tracing)")

    scs = sub.add_parser("syscalls", help="the syscall table, with the selected ones")
    scs.add_argument("--json", action="store_true", help="one JSON array of objects")
    scs.add_argument("--config", metavar="FILE", help="show the selection of this configuration")

    st = sub.add_parser("stats", help="count syscalls per name and process for a while (no event output)")
    st.add_argument("--duration", type=float, default=5.0, metavar="S")
    st.add_argument("--config", metavar="FILE")
    st.add_argument("--top", type=int, default=15, metavar="N")

    sub.add_parser("falco-config", help="print a falco.yaml fragment that loads lbd's plugin")
    return p


def _load_config(path: str | None):
    from lbd.config import Config

    return Config.from_file(path) if path else Config.default()


# ---- run ------------------------------------------------------------------------------------


def _run_config(a):
    cfg = _load_config(a.config)
    changes = {}
    if a.format:
        changes["format"] = a.format
    if a.syscalls:
        changes["interest_syscall_file"] = a.syscalls
        changes["syscalls"] = []
    if a.syscall:
        changes["syscalls"] = a.syscall
    if a.pid:
        changes["only_pids"] = a.pid
    if a.comm:
        changes["only_comms"] = a.comm
    if a.exclude_pid:
        changes["filter_pids"] = list(cfg.open.filter_pids) + a.exclude_pid
    if a.exclude_comm:
        changes["filter_comms"] = list(cfg.open.filter_comms) + a.exclude_comm
    if a.drop_failed:
        changes["drop_failed"] = True
    if a.enter:
        changes["emit_enter"] = True
    return cfg.replace(**changes) if changes else cfg


def cmd_run(a) -> int:
    from lbd.collector import Collector
    from lbd.output.writer import open_writer

    cfg = _run_config(a)
    stop = {"flag": False}

    def on_signal(signum, frame):
        stop["flag"] = True

    old = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    status = sys.stderr.isatty() and not a.quiet
    t0 = time.monotonic()
    try:
        with open_writer(cfg, a.output) as writer, Collector(cfg) as col:
            last = t0
            last_events = 0
            for batch in col:
                if len(batch):
                    writer.write_batch(batch)
                now = time.monotonic()
                if stop["flag"] or (a.duration is not None and now - t0 >= a.duration):
                    break
                if status and now - last >= 1.0:
                    st = col.stats()
                    rate = (col.events - last_events) / (now - last)
                    use = 100.0 * st["ring_pending_bytes"] / col.probe.ring_size
                    sys.stderr.write(f"\r{rate:10.0f} events/s  {col.events} events  "
                                     f"{st['dropped']} dropped  ring {use:4.1f}%  ")
                    sys.stderr.flush()
                    last, last_events = now, col.events
            final = col.stats()
            writer.flush()
        if status:
            sys.stderr.write("\n")
        _summary(final, time.monotonic() - t0, writer)
    finally:
        for s, h in old.items():
            signal.signal(s, h)
    return EXIT_OK


def _summary(st: dict, elapsed: float, writer) -> None:
    filtered = {k[2:]: v for k, v in st.items() if k.startswith("f_") and v}
    lines = [
        f"lbd: {st['delivered']} events in {elapsed:.1f}s, {st['dropped']} dropped (ring full), "
        f"{st['malformed']} malformed, {st['filtered']} filtered"
        + (f" ({', '.join(f'{k} {v}' for k, v in sorted(filtered.items()))})" if filtered else ""),
    ]
    top = getattr(writer, "top_syscalls", None)
    if top:
        lines.append("lbd: top syscalls: " + ", ".join(f"{n} {c}" for n, c in top(5)))
    print("\n".join(lines), file=sys.stderr)


# ---- other commands -------------------------------------------------------------------------


def cmd_doctor(a) -> int:
    from pathlib import Path

    from lbd import doctor

    host = doctor.Host(tracefs=Path(a.tracefs)) if a.tracefs else doctor.Host()
    return doctor.report(doctor.run_checks(host))


def cmd_syscalls(a) -> int:
    from lbd import syscalls
    from lbd.probe import resolve_selection

    selected = resolve_selection(_load_config(a.config))
    rows = syscalls.to_json_list(selected)
    if a.json:
        json.dump(rows, sys.stdout, indent=1)
        sys.stdout.write("\n")
        return EXIT_OK
    for r in rows:
        mark = "*" if r["selected"] else " "
        impl = "" if r["implemented"] else "  (not implemented)"
        args = ", ".join(f"{x['name']}:{x['kind']}" for x in r["args"])
        print(f"{mark} {r['nr']:3d} {r['name']}({args}){impl}")
    print(f"\n{sum(r['selected'] for r in rows)} of {len(rows)} selected (*)", file=sys.stderr)
    return EXIT_OK


def cmd_stats(a) -> int:
    from collections import Counter

    import numpy as np

    from lbd.batch import syscall_name
    from lbd.collector import Collector

    cfg = _load_config(a.config)
    by_nr: Counter = Counter()
    by_proc: Counter = Counter()
    t0 = time.monotonic()
    with Collector(cfg) as col:
        for batch in col:
            if len(batch):
                ev = batch.events
                nrs, counts = np.unique(ev["nr"], return_counts=True)
                by_nr.update(dict(zip(nrs.tolist(), counts.tolist())))
                keys, counts = np.unique(ev[["pid", "comm"]], return_counts=True)
                by_proc.update({(int(k["pid"]), k["comm"].decode(errors="replace")): int(c)
                                for k, c in zip(keys, counts)})
            if time.monotonic() - t0 >= a.duration:
                break
        st = col.stats()
    total = sum(by_nr.values())
    print(f"{total} events in {a.duration:.1f}s ({st['dropped']} dropped, {st['filtered']} filtered)")
    print("\nper syscall:")
    for nr, c in by_nr.most_common(a.top):
        print(f"  {c:10d}  {syscall_name(nr)}")
    print("\nper process:")
    for (pid, comm), c in by_proc.most_common(a.top):
        print(f"  {c:10d}  {pid:7d}  {comm}")
    return EXIT_OK


def cmd_falco_config(a) -> int:
    try:
        from lbd.falco import falco_config_fragment
    except ImportError:
        raise CliError("the Falco plugin support is not built yet (see the README's Falco section)") from None
    sys.stdout.write(falco_config_fragment())
    return EXIT_OK


COMMANDS = {"run": cmd_run, "doctor": cmd_doctor, "syscalls": cmd_syscalls, "stats": cmd_stats,
            "falco-config": cmd_falco_config}


def main(argv: list[str] | None = None) -> int:
    p = _parser()
    a = p.parse_args(argv)
    if not a.command:
        p.print_help(sys.stderr)
        return EXIT_USAGE
    try:
        return COMMANDS[a.command](a)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return EXIT_OK
    except Exception as e:  # one line unless --debug
        if a.debug:
            raise
        from lbd.config import ConfigError

        kind = "" if isinstance(e, (CliError, ConfigError, OSError)) else f"{type(e).__name__}: "
        print(f"lbd: error: {kind}{e}", file=sys.stderr)
        return EXIT_ERROR


if __name__ == "__main__":
    sys.exit(main())
