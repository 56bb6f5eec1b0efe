"""The access pattern of one open file, and what to fetch before it is asked for.

Each read is classified from the ones before it on the same handle:

* **sequential** -- it starts where (or close to where) the previous one ended.  The
  read-ahead window starts at :data:`INITIAL_WINDOW` (1 MiB, as mountpoint-s3 does) and
  doubles every time the reader moves into a new block, up to the mount's ``readahead``
  limit; the blocks inside the window are fetched in parallel, several per GET.  "Close to"
  matters: the kernel sends reads of one file concurrently and they can arrive a little out
  of order, so a read within a few request sizes of the expected offset still counts.
* **strided** -- it is as far from the previous read as that one was from the one before
  (a fixed step larger than the sequential slack, forwards or backwards: one record per
  row group, a file read backwards).  The next :attr:`ReadAhead.stride_depth` steps' blocks
  are fetched ahead, the depth doubling while the stride holds.
* **random** -- anything else.  Nothing is fetched ahead; the blocks the read touches are
  fetched whole (the reader keeps them in every cache layer, so the next read there is
  local).  How many blocks a random miss fetches is :func:`random_group`'s choice: one,
  unless the mount has fetched :data:`WIDE_FETCH_COVERAGE` of the object (then
  :data:`WIDE_FETCH`) or one-block GETs of it take :data:`SLOW_GET` or longer (then
  ``fetch_size``, in parallel GETs of :data:`WIDE_FETCH`).  From a slow store, an object
  that fits the caches is rather fetched whole in the background
  (:mod:`blobfs.cache.fill`) and a miss fetches its one block.

Any break in a pattern resets its state.  This module only decides;
:mod:`blobfs.fs.reader` does the fetching through the block cache.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

MiB = 1024 * 1024
INITIAL_WINDOW = 1 * MiB
#: Slack for reads that arrive out of order, in multiples of the request size.
REORDER_SLACK = 4
MIN_SLACK = 256 * 1024
#: Strides fetched ahead once a stride has repeated, and the most (doubling in between).
INITIAL_STRIDE_DEPTH = 2
MAX_STRIDE_DEPTH = 16
#: The share of an object a mount must have fetched before a random miss in it fetches
#: :data:`WIDE_FETCH` (aligned) rather than one block.  A reader that has touched a quarter of
#: an object is reading all of it (fio, a training epoch, a hot database) and is served
#: sooner by large GETs; a sparse reader (lookups, archive members, scattered reads) never
#: gets there and pays for one small block per miss.  See docs/BENCHMARKS.md.
WIDE_FETCH_COVERAGE = 0.25
#: What a dense random reader's miss fetches (and gives back to a kernel that dropped it):
#: on SeaweedFS a 4 MiB GET costs 2.2 ms per MiB against 5.6 at 256 KiB, and 4 MiB is few
#: enough bytes to hold per miss in flight.
WIDE_FETCH = 4 * MiB
#: A one-block GET this slow is mostly the request's fixed cost, not its bytes: then a
#: random miss fetches ``fetch_size`` around it, in parallel GETs, for little more time than
#: one.  SeaweedFS serves a ranged GET of an object it stored compressed in ~45 ms whatever
#: its size, and S3's first byte takes 20-50 ms; this machine's plain GETs of 256 KiB take
#: 5 ms (median; busy, 10-14 ms), so the bar sits above that.
SLOW_GET = 0.025


@dataclass(frozen=True)
class Group:
    """What a random miss fetches: the aligned ``blocks`` around it, ``per_get`` at a time."""

    blocks: int
    per_get: int


def is_slow(latency: float | None) -> bool:
    """Whether one-block GETs that typically take ``latency`` seconds make a slow store."""
    return latency is not None and latency >= SLOW_GET


def random_group(
    fetched: int, total: int, *, wide: int, most: int, latency: float | None = None
) -> Group:
    """What a random miss fetches, given the ``fetched`` blocks of the object's ``total``
    that the mount has fetched so far and the typical ``latency`` of a one-block GET:
    ``wide`` blocks (:data:`WIDE_FETCH`) for a dense reader, ``most`` (``fetch_size``) from
    a slow store."""
    if is_slow(latency):
        return Group(max(1, most), max(1, min(wide, most)))
    if total > 0 and fetched >= WIDE_FETCH_COVERAGE * total:
        return Group(max(1, wide), max(1, wide))
    return Group(1, 1)


class Pattern(enum.Enum):
    SEQUENTIAL = "sequential"
    STRIDED = "strided"
    RANDOM = "random"


@dataclass(frozen=True)
class Plan:
    """What to do for one read."""

    pattern: Pattern
    #: Sequential: block indexes to fetch in the background (may be empty).
    prefetch: range = range(0)
    #: Strided: the blocks the next reads are predicted to touch.
    ahead: tuple[int, ...] = ()

    @property
    def sequential(self) -> bool:
        return self.pattern is Pattern.SEQUENTIAL


class ReadAhead:
    """Access-pattern state of one file handle."""

    def __init__(self, block_size: int, max_window: int) -> None:
        self.block_size = block_size
        self.max_window = max(block_size, max_window)
        self.window = min(INITIAL_WINDOW, self.max_window)
        #: Where the next sequential read is expected; ``0`` for a fresh handle, so a reader
        #: that starts at the beginning is treated as sequential from its first read.
        self.expected: int | None = 0
        self._last_block = -1
        #: A sequential reader's blocks up to this one are cached or on their way.
        self.claimed = -1
        #: Where the current sequential run began (the offset of the last jump).
        self.run_start = 0
        #: Offset of the previous read, and the step from the one before it.
        self._last_offset: int | None = None
        self._stride = 0
        self.stride_depth = 0

    def on_read(self, offset: int, size: int, file_size: int) -> Plan:
        end = min(offset + size, file_size)
        slack = max(MIN_SLACK, REORDER_SLACK * size)
        sequential = self.expected is not None and abs(offset - self.expected) <= slack
        self.expected = max(end, self.expected or 0) if sequential else end
        previous, self._last_offset = self._last_offset, offset
        if not sequential:
            self.window = min(INITIAL_WINDOW, self.max_window)
            self._last_block = -1
            self.claimed = -1
            self.run_start = offset
            return self._jump(offset, size, previous, file_size)
        self._stride, self.stride_depth = 0, 0
        block = offset // self.block_size
        if self._last_block >= 0 and block > self._last_block:
            self.window = min(self.window * 2, self.max_window)
        self._last_block = max(self._last_block, block)
        if end >= file_size:
            return Plan(Pattern.SEQUENTIAL)
        first = end // self.block_size
        limit = min(end + self.window, file_size)
        last = (limit - 1) // self.block_size
        return Plan(Pattern.SEQUENTIAL, prefetch=range(first, last + 1))

    def _jump(self, offset: int, size: int, previous: int | None, file_size: int) -> Plan:
        """A read away from the expected offset: strided if the step repeats, else random."""
        step = offset - previous if previous is not None else 0
        if step == 0 or step != self._stride:
            self._stride, self.stride_depth = step, 0
            return Plan(Pattern.RANDOM)
        self.stride_depth = (
            INITIAL_STRIDE_DEPTH
            if self.stride_depth == 0
            else min(self.stride_depth * 2, MAX_STRIDE_DEPTH)
        )
        bs = self.block_size
        here = set(range(offset // bs, (min(offset + size, file_size) - 1) // bs + 1))
        ahead: list[int] = []
        for n in range(1, self.stride_depth + 1):
            start = offset + n * step
            stop = min(start + size, file_size)
            if start < 0 or start >= file_size:
                break
            for index in range(start // bs, (stop - 1) // bs + 1):
                if index not in here and index not in ahead:
                    ahead.append(index)
        # Never more than a window's worth of blocks ahead of one reader.
        limit = max(1, self.max_window // bs)
        return Plan(Pattern.STRIDED, ahead=tuple(ahead[:limit]))
