"""A trio-callable view of a :class:`~sdk.providers.base.BlobStore` on the sdk's loop.

Every :class:`TrioStore` method is one hand-off to the loop (:mod:`blobfs.bridge.loop`), and
listings cross in pages (one crossing per :data:`LIST_PAGE` entries), never one entry at a
time.  Two exceptions: a small PUT (closing a small file) and a small ranged read (reading
one back) are made on the trio thread when the store prepares them
(:class:`~sdk.providers.base.OffersPreparedRequests`: S3 on an S3-compatible endpoint) by
:mod:`blobfs.bridge.direct`; anything those do not plainly succeed at is repeated through
the loop, where the store retries and translates errors as for every other call.

Every call is counted, by kind and outcome, with its latency and bytes
(:mod:`blobfs.bridge.requests`).

Nothing above this package calls the sdk's coroutines directly.
"""

from __future__ import annotations

import time
from collections.abc import AsyncGenerator, AsyncIterator, Mapping
from typing import Any, TypeVar

import trio

from blobfs.bridge.direct import TrioDirect
from blobfs.bridge.loop import AsyncioThread
from blobfs.bridge.requests import RequestStats, metered
from sdk.errors import ResourceNotFound
from sdk.providers.base import (
    BlobStore,
    CopySettings,
    MultipartUpload,
    ObjectInfo,
    OffersPreparedRequests,
    PrefixInfo,
    ResumableUpload,
    ResumesUploads,
    StoredPart,
)

T = TypeVar("T")

#: Listing entries moved from the asyncio side per crossing.
LIST_PAGE = 1000

ListItem = ObjectInfo | PrefixInfo


async def _pull(it: AsyncIterator[T], count: int) -> list[T]:
    """Runs on asyncio: take up to ``count`` items from ``it``."""
    out: list[T] = []
    while len(out) < count:
        try:
            out.append(await it.__anext__())
        except StopAsyncIteration:
            break
    return out


async def _read_all(store: BlobStore, key: str, etag: str | None) -> bytes:
    """Runs on asyncio: a whole object in memory (used for small objects only)."""
    chunks: list[bytes] = []
    async with store.read(key, etag=etag) as stream:
        async for chunk in stream:
            chunks.append(chunk)
    return b"".join(chunks)


async def _aclose(it: Any) -> None:
    aclose = getattr(it, "aclose", None)
    if aclose is not None:
        await aclose()


class TrioMultipart:
    """A :class:`MultipartUpload` callable from trio."""

    def __init__(
        self, upload: MultipartUpload, aio: AsyncioThread, requests: RequestStats | None = None
    ) -> None:
        self.upload = upload
        self.key = upload.key
        self._aio = aio
        self.requests = requests if requests is not None else RequestStats()

    @property
    def upload_id(self) -> str:
        return self.upload.upload_id

    @metered("put_part", sent=lambda number, data, **_: len(data))
    async def upload_part(self, part_number: int, data: bytes) -> None:
        await self._aio.run(self.upload.upload_part, part_number, data)

    @metered("complete_multipart")
    async def complete(self) -> str:
        return await self._aio.run(self.upload.complete)

    @metered("abort_multipart")
    async def abort(self) -> None:
        await self._aio.run(self.upload.abort)


class TrioResumed(TrioMultipart):
    """A :class:`ResumableUpload` callable from trio."""

    def __init__(self, upload: ResumableUpload, aio: AsyncioThread) -> None:
        super().__init__(upload, aio)
        self.resumed = upload

    async def stored_parts(self) -> dict[int, StoredPart]:
        return await self._aio.run(self.resumed.stored_parts)

    def keep_part(self, part: StoredPart) -> None:
        # Bookkeeping of the upload object only, no I/O: the loop's thread is not needed,
        # and the upload is not in use on the loop while recovery decides its parts.
        self.resumed.keep_part(part)


