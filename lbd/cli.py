# PYTHON_ARGCOMPLETE_OK
"""The `lbd` command line: run, doctor, syscalls, stats, falco-config.

Errors are one line on stderr (never a Python class name) and a non-zero exit code; --debug shows
the traceback.  A Ctrl-C at any moment exits 130 without a traceback.
`lbd run` writes events to stdout or a file (lbd.output), logs per the configuration's
log_level / log_file (stderr by default), shows a live status line on stderr when stderr is a
terminal (not with --quiet), and on Ctrl-C, SIGTERM or --duration detaches the probe, writes what
is buffered and prints a summary (events, written, not written, drops by reason, top syscalls) on
stderr.  SIGHUP reopens the output file and the log file (logrotate's convention).  When the
output stalls the signals still act within about 0.1 s: what could not be written is counted.
"""
from __future__ import annotations

import signal
import sys


def _interrupted(signum, frame):
    """SIGINT before `lbd run` takes it over (start-up, imports, argument parsing): exit 130."""
    raise SystemExit(130)


def _take_sigint() -> bool:
    """From here on a Ctrl-C is an exit (130), not a traceback.  A SIGINT that a launcher kept
    blocked while the interpreter started (the one moment lbd cannot handle) is delivered now."""
    if signal.getsignal(signal.SIGINT) is not signal.default_int_handler:
        return False                         # ignored (a background job) or someone else's
    signal.signal(signal.SIGINT, _interrupted)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
    return True


if __name__ == "__main__":                   # python -m lbd.cli
    _take_sigint()

import argparse  # noqa: E402
import json  # noqa: E402
import logging  # noqa: E402
import math  # noqa: E402
import os  # noqa: E402
import time  # noqa: E402

EXIT_OK, EXIT_ERROR, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130
COMM_MAX = 15           # bytes of a command name the kernel keeps (TASK_COMM_LEN - 1)

log = logging.getLogger("lbd.cli")


class CliError(Exception):
    """An error to print as one line (no traceback)."""


def _seconds(text: str) -> float:
    """--duration: a positive finite number of seconds."""
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not math.isfinite(v) or v <= 0:
        raise argparse.ArgumentTypeError(f"{text!r}: the duration must be a positive finite number of seconds")
    return v


def _syscall_list(text: str) -> list[str]:
    """-e: comma-separated syscall names, strace's way (`-e openat,read` or `-e trace=openat,read`)."""
    names = text.removeprefix("trace=").split(",")
    if not all(n.strip() for n in names):
        raise argparse.ArgumentTypeError(f"{text!r}: expected NAME[,NAME...] (e.g. openat,read or trace=openat)")
    return [n.strip() for n in names]


def _syscall_completer(prefix: str, **kw) -> list[str]:
    """Shell completion of syscall names, also after the commas of -e's list (`-e openat,re<TAB>`)."""
    from lbd import syscalls

    head, comma, last = prefix.rpartition(",")
    lead = head + comma
    if not comma and last.startswith("trace="):
        lead, last = "trace=", last[len("trace="):]
    return [lead + sc.name for sc in syscalls.TABLE if sc.implemented and sc.name.startswith(last)]


def _uid(text: str) -> int:
    """-u: a uid number or a user name of this host."""
    if text.isdigit():
        v = int(text)
        if v > 0xFFFFFFFE:
            raise argparse.ArgumentTypeError(f"{text!r}: a uid is at most 4294967294")
        return v
    import pwd

    try:
        return pwd.getpwnam(text).pw_uid
    except KeyError:
        raise argparse.ArgumentTypeError(f"{text!r} is neither a uid nor a user name of this host") from None


def _positive(text: str) -> int:
    """--top: a positive whole number."""
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: expected a whole number >= 1")
    return int(text)


def version() -> str:
    """The installed package's version (its metadata), else the source tree's lbd.__version__."""
    from importlib import metadata

    try:
        return metadata.version("lbd")
    except metadata.PackageNotFoundError:
        from lbd import __version__

        return __version__


