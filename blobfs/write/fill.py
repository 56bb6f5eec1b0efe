"""The lazy fill of a staging file from the original object.

A staging file of an existing object does not copy it in when opened: it is handed a
``fetch(offset, length)`` that reads the *original* (the version the file was opened on),
and brings it in ``FILL_CHUNK`` at a time only as far as a write, read, truncate or upload
needs it.

The fill invariant: bytes ``[0, filled)`` of the staging file are final (original data or
data written since); bytes at or past ``source_size`` are whatever was written.  Every
write, read or truncate first fills the original up to the end of the range it touches, so
a later fill can never overwrite written data.
"""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable

#: How much of the original object one fetch brings into the staging file.
FILL_CHUNK = 8 * 1024 * 1024

#: Reads ``length`` bytes at ``offset`` of the original object.
Fetch = Callable[[int, int], Awaitable[bytes | memoryview]]


class Original:
    """How much of the original object belongs in a staging file, and how much of that
    is copied in."""

    def __init__(self, fetch: Fetch | None, size: int) -> None:
        """``size`` of the original (ignored without a ``fetch``: nothing to keep)."""
        self._fetch = fetch
        #: Bytes of the original that belong in the file.
        self.source_size = size if fetch is not None else 0
        #: Bytes ``[0, filled)`` of the staging file are final.
        self.filled = 0

    async def fill(self, fd: int, upto: int, progress: Callable[[], None]) -> None:
        """Copy the original into ``fd`` up to ``upto`` (at most ``source_size``), calling
        ``progress`` after each chunk.  A short read raises :class:`OSError`."""
        upto = min(upto, self.source_size)
        while self.filled < upto:
            assert self._fetch is not None
            length = min(FILL_CHUNK, self.source_size - self.filled)
            data = await self._fetch(self.filled, length)
            if len(data) != length:
                raise OSError(f"short read of the original: {len(data)} of {length} bytes")
            os.pwrite(fd, data, self.filled)
            self.filled += length
            progress()

    def cut(self, size: int) -> None:
        """The file was truncated to ``size``: original bytes past it are gone for good."""
        self.source_size = min(self.source_size, size)
        self.filled = min(self.filled, size)


__all__ = ["FILL_CHUNK", "Fetch", "Original"]
