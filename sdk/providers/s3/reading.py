"""Streaming an S3 GET's body, re-opened where it broke.

A stream is pinned to the version it opened on: when the connection breaks it is re-opened
at the current offset with ``If-Match`` on that ETag, so a long read survives a dropped
connection but never mixes two versions.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from sdk.errors import TransientError
from sdk.providers.s3.errors import translated
from sdk.retry import current_policy

log = logging.getLogger(__name__)

#: Chunks a read stream asks the connection for.
READ_CHUNK = 1024 * 1024

#: Re-opens the read at an offset: the GET's reply, or ``None`` past the end.
Reopen = Callable[[int], Awaitable[dict[str, Any] | None]]


class BodyStream:
    """Chunks of one GET reply (botocore's ``get_object`` result ``resp``) from ``offset``
    up to ``end`` (exclusive; ``None``: the end of the object), re-opened with ``reopen`` at
    the current offset when the connection breaks."""

    def __init__(
        self, reopen: Reopen, what: str, offset: int, end: int | None, resp: dict[str, Any]
    ) -> None:
        self._reopen_at = reopen
        self._what = what
        self._offset = offset
        self._end = end
        self._body: Any = resp["Body"]

    async def chunks(self) -> AsyncIterator[bytes]:
        failures = 0
        while True:
            try:
                with translated(self._what):
                    chunk: bytes = await self._body.read(READ_CHUNK)
            except TransientError:
                failures += 1
                if failures >= current_policy().attempts:
                    raise
                log.info("%s: connection broke at offset %d; resuming", self._what, self._offset)
                await self._reopen()
                continue
            if not chunk:
                return
            failures = 0
            self._offset += len(chunk)
            yield chunk

    async def _reopen(self) -> None:
        self.close()
        self._body = None
        if self._end is not None and self._offset >= self._end:
            self._body = _EmptyBody()
            return
        resp = await self._reopen_at(self._offset)
        self._body = _EmptyBody() if resp is None else resp["Body"]

    def close(self) -> None:
        if self._body is not None:
            self._body.close()


class _EmptyBody:
    async def read(self, amt: int) -> bytes:
        return b""

    def close(self) -> None:
        pass


async def no_chunks() -> AsyncIterator[bytes]:
    """The chunks of an empty read."""
    return
    yield


__all__ = ["READ_CHUNK", "BodyStream", "no_chunks"]
