"""The one place where the trio daemon meets the asyncio sdk.

pyfuse3 runs on trio; the sdk's providers (aioboto3, azure-storage-blob aio) are asyncio only.
The sdk runs on a plain asyncio loop in a thread of its own (:class:`AsyncioThread`), and
everything above this module talks to :class:`TrioStore`, a trio-flavoured view of a
:class:`~sdk.providers.base.BlobStore` whose every method is one hand-off to that loop.

Why a thread and not ``trio_asyncio``: trio-asyncio runs asyncio's callbacks as trio work,
and its cost per callback grows with the number of live asyncio tasks.  Measured on
SeaweedFS over loopback, 1 GiB of parallel ranged GETs cost 3.3 s of CPU through
trio-asyncio against 1.0-1.4 s on a native loop, which made the daemon CPU-bound at about
55 MiB/s.  In a thread, the sdk's HTTP work runs at native asyncio speed; both threads wait
on sockets most of the time, so they share the GIL without contention, and one crossing
costs two thread wake-ups — cheap beside a request.  Listings still cross in pages (one
crossing per :data:`LIST_PAGE` entries), never one entry at a time.

Cancellation crosses too: a cancelled trio caller cancels its asyncio task and waits until
that task has really finished, so nothing it started outlives the caller unseen.

Two exceptions to "every call crosses": a small PUT (closing a small file) and a small
ranged read (reading one back) are made on the trio thread when the store offers them
(:class:`~sdk.providers.base.OffersTrioDirect`: S3 on an S3-compatible endpoint).  The
crossing costs about 0.45 ms, measured from the daemon's own timers, of the 6-7 ms a 4 KiB
file's create-write-close takes; the trio-side PUT saved 10-15 % per file in interleaved A/B
runs, the trio-side GET 17-22 % of reading a 4 KiB file back (4.58 -> 3.82 and 4.19 -> 3.28
ms per file, page cache dropped).  Anything those requests do not plainly succeed at
(errors, a changed object, a missing key, broken connections, timeouts) is repeated through
the loop, where the store retries and translates errors as for every other call.

Nothing else in blobfs may call the sdk's coroutines directly.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from typing import Any, ParamSpec, TypeVar

import outcome
import trio
from yarl import URL

from sdk.providers.base import (
    BlobStore,
    CopySettings,
    MultipartUpload,
    ObjectInfo,
    OffersTrioDirect,
    PrefixInfo,
    TrioDirect,
)

T = TypeVar("T")
P = ParamSpec("P")

#: Listing entries moved from the asyncio side per crossing.
LIST_PAGE = 1000

ListItem = ObjectInfo | PrefixInfo


#: What a cancelled call hands back to trio, which then raises its own Cancelled.
_CANCELLED = object()


class BridgeClosed(RuntimeError):
    """The asyncio loop is gone (the daemon is shutting down)."""


class AsyncioThread:
    """An asyncio event loop serving trio callers from a thread of its own.

    Start and stop it with :func:`asyncio_loop`; call into it with :meth:`run`.
    """

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._main, name="blobfs-asyncio", daemon=True)

    def _main(self) -> None:
        asyncio.set_event_loop(self.loop)
        try:
            self.loop.run_forever()
        finally:
            self.loop.close()

    def start(self) -> None:
        self._thread.start()

    async def stop(self) -> None:
        """Cancel what still runs on the loop, let it finish, and end the thread."""
        if not self._thread.is_alive():
            return

        async def shutdown() -> None:
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await self.loop.shutdown_asyncgens()

        with trio.CancelScope(shield=True):
            try:
                await self.run(shutdown)
            finally:
                self.loop.call_soon_threadsafe(self.loop.stop)
                await trio.to_thread.run_sync(self._thread.join)

    async def run(self, fn: Callable[P, Awaitable[T]], *args: P.args, **kwargs: P.kwargs) -> T:
        """``await fn(*args, **kwargs)`` on the asyncio loop; return or raise its outcome.

        If the trio caller is cancelled, the asyncio task is cancelled and waited for; the
        caller then sees :class:`trio.Cancelled` (or the task's result, should it finish
        anyway).
        """
        token = trio.lowlevel.current_trio_token()
        caller = trio.lowlevel.current_task()
        box: list[asyncio.Task[T]] = []
        cancel: list[Callable[[], Any]] = []

        def finished(task: asyncio.Task[T]) -> None:  # on the asyncio thread
            result: outcome.Outcome[Any]
            if task.cancelled():
                # trio's Cancelled is raised on the trio side (see below), not made here.
                result = (
                    outcome.Value(_CANCELLED)
                    if cancel
                    else outcome.Error(BridgeClosed("the asyncio loop was shut down"))
                )
            else:
                error = task.exception()
                result = outcome.Error(error) if error is not None else outcome.Value(task.result())
            try:
                token.run_sync_soon(trio.lowlevel.reschedule, caller, result)
            except trio.RunFinishedError:
                pass

        def begin() -> None:  # on the asyncio thread
            async def call() -> T:
                return await fn(*args, **kwargs)

            task = self.loop.create_task(call())
            box.append(task)
            task.add_done_callback(finished)

        def abort(raise_cancel: Callable[[], Any]) -> trio.lowlevel.Abort:
            cancel.append(raise_cancel)
            # Runs after begin() (the loop's queue is FIFO), so the task exists by then.
            try:
                self.loop.call_soon_threadsafe(lambda: box[0].cancel())
            except RuntimeError:  # loop closed: its tasks are gone already
                return trio.lowlevel.Abort.SUCCEEDED
            return trio.lowlevel.Abort.FAILED

        try:
            self.loop.call_soon_threadsafe(begin)
        except RuntimeError as e:
            raise BridgeClosed("the asyncio loop is closed") from e
        result = await trio.lowlevel.wait_task_rescheduled(abort)
        if result is _CANCELLED:
            cancel[0]()  # raises trio.Cancelled
        return result  # type: ignore[no-any-return]


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

    def __init__(self, upload: MultipartUpload, aio: AsyncioThread) -> None:
        self.upload = upload
        self.key = upload.key
        self._aio = aio

    async def upload_part(self, part_number: int, data: bytes) -> None:
        await self._aio.run(self.upload.upload_part, part_number, data)

    async def complete(self) -> str:
        return await self._aio.run(self.upload.complete)

    async def abort(self) -> None:
        await self._aio.run(self.upload.abort)


class TrioStore:
    """A :class:`BlobStore` callable from trio, its calls run on ``aio``.

    Every method raises what the store raises (:mod:`sdk.errors`); callers translate.
    """

    def __init__(self, store: BlobStore, aio: AsyncioThread) -> None:
        self.store = store
        self.bucket_name = store.bucket_name
        self._aio = aio
        #: Small PUTs and reads made on this (trio) thread, where the store offers them;
        #: the connections it keeps are closed by :meth:`close_trio_side`.
        self.trio_direct: TrioDirect | None = (
            store.trio_direct(aio.run) if isinstance(store, OffersTrioDirect) else None
        )

    async def head(self, key: str) -> ObjectInfo:
        return await self._aio.run(self.store.head, key)

    async def read_range(
        self, key: str, offset: int, length: int, *, etag: str | None = None
    ) -> bytes:
        # read_view's bytes and errors, which every store gives as read_range's (the store
        # contract tests check it): one path, and the trio-side GET serves both.
        return bytes(await self.read_view(key, offset, length, etag=etag))

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
                chunk: list[ListItem] = await self._aio.run(_pull, it, page)
                if chunk:
                    yield chunk
                if len(chunk) < page:
                    return
        finally:
            with trio.CancelScope(shield=True):
                await self._aio.run(_aclose, it)

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

    async def put(self, key: str, data: bytes, *, metadata: Mapping[str, str] | None = None) -> str:
        if self.trio_direct is not None:
            etag = await self.trio_direct.put(key, data, metadata=metadata)
            if etag is not None:
                return etag
            # Not handled there (a large body, a refusal, a broken connection ...): the
            # store's own PUT retries, and raises the sdk error a refusal means.
        return await self._aio.run(self.store.put, key, data, metadata=metadata)

    async def start_multipart(
        self, key: str, *, metadata: Mapping[str, str] | None = None
    ) -> TrioMultipart:
        upload = await self._aio.run(self.store.start_multipart, key, metadata=metadata)
        return TrioMultipart(upload, self._aio)

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


@asynccontextmanager
async def open_source(
    aio: AsyncioThread, source: str, *, cluster: str | None = None
) -> AsyncIterator[tuple[TrioStore, str]]:
    """Open the bucket a blob URI names; yield its store and the key prefix inside it.

    Raises what the sdk raises: :class:`~sdk.errors.ResourceNotFound` for an unknown
    bucket, :class:`ValueError` for a malformed URI, :class:`~sdk.errors.ConfigError` for a
    bad configuration.
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

    client, store, key = await aio.run(_open)
    try:
        tstore = TrioStore(store, aio)
        try:
            yield tstore, key
        finally:
            await tstore.close_trio_side()
    finally:
        with trio.CancelScope(shield=True):
            await aio.run(client.close)


@asynccontextmanager
async def asyncio_loop() -> AsyncIterator[AsyncioThread]:
    """Run an asyncio loop in its own thread for the duration of the block."""
    aio = AsyncioThread()
    aio.start()
    try:
        yield aio
    finally:
        await aio.stop()