class TrioStore:
    """A :class:`BlobStore` callable from trio, its calls run on ``aio``.

    Every method raises what the store raises (:mod:`sdk.errors`); callers translate.
    """

    def __init__(self, store: BlobStore, aio: AsyncioThread) -> None:
        self.store = store
        self.bucket_name = store.bucket_name
        #: How much user metadata one object may carry.
        self.metadata_rules = store.metadata_rules
        self._aio = aio
        #: The requests made, counted (read by ``blobfs status`` and the metrics).
        self.requests = RequestStats()
        #: Small PUTs and reads made on this (trio) thread, where the store offers them;
        #: the connections it keeps are closed by :meth:`close_trio_side`.
        self.trio_direct: TrioDirect | None = None
        if isinstance(store, OffersPreparedRequests):
            requests = store.prepared_requests()
            if requests is not None:
                self.trio_direct = TrioDirect(requests, aio.run)

    @metered("head")
    async def head(self, key: str) -> ObjectInfo:
        return await self._aio.run(self.store.head, key)

    async def read_range(
        self, key: str, offset: int, length: int, *, etag: str | None = None
    ) -> bytes:
        # read_view's bytes and errors, which every store gives as read_range's (the store
        # contract tests check it): one path, and the trio-side GET serves both.
        return bytes(await self.read_view(key, offset, length, etag=etag))

    @metered("get", received=True)
    async def read_view(
        self, key: str, offset: int, length: int, *, etag: str | None = None
    ) -> memoryview:
        if self.trio_direct is not None:
            view = await self.trio_direct.read_view(key, offset, length, etag=etag)
            if view is not None:
                return view
            # Not handled there (a large range, 404, 412, 416, an implicit directory, a
            # broken connection ...): the store's own read retries, and returns or raises
            # what that answer means.
        return await self._aio.run(self.store.read_view, key, offset, length, etag=etag)

    @metered("get", received=True)
    async def read_all(self, key: str, *, etag: str | None = None) -> bytes:
        return await self._aio.run(_read_all, self.store, key, etag)

    async def list_pages(
        self, prefix: str, *, delimiter: str | None = "/", page: int = LIST_PAGE
    ) -> AsyncGenerator[list[ListItem], None]:
        """The listing of ``prefix`` in pages of up to ``page`` entries.

        An async generator: consume it inside ``contextlib.aclosing`` so an early exit
        closes the provider's paginator on the asyncio side.
        """
        it = self.store.list(prefix, delimiter=delimiter)
        try:
            while True:
                # Counted per page: a page is what one LIST request returns (S3: 1000 keys).
                started = time.perf_counter()
                try:
                    chunk: list[ListItem] = await self._aio.run(_pull, it, page)
                except BaseException as e:
                    self.requests.failed("list", started, prefix, e)
                    raise
                self.requests.done("list", started)
                if chunk:
                    yield chunk
                if len(chunk) < page:
                    return
        finally:
            with trio.CancelScope(shield=True):
                await self._aio.run(_aclose, it)

    @metered("list")
    async def first_entry(self, prefix: str, *, delimiter: str | None = "/") -> ListItem | None:
        """The first listing entry under ``prefix`` (``None`` if there is none)."""
        it = self.store.list(prefix, delimiter=delimiter)
        try:
            chunk: list[ListItem] = await self._aio.run(_pull, it, 1)
        finally:
            with trio.CancelScope(shield=True):
                await self._aio.run(_aclose, it)
        return chunk[0] if chunk else None

    # -- the write path --------------------------------------------------------------------------

    @metered("put", sent=lambda key, data, **_: len(data))
    async def put(self, key: str, data: bytes, *, metadata: Mapping[str, str] | None = None) -> str:
        if self.trio_direct is not None:
            etag = await self.trio_direct.put(key, data, metadata=metadata)
            if etag is not None:
                return etag
            # Not handled there (a large body, a refusal, a broken connection ...): the
            # store's own PUT retries, and raises the sdk error a refusal means.
        return await self._aio.run(self.store.put, key, data, metadata=metadata)

    @metered("start_multipart")
    async def start_multipart(
        self, key: str, *, metadata: Mapping[str, str] | None = None
    ) -> TrioMultipart:
        upload = await self._aio.run(self.store.start_multipart, key, metadata=metadata)
        return TrioMultipart(upload, self._aio, self.requests)

    async def resume_multipart(
        self, key: str, upload_id: str, *, metadata: Mapping[str, str] | None = None
    ) -> TrioResumed:
        """The unfinished upload ``upload_id`` of ``key``
        (:meth:`ResumesUploads.resume_multipart`); a store that cannot take uploads up
        again raises :class:`~sdk.errors.ResourceNotFound`, as for an upload that is gone."""
        if not isinstance(self.store, ResumesUploads):
            raise ResourceNotFound(f"{self.bucket_name}: uploads cannot be resumed here")
        upload = await self._aio.run(self.store.resume_multipart, key, upload_id, metadata=metadata)
        return TrioResumed(upload, self._aio)

    @metered("copy")
    async def copy(
        self,
        src_key: str,
        dst_key: str,
        *,
        metadata: Mapping[str, str] | None = None,
        size: int | None = None,
    ) -> str:
        return await self._aio.run(self.store.copy, src_key, dst_key, metadata=metadata, size=size)

    def set_copy_settings(self, settings: CopySettings) -> None:
        """When and how :meth:`copy` copies large objects in parts.  Set before the mount
        serves requests: each copy reads it once, on the loop's thread, when it starts."""
        self.store.copy_settings = settings

    @metered("delete")
    async def delete(self, key: str, *, missing_ok: bool = False) -> None:
        await self._aio.run(self.store.delete, key, missing_ok=missing_ok)

    async def close_trio_side(self) -> None:
        """Close what the store keeps on the trio side (the direct client's connections)."""
        if self.trio_direct is not None:
            with trio.CancelScope(shield=True):
                await self.trio_direct.aclose()

    async def close(self) -> None:
        await self.close_trio_side()
        await self._aio.run(self.store.close)


__all__ = ["LIST_PAGE", "ListItem", "TrioMultipart", "TrioResumed", "TrioStore"]
