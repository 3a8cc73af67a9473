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
At every stop the kernel stops writing and what the rings still hold is read and written first.
`lbd run [options] [EXPR] [-- CMD ARGS...]`: EXPR is a filter expression (as --filter); CMD is
started held before its exec, captured with its descendants (the kernel follows them) and lbd exits
with its status (see _Capture for the signals).  On a terminal the default format is `terminal`
and the status line is off when stdout is stderr's terminal.  `lbd record -o FILE` writes a capture
file (lbd.capture), `lbd replay FILE` writes its events as `lbd run` did.
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


class _CommandParser(argparse.ArgumentParser):
    """A subcommand's parser.  command_after=True: what follows the first "--" is a command to
    start and trace (`lbd run [options] [EXPR] -- CMD ARGS...`), in `trace_argv` (None without
    "--"), never parsed as options or as the filter expression.  intermixed=True: positionals may
    come between options (`lbd replay FILE --format json EXPR`; argparse's intermixed parsing)."""

    def __init__(self, *args, command_after: bool = False, intermixed: bool = False, **kwargs):
        super().__init__(*args, **kwargs)
        self.command_after = command_after
        self.intermixed = intermixed
        self._inside = False

    def parse_known_args(self, args=None, namespace=None):
        if self._inside:                     # parse_known_intermixed_args calls back here
            return super().parse_known_args(args, namespace)
        argv = list(sys.argv[1:] if args is None else args)
        trace = None
        if self.command_after and "--" in argv:
            k = argv.index("--")
            argv, trace = argv[:k], argv[k + 1:]
        if self.intermixed and "_ARGCOMPLETE" not in os.environ:   # (completion follows plain parsing)
            self._inside = True
            try:
                ns, extra = super().parse_known_intermixed_args(argv, namespace)
            finally:
                self._inside = False
        else:
            ns, extra = super().parse_known_args(argv, namespace)
        if self.command_after:
            ns.trace_argv = trace
        return ns, extra


def _terminal_options(p: argparse.ArgumentParser) -> None:
    """The terminal format's extras (lbd.output.terminal)."""
    p.add_argument("--cmdline", action="store_true", help="terminal format: add each event's command line")
    p.add_argument("--fds", action="store_true", help="terminal format: add the process's open files")
    p.add_argument("--latency", action="store_true", help="terminal format: add the time spent in the syscall")


def _share_options(src: argparse.ArgumentParser, dst: argparse.ArgumentParser, dests) -> None:
    """Give dst the options of src whose dest is in dests (the same actions, as argparse's parents
    do, so that options added to `lbd run` come with them); exclusive groups stay exclusive."""
    groups: dict = {}
    for action in src._actions:
        if action.dest not in dests:
            continue
        container = dst
        for g in src._mutually_exclusive_groups:
            if action in g._group_actions:
                if id(g) not in groups:
                    groups[id(g)] = dst.add_mutually_exclusive_group()
                container = groups[id(g)]
        container._add_action(action)


def _syscall_list(text: str) -> list[str]:
    """-e: comma-separated syscall names, strace's way (`-e openat,read` or `-e trace=openat,read`)."""
    names = text.removeprefix("trace=").split(",")
    if not all(n.strip() for n in names):
        raise argparse.ArgumentTypeError(f"{text!r}: expected NAME[,NAME...] (e.g. openat,read or trace=openat)")
    return [n.strip() for n in names]


def _add_keep_option(parser, short: str, long: str, dest: str, item, metavar: str, help: str,
                     commas: bool = True) -> None:
    """A list option two ways: the short one takes ONE value per use (bcc's `-p PID`; with commas,
    a list: `-p 1,2`), so an EXPR written right after it stays the EXPR; the long one takes several
    (`--pid 1 2`).  Both add to `dest`."""
    def one(text: str) -> list:
        parts = text.split(",") if commas else [text]
        if not all(p.strip() for p in parts):
            raise argparse.ArgumentTypeError(f"{text!r}: expected {metavar}[,{metavar}...]")
        return [item(p.strip()) if commas else item(p) for p in parts]

    parser.add_argument(short, dest=dest, type=one, action="extend", metavar=metavar + (",..." if commas else ""),
                        help=help + f" ({short} once per value" + (", or a comma list" if commas else "") + ")")
    parser.add_argument(long, dest=dest, type=item, nargs="+", action="extend", metavar=metavar,
                        help=f"as {short}, several values at once")


