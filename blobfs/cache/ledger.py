"""What this mount has fetched from the store: block by block, to count what it fetched twice,
and how long a one-block fetch takes, for the read policy.

A mount should never fetch the same bytes of one version twice unless every cache layer had
let them go (the kernel dropped its pages, the memory cache evicted the block, the disk cache
was off or full).  :class:`FetchLedger` remembers, per version, a bitmap of the blocks
fetched, and reports the bytes of a fetch that had been fetched before; the benchmark and
the tests read that figure.  One bit per block: a 1 TiB object read whole costs 128 KiB
with 1 MiB blocks.  Only the :data:`MAX_VERSIONS` most recently fetched versions are
remembered; an older one's blocks count as new (the figure can only be low, never wrong in
the other direction).

The latency of one-block GETs that ran alone (:class:`~blobfs.cache.blocks.BlockCache`
samples no GET that shared the store with others) is kept per version and for the mount:
the median of the last :data:`SAMPLES`, reported once there are :data:`MIN_SAMPLES` (a
mount's first GET also opens a connection, and on this machine one GET in ten of a 5 ms
store takes 10-14 ms: an average let such spikes make a fast store look slow).  The read
policy fetches more per random miss where a request costs much more than the bytes it
brings (:mod:`blobfs.cache.readahead`).
"""

from __future__ import annotations

import statistics
from collections import OrderedDict, deque

MAX_VERSIONS = 4096
#: Latency samples kept per version (and for the mount), and how many make a figure.
SAMPLES = 7
MIN_SAMPLES = 3


class FetchLedger:
    """Blocks fetched per version (key, ETag) of an object."""

    def __init__(self, max_versions: int = MAX_VERSIONS) -> None:
        self.max_versions = max_versions
        self._seen: OrderedDict[tuple[str, str], bytearray] = OrderedDict()
        self._counts: dict[tuple[str, str], int] = {}
        #: Version -> its latest one-block GET latencies.
        self._latency: dict[tuple[str, str], deque[float]] = {}
        #: The mount's, for versions with too few samples of their own.
        self._mount_latency: deque[float] = deque(maxlen=SAMPLES)

    def note_latency(self, key: str, etag: str, seconds: float) -> None:
        """A one-block GET of this version took ``seconds``."""
        samples = self._latency.get((key, etag))
        if samples is None:
            samples = self._latency[(key, etag)] = deque(maxlen=SAMPLES)
        samples.append(seconds)
        self._mount_latency.append(seconds)

    @property
    def mount_latency(self) -> float | None:
        """The mount's typical one-block GET latency (``None`` until known)."""
        return _typical(self._mount_latency)

    def latency(self, key: str, etag: str) -> float | None:
        """The typical one-block GET latency of this version (else of the mount)."""
        own = _typical(self._latency.get((key, etag)))
        return own if own is not None else self.mount_latency

    def count(self, key: str, etag: str) -> int:
        """Distinct blocks of this version fetched so far."""
        return self._counts.get((key, etag), 0)

    def record(self, key: str, etag: str, indexes: list[int], lengths: list[int]) -> int:
        """Note that blocks ``indexes`` (of ``lengths`` bytes) were fetched; return how many
        of those bytes had been fetched before."""
        version = (key, etag)
        bits = self._seen.get(version)
        if bits is None:
            bits = self._seen[version] = bytearray()
            if len(self._seen) > self.max_versions:
                old, _ = self._seen.popitem(last=False)
                self._counts.pop(old, None)
                self._latency.pop(old, None)
        else:
            self._seen.move_to_end(version)
        again, new = 0, 0
        for index, length in zip(indexes, lengths, strict=True):
            byte, bit = divmod(index, 8)
            if byte >= len(bits):
                bits.extend(bytes(byte + 1 - len(bits)))
            if bits[byte] & (1 << bit):
                again += length
            else:
                bits[byte] |= 1 << bit
                new += 1
        self._counts[version] = self._counts.get(version, 0) + new
        return again


def _typical(samples: deque[float] | None) -> float | None:
    if samples is None or len(samples) < MIN_SAMPLES:
        return None
    return statistics.median(samples)


__all__ = ["MAX_VERSIONS", "MIN_SAMPLES", "SAMPLES", "FetchLedger"]
