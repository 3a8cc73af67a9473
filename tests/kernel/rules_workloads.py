"""Workloads for rules/lbd_rules.yaml: for each rule, one that must trigger it and one that must not.

    python -m tests.kernel.rules_workloads NAME      (from the repository root, as root)

Each runs in its own process (the test records its pid and groups the captured events by process
ancestry) and cleans up what it made.  The quiet ones do the nearest harmless thing: the same
syscall on another file, with other flags, or under a name the rule's exception list holds
(prctl PR_SET_NAME changes the comm the probe reads).
"""
from __future__ import annotations

import ctypes
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time

libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long
PR_SET_NAME = 15
NR = {"finit_module": 313, "bpf": 321, "execveat": 322}
AT_FDCWD = -100


def rename(comm: str) -> None:
    libc.prctl(PR_SET_NAME, comm.encode(), 0, 0, 0)


def _open(path: str, mode: str = "r") -> None:
    with open(path, mode):
        pass


def _tmpdir() -> str:
    return tempfile.mkdtemp(prefix="lbdwl-")


# ---- one function per workload -------------------------------------------------------------------

def sensitive_trigger():
    _open("/etc/shadow")


def sensitive_quiet():
    _open("/etc/hostname")
    rename("lbd-auth-demo")
    _open("/etc/shadow")


def shell_service_trigger():
    rename("lbd-svc-demo")
    subprocess.run(["/bin/sh", "-c", "true"], check=True)


def shell_service_quiet():
    rename("lbd-batch-job")
    subprocess.run(["/bin/sh", "-c", "true"], check=True)


def write_etc_trigger():
    path = "/etc/lbd-rule-test.conf"
    try:
        _open(path, "w")
    finally:
        os.unlink(path)


def write_etc_quiet():
    _open("/etc/hostname")
    d = _tmpdir()
    _open(os.path.join(d, "etc-lookalike.conf"), "w")
    shutil.rmtree(d)


def write_bin_trigger():
    path = "/usr/local/bin/lbd-rule-test"
    os.makedirs("/usr/local/bin", exist_ok=True)
    try:
        _open(path, "w")
    finally:
        os.unlink(path)


def write_bin_quiet():
    _open("/usr/bin/env", "rb")


def exec_tmp_trigger():
    d = _tmpdir()
    try:
        exe = os.path.join(d, "lbd-true")
        shutil.copy("/bin/true", exe)
        os.chmod(exe, 0o755)
        subprocess.run([exe], check=True)
    finally:
        shutil.rmtree(d)


def exec_tmp_quiet():
    subprocess.run(["/bin/true"], check=True)


def fileless_trigger():
    fd = os.memfd_create("lbd-payload", 0)
    with open("/bin/true", "rb") as f:
        os.write(fd, f.read())
    pid = os.fork()
    if pid == 0:
        try:
            os.execve(fd, ["lbd-payload"], {})      # fexecve: execveat(fd, "", ..., AT_EMPTY_PATH)
        finally:
            os._exit(127)
    os.waitpid(pid, 0)


def fileless_quiet():
    pid = os.fork()
    if pid == 0:
        argv = (ctypes.c_char_p * 2)(b"/bin/true", None)
        envp = (ctypes.c_char_p * 1)(None)
        libc.syscall(NR["execveat"], AT_FDCWD, b"/bin/true", argv, envp, 0)
        os._exit(127)
    os.waitpid(pid, 0)


def _shell_with_stdin(sock_or_none) -> None:
    pid = os.fork()
    if pid == 0:
        try:
            if sock_or_none is None:
                fd = os.open("/dev/null", os.O_RDWR)
                os.dup2(fd, 0)
                os.dup2(fd, 1)
            else:
                os.dup2(sock_or_none.fileno(), 0)
                os.dup2(sock_or_none.fileno(), 1)
            os.execv("/bin/sh", ["sh", "-c", "true"])
        finally:
            os._exit(127)
    os.waitpid(pid, 0)


def reverse_shell_trigger():
    srv = socket.create_server(("127.0.0.1", 0))
    c = socket.create_connection(srv.getsockname())
    peer, _ = srv.accept()
    _shell_with_stdin(c)
    for s in (c, peer, srv):
        s.close()


def reverse_shell_quiet():
    _shell_with_stdin(None)


def _as_nobody(then) -> None:
    pid = os.fork()
    if pid == 0:
        code = 0
        try:
            os.setresgid(65534, 65534, 65534)
            os.setresuid(65534, 65534, 65534)
            then()
        except BaseException:
            code = 1
        os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0


def setuid_root_trigger():
    def ask():
        try:
            os.setuid(0)
        except PermissionError:
            pass
    _as_nobody(ask)


def setuid_root_quiet():
    os.setuid(0)                                  # root asking for root: nothing changes
    _as_nobody(lambda: os.setuid(65534))


def _ptrace_sleeper() -> None:
    child = subprocess.Popen(["sleep", "5"])
    try:
        time.sleep(0.05)
        libc.ptrace.argtypes = [ctypes.c_long, ctypes.c_long, ctypes.c_void_p, ctypes.c_void_p]
        if libc.ptrace(16, child.pid, None, None) == 0:        # PTRACE_ATTACH
            os.waitpid(child.pid, 0)
            libc.ptrace(17, child.pid, None, None)             # PTRACE_DETACH
    finally:
        child.kill()
        child.wait()


