"""Trace a command lbd starts (`lbd run -- CMD ARGS...`, like `strace -f CMD`).

The command is forked first and held before its exec, so that the probe can be pointed at its pid
(open_params only_pids = [pid], follow = true: every process it starts joins the kept set in the
kernel as it forks) before it runs a single instruction of the command; then it is released.
When it exits, capture stops and what the rings hold is drained, and lbd exits with its status.

    child = Child.spawn(["curl", "-s", "https://example.org"])   # forked, waiting
    ...load the probe with only_pids=[child.pid], follow=True...
    child.release()                                              # exec happens now
    ...while child.poll() is None: consume...
    status = child.exit_code()                                   # 128 + signal when killed
"""
from __future__ import annotations

import os
import shutil
import signal
from dataclasses import dataclass


class TraceError(Exception):
    """The command cannot be started; the message says why in one line."""


@dataclass
class Child:
    pid: int
    _go: int                     # write end of the pipe the child waits on (-1 once released)
    _status: int | None = None   # waitpid status once it exited

    @classmethod
    def spawn(cls, argv: list[str], env: dict | None = None) -> Child:
        """Fork a child that will exec argv once released.  Resolves the program on PATH first, so
        that a missing command is an error here, before anything is loaded."""
        if not argv:
            raise TraceError("no command given after --")
        prog = argv[0]
        path = prog if "/" in prog else shutil.which(prog)
        if not path or not os.access(path, os.X_OK):
            raise TraceError(f"command not found or not executable: {prog}")
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:                                      # the child: wait for go, then exec
            try:
                os.close(w)
                # what Python ignores (SIGPIPE, SIGXFSZ) the command must not inherit ignored
                # (subprocess's restore_signals); lbd's own handlers are reset by the exec
                for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGPIPE, signal.SIGXFSZ):
                    signal.signal(sig, signal.SIG_DFL)
                if os.read(r, 1) != b"g":                 # the tracer gave up: never run it
                    os._exit(126)
                # r is close-on-exec: no close(2) of lbd's own before the command's execve
                os.execve(path, argv, os.environ if env is None else env)
            except BaseException:
                pass
            os._exit(127)
        os.close(r)
        return cls(pid, w)

    def release(self) -> None:
        """Let the child exec its command."""
        if self._go >= 0:
            os.write(self._go, b"g")
            os.close(self._go)
            self._go = -1

    def cancel(self) -> None:
        """Never run the command (the probe could not be loaded): the child exits, reaped here."""
        if self._go >= 0:
            os.close(self._go)          # EOF: the child exits without exec
            self._go = -1
        self.wait()

    def poll(self) -> int | None:
        """The exit code once the child has exited, else None (does not block)."""
        if self._status is None:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid == 0:
                return None
            self._status = status
        return self.exit_code()

    def wait(self) -> int:
        if self._status is None:
            _, self._status = os.waitpid(self.pid, 0)
        return self.exit_code()

    def signal(self, signum: int) -> None:
        if self._status is None:
            try:
                os.kill(self.pid, signum)
            except ProcessLookupError:
                pass

    def exit_code(self) -> int:
        """The shell's convention: the exit status, or 128 + the signal that killed it."""
        st = self._status
        if st is None:
            raise RuntimeError("the child has not exited")
        code = os.waitstatus_to_exitcode(st)
        return 128 - code if code < 0 else code
