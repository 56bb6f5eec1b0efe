"""Object blocks in memory (and optionally on disk), fetched with ranged GETs.

A block is ``block_size`` bytes of one *version* of an object: it is identified by
``(key, etag, index)``, and every GET carries the ETag as a precondition, so a block can
never mix two versions of an object.  If the object changed, the GET fails and the reader
gets :class:`~blobfs.errors.Stale`.

Memory is bounded by ``memory`` bytes: cached blocks live in an LRU sized by their length,
and fetches in flight are bounded by ``max_fetches`` (a capacity limiter), so at most
``memory + max_fetches * block_size`` bytes of block data exist at once.

Concurrency protocol (everything runs on the one trio thread; no locks are needed for the
dictionaries because they are only changed between awaits):

* ``_memory`` -- the LRU of finished blocks.  Read and written without awaiting.
* ``_inflight`` -- one :class:`_Fetch` per block being fetched.  The task that creates the
  entry owns the fetch and removes the entry when it ends (success or failure); every other
  task that wants the block waits on the entry's event.  So concurrent readers of one block
  (the kernel sends reads of one file in parallel, and read-ahead races readers) cost one
  GET.  Failures are handed to the waiters and not cached: the next reader tries again.
* ``_limiter`` -- bounds GETs in flight for the whole mount.  Taken only around the network
  call, never while holding anything else, so it cannot deadlock.
* The disk cache (:mod:`blobfs.disk_cache`) keeps its own index on this thread and does its
  file I/O in worker threads.  Blocks are written to it in the background after they reach
  memory; if the disk falls behind, writes are skipped rather than queued without bound.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Protocol

import trio
from cachetools import LRUCache

from .disk_cache import DiskCache
from .errors import Stale, from_storage

log = logging.getLogger(__name__)

#: Blocks waiting to be written to the disk cache before further writes are skipped.
MAX_PENDING_DISK_WRITES = 32


class RangeReader(Protocol):
    """What the cache needs from the store (satisfied by :class:`blobfs.bridge.TrioStore`)."""

    async def read_range(
        self, key: str, offset: int, length: int, *, etag: str | None = None
    ) -> bytes: ...


@dataclass(eq=False)
class _Fetch:
    done: trio.Event = field(default_factory=trio.Event)
    data: bytes | None = None
    error: BaseException | None = None


@dataclass
class CacheStats:
    """Counters for tests, logs and the benchmark."""

    memory_hits: int = 0
    fetches: int = 0
    fetched_bytes: int = 0
    direct_reads: int = 0
    shared_waits: int = 0


class BlockCache:
    """Blocks of object versions, fetched on demand or ahead of need."""

    def __init__(
        self,
        store: RangeReader,
        nursery: trio.Nursery,
        *,
        block_size: int,
        memory: int,
        max_fetches: int = 16,
        disk: DiskCache | None = None,
    ) -> None:
        self.store = store
        self.block_size = block_size
        self.memory_budget = memory
        self._nursery = nursery
        self._memory: LRUCache[tuple[str, str, int], bytes] = LRUCache(
            maxsize=memory, getsizeof=len
        )
        self._inflight: dict[tuple[str, str, int], _Fetch] = {}
        self._limiter = trio.CapacityLimiter(max_fetches)
        self._disk = disk
        self._pending_disk_writes = 0
        self.stats = CacheStats()

    # -- queries ---------------------------------------------------------------------------------

    @property
    def memory_used(self) -> int:
        return int(self._memory.currsize)

    def block_length(self, size: int, index: int) -> int:
        """Length of block ``index`` of an object of ``size`` bytes."""
        return max(0, min(self.block_size, size - index * self.block_size))

    def cached(self, key: str, etag: str, index: int) -> bytes | None:
        """The block if it is in memory, without fetching."""
        return self._memory.get((key, etag, index))

    def is_pending(self, key: str, etag: str, index: int) -> bool:
        bid = (key, etag, index)
        return bid in self._memory or bid in self._inflight

    # -- reads -----------------------------------------------------------------------------------

    async def get(self, key: str, etag: str, size: int, index: int) -> bytes:
        """Block ``index`` of version ``etag`` of ``key`` (an object of ``size`` bytes)."""
        bid = (key, etag, index)
        while True:
            data = self._memory.get(bid)
            if data is not None:
                self.stats.memory_hits += 1
                return data
            fetch = self._inflight.get(bid)
            if fetch is None:
                return await self._load(bid, size)
            self.stats.shared_waits += 1
            await fetch.done.wait()
            if fetch.data is not None:
                return fetch.data
            if not isinstance(fetch.error, trio.Cancelled):
                assert fetch.error is not None
                raise fetch.error
            # The owner was cancelled (its request was interrupted): not our failure, so
            # go round and fetch it ourselves.

    def prefetch(self, key: str, etag: str, size: int, index: int) -> None:
        """Start fetching a block in the background unless it is cached or on its way."""
        bid = (key, etag, index)
        if bid in self._memory or bid in self._inflight:
            return
        if index * self.block_size >= size:
            return
        # Claim the block now, before the task starts, so a reader arriving in between
        # waits for this fetch instead of starting a second one.
        fetch = _Fetch()
        self._inflight[bid] = fetch
        self._nursery.start_soon(self._background_load, bid, size, fetch)

    async def read_direct(self, key: str, etag: str, offset: int, length: int) -> bytes:
        """An uncached ranged read of exactly what a random reader asked for."""
        self.stats.direct_reads += 1
        async with self._limiter:
            with from_storage(missing=Stale):
                return await self.store.read_range(key, offset, length, etag=etag)

    # -- internals -------------------------------------------------------------------------------

    async def _background_load(self, bid: tuple[str, str, int], size: int, fetch: _Fetch) -> None:
        try:
            await self._load(bid, size, fetch)
        except Exception as e:
            # The waiters (if any) have the error; read-ahead itself has no one to tell.
            log.debug("prefetch of %s block %d failed: %s", bid[0], bid[2], e)

    async def _load(
        self, bid: tuple[str, str, int], size: int, fetch: _Fetch | None = None
    ) -> bytes:
        if fetch is None:
            fetch = _Fetch()
            self._inflight[bid] = fetch
        try:
            data = await self._fetch(bid, size)
        except BaseException as e:
            fetch.error = e
            raise
        else:
            fetch.data = data
            self._memory[bid] = data
            return data
        finally:
            if self._inflight.get(bid) is fetch:
                del self._inflight[bid]
            fetch.done.set()

    async def _fetch(self, bid: tuple[str, str, int], size: int) -> bytes:
        key, etag, index = bid
        expected = self.block_length(size, index)
        if self._disk is not None:
            data = await self._disk.get(key, etag, index, expected)
            if data is not None:
                return data
        async with self._limiter:
            with from_storage(missing=Stale):
                data = await self.store.read_range(
                    key, index * self.block_size, expected, etag=etag
                )
        self.stats.fetches += 1
        self.stats.fetched_bytes += len(data)
        if len(data) != expected:
            # The object is shorter than the version we were told about: it changed.
            raise Stale(f"{key}: block {index} is {len(data)} bytes, expected {expected}")
        if self._disk is not None and self._pending_disk_writes < MAX_PENDING_DISK_WRITES:
            self._pending_disk_writes += 1
            self._nursery.start_soon(self._write_disk, key, etag, index, data)
        return data

    async def _write_disk(self, key: str, etag: str, index: int, data: bytes) -> None:
        assert self._disk is not None
        try:
            await self._disk.put(key, etag, index, data)
        finally:
            self._pending_disk_writes -= 1