# The examples every subcommand's --help ends with (bcc's habit); tests parse each command line.
EXAMPLES = {
    "run": """\
examples:
  lbd run                                  # every selected syscall, one line each, until Ctrl-C
  lbd run -e openat,execve -d 10           # only openat and execve, for 10 seconds
  lbd run -e trace=connect -f json         # strace's -e trace= spelling; JSON Lines
  lbd run -p 1234 -x                       # failed syscalls of pid 1234 only
  lbd run -n nginx -o /tmp/nginx.log       # processes named nginx, appended to a file
  lbd run -u 1000 -q                       # syscalls of uid 1000, no status line
  lbd run --filter 'syscall = openat and arg.filename startswith /etc/'
  lbd run --config /etc/lbd/lbd.yaml --debug""",
    "doctor": """\
examples:
  lbd doctor                               # can this host capture? what is missing, how to fix it
  lbd doctor --config /etc/lbd/lbd.yaml    # with that configuration's loader and rings
  sudo setpriv --reuid=65534 --regid=65534 --clear-groups \\
       --inh-caps=+bpf,+perfmon,+dac_read_search,+sys_ptrace \\
       --ambient-caps=+bpf,+perfmon,+dac_read_search,+sys_ptrace \\
       lbd doctor                          # as a user without root, with the capabilities lbd needs""",
    "syscalls": """\
examples:
  lbd syscalls                             # the table; * marks the selected syscalls
  lbd syscalls --json | jq '.[] | select(.selected) | .name'
  lbd syscalls --config /etc/lbd/lbd.yaml  # that configuration's selection""",
    "stats": """\
examples:
  lbd stats                                # every syscall of the host for 5 s, counted in the kernel
  lbd stats -d 10 --top 5                  # the 5 most frequent, over 10 s
  lbd stats -i 1                           # a new table every second (redrawn like top on a terminal)
  lbd stats -P -x                          # per process, failed syscalls only
  lbd stats -p 1234 -e openat,read,write   # these syscalls of pid 1234
  lbd stats -u 1000 --json                 # uid 1000's syscalls, one JSON object
  lbd stats 'syscall = openat and errno = ENOENT' -P""",
    "falco-config": """\
examples:
  lbd falco-config > /etc/falco/config.d/lbd.yaml
  lbd falco-config --merge-with /etc/falco/falco.yaml""",
}


