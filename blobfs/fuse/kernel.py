"""The kernel's caches as the core may ask it to forget them (:class:`KernelNotifier`)
or fill them (:class:`KernelStore`).

The core knows only protocols (:class:`~blobfs.fs.invalidation.KernelCache`, and the
store call of :class:`~blobfs.cache.pagecache.PageCache`); these are their implementations
over pyfuse3's notifications, attached by :func:`blobfs.fuse.session.mount`.

``invalidate_inode`` may block until the kernel has written back dirty pages (with
``writeback_cache``), which needs the trio thread to serve the WRITEs, and
``invalidate_entry`` blocks while a related request is being served: so both run in a
worker thread, never on the trio thread, and one batch at a time.  Entries are invalidated
synchronously rather than with ``invalidate_entry_async``, so a ``blobfs invalidate`` that
returned has taken effect.  :meth:`KernelNotifier.close` stops the notifications before the
session ends (a notification on a closed session would use freed memory).
"""

from __future__ import annotations

import errno
import logging
import threading
from collections.abc import Sequence
from typing import cast

import pyfuse3
import trio

log = logging.getLogger(__name__)

#: How long closing waits for a batch of notifications in progress.
CLOSE_WAIT = 5.0

#: How long closing waits for page-cache pushes still running in worker threads.
PUSH_DRAIN_SECONDS = 2.0


class KernelNotifier:
    """Invalidates kernel caches of a mounted session (see the module docstring)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._open = True

    async def forget(self, inodes: Sequence[int], entries: Sequence[tuple[int, str]]) -> int:
        """Drop the kernel's attributes and page cache of ``inodes`` and its directory
        entries ``(parent, name)``; return how many it had."""
        if not inodes and not entries:
            return 0
        return await trio.to_thread.run_sync(self._forget, list(inodes), list(entries))

    def _forget(self, inodes: list[int], entries: list[tuple[int, str]]) -> int:
        done = 0
        with self._lock:
            for parent, name in entries:
                if not self._open:
                    return done
                done += _quietly(pyfuse3.invalidate_entry, pyfuse3.InodeT(parent), name.encode())
            for ino in inodes:
                if not self._open:
                    return done
                done += _quietly(pyfuse3.invalidate_inode, pyfuse3.InodeT(ino), False)
        return done

    def close(self) -> None:
        """No notifications from now on (waits for a batch in progress, a while)."""
        got = self._lock.acquire(timeout=CLOSE_WAIT)
        self._open = False
        if got:
            self._lock.release()


class KernelStore:
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


def _quietly(call: object, *args: object) -> int:
    """1 if the notification took, 0 if the kernel did not know the inode or entry."""
    try:
        call(*args)  # type: ignore[operator]
    except OSError as e:
        if e.errno not in (errno.ENOENT, errno.ENOTDIR):
            log.debug("kernel invalidation %s%r failed: %s", call, args, e)
        return 0
    return 1


__all__ = ["KernelNotifier", "KernelStore"]
