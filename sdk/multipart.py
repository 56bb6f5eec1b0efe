"""Parallel transfers of one object through any :class:`~sdk.providers.base.BlobStore`.

:func:`upload_stream` turns a stream of byte chunks of any sizes into a multipart upload (or a
single PUT when it all fits in one part); :func:`download_ranges` fetches an object as parallel
ranged reads.  Both keep a bounded number of parts in memory, so a 100 GiB transfer needs no
more than ``(concurrency + 1) * part_size`` bytes of buffers.  The Buckets facade, file
transfers and the FUSE write-back all go through here.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import (
    AsyncGenerator,
    AsyncIterable,
    AsyncIterator,
    Awaitable,
    Callable,
    Mapping,
)

from sdk.errors import InvalidRequest, raise_first
from sdk.providers.base import MAX_PARTS, MIN_PART_SIZE, BlobStore, MultipartUpload

log = logging.getLogger(__name__)

#: 8 MiB parts, as boto3's TransferConfig; 4 in flight keep one transfer's buffers near
#: 40 MiB, so several transfers at once (a recursive copy) stay small.  S3 allows 10,000
#: parts, so 8 MiB parts cover objects up to 78 GiB; bigger objects need a bigger part_size.
DEFAULT_PART_SIZE = 8 * 1024 * 1024
DEFAULT_CONCURRENCY = 4


async def upload_stream(
    store: BlobStore,
    key: str,
    chunks: AsyncIterable[bytes],
    *,
    part_size: int = DEFAULT_PART_SIZE,
    concurrency: int = DEFAULT_CONCURRENCY,
    metadata: Mapping[str, str] | None = None,
    content_type: str | None = None,
) -> str:
    """Upload everything ``chunks`` yields as ``key``; return the new object's ETag.

    Input that fits in one part goes up as a single PUT.  Otherwise the input is cut into
    ``part_size`` parts and up to ``concurrency`` of them are uploaded at once; reading the
    input pauses while that many are in flight.  On any error -- from the input, the store
    or a cancellation -- the multipart upload is aborted so no parts are left behind, and the
    error is raised as is (not wrapped in an exception group).

    Chunks of exactly ``part_size`` bytes are uploaded as they are; other sizes are copied
    once into parts.
    """
    if part_size < MIN_PART_SIZE:
        raise InvalidRequest(f"part_size {part_size} is below the minimum {MIN_PART_SIZE}")
    if concurrency < 1:
        raise InvalidRequest("concurrency must be at least 1")

    parts = _rechunk(chunks, part_size)
    try:
        first = await anext(parts, None)
        if first is None:
            return await store.put(key, b"", metadata=metadata, content_type=content_type)
        second = await anext(parts, None)
        if second is None:
            return await store.put(key, first, metadata=metadata, content_type=content_type)

        upload = await store.start_multipart(key, metadata=metadata, content_type=content_type)
        try:
            await _upload_parts(upload, first, second, parts, concurrency)
            return await upload.complete()
        except BaseException:
            await _abort(upload)
            raise
    finally:
        await parts.aclose()


async def _upload_parts(
    upload: MultipartUpload,
    first: bytes,
    second: bytes,
    rest: AsyncIterator[bytes],
    concurrency: int,
) -> None:
    slots = asyncio.Semaphore(concurrency)

    async def send(number: int, data: bytes) -> None:
        try:
            await upload.upload_part(number, data)
        finally:
            slots.release()

    async def all_parts() -> AsyncIterator[bytes]:
        yield first
        yield second
        async for part in rest:
            yield part

    try:
        async with asyncio.TaskGroup() as tg:
            number = 0
            async for part in all_parts():
                number += 1
                if number > MAX_PARTS:
                    raise InvalidRequest(
                        f"{upload.key!r} needs more than {MAX_PARTS} parts; use a larger part_size"
                    )
                # Wait for a free slot before reading on: this is what bounds memory.
                await slots.acquire()
                tg.create_task(send(number, part))
                del part
    except BaseExceptionGroup as group:
        raise_first(group)


async def _abort(upload: MultipartUpload) -> None:
    # Shielded so a second cancellation cannot leave the parts behind; failures are only
    # logged because the error that got us here is the one worth raising.
    try:
        await asyncio.shield(upload.abort())
    except asyncio.CancelledError:
        raise
    except Exception:
        log.warning("could not abort the multipart upload of %r", upload.key, exc_info=True)


async def _rechunk(chunks: AsyncIterable[bytes], part_size: int) -> AsyncGenerator[bytes, None]:
    """Regroup ``chunks`` into pieces of exactly ``part_size`` bytes, the last one shorter.

    Each byte is copied once (into the part it belongs to); a chunk that is already exactly
    one part is passed on without copying.
    """
    pieces: list[bytes | memoryview] = []
    held = 0
    async for chunk in chunks:
        if not pieces and len(chunk) == part_size and isinstance(chunk, bytes):
            yield chunk
            continue
        view = memoryview(chunk)
        while view.nbytes:
            take = part_size - held
            pieces.append(view[:take])
            held += len(pieces[-1])
            view = view[take:]
            if held == part_size:
                yield b"".join(pieces)
                pieces.clear()
                held = 0
        # A tail kept from a mutable buffer is copied: the caller may reuse that buffer for
        # the next chunk (and a live view would stop it from resizing).
        if pieces and not isinstance(chunk, bytes):
            pieces[-1] = bytes(pieces[-1])
        del view
    if held:
        yield b"".join(pieces)


async def download_ranges(
    store: BlobStore,
    key: str,
    *,
    size: int,
    etag: str,
    write: Callable[[int, memoryview], Awaitable[None]],
    part_size: int = DEFAULT_PART_SIZE,
    concurrency: int = DEFAULT_CONCURRENCY,
    start: int = 0,
) -> None:
    """Fetch the ``size`` bytes of version ``etag`` of ``key`` as parallel ranged reads.

    ``write(offset, data)`` is awaited for every range as it arrives, in no particular order;
    at most ``concurrency`` ranges are held in memory at once.  With ``start`` only the bytes
    from there on are fetched (the tail of a resumed download).  Raises
    :class:`~sdk.errors.PreconditionFailed` if the object is replaced meanwhile.
    """
    if part_size < 1 or concurrency < 1:
        raise InvalidRequest("part_size and concurrency must be positive")
    if not 0 <= start <= size:
        raise InvalidRequest(f"start {start} is outside 0..{size}")
    slots = asyncio.Semaphore(concurrency)

    async def fetch(offset: int, length: int) -> None:
        try:
            data = await store.read_view(key, offset, length, etag=etag)
            if len(data) != length:
                raise InvalidRequest(
                    f"{key!r} ended at {offset + len(data)}, before the expected size {size}"
                )
            await write(offset, data)
        finally:
            slots.release()

    try:
        async with asyncio.TaskGroup() as tg:
            for offset in range(start, size, part_size):
                await slots.acquire()
                tg.create_task(fetch(offset, min(part_size, size - offset)))
    except BaseExceptionGroup as group:
        raise_first(group)