class _HelpFormatter(argparse.HelpFormatter):
    """--help: descriptions wrapped to the terminal, the examples epilog kept line for line (what
    RawDescriptionHelpFormatter does to both)."""

    def _fill_text(self, text, width, indent):
        if text.startswith("examples:"):
            return "".join(indent + line for line in text.splitlines(keepends=True))
        return super()._fill_text(text, width, indent)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="lbd", description="Linux behavior detection: capture every syscall with eBPF.",
                                epilog="examples:\n  lbd doctor\n  lbd run -e openat -d 5\n  lbd stats -i 1\n"
                                       "  lbd COMMAND --help", formatter_class=_HelpFormatter)
    p.add_argument("-V", "--version", action="version", version=f"lbd {version()}")
    p.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    # the global options again, for after the subcommand (`lbd run --debug`); SUPPRESS: not given
    # there, they keep what was given before it
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help="show tracebacks on errors")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")

    def add(name, **kw):
        return sub.add_parser(name, parents=[common], epilog=EXAMPLES[name],
                              formatter_class=_HelpFormatter, **kw)

    run = add("run", help="capture syscalls and write events (stdout by default)",
              description="Capture syscalls and write one event per line until Ctrl-C, SIGTERM or "
                          "--duration; then print a summary on stderr.  SIGHUP reopens the output "
                          "and log files (logrotate).")
    run.add_argument("--config", metavar="FILE",
                     help="JSON or YAML configuration (default: /etc/lbd/lbd.yaml when it exists, else the embedded one)")
    run.add_argument("-f", "--format", choices=("normal", "json", "parquet"),
                     help="output format (default: config's format); parquet writes a new file (--output)")
    run.add_argument("--output", "-o", metavar="PATH",
                     help="append events to PATH (created with mode 0600; never truncated) instead of stdout "
                          "(default: config's path when putfile is true)")
    sel = run.add_mutually_exclusive_group()
    sel.add_argument("--syscalls", metavar="FILE", help="interesting-syscalls JSON file (the seed's format)")
    sel.add_argument("--syscall", metavar="NAME", nargs="+", action="extend",
                     help="capture only these syscalls").completer = _syscall_completer
    sel.add_argument("-e", dest="syscall", metavar="SYSCALLS", type=_syscall_list, action="extend",
                     help="capture only these syscalls, strace's way: -e openat,read or -e trace=openat,read"
                     ).completer = _syscall_completer
    run.add_argument("-p", "--pid", type=int, nargs="+", action="extend", metavar="PID", help="keep only these pids")
    run.add_argument("-n", "--comm", nargs="+", action="extend", metavar="NAME",
                     help="keep only these command names (any bytes; cut to the kernel's 15)")
    run.add_argument("-u", "--uid", type=_uid, nargs="+", action="extend", metavar="UID",
                     help="keep only these users (uid or name), in the kernel (open_params.only_uids)")
    run.add_argument("--exclude-pid", type=int, nargs="+", action="extend", metavar="PID", help="drop these pids")
    run.add_argument("--exclude-comm", nargs="+", action="extend", metavar="NAME", help="drop these command names")
    run.add_argument("--filter", metavar="EXPR",
                     help="write only the events EXPR keeps (README: Filter expressions), e.g. "
                          "'syscall = openat and arg.filename startswith /etc/'; what the kernel can decide of "
                          "it (syscalls, pids, comms, uids, failed) is dropped there (open_params.filter)")
    fail = run.add_mutually_exclusive_group()
    fail.add_argument("-x", "--failed-only", action="store_true",
                      help="write only failed syscalls (res < 0); filtered in user space: the kernel still "
                           "captures every selected call (they count in the summary, and keep the fd table right)")
    fail.add_argument("--drop-failed", action="store_true", help="drop failed syscalls (res < 0), in the kernel")
    run.add_argument("--enter", action="store_true", help="also emit enter events (dir '>')")
    run.add_argument("--process-events", action="store_true",
                     help="also write the process-tree records (sched_process_fork/exec/exit)")
    run.add_argument("-d", "--duration", type=_seconds, metavar="S", help="stop after S seconds (> 0)")
    run.add_argument("--quiet", "-q", action="store_true", help="no live status line on stderr")
    run.add_argument("--metrics", metavar="ADDR:PORT",
                     help="serve Prometheus metrics at http://ADDR:PORT/metrics (e.g. 127.0.0.1:9464)")

    doc = add("doctor", help="check that this host can capture, and say what is missing",
              description="Check that this host can capture (privileges and capabilities, kernel, BPF, BTF, "
                          "loader, tracefs) and say what is missing and how to fix it; exit 1 when "
                          "capture cannot work.")
    doc.add_argument("--tracefs", metavar="DIR", help="where tracefs is (default /sys/kernel/tracing)")
    doc.add_argument("--config", metavar="FILE", help="check with this configuration (loader, rings)")

    scs = add("syscalls", help="the syscall table, with the selected ones",
              description="Print the syscall table (number, name, arguments), marking the selected ones.")
    scs.add_argument("--json", action="store_true", help="one JSON array of objects")
    scs.add_argument("--config", metavar="FILE", help="show the selection of this configuration")

    st = add("stats", help="count syscalls per syscall or per process, with errors and latency (a better syscount)",
             description="Count syscalls for a while (-d) or at every interval (-i): per syscall (default) or "
                         "per process (-P), with errors, total and p99 latency.  Without a process filter, "
                         "per syscall, every syscall of the host is counted in the kernel (open_params."
                         "syscall_stats) and no event is captured.  With a filter (-p, -n, -u, -x, EXPR, or "
                         "the configuration's pid, comm, uid or failed filters; -e only narrows the rows) or "
                         "-P, the matching events are captured (all syscalls, or -e's) and counted in user "
                         "space.  P99_US is the upper edge of the "
                         "power-of-two latency bucket that holds the 99th percentile.")
    st.add_argument("expr", nargs="?", metavar="EXPR", help="count only the events this filter expression keeps")
    st.add_argument("-d", "--duration", type=_seconds, metavar="S",
                    help="stop after S seconds (default: 5, or until Ctrl-C with -i)")
    st.add_argument("-i", "--interval", type=_seconds, metavar="S",
                    help="print a table every S seconds (the counts of that interval); on a terminal the "
                         "screen is redrawn, like top")
    st.add_argument("--config", metavar="FILE", help="JSON or YAML configuration (rings, loader, filters)")
    st.add_argument("-T", "--top", type=_positive, default=15, metavar="N", help="rows per table (default 15)")
    st.add_argument("-P", "--per-process", action="store_true", help="count per process (pid, comm), not per syscall")
    st.add_argument("-p", "--pid", type=int, nargs="+", action="extend", metavar="PID", help="count only these pids")
    st.add_argument("-n", "--comm", nargs="+", action="extend", metavar="NAME", help="count only these command names")
    st.add_argument("-u", "--uid", type=_uid, nargs="+", action="extend", metavar="UID",
                    help="count only these users (uid or name)")
    st.add_argument("-x", "--failed-only", action="store_true", help="count only failed syscalls")
    st.add_argument("-e", "--syscall", type=_syscall_list, action="extend", metavar="SYSCALLS",
                    help="only these syscalls: -e openat,read or -e trace=openat,read").completer = _syscall_completer
    st.add_argument("--filter", metavar="EXPR", help="a filter expression (as EXPR)")
    st.add_argument("--json", action="store_true", help="one JSON object (one per interval with -i) instead of tables")

    fc = add("falco-config", help="print a Falco config.d drop-in that adds lbd's plugin",
             description="Print a drop-in for /etc/falco/config.d/ that adds lbd's plugin to the "
                         "plugins Falco loads (Falco >= 0.41 appends a drop-in's lists), or with "
                         "--merge-with the whole plugins and load_plugins lists of a falco.yaml with "
                         "lbd added (for Falco 0.38-0.40, or a strategy: override entry).")
    fc.add_argument("--merge-with", metavar="FALCO_YAML",
                    help="print FALCO_YAML's plugins and load_plugins with lbd added")
    return p


