"""The FUSE session: the kernel mount of a :class:`~blobfs.fs.filesystem.Filesystem`, its request
loop, and its end; the kernel's caches are handed to the file system to invalidate and to
fill (:mod:`blobfs.fuse.kernel`).

pyfuse3 keeps one session per process, so these are plain functions over it.  The daemon
calls :func:`mount`, then :func:`serve` until the file system is unmounted or
:func:`terminate` is called, and :func:`unmount` in a ``finally`` whatever happened, so a
daemon that fails leaves no "Transport endpoint is not connected" behind when it can help it.
"""

from __future__ import annotations

from pathlib import Path

import pyfuse3

from blobfs.fs.filesystem import Filesystem
from blobfs.fuse.kernel import KernelNotifier, KernelStore
from blobfs.fuse.operations import Operations, kernel_options

#: The kernel notifications of the session, while it is mounted.
_notifier: KernelNotifier | None = None


class MountFailed(Exception):
    """The kernel refused the mount (the reason is the message)."""


#: The kernel page-cache pushes of the session, while it is mounted.
_store: KernelStore | None = None


def mount(fs: Filesystem, where: Path, source: str) -> None:
    """Mount ``fs`` on ``where``; raises :class:`MountFailed` if the kernel refuses.  Pair
    it with :func:`unmount` in a ``finally``."""
    global _notifier, _store
    try:
        pyfuse3.init(Operations(fs), str(where), kernel_options(fs, source))
    except RuntimeError as e:
        raise MountFailed(str(e)) from e
    _notifier = KernelNotifier()
    fs.attach_kernel(_notifier)
    _store = KernelStore()
    fs.pages.attach(_store)


def unmount() -> None:
    """End the session and remove the kernel mount (after :func:`mount`, whatever
    happened since)."""
    global _notifier, _store
    if _store is not None:
        # A push blocked on a page whose read will not be answered any more returns once
        # the unmount aborts the connection; waiting longer for it would wait forever.
        _store.close()
        _store = None
    if _notifier is not None:
        _notifier.close()
        _notifier = None
    pyfuse3.close(unmount=True)


async def serve() -> None:
    """Answer kernel requests until the file system is unmounted or :func:`terminate`."""
    await pyfuse3.main()


def terminate() -> None:
    """Make :func:`serve` return (the kernel mount goes with :func:`unmount`)."""
    pyfuse3.terminate()


__all__ = ["MountFailed", "mount", "serve", "terminate", "unmount"]
