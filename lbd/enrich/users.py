"""User and group names from <root>/etc/passwd and <root>/etc/group, with a bounded cache.

With root "/" (the default), ids not in the files are looked up through NSS (pwd, grp: LDAP, sssd,
...).  An id without a name is shown as its number.
"""
from __future__ import annotations

import grp
import os
import pwd

from lbd.enrich.cache import BoundedCache


class _IdFile:
    """id -> name of a passwd(5) or group(5) file, re-read when its mtime changes."""

    def __init__(self, path: str):
        self.path = path
        self.mtime: float | None = None
        self.names: dict[int, str] = {}
        self.loads = 0

    def lookup(self, ident: int) -> str | None:
        try:
            mtime = os.stat(self.path).st_mtime
        except OSError:
            self.names, self.mtime = {}, None
            return None
        if mtime != self.mtime:
            self._load()
            self.mtime = mtime
        return self.names.get(ident)

    def _load(self) -> None:
        names: dict[int, str] = {}
        try:
            with open(self.path, "rb") as f:
                for line in f:
                    parts = line.split(b":")
                    if len(parts) < 3 or line.startswith(b"#"):
                        continue
                    try:
                        ident = int(parts[2])
                    except ValueError:
                        continue
                    names.setdefault(ident, parts[0].decode("utf-8", "backslashreplace"))
        except OSError:
            pass
        self.names = names
        self.loads += 1


class Accounts:
    """uid -> user name and gid -> group name, cached (at most `max_entries` of each)."""

    def __init__(self, root: str | os.PathLike = "/", *, nss: bool | None = None, max_entries: int = 4096):
        root = os.fspath(root)
        self.root = root
        self.nss = (os.path.realpath(root) == "/") if nss is None else nss
        self._passwd = _IdFile(os.path.join(root, "etc/passwd"))
        self._group = _IdFile(os.path.join(root, "etc/group"))
        self.users: BoundedCache[int, str] = BoundedCache(max_entries)
        self.groups: BoundedCache[int, str] = BoundedCache(max_entries)

    def user(self, uid: int) -> str:
        name = self.users.get(uid)
        if name is None:
            name = self._passwd.lookup(uid)
            if name is None and self.nss:
                try:
                    name = pwd.getpwuid(uid).pw_name
                except (KeyError, OverflowError):
                    pass
            if name is None:
                name = str(uid)
            self.users.put(uid, name)
        return name

    def group(self, gid: int) -> str:
        name = self.groups.get(gid)
        if name is None:
            name = self._group.lookup(gid)
            if name is None and self.nss:
                try:
                    name = grp.getgrgid(gid).gr_name
                except (KeyError, OverflowError):
                    pass
            if name is None:
                name = str(gid)
            self.groups.put(gid, name)
        return name

    def stats(self) -> dict[str, dict[str, int]]:
        return {"users": self.users.stats(), "groups": self.groups.stats()}
