"""Object blocks in memory (and optionally on disk), fetched with ranged GETs.

A block is ``block_size`` bytes of one *version* of an object: it is identified by
``(key, etag, index)``, and every GET carries the ETag as a precondition, so a block can
never mix two versions of an object.  If the object changed, the GET fails and the reader
gets :class:`~blobfs.errors.Stale`.

Memory is bounded by ``memory`` bytes: cached blocks live in an LRU sized by their length,
and GETs in flight are bounded by ``max_fetches`` (a capacity limiter) of at most
``fetch_size`` bytes each, so at most ``memory + max_fetches * fetch_size`` bytes of block
data exist at once.

Concurrency protocol (everything runs on the one trio thread; no locks are needed for the
dictionaries because they are only changed between awaits):

* ``_memory`` -- the LRU of finished blocks.  Read and written without awaiting.
* ``_inflight`` -- one :class:`_Fetch` per block being fetched.  The task that creates the
  entry (a reader, or a read-ahead run claiming several blocks at once) owns the fetch and
  removes the entry when it ends (success or failure); every other task that wants the
  block waits on the entry's event.  So concurrent readers of one block
  (the kernel sends reads of one file in parallel, and read-ahead races readers) cost one
  GET.  Failures are handed to the waiters and not cached: the next reader tries again.
* ``_limiter`` -- bounds GETs in flight for the whole mount.  Taken only around the network
  call, never while holding anything else, so it cannot deadlock.
* The disk cache (:mod:`blobfs.cache.disk`) keeps its own index on this thread and does its
  file I/O in worker threads.  Blocks are written to it in the background after they reach
  memory; if the disk falls behind, writes are skipped rather than queued without bound.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

import trio
from cachetools import LRUCache

from blobfs.cache.disk import DiskCache
from blobfs.errors import Stale, from_storage

log = logging.getLogger(__name__)

#: A cached block: bytes, or a read-only view into the body of a multi-block GET.  pyfuse3
#: replies with any buffer, so a read can hand a view to the kernel without copying.
Block = bytes | memoryview

#: Blocks waiting to be written to the disk cache before further writes are skipped.
MAX_PENDING_DISK_WRITES = 32


class RangeReader(Protocol):
    """What the cache needs from the store (satisfied by :class:`blobfs.bridge.store.TrioStore`):
    ranged reads as views of the buffers the store received them into (no copy)."""

    async def read_view(
        self, key: str, offset: int, length: int, *, etag: str | None = None
    ) -> memoryview: ...


@dataclass(eq=False)
class _Fetch:
    done: trio.Event = field(default_factory=trio.Event)
    data: Block | None = None
    error: BaseException | None = None


@dataclass
class CacheStats:
    """Counters for tests, logs and the benchmark."""

    memory_hits: int = 0
    #: Blocks asked for that were not in memory (read from disk, fetched, or waited for).
    memory_misses: int = 0
    #: Blocks the memory LRU dropped to make room.
    evictions: int = 0
    fetches: int = 0
    fetched_bytes: int = 0
    direct_reads: int = 0
    shared_waits: int = 0


class _CountingLRU(LRUCache[tuple[str, str, int], Block]):
    """The memory LRU, counting what it evicts (``popitem`` runs only to make room)."""

    def __init__(self, stats: CacheStats, maxsize: int, getsizeof: Callable[[Block], int]):
        super().__init__(maxsize=maxsize, getsizeof=getsizeof)
        self._stats = stats

    def popitem(self) -> tuple[tuple[str, str, int], Block]:
        self._stats.evictions += 1
        return super().popitem()


class BlockCache:
    """Blocks of object versions, fetched on demand or ahead of need."""

    def __init__(
        self,
        store: RangeReader,
        nursery: trio.Nursery,
        *,
        block_size: int,
        memory: int,
        max_fetches: int = 4,
        fetch_size: int = 16 * 1024 * 1024,
        disk: DiskCache | None = None,
    ) -> None:
        self.store = store
        self.block_size = block_size
        self.fetch_blocks = max(1, fetch_size // block_size)
        self.memory_budget = memory
        self._nursery = nursery
        #: The nursery background work runs in (the write-back's streams use it too).
        self.nursery = nursery
        self.stats = CacheStats()
        self._memory: LRUCache[tuple[str, str, int], Block] = _CountingLRU(
            self.stats, maxsize=memory, getsizeof=len
        )
        self._inflight: dict[tuple[str, str, int], _Fetch] = {}
        self._limiter = trio.CapacityLimiter(max_fetches)
        self._disk = disk
        self._pending_disk_writes = 0

    # -- queries ---------------------------------------------------------------------------------

    @property
    def memory_used(self) -> int:
        return int(self._memory.currsize)

    def block_length(self, size: int, index: int) -> int:
        """Length of block ``index`` of an object of ``size`` bytes."""
        return max(0, min(self.block_size, size - index * self.block_size))

    def cached(self, key: str, etag: str, index: int) -> Block | None:
        """The block if it is in memory, without fetching."""
        return self._memory.get((key, etag, index))

    def discard(self, holds: Callable[[str], bool]) -> int:
        """Drop the cached blocks of the keys ``holds`` is true of; return how many.  Blocks
        on their way are left to arrive (they are of the version their reader opened)."""
        gone = [bid for bid in self._memory if holds(bid[0])]
        for bid in gone:
            del self._memory[bid]
        return len(gone)

    def is_pending(self, key: str, etag: str, index: int) -> bool:
        bid = (key, etag, index)
        return bid in self._memory or bid in self._inflight

    # -- reads -----------------------------------------------------------------------------------

    async def get(self, key: str, etag: str, size: int, index: int) -> Block:
        """Block ``index`` of version ``etag`` of ``key`` (an object of ``size`` bytes)."""
        bid = (key, etag, index)
        while True:
            data = self._memory.get(bid)
            if data is not None:
                self.stats.memory_hits += 1
                return data
            self.stats.memory_misses += 1
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
        self.prefetch_range(key, etag, size, index, index)

    def prefetch_range(self, key: str, etag: str, size: int, first: int, last: int) -> None:
        """Start fetching blocks ``first..last`` in the background (``first`` is needed now).

        Blocks already cached or on their way are skipped; runs of missing blocks are
        fetched with one GET of up to ``fetch_blocks`` blocks each.  Per-request overhead of
        the S3 client (signing, hooks: milliseconds of CPU) dominates at 1 MiB, so a
        sequential reader's blocks are fetched several at a time.
        """
        final = (size - 1) // self.block_size
        last = min(last, final)
        run: list[int] = []
        for index in range(first, last + 1):
            bid = (key, etag, index)
            if bid in self._memory or bid in self._inflight:
                self._start_run(key, etag, size, run)
                run = []
                continue
            run.append(index)
            if len(run) >= self.fetch_blocks:
                self._start_run(key, etag, size, run)
                run = []
        # A short run at the front of the window waits until it can be a full GET -- the
        # window moves a block at a time, and launching every new block alone would undo
        # the coalescing -- unless a reader needs its first block now or it ends the file.
        if run and (run[0] == first or run[-1] == final):
            self._start_run(key, etag, size, run)

    def _start_run(self, key: str, etag: str, size: int, run: list[int]) -> None:
        if not run:
            return
        # Claim the blocks now, before the task starts, so a reader arriving in between
        # waits for this fetch instead of starting a second one.
        fetches = []
        for index in run:
            fetch = _Fetch()
            self._inflight[(key, etag, index)] = fetch
            fetches.append(fetch)
        self._nursery.start_soon(self._background_run, key, etag, size, list(run), fetches)

    async def read_direct(self, key: str, etag: str, offset: int, length: int) -> Block:
        """An uncached ranged read of exactly what a random reader asked for."""
        self.stats.direct_reads += 1
        async with self._limiter:
            with from_storage(missing=Stale):
                return await self.store.read_view(key, offset, length, etag=etag)

    # -- internals -------------------------------------------------------------------------------

    async def _background_run(
        self, key: str, etag: str, size: int, run: list[int], fetches: list[_Fetch]
    ) -> None:
        try:
            await self._load_run(key, etag, size, run, fetches)
        except Exception as e:
            # The waiters (if any) have the error; read-ahead itself has no one to tell.
            log.debug("prefetch of %s blocks %d-%d failed: %s", key, run[0], run[-1], e)

    async def _load_run(
        self, key: str, etag: str, size: int, run: list[int], fetches: list[_Fetch]
    ) -> None:
        """Fetch contiguous blocks ``run`` (claimed with ``fetches``) and resolve each."""
        pending = dict(zip(run, fetches, strict=True))
        try:
            if self._disk is not None:
                for index in run:
                    data = await self._disk.get(key, etag, index, self.block_length(size, index))
                    if data is not None:
                        self._resolve((key, etag, index), pending.pop(index), data)
            missing = sorted(pending)
            while missing:
                # A contiguous stretch of what the disk did not have: one GET.
                end = 0
                while end < len(missing) and missing[end] == missing[0] + end:
                    end += 1
                stretch, missing = missing[:end], missing[end:]
                await self._get_stretch(key, etag, size, stretch, pending)
        except BaseException as e:
            for index, fetch in pending.items():
                self._fail((key, etag, index), fetch, e)
            raise

    async def _get_stretch(
        self, key: str, etag: str, size: int, stretch: list[int], pending: dict[int, _Fetch]
    ) -> None:
        bs = self.block_size
        offset = stretch[0] * bs
        length = sum(self.block_length(size, i) for i in stretch)
        async with self._limiter:
            with from_storage(missing=Stale):
                data = await self.store.read_view(key, offset, length, etag=etag)
        self.stats.fetches += 1
        self.stats.fetched_bytes += len(data)
        if len(data) != length:
            raise Stale(f"{key}: got {len(data)} bytes at {offset}, expected {length}")
        # Blocks are views into the one body: no copy.  A cached view keeps the whole body
        # alive, but the blocks of one GET sit next to each other in the LRU and leave it
        # together, so the budget holds to within one fetch_size.
        for n, index in enumerate(stretch):
            block = data[n * bs : n * bs + self.block_length(size, index)]
            self._resolve((key, etag, index), pending.pop(index), block)
            self._to_disk(key, etag, index, block)

    def _resolve(self, bid: tuple[str, str, int], fetch: _Fetch, data: Block) -> None:
        fetch.data = data
        self._memory[bid] = data
        if self._inflight.get(bid) is fetch:
            del self._inflight[bid]
        fetch.done.set()

    def _fail(self, bid: tuple[str, str, int], fetch: _Fetch, error: BaseException) -> None:
        fetch.error = error
        if self._inflight.get(bid) is fetch:
            del self._inflight[bid]
        fetch.done.set()

    async def _load(
        self, bid: tuple[str, str, int], size: int, fetch: _Fetch | None = None
    ) -> Block:
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

    async def _fetch(self, bid: tuple[str, str, int], size: int) -> Block:
        key, etag, index = bid
        expected = self.block_length(size, index)
        if self._disk is not None:
            cached = await self._disk.get(key, etag, index, expected)
            if cached is not None:
                return cached
        async with self._limiter:
            with from_storage(missing=Stale):
                data = await self.store.read_view(key, index * self.block_size, expected, etag=etag)
        self.stats.fetches += 1
        self.stats.fetched_bytes += len(data)
        if len(data) != expected:
            # The object is shorter than the version we were told about: it changed.
            raise Stale(f"{key}: block {index} is {len(data)} bytes, expected {expected}")
        self._to_disk(key, etag, index, data)
        return data

    def _to_disk(self, key: str, etag: str, index: int, data: Block) -> None:
        if self._disk is not None and self._pending_disk_writes < MAX_PENDING_DISK_WRITES:
            self._pending_disk_writes += 1
            self._nursery.start_soon(self._write_disk, key, etag, index, data)

    async def _write_disk(self, key: str, etag: str, index: int, data: Block) -> None:
        assert self._disk is not None
        try:
            await self._disk.put(key, etag, index, data)
        finally:
            self._pending_disk_writes -= 1