def _load_config(path: str | None):
    """--config FILE, else /etc/lbd/lbd.yaml when it exists, else the embedded default."""
    from lbd.config import Config

    return Config.load(path)


_LEVELS = {"DEBUG": logging.DEBUG, "INFO": logging.INFO, "WARNING": logging.WARNING, "ERROR": logging.ERROR,
           "FATAL": logging.CRITICAL}


_PRIORITY = {logging.DEBUG: 7, logging.INFO: 6, logging.WARNING: 4, logging.ERROR: 3, logging.CRITICAL: 2}


class JournalFormatter(logging.Formatter):
    """Lines for journald (sd-daemon(3)): each starts with "<priority>", which the journal stores
    as the entry's priority; no time stamp and no "lbd:" (the journal has both)."""

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        prio = _PRIORITY.get(record.levelno, 6)
        return "\n".join(f"<{prio}>{line}" for line in text.splitlines() or [""])


def stderr_is_journal() -> bool:
    """stderr is the stream systemd connected to the journal (JOURNAL_STREAM=<dev>:<inode>)."""
    js = os.environ.get("JOURNAL_STREAM", "")
    dev, _, ino = js.partition(":")
    try:
        st = os.fstat(sys.stderr.fileno())
        return bool(js) and st.st_dev == int(dev) and st.st_ino == int(ino)
    except (ValueError, OSError, AttributeError):
        return False


def setup_logging(cfg) -> logging.Handler:
    """Log records of the "lbd" loggers at cfg's log_level to log_file (appended) or stderr;
    on stderr as journald wants them when it is the journal (JournalFormatter)."""
    from lbd.files import PrivateLogHandler

    log_file = cfg.init.log_file
    if log_file:
        try:
            handler: logging.Handler = PrivateLogHandler(log_file)
        except OSError as e:
            raise CliError(str(e)) from None
        handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s: %(message)s"))
    else:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(JournalFormatter("%(message)s") if stderr_is_journal()
                             else logging.Formatter("lbd: %(message)s"))
    root = logging.getLogger("lbd")
    for h in list(root.handlers):
        root.removeHandler(h)
    root.addHandler(handler)
    root.setLevel(_LEVELS.get(cfg.init.log_level, logging.INFO))
    root.propagate = False
    return handler


# ---- run ------------------------------------------------------------------------------------


def _comms(names: list[str], option: str) -> list[str]:
    """Command names from the command line: any bytes (Python hands them over surrogate-escaped),
    cut to the kernel's 15 bytes as the kernel cuts a comm, with a warning."""
    from lbd.config import name_bytes

    out = []
    for name in names:
        b = name_bytes(name)
        if len(b) > COMM_MAX:
            shown = b.decode("utf-8", "backslashreplace")
            name = b[:COMM_MAX].decode("utf-8", "surrogateescape")
            print(f"lbd: warning: {option} {shown}: {len(b)} bytes, but the kernel keeps a command name's first "
                  f"{COMM_MAX}: matching {b[:COMM_MAX].decode('utf-8', 'backslashreplace')}", file=sys.stderr)
        out.append(name)
    return out


