"""GETs of blocks: one ranged GET per contiguous stretch of one version, bounded, counted
and timed.

Every GET carries the version's ETag as a precondition, so a stretch can never mix two
versions: if the object changed, the GET fails and the reader gets
:class:`~blobfs.errors.Stale` (so does a body shorter than the version was said to be).

GETs in flight for the whole mount are bounded by ``max_fetches`` (a capacity limiter,
taken only around the network call, never while holding anything else, so it cannot
deadlock).  Every GET is entered in a :class:`~blobfs.cache.ledger.FetchLedger`, which says
how much was fetched a second time (:attr:`CacheStats.refetched_bytes
<blobfs.cache.stats.CacheStats.refetched_bytes>`), how much of a version this mount has
fetched, and how long a one-block GET takes (the read policy sizes random fetches by both).
"""

from __future__ import annotations

from typing import Protocol

import trio

from blobfs.cache.ledger import FetchLedger
from blobfs.cache.stats import CacheStats
from blobfs.errors import Stale, from_storage


class RangeReader(Protocol):
    """What the cache needs from the store (satisfied by :class:`blobfs.bridge.store.TrioStore`):
    ranged reads as views of the buffers the store received them into (no copy)."""

    async def read_view(
        self, key: str, offset: int, length: int, *, etag: str | None = None
    ) -> memoryview: ...


class Fetcher:
    """Fetches stretches of blocks from ``store``, at most ``max_fetches`` at once."""

    def __init__(
        self, store: RangeReader, stats: CacheStats, *, block_size: int, max_fetches: int
    ) -> None:
        self.store = store
        self.block_size = block_size
        #: GETs in flight at once for the whole mount.
        self.max_fetches = max_fetches
        self._stats = stats
        self._limiter = trio.CapacityLimiter(max_fetches)
        self._ledger = FetchLedger()

    async def get(self, key: str, etag: str, first: int, lengths: list[int]) -> list[memoryview]:
        """Blocks ``first, first + 1, ...`` of version ``etag`` of ``key``, of the given
        ``lengths``, with one GET: views into its one body, no copy."""
        bs = self.block_size
        offset, length = first * bs, sum(lengths)
        async with self._limiter:
            alone, started = self._alone(), trio.current_time()
            with from_storage(missing=Stale):
                data = await self.store.read_view(key, offset, length, etag=etag)
            if len(lengths) == 1 and alone and self._alone():
                self._ledger.note_latency(key, etag, trio.current_time() - started)
        stats = self._stats
        stats.fetches += 1
        stats.fetched_bytes += len(data)
        indexes = list(range(first, first + len(lengths)))
        stats.refetched_bytes += self._ledger.record(key, etag, indexes, lengths)
        if len(data) != length:
            # The object is shorter than the version we were told about: it changed.
            raise Stale(f"{key}: got {len(data)} bytes at {offset}, expected {length}")
        if len(lengths) == 1:
            return [data]
        return [data[n * bs : n * bs + size] for n, size in enumerate(lengths)]

    def fetched_blocks(self, key: str, etag: str) -> int:
        """How many blocks of this version the mount has fetched from the store so far."""
        return self._ledger.count(key, etag)

    def block_latency(self, key: str, etag: str) -> float | None:
        """Typical seconds a one-block GET of this version (else of any) has taken."""
        return self._ledger.latency(key, etag)

    def _alone(self) -> bool:
        """Whether the caller's GET is the only one in flight.  Only such GETs tell the
        store's latency: with others beside them they also wait for the server's CPU and
        bandwidth, and fio's 4 jobs on a 1 GiB plain object here made 256 KiB GETs look
        slow (median over 25 ms) and started a fill of the whole object."""
        return self._limiter.borrowed_tokens <= 1


__all__ = ["Fetcher", "RangeReader"]
