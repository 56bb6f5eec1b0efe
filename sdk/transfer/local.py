"""Local file system work for transfers: blocking calls, run in worker threads."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

#: Longest file name most local file systems accept, in bytes.
_NAME_MAX = 255

T = TypeVar("T")


def sibling(path: Path, suffix: str) -> Path:
    """A hidden name next to ``path`` ending in ``suffix``, short enough for NAME_MAX."""
    room = _NAME_MAX - len(suffix.encode()) - 1
    name = os.fsencode(path.name)[:room].decode(errors="ignore") if room > 0 else ""
    return path.with_name(f".{name}{suffix}")


async def in_thread(fn: Callable[..., T], *args: object) -> T:
    """Run ``fn`` in a worker thread; if cancelled, let it finish before giving up.

    A thread cannot be stopped, and the file it works on must not be closed (or its
    descriptor reused) under it, so cancellation waits for the call to return.
    """
    task = asyncio.ensure_future(asyncio.to_thread(fn, *args))
    try:
        return await asyncio.shield(task)
    except asyncio.CancelledError:
        with contextlib.suppress(BaseException):
            await task
        raise


def pwrite_all(fd: int, data: bytes | memoryview, offset: int) -> None:
    """Write all of ``data`` at ``offset`` (blocking)."""
    view = memoryview(data)
    while view:
        written = os.pwrite(fd, view, offset)
        view = view[written:]
        offset += written


@dataclass(frozen=True)
class LocalEntry:
    """One entry of a local directory, as :func:`scan_local` saw it."""

    name: str
    mode: int  # 0 when the entry cannot be stat'ed (e.g. a dangling symlink)
    size: int = 0
    mtime_ns: int = 0
    ident: tuple[int, int] = (0, 0)
    error: OSError | None = None


def scan_local(path: Path) -> list[LocalEntry]:
    """The entries of a local directory, sorted, symlinks followed (blocking)."""
    out = []
    with os.scandir(path) as it:
        for entry in it:
            try:
                st = entry.stat()
            except OSError as e:
                out.append(LocalEntry(entry.name, 0, error=e))
                continue
            out.append(
                LocalEntry(
                    entry.name, st.st_mode, st.st_size, st.st_mtime_ns, (st.st_dev, st.st_ino)
                )
            )
    out.sort(key=lambda e: e.name)
    return out


def make_local_dir(path: Path) -> None:
    """Create directory ``path``; an existing directory is fine (blocking)."""
    try:
        path.mkdir()
    except FileExistsError:
        if not path.is_dir():
            raise NotADirectoryError(errno.ENOTDIR, "Not a directory", str(path)) from None


def stat_source(path: Path) -> os.stat_result:
    """``path.stat()`` with an error message that names the path (blocking)."""
    try:
        return path.stat()
    except FileNotFoundError:
        raise FileNotFoundError(errno.ENOENT, "No such file or directory", str(path)) from None