def _check_selection(cfg) -> None:
    """An empty syscall selection is an error: nothing would ever be captured."""
    from lbd.probe import resolve_selection

    if not resolve_selection(cfg):
        src = cfg.open.interest_syscall_file or "the packaged selection"
        raise CliError(f"the syscall selection is empty: {src} marks no syscall interesting (1); "
                       f"select at least one (--syscall NAME, or a file with an entry set to 1)")


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
        changes["only_comms"] = _comms(a.comm, "--comm")
    if getattr(a, "uid", None):
        changes["only_uids"] = a.uid
    if a.exclude_pid:
        changes["filter_pids"] = list(cfg.open.filter_pids) + a.exclude_pid
    if a.exclude_comm:
        changes["filter_comms"] = list(cfg.open.filter_comms) + _comms(a.exclude_comm, "--exclude-comm")
    if a.drop_failed:
        changes["drop_failed"] = True
    if a.enter:
        changes["emit_enter"] = True
    if getattr(a, "filter", None):
        changes["filter"] = a.filter
    return cfg.replace(**changes) if changes else cfg


class _UserFilter:
    """What `lbd run` writes of a batch, decided in user space: syscalls only unless
    --process-events (then the process-tree records of the selected pids and comms), and only the
    failed ones with --failed-only."""

    def __init__(self, cfg, failed_only: bool, process_events: bool):
        import numpy as np

        from lbd import record
        from lbd.config import name_bytes

        self.failed_only = failed_only
        self.process_events = process_events
        self.sched_min = record.NR_SCHED_FORK
        o = cfg.open
        self.only_pids = np.array(o.only_pids, dtype=np.uint32) if o.only_pids else None
        self.only_comms = (np.array([name_bytes(c)[:COMM_MAX] for c in o.only_comms], dtype="S16")
                           if o.only_comms else None)
        self.drop_pids = np.array(o.filter_pids, dtype=np.uint32) if o.filter_pids else None
        self.drop_comms = (np.array([name_bytes(c)[:COMM_MAX] for c in o.filter_comms], dtype="S16")
                           if o.filter_comms else None)
        from lbd.filter.pushdown import compiled

        self.filter = compiled(cfg)         # open_params.filter / --filter: applied whole, here

    def mask(self, batch):
        """A bool array (None: every event)."""
        keep = self._mask(batch)
        if self.filter is None:
            return keep
        f = self.filter(batch)
        return f if keep is None else keep & f

    def _mask(self, batch):
        import numpy as np

        ev = batch.events
        sched = ev["nr"] >= self.sched_min
        out = batch.output_mask()           # state records are never written
        if not self.failed_only and not sched.any():
            return out
        keep = ~sched
        if self.process_events and sched.any():
            ok = sched.copy()
            if self.only_pids is not None or self.only_comms is not None:
                sel = np.zeros(len(ev), dtype=bool)
                if self.only_pids is not None:
                    sel |= np.isin(ev["pid"], self.only_pids)
                if self.only_comms is not None:
                    sel |= np.isin(ev["comm"], self.only_comms)
                ok &= sel
            if self.drop_pids is not None:
                ok &= ~np.isin(ev["pid"], self.drop_pids)
            if self.drop_comms is not None:
                ok &= ~np.isin(ev["comm"], self.drop_comms)
            keep |= ok
        if self.failed_only:
            keep &= ev["res"] < 0
        if out is not None:
            keep &= out
        return keep


