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
  anyway.  A block already being pushed is not queued twice.  :data:`PUSH_THREADS` workers
  take the queue in batches of up to :data:`BATCH_BYTES`.
"""

from __future__ import annotations

import errno
import logging
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

import trio

log = logging.getLogger(__name__)

#: ``store(inode, offset, data)``: put ``data`` into the kernel's page cache of ``inode`` at
#: ``offset``.  Blocking; raises :class:`OSError` (ENOENT: the kernel has forgotten the
#: inode; ENOSYS: the kernel cannot do it).
StoreFunction = Callable[[int, int, bytes | memoryview], None]

#: Blocks waiting for a worker thread before new pushes are skipped.
MAX_PENDING_BYTES = 8 * 1024 * 1024
#: Worker threads pushing at once, and the most one hands the kernel per job: a job (a
#: thread hop each way) costs more CPU than storing a 256 KiB block, so blocks queued
#: together go together.
PUSH_THREADS = 2
BATCH_BYTES = 4 * 1024 * 1024


@dataclass
class PushStats:
    """Counters for tests, logs and the benchmark."""

    pushes: int = 0
    pushed_bytes: int = 0
    skipped: int = 0
    failed: int = 0


@dataclass(eq=False)
class _Push:
    inode: int
    offset: int
    data: bytes | memoryview
    current: Callable[[], bool]


class PageCache:
    """Pushes blocks of object versions into the kernel's page cache (module docstring)."""

    def __init__(self, nursery: trio.Nursery, store: StoreFunction | None = None) -> None:
        self._nursery = nursery
        self._store = store
        self._queue: deque[_Push] = deque()
        self._pumps = 0
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
        self._hold(inode)
        self._queue.append(_Push(inode, offset, data, current))
        if self._pumps < PUSH_THREADS:
            self._pumps += 1
            self._nursery.start_soon(self._pump)

    def is_pending(self, inode: int, offset: int) -> bool:
        """Whether a push of ``inode`` at ``offset`` is queued or running: a read there is
        one that came before it landed, not one the kernel lost it to."""
        return (inode, offset) in self._pending

    async def store_now(
        self, inode: int, blocks: list[tuple[int, bytes | memoryview]], current: Callable[[], bool]
    ) -> None:
        """Push ``blocks`` (``(offset, data)``) into the kernel's cache of ``inode`` in one
        worker-thread job, and return once done.  For a background fill, which paces
        itself by it: unlike :meth:`push` nothing is skipped for want of room.  Fenced
        like :meth:`push`: only if ``current()`` holds when the job starts, and
        :meth:`settle` waits for the job."""
        store = self._store
        if store is None or not blocks or not current():
            return
        pushes = [_Push(inode, offset, data, current) for offset, data in blocks]
        self._hold(inode)
        try:
            errors = await trio.to_thread.run_sync(_store_all, store, pushes)
        finally:
            self._release(inode)
        self._count(pushes, errors)

    async def settle(self, inode: int) -> None:
        """Return once no push of ``inode`` is queued or running (see the module docstring:
        call it after changing what the inode shows, before answering the kernel)."""
        while self._per_inode.get(inode):
            event = self._settled.setdefault(inode, trio.Event())
            await event.wait()

    async def _pump(self) -> None:
        """Hand queued pushes to a worker thread, a batch at a time, until none is left."""
        try:
            while self._queue:
                batch: list[_Push] = []
                size = 0
                while self._queue and (not batch or size + len(self._queue[0].data) <= BATCH_BYTES):
                    push = self._queue.popleft()
                    batch.append(push)
                    size += len(push.data)
                try:
                    store = self._store
                    # Checked here, on the trio thread, right before the job: an inode that
                    # changed since the block was queued must not get it (settle()).
                    live = [p for p in batch if p.current()] if store is not None else []
                    self.stats.skipped += len(batch) - len(live)
                    if store is not None and live:
                        errors = await trio.to_thread.run_sync(_store_all, store, live)
                        self._count(live, errors)
                finally:
                    for push in batch:
                        self._done(push)
        finally:
            self._pumps -= 1

    def _count(self, pushes: list[_Push], errors: list[OSError | None]) -> None:
        for push, error in zip(pushes, errors, strict=True):
            if error is None:
                self.stats.pushes += 1
                self.stats.pushed_bytes += len(push.data)
                continue
            self.stats.failed += 1
            if error.errno == errno.ENOSYS:
                log.info("the kernel cannot take pushed pages (%s): not pushing any more", error)
                self._store = None
            elif error.errno != errno.ENOENT:  # ENOENT: the kernel forgot the inode meanwhile
                log.debug("page cache push failed: %s", error)

    def _done(self, push: _Push) -> None:
        self._pending.discard((push.inode, push.offset))
        self._pending_bytes -= len(push.data)
        self._release(push.inode)

    def _hold(self, inode: int) -> None:
        """One more push of ``inode`` queued or running (:meth:`settle` waits for it)."""
        self._per_inode[inode] = self._per_inode.get(inode, 0) + 1

    def _release(self, inode: int) -> None:
        left = self._per_inode[inode] - 1
        if left:
            self._per_inode[inode] = left
            return
        del self._per_inode[inode]
        event = self._settled.pop(inode, None)
        if event is not None:
            event.set()


def _store_all(store: StoreFunction, pushes: list[_Push]) -> list[OSError | None]:
    """Runs in a worker thread: every push of a batch, each one's error or ``None``."""
    errors: list[OSError | None] = []
    for push in pushes:
        try:
            store(push.inode, push.offset, push.data)
        except OSError as e:
            errors.append(e)
        else:
            errors.append(None)
    return errors


__all__ = ["BATCH_BYTES", "MAX_PENDING_BYTES", "PageCache", "PushStats", "StoreFunction"]
