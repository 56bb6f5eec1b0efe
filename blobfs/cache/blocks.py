"""Object blocks in memory (and on disk), fetched with ranged GETs: :class:`BlockCache`.

A block is ``block_size`` bytes of one *version* of an object: it is identified by
``(key, etag, index)``, and every GET carries the ETag as a precondition
(:mod:`blobfs.cache.fetcher`), so a block can never mix two versions of an object.

Memory is bounded by ``memory`` bytes: cached blocks live in an LRU sized by their length,
and GETs in flight are bounded by ``max_fetches`` of at most ``fetch_size`` bytes each, so
at most ``memory + max_fetches * fetch_size`` bytes of block data exist at once.

Where a block can be, on the one trio thread (the tables change only between awaits):

* in ``_memory``, the LRU of finished blocks, read and written without awaiting;
* on its way, in ``_inflight`` (:mod:`blobfs.cache.inflight`): the task that claims a
  block (a reader, or a run claiming several blocks at once) owns its fetch and ends it,
  every other task that wants it waits, so concurrent readers of one block cost one GET;
* on disk (:mod:`blobfs.cache.disk`), which reads and writes in worker threads.  Blocks
  are written to it behind the reader (:class:`~blobfs.cache.disk.DiskWrites`), except
  those a sequential reader fetched (``to_disk=False``): the kernel's page cache keeps
  what a stream read, and a stream would otherwise push out of the disk cache the blocks
  random readers come back to.

A missing block is looked for on disk, then fetched: alone by a reader (:meth:`get`), or
in a *run* of contiguous missing blocks claimed together and loaded in the background
(:meth:`prefetch_range`), or by a background fill that only needs them on disk
(:meth:`fill_range`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

import trio
from cachetools import LRUCache

from blobfs.cache.disk import DiskCache, DiskWrites
from blobfs.cache.fetcher import Fetcher, RangeReader
from blobfs.cache.inflight import Flight, InFlight
from blobfs.cache.stats import CacheStats

log = logging.getLogger(__name__)

#: A cached block: bytes, or a read-only view into the body of a multi-block GET.  pyfuse3
#: replies with any buffer, so a read can hand a view to the kernel without copying.
Block = bytes | memoryview
#: A block's identity: (key, ETag, index).
BlockId = tuple[str, str, int]

#: Told of each block a background run brings (from the disk or the store):
#: ``loaded(index, block)``.
Loaded = Callable[[int, Block], None]


@dataclass(eq=False)
class _Run:
    """Contiguous blocks of one version claimed together, fetched in the background."""

    key: str
    etag: str
    size: int
    fetches: dict[int, Flight[Block]]
    to_disk: bool
    loaded: Loaded | None
    #: Keep the blocks in the memory LRU (a fill keeps them on disk only: a whole object
    #: passing through memory would push out what readers come back to).
    to_memory: bool = True


class _CountingLRU(LRUCache[BlockId, Block]):
    """The memory LRU, counting what it evicts (``popitem`` runs only to make room)."""

    def __init__(self, stats: CacheStats, maxsize: int, getsizeof: Callable[[Block], int]):
        super().__init__(maxsize=maxsize, getsizeof=getsizeof)
        self._stats = stats

    def popitem(self) -> tuple[BlockId, Block]:
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
        self.block_size = block_size
        self.fetch_blocks = max(1, fetch_size // block_size)
        self.memory_budget = memory
        self._nursery = nursery
        #: The nursery background work runs in (the write-back's streams use it too).
        self.nursery = nursery
        self.stats = CacheStats()
        self._memory: LRUCache[BlockId, Block] = _CountingLRU(
            self.stats, maxsize=memory, getsizeof=len
        )
        self._inflight: InFlight[BlockId, Block] = InFlight()
        self._fetcher = Fetcher(store, self.stats, block_size=block_size, max_fetches=max_fetches)
        #: GETs in flight at once for the whole mount.
        self.max_fetches = max_fetches
        self._disk = disk
        self._disk_writes = DiskWrites(disk, nursery) if disk is not None else None

    @property
    def memory_used(self) -> int:
        return int(self._memory.currsize)

    @property
    def disk_capacity(self) -> int:
        """The disk cache's bound (0 without one)."""
        return self._disk.max_bytes if self._disk is not None else 0

    def block_length(self, size: int, index: int) -> int:
        """Length of block ``index`` of an object of ``size`` bytes."""
        return max(0, min(self.block_size, size - index * self.block_size))

    def cached(self, key: str, etag: str, index: int) -> Block | None:
        """The block if it is in memory, without fetching (a hit counts as one)."""
        data = self._memory.get((key, etag, index))
        if data is not None:
            self.stats.memory_hits += 1
        return data

    def peek(self, key: str, etag: str, index: int) -> Block | None:
        """The block if it is in memory (not counted as a read's hit)."""
        return self._memory.get((key, etag, index))

    def forget_keys(self, holds: Callable[[str], bool]) -> int:
        """Drop the cached blocks of the keys ``holds`` is true of; return how many.  Blocks
        on their way are left to arrive (they are of the version their reader opened)."""
        gone = [bid for bid in self._memory if holds(bid[0])]
        for bid in gone:
            del self._memory[bid]
        return len(gone)

    def is_pending(self, key: str, etag: str, index: int) -> bool:
        bid = (key, etag, index)
        return bid in self._memory or bid in self._inflight

    def fetched_blocks(self, key: str, etag: str) -> int:
        """How many blocks of this version the mount has fetched from the store so far."""
        return self._fetcher.fetched_blocks(key, etag)

    def block_latency(self, key: str, etag: str) -> float | None:
        """Typical seconds a one-block GET of this version (else of any) has taken."""
        return self._fetcher.block_latency(key, etag)

    def discard(self, key: str, etag: str, index: int) -> None:
        """Drop a block from memory (a sequential reader is past it; the kernel has it)."""
        if self._memory.pop((key, etag, index), None) is not None:
            self.stats.dropped_behind += 1

    async def get(
        self, key: str, etag: str, size: int, index: int, *, to_disk: bool = True
    ) -> Block:
        """Block ``index`` of version ``etag`` of ``key`` (an object of ``size`` bytes);
        ``to_disk``: keep it in the disk cache if it has to be fetched."""
        bid = (key, etag, index)
        while True:
            data = self._memory.get(bid)
            if data is not None:
                self.stats.memory_hits += 1
                return data
            self.stats.memory_misses += 1
            flight = self._inflight.get(bid)
            if flight is None:
                return await self._load(bid, size, to_disk)
            self.stats.shared_waits += 1
            if await flight.wait():
                assert flight.result is not None
                return flight.result
            # The owner was cancelled (its request was interrupted): not our failure, so
            # go round and fetch it ourselves.

    def prefetch_range(
        self,
        key: str,
        etag: str,
        size: int,
        first: int,
        last: int,
        *,
        needed: int | None = None,
        to_disk: bool = True,
        loaded: Loaded | None = None,
        per_get: int | None = None,
    ) -> int:
        """Start fetching blocks ``first..last`` in the background; return the last block
        index up to which every block is now cached or on its way.

        Blocks already cached or on their way are skipped; runs of missing blocks are
        fetched with one GET of up to ``fetch_blocks`` blocks each (per-request costs
        dominate small GETs).  With ``needed`` (a sequential reader's current block), a
        short run at the end waits until it can be a full GET -- the window moves a block
        at a time, and launching every new block alone would undo the coalescing -- unless
        it holds ``needed`` or ends the object.  ``loaded`` is told of each block fetched;
        ``per_get`` lowers the blocks per GET (more GETs in parallel).
        """
        final = (size - 1) // self.block_size
        last = min(last, final)
        most = min(per_get, self.fetch_blocks) if per_get else self.fetch_blocks
        run: list[int] = []
        for index in range(first, last + 1):
            bid = (key, etag, index)
            if bid in self._memory or bid in self._inflight:
                self._start_run(key, etag, size, run, to_disk, loaded)
                run = []
                continue
            run.append(index)
            if len(run) >= most:
                self._start_run(key, etag, size, run, to_disk, loaded)
                run = []
        if run and needed is not None and needed not in run and run[-1] != final:
            return run[0] - 1
        self._start_run(key, etag, size, run, to_disk, loaded)
        return last

    def _start_run(
        self,
        key: str,
        etag: str,
        size: int,
        indexes: list[int],
        to_disk: bool,
        loaded: Loaded | None,
    ) -> None:
        if not indexes:
            return
        # Claim the blocks now, before the task starts, so a reader arriving in between
        # waits for this fetch instead of starting a second one.
        run = _Run(key, etag, size, {}, to_disk, loaded)
        self._claim(run, indexes)
        self._nursery.start_soon(self._background_run, run)

    def _claim(self, run: _Run, indexes: list[int]) -> None:
        """Enter the run's blocks as in flight, owned by it (the module docstring)."""
        for index in indexes:
            run.fetches[index] = self._inflight.start((run.key, run.etag, index))

    def _fail_run(self, run: _Run, error: BaseException) -> None:
        """Hand ``error`` to the waiters of every block the run has not resolved."""
        for index, flight in run.fetches.items():
            self._inflight.fail((run.key, run.etag, index), flight, error)

    async def fill_range(
        self, key: str, etag: str, size: int, first: int, last: int
    ) -> list[tuple[int, Block]]:
        """Make sure the disk holds the blocks ``first..last`` of a version.  Those no layer
        holds or is fetching are fetched, one GET per contiguous stretch (readers waiting for
        them get them; memory keeps them only where there is no disk); they and the ones only
        memory held are written to disk, waiting for the disk, so that nothing fetched is
        dropped for want of a write.  Blocks others are fetching are left to them.  Returns
        the blocks fetched.  For a background fill (:mod:`blobfs.cache.fill`): unlike
        :meth:`prefetch_range` it returns once done."""
        final = (size - 1) // self.block_size
        disk = self._disk
        got: list[tuple[int, Block]] = []
        missing = []
        for index in range(first, min(last, final) + 1):
            bid = (key, etag, index)
            if bid in self._inflight or (disk is not None and disk.holds(key, etag, index)):
                continue
            block = self._memory.get(bid)
            if block is None:
                missing.append(index)
            elif disk is not None:
                got.append((index, block))  # a stream's block, in memory only until now
        if not missing:
            if disk is not None and got:
                await disk.put_many(key, etag, got)
            return []
        kept = len(got)
        run = _Run(
            key,
            etag,
            size,
            {},
            to_disk=False,
            loaded=lambda i, b: got.append((i, b)),
            to_memory=disk is None,
        )
        self._claim(run, missing)
        try:
            await self._get_missing(run)
        except BaseException as e:
            self._fail_run(run, e)
            raise
        if disk is not None:
            await disk.put_many(key, etag, got)
        return got[kept:]

    async def _background_run(self, run: _Run) -> None:
        first, last = min(run.fetches), max(run.fetches)
        try:
            await self._load_run(run)
        except Exception as e:
            # The waiters (if any) have the error; read-ahead itself has no one to tell.
            log.debug("prefetch of %s blocks %d-%d failed: %s", run.key, first, last, e)

    async def _load_run(self, run: _Run) -> None:
        """Fetch the run's blocks (the disk's first, the rest by GET) and resolve each."""
        try:
            if self._disk is not None:
                indexes = sorted(run.fetches)
                wanted = [(i, self.block_length(run.size, i)) for i in indexes]
                found = await self._disk.get_many(run.key, run.etag, wanted)
                for index, data in zip(indexes, found, strict=True):
                    if data is not None:
                        self.stats.disk_hits += 1
                        self._resolve_run(run, index, data)
            await self._get_missing(run)
        except BaseException as e:
            self._fail_run(run, e)
            raise

    async def _get_missing(self, run: _Run) -> None:
        """GET the run's unresolved blocks, one GET per contiguous stretch."""
        missing = sorted(run.fetches)
        while missing:
            end = 0
            while end < len(missing) and missing[end] == missing[0] + end:
                end += 1
            stretch, missing = missing[:end], missing[end:]
            await self._get_stretch(run, stretch)

    async def _get_stretch(self, run: _Run, stretch: list[int]) -> None:
        lengths = [self.block_length(run.size, i) for i in stretch]
        views = await self._fetcher.get(run.key, run.etag, stretch[0], lengths)
        # A cached view keeps its GET's whole body alive, but the blocks of one GET sit next
        # to each other in the LRU and leave it together, so the budget holds to within one
        # fetch_size.
        blocks: list[tuple[int, Block]] = list(zip(stretch, views, strict=True))
        for index, block in blocks:
            self._resolve_run(run, index, block)
        if run.to_disk and self._disk_writes is not None:
            self._disk_writes.put(run.key, run.etag, blocks)

    def _resolve_run(self, run: _Run, index: int, data: Block) -> None:
        bid = (run.key, run.etag, index)
        if run.to_memory:
            self._memory[bid] = data
        self._inflight.succeed(bid, run.fetches.pop(index), data)
        if run.loaded is not None:
            run.loaded(index, data)

    async def _load(self, bid: BlockId, size: int, to_disk: bool) -> Block:
        async def load() -> Block:
            data = await self._fetch(bid, size, to_disk)
            self._memory[bid] = data
            return data

        return await self._inflight.run(bid, load)

    async def _fetch(self, bid: BlockId, size: int, to_disk: bool) -> Block:
        key, etag, index = bid
        expected = self.block_length(size, index)
        if self._disk is not None:
            cached = await self._disk.get(key, etag, index, expected)
            if cached is not None:
                self.stats.disk_hits += 1
                return cached
        [data] = await self._fetcher.get(key, etag, index, [expected])
        if to_disk and self._disk_writes is not None:
            self._disk_writes.put(key, etag, [(index, data)])
        return data

    async def settle_disk(self) -> None:
        """Return once the blocks on their way to the disk cache are written (at unmount:
        what was fetched is found again by the next mount)."""
        if self._disk_writes is not None:
            await self._disk_writes.settle()