def cmd_run(a) -> int:
    from lbd.collector import Collector
    from lbd.output.writer import OutputClosed, OutputError, open_writer

    cfg = _run_config(a)
    _check_selection(cfg)
    log_handler = setup_logging(cfg)
    ufilter = _UserFilter(cfg, a.failed_only, a.process_events)
    stop = {"signal": None}
    hup = {"n": 0}

    def on_signal(signum, frame):
        stop["signal"] = signum

    def on_hup(signum, frame):
        hup["n"] += 1

    status = sys.stderr.isatty() and not a.quiet
    if a.metrics:
        from lbd.metrics import MetricsError, parse_address

        try:
            parse_address(a.metrics)
        except MetricsError as e:
            raise CliError(str(e)) from None
    # the output first: a file that cannot be opened stops the run before the probe is loaded
    writer = open_writer(cfg, a.output, should_stop=lambda: stop["signal"] is not None)
    old = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    old[signal.SIGHUP] = signal.signal(signal.SIGHUP, on_hup)
    t0 = time.monotonic()
    final = None
    col = None
    error: OutputError | None = None
    closed = False
    metrics = None
    try:
        # Parquet converts a batch at a time: large batches amortise the per-batch work
        bsize = max(cfg.init.batch_size, 16384) if writer.format == "parquet" else None
        from lbd.filter.pushdown import kernel_config

        # the filter's part the kernel can decide goes into the probe's filters
        with Collector(kernel_config(cfg), enrich=True, batch_size=bsize) as col:
            if a.metrics:
                from lbd.metrics import MetricsError, StatsCollector, serve

                try:
                    metrics = serve(a.metrics, StatsCollector.for_collector(col, outputs=[writer]))
                except MetricsError as e:
                    raise CliError(str(e)) from None
            pr = col.probe
            log.info("capturing %d syscalls (%s loader, %d rings of %d KiB: %.1f MiB), %s format, to %s; "
                     "Ctrl-C stops", len(pr.selection), pr.kind, pr.nrings, pr.ring_size >> 10,
                     pr.ring_bytes / (1 << 20), writer.format, writer.name)
            if metrics is not None:
                host = f"[{metrics.address}]" if ":" in metrics.address else metrics.address
                log.info("metrics at http://%s:%d/metrics", host, metrics.port)
            t0 = time.monotonic()              # --duration counts from the attach
            last = t0
            last_events = 0
            hups = 0
            for batch in col:
                if len(batch):
                    try:
                        writer.write_batch(batch, ufilter.mask(batch))
                    except OutputError as e:
                        error = e
                        break
                if hup["n"] != hups:
                    hups = hup["n"]
                    _reopen(writer, log_handler)
                now = time.monotonic()
                if stop["signal"] is not None or (a.duration is not None and now - t0 >= a.duration):
                    break
                if status and now - last >= 1.0:
                    st = col.stats()
                    rate = (col.events - last_events) / (now - last)
                    use = 100.0 * st["ring_fill_max"]          # the fullest ring
                    sys.stderr.write(f"\r\033[K{rate:10.0f} events/s  {col.events} events  "
                                     f"{writer.events} written  {st['dropped']} dropped  ring {use:4.1f}%")
                    sys.stderr.flush()
                    last, last_events = now, col.events
            final = col.stats()
        if error is None:
            closed = True
            try:
                writer.close()                 # what is buffered, after the probe is detached
            except OutputError as e:
                error = e
    finally:
        if metrics is not None:
            metrics.close()
        for s, h in old.items():
            signal.signal(s, h)
        if status:
            sys.stderr.write("\r\033[K")
            sys.stderr.flush()
        if not closed:
            try:
                writer.close()
            except OSError:
                pass
    _summary(final, time.monotonic() - t0, writer, col.enricher if col is not None else None, error)
    if col is not None and col.enricher is not None:
        log.debug("enrichment: %s", col.enricher.stats())
    if error is not None and not isinstance(error, OutputClosed):
        print(f"lbd: error: {error}", file=sys.stderr)
        return EXIT_ERROR
    return EXIT_INTERRUPTED if stop["signal"] == signal.SIGINT else EXIT_OK


def _reopen(writer, log_handler) -> None:
    """SIGHUP: open the output file and the log file again (after logrotate moved them)."""
    from lbd.files import PrivateLogHandler

    if isinstance(log_handler, PrivateLogHandler):
        try:
            log_handler.reopen()
        except OSError as e:
            log.error("cannot reopen the log file, still writing to the one opened before: %s", e)
    reopen = getattr(writer, "reopen", None)          # the text writer's; Parquet and NATS have none
    if reopen is not None and reopen():
        log.info("SIGHUP: %s reopened", writer.name)
    elif getattr(writer, "file", None) is None:
        log.info("SIGHUP: the output is %s, not a file: nothing to reopen", writer.name)


def _summary(st: dict, elapsed: float, writer, enricher=None, error=None) -> None:
    from lbd.output.writer import OutputClosed

    filtered = {k[2:]: v for k, v in st.items() if k.startswith("f_") and v}
    lost = {"ring full": st.get("dropped", 0), "malformed": st.get("malformed", 0)}
    not_written = ""
    if getattr(writer, "unwritten", 0):
        why = ("the reader went away" if isinstance(error, OutputClosed) else "write error" if error is not None
               else "the output was blocked when the run stopped")
        not_written = f", {writer.unwritten} not written ({why})"
    lines = [
        f"lbd: {st['delivered']} events in {elapsed:.1f}s, {writer.events} written to {writer.name}{not_written}; "
        f"dropped: {', '.join(f'{k} {v}' for k, v in lost.items())}; {st['filtered']} filtered in the kernel"
        + (f" ({', '.join(f'{k} {v}' for k, v in sorted(filtered.items()))})" if filtered else ""),
    ]
    top = writer.top_syscalls(8)
    if top:
        lines.append("lbd: top syscalls: " + ", ".join(f"{n} {c}" for n, c in top))
    try:
        print("\n".join(lines), file=sys.stderr)
    except OSError:
        pass


