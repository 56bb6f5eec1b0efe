"""The one place where the trio daemon meets the asyncio sdk.

pyfuse3 runs on trio; the sdk's providers (aioboto3, azure-storage-blob aio) are asyncio only.
The daemon hosts an asyncio loop inside trio with ``trio_asyncio.open_loop()`` and everything
above this module talks to :class:`TrioStore`, a trio-flavoured view of a
:class:`~sdk.providers.base.BlobStore`.  Measured on SeaweedFS over loopback, a GET through
trio-asyncio ran as fast as from plain asyncio, so the cost is in the number of crossings,
not their size: listings therefore cross in pages (one crossing per :data:`LIST_PAGE`
entries), never one entry at a time.

Nothing else in blobfs may import ``trio_asyncio`` or call the sdk's coroutines directly.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import Any, TypeVar

import trio_asyncio
from yarl import URL

from sdk.providers.base import BlobStore, MultipartUpload, ObjectInfo, PrefixInfo

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

    def __init__(self, upload: MultipartUpload) -> None:
        self.upload = upload
        self.key = upload.key

    async def upload_part(self, part_number: int, data: bytes) -> None:
        await trio_asyncio.aio_as_trio(self.upload.upload_part)(part_number, data)

    async def complete(self) -> str:
        result: str = await trio_asyncio.aio_as_trio(self.upload.complete)()
        return result

    async def abort(self) -> None:
        await trio_asyncio.aio_as_trio(self.upload.abort)()


class TrioStore:
    """A :class:`BlobStore` callable from trio.  Use only inside ``trio_asyncio.open_loop()``.

    Every method raises what the store raises (:mod:`sdk.errors`); callers translate.
    """

    def __init__(self, store: BlobStore) -> None:
        self.store = store
        self.bucket_name = store.bucket_name

    async def head(self, key: str) -> ObjectInfo:
        result: ObjectInfo = await trio_asyncio.aio_as_trio(self.store.head)(key)
        return result

    async def read_range(
        self, key: str, offset: int, length: int, *, etag: str | None = None
    ) -> bytes:
        result: bytes = await trio_asyncio.aio_as_trio(self.store.read_range)(
            key, offset, length, etag=etag
        )
        return result

    async def read_all(self, key: str, *, etag: str | None = None) -> bytes:
        result: bytes = await trio_asyncio.aio_as_trio(_read_all)(self.store, key, etag)
        return result

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
                chunk: list[ListItem] = await trio_asyncio.aio_as_trio(_pull)(it, page)
                if chunk:
                    yield chunk
                if len(chunk) < page:
                    return
        finally:
            await trio_asyncio.aio_as_trio(_aclose)(it)

    async def first_entry(self, prefix: str, *, delimiter: str | None = "/") -> ListItem | None:
        """The first listing entry under ``prefix`` (``None`` if there is none)."""
        it = self.store.list(prefix, delimiter=delimiter)
        try:
            chunk: list[ListItem] = await trio_asyncio.aio_as_trio(_pull)(it, 1)
        finally:
            await trio_asyncio.aio_as_trio(_aclose)(it)
        return chunk[0] if chunk else None

    # -- the write path (issue 6) uses these -----------------------------------------------------

    async def put(self, key: str, data: bytes, *, metadata: Mapping[str, str] | None = None) -> str:
        result: str = await trio_asyncio.aio_as_trio(self.store.put)(key, data, metadata=metadata)
        return result

    async def start_multipart(
        self, key: str, *, metadata: Mapping[str, str] | None = None
    ) -> TrioMultipart:
        result: MultipartUpload = await trio_asyncio.aio_as_trio(self.store.start_multipart)(
            key, metadata=metadata
        )
        return TrioMultipart(result)

    async def copy(
        self, src_key: str, dst_key: str, *, metadata: Mapping[str, str] | None = None
    ) -> str:
        result: str = await trio_asyncio.aio_as_trio(self.store.copy)(
            src_key, dst_key, metadata=metadata
        )
        return result

    async def delete(self, key: str, *, missing_ok: bool = False) -> None:
        await trio_asyncio.aio_as_trio(self.store.delete)(key, missing_ok=missing_ok)

    async def close(self) -> None:
        await trio_asyncio.aio_as_trio(self.store.close)()


@asynccontextmanager
async def open_source(
    source: str, *, cluster: str | None = None
) -> AsyncIterator[tuple[TrioStore, str]]:
    """Open the bucket a blob URI names; yield its store and the key prefix inside it.

    Must run inside ``trio_asyncio.open_loop()``.  Raises what the sdk raises:
    :class:`~sdk.errors.ResourceNotFound` for an unknown bucket, :class:`ValueError` for a
    malformed URI, :class:`~sdk.errors.ConfigError` for a bad configuration.
    """
    from sdk.client import Client
    from sdk.config import load_config

    async def _open() -> tuple[Client, BlobStore, str]:
        config = load_config()
        if cluster:
            from dataclasses import replace

            config.cluster(cluster)
            config = replace(config, current_cluster=cluster)
        client = Client.from_config(config)
        try:
            bucket, key = await client.buckets.resolve_uri(URL(source))
            store = await client.buckets.store_for(bucket)
        except BaseException:
            await client.close()
            raise
        return client, store, key

    client, store, key = await trio_asyncio.aio_as_trio(_open)()
    try:
        yield TrioStore(store), key
    finally:
        await trio_asyncio.aio_as_trio(client.close)()


@asynccontextmanager
async def asyncio_loop() -> AsyncIterator[None]:
    """Host an asyncio loop for the duration of the block (for :class:`TrioStore`)."""
    async with trio_asyncio.open_loop():
        yield
