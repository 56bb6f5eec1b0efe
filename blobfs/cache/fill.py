"""Whole-object fills: a slow store's object fetched in the background for a random reader.

Where every GET costs tens of milliseconds whatever its size (S3's first byte takes 20-50
ms; SeaweedFS serves an object it stored compressed in ~45 ms per GET), a reader that jumps
about -- a database's lookups, an archive's index -- waits that long for each miss, one
after the other, while the store could send the whole object in the time a few dozen misses
take: a 300 MB SQLite database on SeaweedFS comes in 2.7 s with 8 GETs at once, and 200
indexed lookups miss about 450 times.  A fill (:class:`Fills`) fetches the blocks of one
version that no cache layer holds, ``fetch_size`` per GET, starting near the reader's first
miss; the reader's own misses meanwhile fetch their one block at once.

Invariants:

* At most one fill per version per mount, and it fetches no block that memory or the disk
  holds or that a reader is fetching (the block cache's single-flight claims), so a version
  is fetched at most once unless a cache evicted it.
* A fill holds at most :attr:`Fills.slots` GETs at once, one fewer than the mount's
  ``max_fetches``: a reader's miss always finds a GET slot the fill does not hold.
* What it fetched is kept on disk before it fetches more (:meth:`BlockCache.fill_range`
  waits for the disk), and not in memory: a whole object passing through the memory LRU
  would push out what readers come back to (and raised the daemon's peak RSS during a
  300 MB fill to 294 MiB).  Without a disk cache only objects that fit in half the memory
  cache are filled, and memory keeps them.  Its blocks also go to the kernel's page cache
  (``keep``, given by the reader), so that reads after the fill never leave the kernel.
* It stops when the object changes (its GETs fail with ``Stale``), when nobody has the
  version open (``wanted``), or at unmount; a fill that stopped for want of readers may be
  started again by the next reader and fetches only what is still missing.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import trio

from blobfs.cache.blocks import Block, BlockCache
from blobfs.errors import Stale

log = logging.getLogger(__name__)

#: ``keep(blocks)``: hand the ``(index, block)`` a fill brought to another cache layer,
#: returning once it has them.
Keep = Callable[[list[tuple[int, Block]]], Awaitable[None]]

#: The largest share of the disk cache's bound one object may fill: the rest stays for
#: everything else the mount reads.
DISK_SHARE = 4


@dataclass
class FillStats:
    """Counters for the status report and the benchmark."""

    started: int = 0
    finished: int = 0
    filled_bytes: int = 0


class Fills:
    """The background fills of one mount."""

    def __init__(self, cache: BlockCache, *, max_fetches: int, disk_capacity: int) -> None:
        self._cache = cache
        #: GETs one fill holds at once.
        self.slots = max(1, max_fetches - 1)
        self._disk_capacity = disk_capacity
        #: Versions being filled, and those filled to the end (or found changed).
        self._running: set[tuple[str, str]] = set()
        self._done: set[tuple[str, str]] = set()
        self.stats = FillStats()

    def fits(self, size: int) -> bool:
        """Whether an object of ``size`` bytes may be filled at all."""
        if self._disk_capacity > 0:
            return size <= self._disk_capacity // DISK_SHARE
        return size <= self._cache.memory_budget // 2

    def running(self, key: str, etag: str) -> bool:
        return (key, etag) in self._running

    def start(
        self,
        key: str,
        etag: str,
        size: int,
        near: int,
        wanted: Callable[[], bool],
        keep: Keep | None = None,
    ) -> bool:
        """Start filling a version of ``size`` bytes from the block group around block
        ``near``, while ``wanted()`` holds, giving each group to ``keep`` too; return
        whether a fill is running now."""
        version = (key, etag)
        if version in self._running:
            return True
        if version in self._done or size <= 0 or not self.fits(size):
            return False
        self._running.add(version)
        self.stats.started += 1
        self._cache.nursery.start_soon(self._fill, key, etag, size, near, wanted, keep)
        return True

    async def _fill(
        self,
        key: str,
        etag: str,
        size: int,
        near: int,
        wanted: Callable[[], bool],
        keep: Keep | None,
    ) -> None:
        cache = self._cache
        per = cache.fetch_blocks
        groups = list(range(0, (size - 1) // cache.block_size + 1, per))
        start = near // per
        order = groups[start:] + groups[:start]
        slots = trio.Semaphore(self.slots)
        outcome = "finished"
        started, filled = trio.current_time(), 0

        async def one(first: int) -> None:
            nonlocal outcome, filled
            try:
                blocks = await cache.fill_range(key, etag, size, first, first + per - 1)
                fetched = sum(len(block) for _, block in blocks)
                filled += fetched
                self.stats.filled_bytes += fetched
                if keep is not None and blocks:
                    await keep(blocks)
            except Stale:
                outcome = "stale"
            except Exception as e:
                # A fill is only ahead of need: a failure leaves the reader to fetch itself.
                log.debug("fill of %s stopped at block %d: %s", key, first, e)
                outcome = "failed"
            finally:
                slots.release()

        try:
            async with trio.open_nursery() as nursery:
                for first in order:
                    await slots.acquire()
                    if outcome != "finished" or not wanted():
                        slots.release()
                        if outcome == "finished":
                            outcome = "unwanted"
                        break
                    nursery.start_soon(one, first)
        finally:
            self._running.discard((key, etag))
            if outcome in ("finished", "stale"):
                self._done.add((key, etag))
            if outcome == "finished":
                self.stats.finished += 1
            log.info(
                "fill of %s: %s, %.1f MiB in %.2f s",
                key,
                outcome,
                filled / 2**20,
                trio.current_time() - started,
            )


__all__ = ["DISK_SHARE", "FillStats", "Fills", "Keep"]