def _syscall_completer(prefix: str, **kw) -> list[str]:
    """Shell completion of syscall names, also after the commas of -e's list (`-e openat,re<TAB>`)."""
    from lbd import syscalls

    head, comma, last = prefix.rpartition(",")
    lead = head + comma
    if not comma and last.startswith("trace="):
        lead, last = "trace=", last[len("trace="):]
    return [lead + sc.name for sc in syscalls.TABLE if sc.implemented and sc.name.startswith(last)]


def _pid(text: str) -> int:
    """-p: a process id."""
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a pid (a number)") from None


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
  lbd run 'syscall in (open, openat) and arg.filename startswith /etc/ and not comm in (sshd, login)'
  lbd run -- curl -s http://localhost/     # a command and all it starts (like strace -f)
  lbd run -f terminal --latency -e openat,read -- cat /etc/hostname
  lbd run -x 'errno = EACCES'              # what fails with EACCES
  lbd run --record host.lbdcap -f json -o host.jsonl
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
    "record": """\
examples:
  lbd record -o host.lbdcap -d 30          # the whole host for 30 s
  lbd record -o curl.lbdcap -- curl -s https://example.org
  lbd record -o etc.lbdcap 'arg.filename startswith /etc/'""",
    "replay": """\
examples:
  lbd replay host.lbdcap
  lbd replay host.lbdcap -f json -o host.jsonl
  lbd replay host.lbdcap -f parquet -o host.parquet
  lbd replay host.lbdcap 'syscall = connect and sockaddr.port = 443'""",
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
    sub = p.add_subparsers(dest="command", metavar="COMMAND", parser_class=_CommandParser)

    def add(name, **kw):
        return sub.add_parser(name, parents=[common], epilog=EXAMPLES[name],
                              formatter_class=_HelpFormatter, **kw)

    run = add("run", help="capture syscalls and write events (stdout by default)",
              usage="%(prog)s [options] [EXPR] [-- CMD ARGS...]", command_after=True, intermixed=True,
              description="Capture syscalls and write one event per line until Ctrl-C, SIGTERM or "
                          "--duration; then print a summary on stderr.  SIGHUP reopens the output "
                          "and log files (logrotate).  EXPR: write only the events it keeps (as "
                          "--filter).  -- CMD ARGS...: start CMD and capture it and every process it "
                          "starts (followed in the kernel), stop when it exits and exit with its "
                          "status; SIGTERM (and --duration) are passed on to CMD, Ctrl-C reaches it "
                          "from the terminal; lbd then waits up to 2 s for it to exit.")
    run.add_argument("expression", nargs="?", metavar="EXPR",
                     help="a filter expression (README: Filter expressions); the same as --filter EXPR")
    run.add_argument("--config", metavar="FILE",
                     help="JSON or YAML configuration (default: /etc/lbd/lbd.yaml when it exists, else the embedded one)")
    run.add_argument("-f", "--format", choices=("normal", "json", "terminal", "parquet"),
                     help="output format (default: terminal when stdout is a terminal and no --config chose one, "
                          "else config's format); parquet writes a new file (--output)")
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
    _add_keep_option(run, "-p", "--pid", "pid", _pid, "PID", "keep only these pids")
    _add_keep_option(run, "-n", "--comm", "comm", str, "NAME",
                     "keep only these command names (any bytes; cut to the kernel's 15)", commas=False)
    _add_keep_option(run, "-u", "--uid", "uid", _uid, "UID",
                     "keep only these users (uid or name), in the kernel (open_params.only_uids)")
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
    _terminal_options(run)
    run.add_argument("--record", metavar="FILE",
                     help="also record the capture to FILE (a new file; lbd replay reads it back)")

    rec = add("record", help="record a capture to a file (lbd replay plays it back)",
              usage="%(prog)s -o FILE [options] [EXPR] [-- CMD ARGS...]", command_after=True, intermixed=True,
              description="Capture syscalls, as lbd run does, into a capture file: the raw records and "
                          "what decoding and enrichment need later (README: Capture and replay), "
                          "until Ctrl-C, SIGTERM, --duration or the end of CMD; then print a "
                          "summary on stderr.  EXPR is pushed into the kernel as far as it can be "
                          "and kept in the file: replay applies it.")
    rec.add_argument("--output", "-o", metavar="FILE", required=True,
                     help="the capture file to create (it must not exist)")
    rec.add_argument("expression", nargs="?", metavar="EXPR", help="a filter expression (as --filter)")
    _share_options(run, rec, ("config", "syscalls", "syscall", "pid", "comm", "exclude_pid", "exclude_comm",
                              "filter", "drop_failed", "enter", "duration", "quiet"))

    rep = add("replay", help="write the events of a capture file (lbd record, lbd run --record)",
              usage="%(prog)s FILE [options] [EXPR]", intermixed=True,
              description="Read a capture file back and write its events as lbd run wrote (or would "
                          "have written) them: the same lines, byte for byte, in any format.  The "
                          "recording's own filter applies, and EXPR on top of it.")
    rep.add_argument("file", metavar="FILE", help="a capture file")
    rep.add_argument("expression", nargs="?", metavar="EXPR", help="write only the events EXPR keeps")
    rep.add_argument("-f", "--format", choices=("normal", "json", "terminal", "parquet"),
                     help="output format (default: terminal on a terminal, else the recording's format)")
    rep.add_argument("--output", "-o", metavar="PATH", help="append events to PATH instead of stdout")
    _share_options(run, rep, ("failed_only", "process_events"))
    _terminal_options(rep)

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
    _add_keep_option(st, "-p", "--pid", "pid", _pid, "PID", "count only these pids")
    _add_keep_option(st, "-n", "--comm", "comm", str, "NAME", "count only these command names", commas=False)
    _add_keep_option(st, "-u", "--uid", "uid", _uid, "UID", "count only these users (uid or name)")
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
    if getattr(a, "format", None) in ("normal", "json", "parquet"):     # terminal is the CLI's alone
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
        # following (a traced command): the kernel keeps the descendants, whose pids are not listed
        self.only_pids = np.array(o.only_pids, dtype=np.uint32) if o.only_pids and not o.follow else None
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


