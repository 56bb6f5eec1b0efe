"""Reading Azure blobs: ranged GETs pinned to one ETag, one request ahead of the consumer.

A long read is a series of ranged GETs (``download_blob(offset, length, etag=...,
match_condition=IfNotModified)``) pinned to the first response's ETag instead of the SDK's
``chunks()``, which fetches its chunks strictly one after another and whose first response is
as large as the largest chunk.  A broken request is retried at its own offset (the caller
retries :func:`fetch`).  A blob replaced mid-read fails the read with
:class:`~sdk.errors.PreconditionFailed` once it reaches the next request.
"""

from __future__ import annotations

import asyncio
import collections
from collections.abc import AsyncGenerator, Callable, Coroutine
from dataclasses import dataclass
from typing import Any, Final

from azure.core import MatchConditions
from azure.core.exceptions import HttpResponseError
from azure.storage.blob.aio import BlobClient, StorageStreamDownloader

from sdk.providers.azure.auth import REQUEST_SIZE, MiB
from sdk.providers.azure.checks import quote_etag, strip_etag
from sdk.providers.azure.errors import error_code, translated

#: A stream's first request: small, so the first bytes come soon.  The following requests
#: double up to ``REQUEST_SIZE``.
FIRST_READ: Final = 1 * MiB
#: Requests a stream keeps in flight beyond the one being consumed: they hide the latency of
#: one request behind the transfer of another.
READ_AHEAD: Final = 1
#: Requests in flight for one :meth:`AzureStore.read_range` longer than ``REQUEST_SIZE``.
RANGE_CONCURRENCY: Final = 4


@dataclass(frozen=True)
class Fetched:
    """What one ranged GET returned."""

    data: bytes
    etag: str
    total: int  # size of the whole blob


async def no_chunks() -> AsyncGenerator[bytes, None]:
    """The chunks of an empty read."""
    return
    yield


async def fetch(blob: BlobClient, what: str, offset: int, length: int, etag: str | None) -> Fetched:
    """One ranged GET of ``length`` bytes at ``offset`` (fewer at the end of the blob), not
    retried; ``what`` names the blob in errors."""
    conditions: dict[str, Any] = {}
    if etag is not None:
        conditions = {
            "etag": quote_etag(etag),
            "match_condition": MatchConditions.IfNotModified,
        }
    with translated(what):
        try:
            download: StorageStreamDownloader[bytes] = await blob.download_blob(
                offset=offset,
                length=length,
                max_concurrency=RANGE_CONCURRENCY,
                **conditions,
            )
        except HttpResponseError as e:
            if error_code(e) == "InvalidRange":  # offset past the end
                return Fetched(b"", etag or "", offset)
            raise
        # Ranges up to max_single_get_size arrived with the first response; longer
        # ones are fetched by readall, RANGE_CONCURRENCY requests at a time.
        data = await download.readall()
    props = download.properties
    # The SDK reports the range as "bytes a-b/total"; the total bounds what follows.
    total = int(str(props.content_range).rsplit("/", 1)[-1])
    return Fetched(data, strip_etag(props.etag), total)


async def chunks(
    fetch_range: Callable[[int, int], Coroutine[Any, Any, Fetched]],
    first: bytes,
    pos: int,
    stop: int,
) -> AsyncGenerator[bytes, None]:
    """``first``, then ``[pos, stop)`` in ranged GETs (``fetch_range(offset, length)``)
    growing from ``2 * FIRST_READ`` to ``REQUEST_SIZE``, ``READ_AHEAD`` requests ahead of
    the consumer."""
    if first:
        yield first
    ahead: collections.deque[asyncio.Future[Fetched]] = collections.deque()
    size = 2 * FIRST_READ
    try:
        while pos < stop or ahead:
            while pos < stop and len(ahead) <= READ_AHEAD:
                n = min(size, stop - pos)
                ahead.append(asyncio.ensure_future(fetch_range(pos, n)))
                pos += n
                size = min(2 * size, REQUEST_SIZE)
            got = await ahead.popleft()
            if got.data:
                yield got.data
    finally:
        for task in ahead:
            task.cancel()
        await asyncio.gather(*ahead, return_exceptions=True)