# ---- other commands -------------------------------------------------------------------------


def cmd_doctor(a) -> int:
    from pathlib import Path

    from lbd import doctor

    cfg = _load_config(a.config)
    kw = {"config": cfg, "loader": cfg.open.loader}
    if a.tracefs:
        kw["tracefs"] = Path(a.tracefs)
    return doctor.report(doctor.run_checks(doctor.Host(**kw)))


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


def _stats_config(a):
    """`lbd stats`'s configuration, and whether it counts captured events (True) or only reads the
    kernel's per-syscall counters (False: per syscall, no process filter; nothing is captured)."""
    from lbd import syscalls

    cfg = _load_config(a.config)
    exprs = [e for e in (a.expr, a.filter) if e and e.strip()]
    for name in a.syscall or ():
        try:
            syscalls.lookup(name)
        except KeyError:
            raise CliError(f"-e {name}: not a known syscall (lbd syscalls lists them)") from None
    o = cfg.open
    # the configuration's own process filters count too: the kernel's counters know no process
    own = any((o.only_pids, o.only_tids, o.only_comms, o.only_uids, o.filter_pids, o.filter_comms, o.filter_uids,
               o.failed_only, o.drop_failed, o.filter.strip()))
    events = bool(a.per_process or a.pid or a.comm or a.uid or a.failed_only or exprs or own)
    if not events:
        # every syscall counted at its exit in the kernel; no record is written
        return cfg.replace(syscall_stats=True, drop_mode=True, track_state=False, emit_enter=False), False
    changes = {"syscall_stats": False, "emit_enter": False, "drop_mode": False,
               "syscalls": a.syscall or [sc.name for sc in syscalls.TABLE if sc.implemented]}
    if a.pid:
        changes["only_pids"] = a.pid
    if a.comm:
        changes["only_comms"] = _comms(a.comm, "--comm")
    if a.uid:
        changes["only_uids"] = a.uid
    if a.failed_only:
        changes["failed_only"] = True
    if exprs:
        changes["filter"] = " and ".join(f"({e})" for e in exprs) if len(exprs) > 1 else exprs[0]
    return cfg.replace(**changes), True


def cmd_stats(a) -> int:
    from lbd import stats as lstats
    from lbd import syscalls
    from lbd.collector import Collector
    from lbd.filter.pushdown import compiled, kernel_config

    cfg, events = _stats_config(a)
    setup_logging(cfg)
    only_nrs = frozenset(syscalls.lookup(n).nr for n in a.syscall) if a.syscall else None
    ufilter = compiled(cfg) if events else None
    duration = a.duration if a.duration is not None else (None if a.interval else 5.0)
    redraw = bool(a.interval) and not a.json and sys.stdout.isatty()
    stop = {"signal": None}

    def on_signal(signum, frame):
        stop["signal"] = signum

    def emit(counts, seconds, st):
        rows = counts.rows(only_nrs)
        head = {"mode": "events" if events else "kernel", "seconds": round(seconds, 3),
                "events": sum(r.count for r in rows), "dropped": st["dropped"], "filtered": st["filtered"],
                "malformed": st["malformed"]}
        if a.json:
            doc = dict(head)
            if a.per_process:
                doc["processes"] = [r.to_json() for r in rows]
            else:
                doc["syscalls"] = [r.to_json() for r in rows]
            if a.interval:
                doc["time"] = time.strftime("%H:%M:%S")
            json.dump(doc, sys.stdout)
            sys.stdout.write("\n")
        else:
            if redraw:
                sys.stdout.write("\033[H\033[2J")          # like top: the table replaces the last one
            stamp = f"[{time.strftime('%H:%M:%S')}] " if a.interval else ""
            how = "counted in the kernel" if not events else f"{head['dropped']} dropped"
            sys.stdout.write(f"{stamp}{head['events']} syscalls in {seconds:.1f}s ({how})\n"
                             f"{lstats.table(rows, a.per_process, a.top)}\n")
            if a.interval and not redraw:
                sys.stdout.write("\n")
        sys.stdout.flush()

    def count(batch):
        mask = batch.output_mask()
        if ufilter is not None:
            f = ufilter(batch)
            mask = f if mask is None else mask & f
        if a.failed_only:                     # the kernel's failed_only lets exit and exit_group through
            f = batch.events["res"] < 0
            mask = f if mask is None else mask & f
        counts.add_batch(batch, mask)

    old = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    kcfg = kernel_config(cfg)
    try:
        with Collector(kcfg, enrich=bool(ufilter is not None and ufilter.needs_enrichment)) as col:
            # the kernel's counters at the start (read before saying so: what follows is counted)
            before = col.probe.syscall_stats() if not events else None
            if events:
                log.info("counting %d syscalls%s", len(col.probe.selection),
                         f" for {duration:.1f}s" if duration else " until Ctrl-C")
            else:
                log.info("counting every syscall in the kernel%s",
                         f" for {duration:.1f}s" if duration else " until Ctrl-C")
            counts = lstats.Counts(a.per_process)
            t0 = last = time.monotonic()       # the duration counts from the attach
            shown = False
            for batch in col:
                if events and len(batch):
                    count(batch)
                now = time.monotonic()
                done = stop["signal"] is not None or (duration is not None and now - t0 >= duration)
                if a.interval and now - last >= a.interval:
                    if not events:
                        snap = col.probe.syscall_stats()
                        counts.add_kernel(lstats.kernel_counts(snap, before))
                        before = snap
                    emit(counts, now - last, col.stats())
                    counts, last, shown = lstats.Counts(a.per_process), now, True
                if done:
                    break
            if events:
                # stop capturing, then count what the rings still hold (every call made until now)
                col.probe.update(kcfg.replace(drop_mode=True))
                for _ in range(10_000):
                    batch = col.next_batch(0, flush=True)
                    if not len(batch):
                        break
                    count(batch)
            now = time.monotonic()
            # what is left: the whole run, or an interval cut short (unless it is a mere moment)
            if not shown or now - last >= 0.1 * a.interval:
                if not events:
                    counts.add_kernel(lstats.kernel_counts(col.probe.syscall_stats(), before))
                emit(counts, now - last, col.stats())
    finally:
        for s, h in old.items():
            signal.signal(s, h)
    return EXIT_INTERRUPTED if stop["signal"] == signal.SIGINT else EXIT_OK