EXIT_NOT_FOUND = 127    # the command after -- cannot be run (as a shell's exit status says it)
TRACE_GRACE_S = 2.0     # how long lbd waits for a traced command to exit after a stop (signal, --duration)


def _usage_error(message: str):
    """A bad command line found after parsing: one message (it may carry a caret line), exit 2."""
    print(f"lbd: error: {message}", file=sys.stderr)
    raise SystemExit(EXIT_USAGE)


def _expression(a) -> str | None:
    """The filter expression: EXPR or --filter (the same thing; not both), compiled here so that a
    bad one is reported with the expression and a caret under the column (exit 2) before anything
    is loaded or started."""
    expr = getattr(a, "expression", None)
    opt = getattr(a, "filter", None)
    if expr is not None and opt is not None:
        _usage_error("a filter expression was given twice (EXPR and --filter): give one")
    text = expr if expr is not None else opt
    if text is None or not text.strip():
        return None
    from lbd.filter import FilterError, compile as compile_filter

    try:
        compile_filter(text)
    except FilterError as e:
        _usage_error(str(e))
    return text


def _config_chose_format(path: str | None) -> bool:
    """Whether the configuration file --config names (else /etc/lbd/lbd.yaml when it exists) sets
    `format` itself (then it stays the default on a terminal too).  Called after Config.load read
    the same file, so it parses; a file that cannot be read again counts as choosing."""
    from lbd.config import SYSTEM_PATH

    if path is None:
        if not os.path.exists(SYSTEM_PATH):
            return False
        path = SYSTEM_PATH
    try:
        import yaml

        with open(path, "rb") as f:
            doc = yaml.safe_load(f.read().decode("utf-8-sig")) or {}
        init = doc.get("init_config") or {}
        return "format" in doc or "format" in init
    except Exception:  # noqa: BLE001 - any doubt: the file's format stands
        return True


