"""Adaptive read-ahead for one open file: decide what to fetch before it is asked for.

A reader is *sequential* while each read starts where (or close to where) the previous one
ended.  Its window starts at :data:`INITIAL_WINDOW` (1 MiB, as mountpoint-s3 does) and
doubles every time the reader moves into a new block, up to the mount's ``readahead``
limit; all blocks inside the window are fetched in parallel.  Any jump resets the window,
and a *random* reader gets only the bytes it asked for (one exact ranged GET), so fio's
4 KiB random reads cost 4 KiB of transfer, not a block.

"Close to" matters: the kernel issues reads of one file concurrently, and they can arrive a
little out of order, so a read within a couple of request sizes of the expected offset still
counts as sequential.

This module only decides; :mod:`blobfs.fs.reader` does the fetching through the block cache.
"""

from __future__ import annotations

from dataclasses import dataclass

MiB = 1024 * 1024
INITIAL_WINDOW = 1 * MiB
#: Slack for reads that arrive out of order, in multiples of the request size.
REORDER_SLACK = 4
MIN_SLACK = 256 * 1024


@dataclass(frozen=True)
class Plan:
    """What to do for one read."""

    sequential: bool
    #: Block indexes to fetch in the background (may be empty).
    prefetch: range


class ReadAhead:
    """Read-ahead state of one file handle."""

    def __init__(self, block_size: int, max_window: int) -> None:
        self.block_size = block_size
        self.max_window = max(block_size, max_window)
        self.window = min(INITIAL_WINDOW, self.max_window)
        #: Where the next sequential read is expected; ``0`` for a fresh handle, so a reader
        #: that starts at the beginning is treated as sequential from its first read.
        self.expected: int | None = 0
        self._last_block = -1

    def on_read(self, offset: int, size: int, file_size: int) -> Plan:
        end = min(offset + size, file_size)
        slack = max(MIN_SLACK, REORDER_SLACK * size)
        sequential = self.expected is not None and abs(offset - self.expected) <= slack
        self.expected = max(end, self.expected or 0) if sequential else end
        if not sequential:
            self.window = min(INITIAL_WINDOW, self.max_window)
            self._last_block = -1
            # The next read will tell whether this is the start of a sequential run.
            return Plan(sequential=False, prefetch=range(0))
        block = offset // self.block_size
        if self._last_block >= 0 and block > self._last_block:
            self.window = min(self.window * 2, self.max_window)
        self._last_block = max(self._last_block, block)
        if end >= file_size:
            return Plan(sequential=True, prefetch=range(0))
        first = end // self.block_size
        limit = min(end + self.window, file_size)
        last = (limit - 1) // self.block_size
        return Plan(sequential=True, prefetch=range(first, last + 1))
