"""Object blocks in memory (and on disk), fetched with ranged GETs.

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
  Blocks a sequential reader fetched are not written (``to_disk=False``): the kernel's page
  cache keeps what a stream read, and a stream would otherwise push out of the disk cache
  the blocks random readers come back to.
* Every GET is entered in a :class:`~blobfs.cache.ledger.FetchLedger`, so
  :attr:`CacheStats.refetched_bytes` says how much was fetched a second time (only ever
  after every layer had let it go), and :meth:`BlockCache.fetched_blocks` how much of a
  version this mount has fetched (the read policy fetches more at once for a reader that
  has touched much of an object).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

import trio
from cachetools import LRUCache

from blobfs.cache.disk import DiskCache
from blobfs.cache.ledger import FetchLedger
from blobfs.errors import Stale, from_storage

log = logging.getLogger(__name__)

#: A cached block: bytes, or a read-only view into the body of a multi-block GET.  pyfuse3
#: replies with any buffer, so a read can hand a view to the kernel without copying.
Block = bytes | memoryview

#: Bytes waiting to be written to the disk cache before further writes are skipped.
MAX_PENDING_DISK_BYTES = 32 * 1024 * 1024

#: Told of each block a background run brings (from the disk or the store):
#: ``loaded(index, block)``.
Loaded = Callable[[int, Block], None]


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


@dataclass(eq=False)
class _Run:
    """Contiguous blocks of one version claimed together, fetched in the background."""

    key: str
    etag: str
    size: int
    fetches: dict[int, _Fetch]
    to_disk: bool
    loaded: Loaded | None
    #: Keep the blocks in the memory LRU (a fill keeps them on disk only: a whole object
    #: passing through memory would push out what readers come back to).
    to_memory: bool = True


@dataclass
class CacheStats:
    """Counters for tests, logs and the benchmark."""

    memory_hits: int = 0
    #: Blocks asked for that were not in memory (read from disk, fetched, or waited for).
    memory_misses: int = 0
    #: Blocks the memory LRU dropped to make room.
    evictions: int = 0
    #: GETs, the bytes they brought, and how many of those had been fetched before.
    fetches: int = 0
    fetched_bytes: int = 0
    refetched_bytes: int = 0
    #: Blocks served from the disk cache.
    disk_hits: int = 0
    #: Readers that waited for a fetch another reader had started.
    shared_waits: int = 0
    #: Blocks dropped from memory behind a sequential reader.
    dropped_behind: int = 0


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
        #: GETs in flight at once for the whole mount.
        self.max_fetches = max_fetches
        self._disk = disk
        self._pending_disk_bytes = 0
        self._disk_idle = trio.Event()
        self._disk_idle.set()
        self._ledger = FetchLedger()

    # -- queries ---------------------------------------------------------------------------------

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
        return self._ledger.count(key, etag)

    def block_latency(self, key: str, etag: str) -> float | None:
        """Typical seconds a one-block GET of this version (else of any) has taken."""
        return self._ledger.latency(key, etag)

    def discard(self, key: str, etag: str, index: int) -> None:
        """Drop a block from memory (a sequential reader is past it; the kernel has it)."""
        if self._memory.pop((key, etag, index), None) is not None:
            self.stats.dropped_behind += 1

    # -- reads -----------------------------------------------------------------------------------

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
            fetch = self._inflight.get(bid)
            if fetch is None:
                return await self._load(bid, size, to_disk)
            self.stats.shared_waits += 1
            await fetch.done.wait()
            if fetch.data is not None:
                return fetch.data
            if not isinstance(fetch.error, trio.Cancelled):
                assert fetch.error is not None
                raise fetch.error
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
            run.fetches[index] = self._inflight[(run.key, run.etag, index)] = _Fetch()

    def _fail_run(self, run: _Run, error: BaseException) -> None:
        """Hand ``error`` to the waiters of every block the run has not resolved."""
        for index, fetch in run.fetches.items():
            self._fail((run.key, run.etag, index), fetch, error)

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

    # -- internals -------------------------------------------------------------------------------

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
        key, etag, bs = run.key, run.etag, self.block_size
        offset = stretch[0] * bs
        lengths = [self.block_length(run.size, i) for i in stretch]
        length = sum(lengths)
        async with self._limiter:
            alone, started = self._alone(), trio.current_time()
            with from_storage(missing=Stale):
                data = await self.store.read_view(key, offset, length, etag=etag)
            if len(stretch) == 1 and alone and self._alone():
                self._ledger.note_latency(key, etag, trio.current_time() - started)
        self._count(key, etag, stretch, lengths, len(data))
        if len(data) != length:
            raise Stale(f"{key}: got {len(data)} bytes at {offset}, expected {length}")
        # Blocks are views into the one body: no copy.  A cached view keeps the whole body
        # alive, but the blocks of one GET sit next to each other in the LRU and leave it
        # together, so the budget holds to within one fetch_size.
        blocks: list[tuple[int, Block]] = [
            (index, data[n * bs : n * bs + lengths[n]]) for n, index in enumerate(stretch)
        ]
        for index, block in blocks:
            self._resolve_run(run, index, block)
        if run.to_disk:
            self._to_disk(key, etag, blocks)

    def _resolve_run(self, run: _Run, index: int, data: Block) -> None:
        self._resolve((run.key, run.etag, index), run.fetches.pop(index), data, run.to_memory)
        if run.loaded is not None:
            run.loaded(index, data)

    def _count(self, key: str, etag: str, indexes: list[int], lengths: list[int], got: int) -> None:
        self.stats.fetches += 1
        self.stats.fetched_bytes += got
        self.stats.refetched_bytes += self._ledger.record(key, etag, indexes, lengths)

    def _resolve(
        self, bid: tuple[str, str, int], fetch: _Fetch, data: Block, to_memory: bool = True
    ) -> None:
        fetch.data = data
        if to_memory:
            self._memory[bid] = data
        if self._inflight.get(bid) is fetch:
            del self._inflight[bid]
        fetch.done.set()

    def _fail(self, bid: tuple[str, str, int], fetch: _Fetch, error: BaseException) -> None:
        fetch.error = error
        if self._inflight.get(bid) is fetch:
            del self._inflight[bid]
        fetch.done.set()

    async def _load(self, bid: tuple[str, str, int], size: int, to_disk: bool) -> Block:
        fetch = _Fetch()
        self._inflight[bid] = fetch
        try:
            data = await self._fetch(bid, size, to_disk)
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

    async def _fetch(self, bid: tuple[str, str, int], size: int, to_disk: bool) -> Block:
        key, etag, index = bid
        expected = self.block_length(size, index)
        if self._disk is not None:
            cached = await self._disk.get(key, etag, index, expected)
            if cached is not None:
                self.stats.disk_hits += 1
                return cached
        async with self._limiter:
            alone, started = self._alone(), trio.current_time()
            with from_storage(missing=Stale):
                data = await self.store.read_view(key, index * self.block_size, expected, etag=etag)
            if alone and self._alone():
                self._ledger.note_latency(key, etag, trio.current_time() - started)
        self._count(key, etag, [index], [expected], len(data))
        if len(data) != expected:
            # The object is shorter than the version we were told about: it changed.
            raise Stale(f"{key}: block {index} is {len(data)} bytes, expected {expected}")
        if to_disk:
            self._to_disk(key, etag, [(index, data)])
        return data

    def _alone(self) -> bool:
        """Whether the caller's GET is the only one in flight.  Only such GETs tell the
        store's latency: with others beside them they also wait for the server's CPU and
        bandwidth, and fio's 4 jobs on a 1 GiB plain object here made 256 KiB GETs look
        slow (median over 25 ms) and started a fill of the whole object."""
        return self._limiter.borrowed_tokens <= 1

    async def settle_disk(self) -> None:
        """Return once the blocks on their way to the disk cache are written (at unmount:
        what was fetched is found again by the next mount)."""
        await self._disk_idle.wait()

    def _to_disk(self, key: str, etag: str, blocks: list[tuple[int, Block]]) -> None:
        size = sum(len(data) for _, data in blocks)
        if self._disk is not None and self._pending_disk_bytes + size <= MAX_PENDING_DISK_BYTES:
            if self._pending_disk_bytes == 0:
                self._disk_idle = trio.Event()
            self._pending_disk_bytes += size
            self._nursery.start_soon(self._write_disk, key, etag, blocks, size)

    async def _write_disk(
        self, key: str, etag: str, blocks: list[tuple[int, Block]], size: int
    ) -> None:
        assert self._disk is not None
        try:
            await self._disk.put_many(key, etag, blocks)
        finally:
            self._pending_disk_bytes -= size
            if self._pending_disk_bytes == 0:
                self._disk_idle.set()