def ptrace_trigger():
    _ptrace_sleeper()


def ptrace_quiet():
    rename("lbd-debugger")
    _ptrace_sleeper()


def module_trigger():
    fd = os.open("/dev/null", os.O_RDONLY)
    libc.syscall(NR["finit_module"], fd, b"", 0)               # not a module: fails, still tried
    os.close(fd)


def module_quiet():
    _open("/proc/version")                                     # reading kernel facts: no module syscall


def bpf_trigger():
    libc.syscall(NR["bpf"], 5, None, 0)                        # BPF_PROG_LOAD with no attributes: fails


def bpf_quiet():
    libc.syscall(NR["bpf"], 7, None, 0)                        # BPF_OBJ_GET: not a load
    rename("lbd-bpf-admin")
    libc.syscall(NR["bpf"], 5, None, 0)


def _mount_tmpfs() -> None:
    d = _tmpdir()
    try:
        if libc.mount(b"none", d.encode(), b"tmpfs", 0, b"size=64k") == 0:
            libc.umount2(d.encode(), 0)
    finally:
        os.rmdir(d)


def mount_trigger():
    _mount_tmpfs()


def mount_quiet():
    rename("lbd-mounter")
    _mount_tmpfs()


def _unshare(flags: int) -> None:
    pid = os.fork()
    if pid == 0:
        os._exit(0 if libc.unshare(flags) == 0 else 1)
    os.waitpid(pid, 0)


def namespace_trigger():
    _unshare(0x04000000)                                       # CLONE_NEWUTS


def namespace_quiet():
    _unshare(0x00000400)                                       # CLONE_FILES: no namespace


def chmod_suid_trigger():
    d = _tmpdir()
    f = os.path.join(d, "tool")
    _open(f, "w")
    os.chmod(f, 0o4755)
    shutil.rmtree(d)


def chmod_suid_quiet():
    d = _tmpdir()
    f = os.path.join(d, "tool")
    _open(f, "w")
    os.chmod(f, 0o755)
    shutil.rmtree(d)


def _write_in(directory: str, name: str) -> None:
    made = not os.path.isdir(directory)
    os.makedirs(directory, exist_ok=True)
    path = os.path.join(directory, name)
    try:
        with open(path, "w") as f:
            f.write("# lbd rules test, removed at once\n")
    finally:
        os.unlink(path)
        if made:
            os.rmdir(directory)


def crontab_trigger():
    _write_in("/etc/cron.d", "lbd-rule-test")


def crontab_quiet():
    if os.path.isdir("/etc/cron.d"):
        os.listdir("/etc/cron.d")
    _open("/etc/hostname")


def sudoers_trigger():
    _write_in("/etc/sudoers.d", "lbd-rule-test")


def sudoers_quiet():
    if os.path.isdir("/etc/sudoers.d"):
        os.listdir("/etc/sudoers.d")
    d = _tmpdir()
    _open(os.path.join(d, "sudoers"), "w")
    shutil.rmtree(d)


def _ssh_home() -> str:
    d = _tmpdir()
    os.makedirs(os.path.join(d, ".ssh"))
    return d


def ssh_key_trigger():
    d = _ssh_home()
    _open(os.path.join(d, ".ssh", "id_ed25519"), "w")
    shutil.rmtree(d)


def ssh_key_quiet():
    d = _ssh_home()
    rename("lbd-ssh-client")
    _open(os.path.join(d, ".ssh", "id_ed25519"), "w")
    rename("lbd-wl")
    _open(os.path.join(d, ".ssh", "id_ed25519.pub"), "w")
    shutil.rmtree(d)


def history_trigger():
    d = _tmpdir()
    _open(os.path.join(d, ".bash_history"), "w")               # O_TRUNC
    shutil.rmtree(d)


def history_quiet():
    d = _tmpdir()
    hist = os.path.join(d, ".bash_history")
    _open(hist, "a")                                           # O_APPEND: the history grows
    os.rename(hist, hist + ".old")                             # (rmtree would remove a history)
    shutil.rmtree(d)


def _connect(port: int) -> None:
    with socket.socket() as s:
        s.settimeout(1)
        try:
            s.connect(("127.0.0.1", port))
        except OSError:
            pass


def suspect_port_trigger():
    _connect(4444)


def suspect_port_quiet():
    with socket.socket() as s:                                 # a free port, not a listed one
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    _connect(port)


def ld_preload_trigger():
    subprocess.run(["/bin/true"], env={"LD_PRELOAD": "/nonexistent/lbd-rule-test.so"}, check=True,
                   stderr=subprocess.DEVNULL)


def ld_preload_quiet():
    subprocess.run(["/bin/true"], env={"LANG": "C"}, check=True)


def raw_socket_trigger():
    socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP).close()


def raw_socket_quiet():
    socket.socket(socket.AF_INET, socket.SOCK_STREAM).close()
    rename("lbd-net-diag")
    socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP).close()


if __name__ == "__main__":
    globals()[sys.argv[1]]()
