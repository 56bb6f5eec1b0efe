"""The FUSE session: the kernel mount of a :class:`~blobfs.fs.filesystem.Filesystem`, its request
loop, and its end.

pyfuse3 keeps one session per process, so these are plain functions over it.  The daemon
calls :func:`mount`, then :func:`serve` until the file system is unmounted or
:func:`terminate` is called, and :func:`unmount` in a ``finally`` whatever happened, so a
daemon that fails leaves no "Transport endpoint is not connected" behind when it can help it.
"""

from __future__ import annotations

import errno
import threading
from pathlib import Path
from typing import cast

import pyfuse3

from blobfs.fs.filesystem import Filesystem
from blobfs.fuse.operations import Operations, kernel_options

#: How long :func:`unmount` waits for page-cache pushes still running in worker threads.
PUSH_DRAIN_SECONDS = 2.0


class MountFailed(Exception):
    """The kernel refused the mount (the reason is the message)."""


class _KernelStore:
    """``pyfuse3.notify_store`` for :class:`blobfs.cache.pagecache.PageCache`'s worker
    threads, fenced so that no call is inside libfuse when the session is destroyed."""

    def __init__(self) -> None:
        self._state = threading.Condition()
        self._open = True
        self._busy = 0

    def __call__(self, inode: int, offset: int, data: bytes | memoryview) -> None:
        with self._state:
            if not self._open:
                raise OSError(errno.ENOTCONN, "file system unmounted")
            self._busy += 1
        try:
            # pyfuse3 takes any buffer (the stub says bytes): a view is stored without a copy.
            pyfuse3.notify_store(pyfuse3.InodeT(inode), offset, cast(bytes, data))
        finally:
            with self._state:
                self._busy -= 1
                self._state.notify_all()

    def close(self) -> bool:
        """Refuse new calls; wait (briefly) for running ones.  Whether none is left."""
        with self._state:
            self._open = False
            return self._state.wait_for(lambda: self._busy == 0, PUSH_DRAIN_SECONDS)


_store: _KernelStore | None = None


def mount(fs: Filesystem, where: Path, source: str) -> None:
    """Mount ``fs`` on ``where``; raises :class:`MountFailed` if the kernel refuses.  Pair
    it with :func:`unmount` in a ``finally``."""
    global _store
    try:
        pyfuse3.init(Operations(fs), str(where), kernel_options(fs, source))
    except RuntimeError as e:
        raise MountFailed(str(e)) from e
    _store = _KernelStore()
    fs.pages.attach(_store)


def unmount() -> None:
    """End the session and remove the kernel mount (after :func:`mount`, whatever
    happened since)."""
    if _store is not None:
        # A push blocked on a page whose read will not be answered any more returns once
        # the unmount aborts the connection; waiting longer for it would wait forever.
        _store.close()
    pyfuse3.close(unmount=True)


async def serve() -> None:
    """Answer kernel requests until the file system is unmounted or :func:`terminate`."""
    await pyfuse3.main()


def terminate() -> None:
    """Make :func:`serve` return (the kernel mount goes with :func:`unmount`)."""
    pyfuse3.terminate()


__all__ = ["MountFailed", "mount", "serve", "terminate", "unmount"]
