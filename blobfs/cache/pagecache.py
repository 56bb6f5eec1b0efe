"""Pushing fetched blocks into the kernel's page cache, and keeping that safe.

A random reader asks the kernel for one page; the kernel asks the daemon for that page
only, and caches only what it was given.  The rest of the block the daemon fetched to
answer would have to come back through FUSE, one request per page.  :class:`PageCache`
hands the whole block to the kernel instead (FUSE's ``NOTIFY_STORE``), so the next reads
anywhere in it never leave the kernel.  Measured with fio (4 KiB random reads of 1 GiB,
4 jobs): see ``docs/BENCHMARKS.md``.

The kernel call is the adapter's (:mod:`blobfs.fuse.session` attaches it; only
``blobfs.fuse`` speaks to the kernel).  Without one -- the core under test -- pushes are
dropped.

Invariants:

* **Never stale.**  A push is of one version (ETag) of one inode, and is made only while
  ``current()`` says the inode still shows that version and is not being written.  Whoever
  changes what the kernel must see of an inode (an open that pins a new version and does not
  keep the kernel's cache, a write open, a truncate) calls :meth:`settle` after changing the
  node and before answering the kernel: it returns once no push of that inode is running,
  and none can start for the old version afterwards.  The kernel then drops its cache of the
  inode (``keep_cache`` off), so nothing pushed before survives either.
* **Never blocks the FUSE loop.**  The kernel locks each page while it stores into it, and a
  page being read is locked until the daemon answers that read; so pushes run in worker
  threads while the trio thread goes on answering.
* **Bounded.**  At most :data:`MAX_PENDING_BYTES` of blocks wait to be pushed (each holds
  its block alive); beyond that pushes are skipped -- the block is in the daemon's caches
  anyway.  A block already being pushed is not queued twice.
"""

from __future__ import annotations

import errno
import logging
from collections.abc import Callable
from dataclasses import dataclass

import trio

log = logging.getLogger(__name__)

#: ``store(inode, offset, data)``: put ``data`` into the kernel's page cache of ``inode`` at
#: ``offset``.  Blocking; raises :class:`OSError` (ENOENT: the kernel has forgotten the
#: inode; ENOSYS: the kernel cannot do it).
StoreFunction = Callable[[int, int, bytes | memoryview], None]

#: Blocks waiting for a worker thread before new pushes are skipped.
MAX_PENDING_BYTES = 32 * 1024 * 1024
#: Worker threads pushing at once.
PUSH_THREADS = 2


@dataclass
class PushStats:
    """Counters for tests, logs and the benchmark."""

    pushes: int = 0
    pushed_bytes: int = 0
    skipped: int = 0
    failed: int = 0


class PageCache:
    """Pushes blocks of object versions into the kernel's page cache (module docstring)."""

    def __init__(self, nursery: trio.Nursery, store: StoreFunction | None = None) -> None:
        self._nursery = nursery
        self._store = store
        self._limiter = trio.CapacityLimiter(PUSH_THREADS)
        self._pending_bytes = 0
        #: (inode, offset) of the pushes queued or running.
        self._pending: set[tuple[int, int]] = set()
        #: Inode -> pushes queued or running, and who waits for them to end.
        self._per_inode: dict[int, int] = {}
        self._settled: dict[int, trio.Event] = {}
        self.stats = PushStats()

    @property
    def enabled(self) -> bool:
        return self._store is not None

    def attach(self, store: StoreFunction | None) -> None:
        """Push through ``store`` from now on (``None``: stop pushing)."""
        self._store = store

    def push(
        self, inode: int, offset: int, data: bytes | memoryview, current: Callable[[], bool]
    ) -> None:
        """Queue ``data`` for the kernel's cache of ``inode`` at ``offset``; pushed only if
        ``current()`` still holds when a worker takes it."""
        if self._store is None or not data:
            return
        if (inode, offset) in self._pending or (
            self._pending_bytes + len(data) > MAX_PENDING_BYTES
        ):
            self.stats.skipped += 1
            return
        self._pending.add((inode, offset))
        self._pending_bytes += len(data)
        self._per_inode[inode] = self._per_inode.get(inode, 0) + 1
        self._nursery.start_soon(self._run, inode, offset, data, current)

    async def settle(self, inode: int) -> None:
        """Return once no push of ``inode`` is queued or running (see the module docstring:
        call it after changing what the inode shows, before answering the kernel)."""
        while self._per_inode.get(inode):
            event = self._settled.setdefault(inode, trio.Event())
            await event.wait()

    async def _run(
        self, inode: int, offset: int, data: bytes | memoryview, current: Callable[[], bool]
    ) -> None:
        try:
            async with self._limiter:
                store = self._store
                if store is None or not current():
                    self.stats.skipped += 1
                    return
                try:
                    await trio.to_thread.run_sync(store, inode, offset, data)
                except OSError as e:
                    self._failed(e)
                else:
                    self.stats.pushes += 1
                    self.stats.pushed_bytes += len(data)
        finally:
            self._pending.discard((inode, offset))
            self._pending_bytes -= len(data)
            left = self._per_inode[inode] - 1
            if left:
                self._per_inode[inode] = left
            else:
                del self._per_inode[inode]
                event = self._settled.pop(inode, None)
                if event is not None:
                    event.set()

    def _failed(self, e: OSError) -> None:
        self.stats.failed += 1
        if e.errno == errno.ENOSYS:
            log.info("the kernel cannot take pushed pages (%s): not pushing any more", e)
            self._store = None
        elif e.errno != errno.ENOENT:  # ENOENT: the kernel forgot the inode meanwhile
            log.debug("page cache push failed: %s", e)


__all__ = ["MAX_PENDING_BYTES", "PageCache", "PushStats", "StoreFunction"]
