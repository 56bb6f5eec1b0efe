"""Which processes hold a mount busy, found as ``fuser -m`` finds them: in ``/proc``.

A process holds a mount when its current or root directory, its executable, an open file or
a memory-mapped file lies under the mount point.  Only ``/proc`` is read (``readlink`` of
``/proc/PID/cwd`` and ``/proc/PID/fd/N`` gives the path without entering the file system),
so a dead mount, where any access under the mount point fails, is inspected as well as a
live one.  Processes of other users are visible only to root; :class:`Holders` says when
some could not be looked at.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

#: Holders named in a message at most (the rest are counted).
SHOWN = 8


@dataclass(frozen=True)
class Holder:
    """One process and how it holds the mount (``current directory``, ``open file X`` ...)."""

    pid: int
    command: str
    how: str

    def __str__(self) -> str:
        return f"pid {self.pid} ({self.command}: {self.how})"


@dataclass
class Holders:
    """The processes found, and whether some could not be inspected (no permission)."""

    found: list[Holder] = field(default_factory=list)
    hidden: bool = False

    def describe(self) -> str:
        """A message fragment: ``held by pid 12 (bash: current directory), ...``."""
        if not self.found:
            return "no process of yours holds it" if self.hidden else "no process holds it"
        shown = ", ".join(str(h) for h in self.found[:SHOWN])
        more = f" and {len(self.found) - SHOWN} more" if len(self.found) > SHOWN else ""
        return f"held by {shown}{more}"


def _under(path: str, mountpoint: str) -> bool:
    path = path.removesuffix(" (deleted)")
    return path == mountpoint or path.startswith(mountpoint.rstrip("/") + "/")


def _links(proc: Path) -> list[tuple[str, str]]:
    """``(how, path)`` for what a process has open: directories, executable, descriptors."""
    out: list[tuple[str, str]] = []
    for name, how in (("cwd", "current directory"), ("root", "root directory"), ("exe", "")):
        try:
            out.append((how or "executable", os.readlink(proc / name)))
        except FileNotFoundError:
            continue
    try:
        fds = list((proc / "fd").iterdir())
    except FileNotFoundError:
        fds = []
    for fd in fds:
        try:
            target = os.readlink(fd)
        except FileNotFoundError:
            continue
        out.append(("open file", target))
    try:
        maps = (proc / "maps").read_text()
    except FileNotFoundError:
        maps = ""
    for line in maps.splitlines():
        fields = line.split(maxsplit=5)
        if len(fields) == 6 and fields[5].startswith("/"):
            out.append(("mapped file", fields[5]))
    return out


def holders(mountpoint: Path, proc_root: Path = Path("/proc")) -> Holders:
    """The processes holding ``mountpoint`` (see the module docstring)."""
    where = os.path.realpath(mountpoint)
    result = Holders()
    for entry in proc_root.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            links = _links(entry)
            command = (entry / "comm").read_text().strip()
        except PermissionError:
            result.hidden = True
            continue
        except (FileNotFoundError, ProcessLookupError):
            continue  # gone meanwhile
        for how, path in links:
            if _under(path, where):
                detail = how if how.endswith("directory") or path == where else f"{how} {path}"
                result.found.append(Holder(int(entry.name), command, detail))
                break
    result.found.sort(key=lambda h: h.pid)
    return result


__all__ = ["SHOWN", "Holder", "Holders", "holders"]
