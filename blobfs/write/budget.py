"""The mount-wide memory budget of uploads: how many bytes of file data are held in memory
at once, across every file of a mount, while they are read from staging files and sent."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import trio


class WriteBudget:
    """Bytes of upload data held in memory at once, across every file of a mount.

    Every part (streamed or at flush) and every single PUT holds its size while it is read
    from the staging file and sent; a request larger than the whole budget holds all of it.
    """

    def __init__(self, capacity: int) -> None:
        self.capacity = max(1, capacity)
        self.in_use = 0
        self.peak = 0
        self._released = trio.Event()

    async def acquire(self, nbytes: int) -> int:
        """Wait for ``nbytes`` (capped at the capacity); return what to :meth:`release`."""
        n = min(max(nbytes, 1), self.capacity)
        while self.in_use + n > self.capacity:
            await self._released.wait()
        self.in_use += n
        self.peak = max(self.peak, self.in_use)
        return n

    def release(self, n: int) -> None:
        """Give back what :meth:`acquire` returned."""
        self.in_use -= n
        self._released.set()
        self._released = trio.Event()

    @asynccontextmanager
    async def hold(self, nbytes: int) -> AsyncIterator[None]:
        """Hold ``nbytes`` for the ``async with`` block."""
        n = await self.acquire(nbytes)
        try:
            yield
        finally:
            self.release(n)


__all__ = ["WriteBudget"]