def _stdout_terminal() -> bool:
    try:
        return os.isatty(sys.stdout.fileno())
    except (AttributeError, ValueError, OSError):
        return False


def _choose_format(a, cfg, output: str | None, config_path: str | None) -> str:
    """--format; else the configuration file's format when it sets one; else terminal when the
    events go to a terminal; else the configuration's format (normal by default)."""
    if getattr(a, "format", None):
        return a.format
    if config_path is not False and _config_chose_format(config_path):
        return cfg.init.format
    to_stdout = output == "-" or (output is None and not cfg.init.putfile)
    if to_stdout and _stdout_terminal():
        return "terminal"
    return cfg.init.format


def _open_output(cfg, output: str | None, fmt: str, a, **kw):
    """open_writer in `fmt`, with the terminal format's extras (--cmdline --fds --latency)."""
    from lbd.output.writer import open_writer

    extras = {k: bool(getattr(a, k, False)) for k in ("cmdline", "fds", "latency")}
    if any(extras.values()) and fmt != "terminal":
        given = " ".join(f"--{k}" for k, v in extras.items() if v)
        _usage_error(f"{given}: only the terminal format shows these (the format is {fmt}: --format terminal)")
    if fmt == "terminal" and output is not None and output.startswith("nats://"):
        _usage_error(f"--format terminal: {output} takes normal, json or parquet (the terminal format is for a "
                     "person at a terminal)")
    writer = open_writer(cfg, output, fmt=fmt, **kw)
    if any(extras.values()):
        from lbd.output.terminal import TerminalFormatter

        writer.formatter = TerminalFormatter(cfg.init.str_max_size, color=writer.formatter.color,
                                             capture_env=cfg.open.capture_env,
                                             secret_pattern=cfg.init.secret_pattern, **extras)
    return writer


def _shares_terminal(writer) -> bool:
    """The events go to the terminal stderr is (the status line would mix with them)."""
    fd = getattr(writer, "fd", None)
    if not isinstance(fd, int):
        return False
    try:
        if not (os.isatty(fd) and os.isatty(sys.stderr.fileno())):
            return False
        return os.fstat(fd).st_rdev == os.fstat(sys.stderr.fileno()).st_rdev
    except (AttributeError, ValueError, OSError):
        return False


def _check_new_file(path: str) -> None:
    """A capture file is created, never overwritten: say so before anything is loaded."""
    if os.path.lexists(path):
        raise CliError(f"cannot create capture file {path}: it exists (a capture is never overwritten)")
    parent = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(parent):
        raise CliError(f"cannot create capture file {path}: {parent} is not a directory")


def _drain(col, write) -> dict:
    """At the end of a capture: stop the kernel from writing more (drop_mode), then deliver every
    record the rings still hold through write(batch), so that nothing captured before the stop is
    lost.  Returns the final stats: the kernel's counters as they were when capture stopped (what
    drop_mode turned away afterwards is not counted), what was delivered after the drain."""
    probe = col.probe
    stopped = False
    kernel = col.stats()
    if probe is not None:
        try:
            probe.update(probe.config.replace(drop_mode=True))
            stopped = True
        except Exception as e:  # noqa: BLE001 - draining without it is bounded below
            log.debug("capture not stopped before draining: %s", e)
    flush = col.ring is not None                 # one consumer: release what the merge holds back
    empties = 0
    for _ in range(100000 if stopped else 64):
        batch = col.next_batch(1 if flush else None, flush=flush)
        if len(batch):
            empties = 0
            write(batch)
            continue
        empties += 1
        if flush or empties >= 3:
            break
    final = col.stats()
    out = dict(kernel)
    for key in ("delivered", "malformed", "late", "ring_pending_bytes", "ring_fill_max", "rings"):
        if key in final:
            out[key] = final[key]
    if "rings" in final:        # records the kernel wrote that were never read (none once drained)
        out["unread"] = max(0, sum(r["emitted"] for r in final["rings"]) - final["delivered"])
    return out


