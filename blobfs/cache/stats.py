"""The read path's counters: what the block cache served, from where, and what it fetched.

One :class:`CacheStats` per mount, counted into by the block cache and its fetcher, read by
``blobfs status``, the metrics endpoint, the daemon's log, the tests and the benchmarks.
"""

from __future__ import annotations

from dataclasses import dataclass


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


__all__ = ["CacheStats"]