def cmd_falco_config(a) -> int:
    try:
        from lbd.falco import falco_config_fragment, falco_config_merged
    except ImportError:
        raise CliError("the Falco plugin support is not built yet (see the README's Falco section)") from None
    if getattr(a, "merge_with", None):
        sys.stdout.write(falco_config_merged(a.merge_with))
    else:
        sys.stdout.write(falco_config_fragment())
    return EXIT_OK


COMMANDS = {"run": cmd_run, "doctor": cmd_doctor, "syscalls": cmd_syscalls, "stats": cmd_stats,
            "falco-config": cmd_falco_config}


def _message(e: BaseException) -> str:
    """One line for an error, without a Python class name: lbd's own errors (configuration,
    selection, probe, output, files) as they are, anything else marked as unexpected."""
    from lbd.config import ConfigError

    text = " ".join(str(e).split())
    known = isinstance(e, (CliError, ConfigError, OSError)) or type(e).__name__ in ("InterestingError", "ProbeError")
    if known and text:
        return text
    return f"unexpected failure: {text or 'no message'} (--debug shows where)"


def main(argv: list[str] | None = None) -> int:
    # numpy's OpenBLAS would start a thread per core that spins after use; lbd does no linear
    # algebra, and its cores are better spent on the capture (set before numpy is imported)
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    early = _take_sigint()                   # the `lbd` script
    try:
        p = _parser()
        if "_ARGCOMPLETE" in os.environ:      # the shell asks for completions (README: shell completion)
            import argcomplete

            argcomplete.autocomplete(p)       # prints them and exits
        a = p.parse_args(argv)
        if not a.command:
            p.print_help(sys.stderr)
            return EXIT_USAGE
        try:
            return COMMANDS[a.command](a)
        except KeyboardInterrupt:
            return EXIT_INTERRUPTED
        except BrokenPipeError:               # stdout closed (lbd syscalls | head): quietly
            _stdout_to_devnull()
            return EXIT_OK
        except Exception as e:  # one line unless --debug
            if a.debug:
                raise
            print(f"lbd: error: {_message(e)}", file=sys.stderr)
            return EXIT_ERROR
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    finally:
        if early:
            signal.signal(signal.SIGINT, signal.default_int_handler)


def _stdout_to_devnull() -> None:
    """Python flushes stdout at exit: with its reader gone that would print an error."""
    try:
        fd = os.open(os.devnull, os.O_WRONLY)
        os.dup2(fd, sys.stdout.fileno())
        os.close(fd)
    except (OSError, ValueError):
        pass


if __name__ == "__main__":
    sys.exit(main())