class _Capture:
    """What `lbd run` and `lbd record` share: the probe loaded around a command started first
    (trace_argv), the batches handed to `write(batch)` until a stop, then drained; the signals,
    SIGHUP's reopen, the status line.

    Signals: SIGINT, SIGTERM and --duration stop the capture.  With a command: a SIGTERM to lbd and
    --duration are passed on to the command as SIGTERM; a SIGINT is not (a Ctrl-C at the terminal
    already reached the command, which is in lbd's process group; passing it on would deliver it
    twice); lbd then captures until the command exits, at most TRACE_GRACE_S seconds (a second
    signal: at once), and leaves a command still running then to itself (no longer captured)."""

    def __init__(self, a, cfg, *, record: str | None = None, batch_size: int | None = None):
        self.a = a
        self.cfg = cfg
        self.record_path = record
        self.batch_size = batch_size
        self.stop_signal = None
        self.signals = 0
        self.hups = 0
        self.child = None
        self.released = False        # released or cancelled: the child no longer waits
        self.ran = False             # released: the command ran
        self.col = None
        self.final: dict | None = None
        self.error = None
        self.exit_code = None        # the command's
        self.recorded = None         # the capture file's writer once closed (events, bytes)
        self.enricher = None
        self.t0 = time.monotonic()
        self.elapsed = 0.0
        self._old: dict = {}

    # -- the command -----------------------------------------------------------------------------

    def spawn(self) -> None:
        """Start the command (held before its exec) and point the configuration at it."""
        argv = getattr(self.a, "trace_argv", None)
        if argv is None:
            return
        from lbd.trace import Child, TraceError

        try:
            self.child = Child.spawn(argv)
        except TraceError as e:              # as a shell says it: 127
            print(f"lbd: error: {e}", file=sys.stderr)
            raise SystemExit(EXIT_NOT_FOUND) from None
        pids = list(self.cfg.open.only_pids)
        if pids and len(pids) >= 64:
            self.cancel()
            raise CliError(f"--pid: {len(pids)} pids and the command's make {len(pids) + 1}, at most 64")
        self.cfg = self.cfg.replace(only_pids=pids + [self.child.pid], follow=True)

    def cancel(self) -> None:
        if self.child is not None and not self.released:
            self.child.cancel()
            self.released = True

    # -- the run ---------------------------------------------------------------------------------

    def on_signal(self, signum, frame) -> None:
        self.stop_signal = signum
        self.signals += 1

    def on_hup(self, signum, frame) -> None:
        self.hups += 1

    def open(self):
        """Load the probe (the command released only once it is attached); the Collector."""
        from lbd.collector import Collector

        self._old = {s: signal.signal(s, self.on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
        self._old[signal.SIGHUP] = signal.signal(signal.SIGHUP, self.on_hup)
        # the filter's part the kernel can decide goes into the probe's filters (the Collector's
        # probe_config); the whole filter is applied here (_UserFilter), with the output's other masks
        col = Collector(self.cfg, enrich=True, batch_size=self.batch_size, record=self.record_path,
                        apply_filter=False)
        try:
            col.__enter__()
        except BaseException:
            self.cancel()
            self._restore()
            raise
        self.col = col
        return col

    def _restore(self) -> None:
        for s, h in self._old.items():
            signal.signal(s, h)
        self._old = {}

    def start(self) -> None:
        """Capture from here on (--duration counts from now); the command runs now."""
        self.t0 = time.monotonic()
        if self.child is not None:
            if self.stop_signal is not None:     # stopped while the probe was loading: never run it
                self.cancel()
                return
            self.child.release()
            self.released = self.ran = True

    def loop(self, write, *, reopen=None, status=None) -> None:
        """Batches to write(batch) until a stop; then drain.  write may raise OutputError (kept in
        .error; no drain then), as may the recording (CaptureError: .error a CliError).  reopen():
        SIGHUP.  status(rate): the status line's text."""
        from lbd.capture import CaptureError
        from lbd.output.writer import OutputError

        col, a, child = self.col, self.a, self.child
        last = self.t0
        last_events = 0
        hups = 0
        grace = None
        while True:
            try:
                batch = col.next_batch()
            except CaptureError as e:            # the recording cannot be written (disk full)
                self.error = CliError(str(e))
                break
            if len(batch):
                try:
                    write(batch)
                except OutputError as e:
                    self.error = e
                    break
            if self.hups != hups and reopen is not None:
                hups = self.hups
                reopen()
            now = time.monotonic()
            if child is not None and child.poll() is not None:
                break
            timed_out = a.duration is not None and now - self.t0 >= a.duration
            if self.stop_signal is not None or timed_out:
                if child is None:
                    break
                if grace is None:
                    if self.stop_signal != signal.SIGINT:
                        child.signal(signal.SIGTERM)
                    grace = now + TRACE_GRACE_S
                elif now >= grace or self.signals > 1:
                    break
            if status is not None and now - last >= 1.0:
                status((col.events - last_events) / (now - last))
                last, last_events = now, col.events
        if self.error is None:
            try:
                self.final = _drain(col, write)
            except OutputError as e:
                self.error = e
            except CaptureError as e:
                self.error = CliError(str(e))
        if self.final is None:
            self.final = col.stats()

    def close(self) -> None:
        """Detach the probe (the recording gets its end), restore the signals; the command's exit
        code when it has exited."""
        col, self.col = self.col, None
        if col is not None:
            self.elapsed = time.monotonic() - self.t0
            self.enricher = col.enricher
            recorder = col.recorder
            try:
                col.close(self.final)
            finally:
                if recorder is not None:
                    self.recorded = recorder.writer
        self.cancel()
        self._restore()
        if self.child is not None and self.ran:
            self.exit_code = self.child.poll()
            if self.exit_code is None:
                log.warning("the command (pid %d) is still running; it is no longer captured", self.child.pid)

    def result(self) -> int:
        """The exit status: the command's when it exited, else 130 after a Ctrl-C, else 0."""
        if self.exit_code is not None:
            return self.exit_code
        return EXIT_INTERRUPTED if self.stop_signal == signal.SIGINT else EXIT_OK


def cmd_run(a) -> int:
    from lbd.output.writer import OutputClosed

    a.filter = _expression(a)
    cfg = _run_config(a)
    _check_selection(cfg)
    fmt = _choose_format(a, cfg, a.output, a.config)
    if a.record:
        _check_new_file(a.record)
    log_handler = setup_logging(cfg)
    if a.metrics:
        from lbd.metrics import MetricsError, parse_address

        try:
            parse_address(a.metrics)
        except MetricsError as e:
            raise CliError(str(e)) from None
    run = _Capture(a, cfg, record=a.record)
    # the output first: a file that cannot be opened stops the run before the probe is loaded
    writer = _open_output(cfg, a.output, fmt, a, should_stop=lambda: run.stop_signal is not None)
    status = sys.stderr.isatty() and not a.quiet and not _shares_terminal(writer)
    closed = False
    metrics = None
    try:
        run.spawn()
        ufilter = _UserFilter(run.cfg, a.failed_only, a.process_events)
        # Parquet converts a batch at a time: large batches amortise the per-batch work
        run.batch_size = max(cfg.init.batch_size, 16384) if writer.format == "parquet" else None
        col = run.open()
        try:
            if a.metrics:
                from lbd.metrics import MetricsError, StatsCollector, serve

                try:
                    metrics = serve(a.metrics, StatsCollector.for_collector(col, outputs=[writer]))
                except MetricsError as e:
                    raise CliError(str(e)) from None
            pr = col.probe
            what = (f"the command {_shown(a.trace_argv)} (pid {run.child.pid}) and its descendants"
                    if run.child is not None else "")
            log.info("capturing %d syscalls%s (%s loader, %d rings of %d KiB: %.1f MiB), %s format, to %s%s; "
                     "Ctrl-C stops", len(pr.selection), f" of {what}" if what else "", pr.kind, pr.nrings,
                     pr.ring_size >> 10, pr.ring_bytes / (1 << 20), writer.format, writer.name,
                     f", recording to {a.record}" if a.record else "")
            if metrics is not None:
                host = f"[{metrics.address}]" if ":" in metrics.address else metrics.address
                log.info("metrics at http://%s:%d/metrics", host, metrics.port)
            run.start()

            def show(rate: float) -> None:
                st = col.stats()
                use = 100.0 * st["ring_fill_max"]          # the fullest ring
                sys.stderr.write(f"\r\033[K{rate:10.0f} events/s  {col.events} events  "
                                 f"{writer.events} written  {st['dropped']} dropped  ring {use:4.1f}%")
                sys.stderr.flush()

            run.loop(lambda b: writer.write_batch(b, ufilter.mask(b)), reopen=lambda: _reopen(writer, log_handler),
                     status=show if status else None)
        finally:
            run.close()
        if run.error is None:
            closed = True
            try:
                writer.close()                 # what is buffered, after the probe is detached
            except OSError as e:
                run.error = e
    finally:
        run.cancel()
        if metrics is not None:
            metrics.close()
        if status:
            sys.stderr.write("\r\033[K")
            sys.stderr.flush()
        if not closed:
            try:
                writer.close()
            except OSError:
                pass
    if run.final is not None:
        _summary(run.final, run.elapsed, writer, run.enricher, run.error)
        if run.recorded is not None:
            _recorded_line(run.recorded)
    if run.enricher is not None:
        log.debug("enrichment: %s", run.enricher.stats())
    error = run.error
    if error is not None and not isinstance(error, OutputClosed):
        print(f"lbd: error: {error}", file=sys.stderr)
        return EXIT_ERROR
    return run.result()


def _shown(argv: list[str]) -> str:
    """A command as a shell would take it back, on one line."""
    import shlex

    return shlex.join(argv).replace("\n", "\\n")


def _recorded_line(w) -> None:
    try:
        print(f"lbd: recorded {w.events} events in {w.batches} batches to {w.path} "
              f"({w.bytes / (1 << 20):.1f} MiB)", file=sys.stderr)
    except OSError:
        pass


def cmd_record(a) -> int:
    a.filter = _expression(a)
    cfg = _run_config(a)
    _check_selection(cfg)
    _check_new_file(a.output)
    setup_logging(cfg)
    run = _Capture(a, cfg, record=a.output)
    status = sys.stderr.isatty() and not a.quiet
    try:
        run.spawn()
        col = run.open()
        try:
            pr = col.probe
            what = (f" of the command {_shown(a.trace_argv)} (pid {run.child.pid}) and its descendants"
                    if run.child is not None else "")
            log.info("capturing %d syscalls%s (%s loader, %d rings of %d KiB: %.1f MiB), recording to %s; "
                     "Ctrl-C stops", len(pr.selection), what, pr.kind, pr.nrings, pr.ring_size >> 10,
                     pr.ring_bytes / (1 << 20), a.output)
            run.start()

            def show(rate: float) -> None:
                st = col.stats()
                rec = col.recorder
                size = rec.writer.bytes / (1 << 20) if rec is not None else 0.0
                sys.stderr.write(f"\r\033[K{rate:10.0f} events/s  {col.events} events  {size:.1f} MiB  "
                                 f"{st['dropped']} dropped  ring {100.0 * st['ring_fill_max']:4.1f}%")
                sys.stderr.flush()

            run.loop(lambda b: None, status=show if status else None)
        finally:
            run.close()
    finally:
        run.cancel()
        if status:
            sys.stderr.write("\r\033[K")
            sys.stderr.flush()
    st = run.final or {}
    unread = f", {st['unread']} left unread in the rings" if st.get("unread") else ""
    try:
        print(f"lbd: {st.get('delivered', 0)} events in {run.elapsed:.1f}s{unread}; dropped: ring full "
              f"{st.get('dropped', 0)}, malformed {st.get('malformed', 0)}; {st.get('filtered', 0)} filtered "
              f"in the kernel", file=sys.stderr)
    except OSError:
        pass
    if run.recorded is not None:
        _recorded_line(run.recorded)
    if run.error is not None:
        print(f"lbd: error: {run.error}", file=sys.stderr)
        return EXIT_ERROR
    return run.result()


def cmd_replay(a) -> int:
    from lbd.capture import CaptureError
    from lbd.collector import Collector
    from lbd.config import Config
    from lbd.output.writer import OutputClosed, OutputError

    expr = _expression(a)
    setup_logging(Config.default())
    try:
        col = Collector(replay=a.file, enrich=True, apply_filter=False)     # filters applied here
    except CaptureError as e:
        raise CliError(str(e)) from None
    error = None
    writer = None
    try:
        rcfg = col.config
        if rcfg.init.putfile:
            rcfg = rcfg.replace(putfile=False)          # never the recording host's event file
        fmt = _choose_format(a, rcfg, a.output, False)
        if fmt == "parquet" and not a.format and a.output in (None, "-"):
            fmt = "normal"                              # a Parquet recording's events, on stdout
        writer = _open_output(rcfg, a.output, fmt, a)
        ufilter = _UserFilter(rcfg, a.failed_only, a.process_events)
        extra = None
        if expr is not None:
            from lbd.filter import compile as compile_filter

            extra = compile_filter(expr)
        try:
            with col:
                for batch in col:
                    if len(batch):
                        mask = ufilter.mask(batch)
                        if extra is not None:
                            f = extra(batch)
                            mask = f if mask is None else mask & f
                        writer.write_batch(batch, mask)
        except CaptureError as e:
            error = CliError(str(e))
        except OutputError as e:
            error = e
        if error is None or not isinstance(error, OutputError):
            try:
                writer.close()
            except OutputError as e:
                error = e
    finally:
        col.close()
        if writer is not None:
            try:
                writer.close()
            except OSError:
                pass
    if isinstance(error, CliError):                     # the capture is damaged: one line
        print(f"lbd: error: {error} ({col.events} events read before, {writer.events} written to {writer.name})",
              file=sys.stderr)
        return EXIT_ERROR
    st = col.stats()
    lost = f"; the recording dropped: ring full {st.get('dropped', 0)}" if st.get("dropped") else ""
    try:
        print(f"lbd: {col.events} events replayed from {a.file}, {writer.events} written to {writer.name}{lost}",
              file=sys.stderr)
    except OSError:
        pass
    if error is not None and not isinstance(error, OutputClosed):
        print(f"lbd: error: {error}", file=sys.stderr)
        return EXIT_ERROR
    return EXIT_OK


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
    unread = f", {st['unread']} left unread in the rings" if st.get("unread") else ""
    lines = [
        f"lbd: {st['delivered']} events in {elapsed:.1f}s{unread}, {writer.events} written to {writer.name}"
        f"{not_written}; "
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
        with Collector(kcfg, enrich=bool(ufilter is not None and ufilter.needs_enrichment),
                       apply_filter=False) as col:                  # counted through ufilter's mask
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
            "falco-config": cmd_falco_config, "record": cmd_record, "replay": cmd_replay}


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
