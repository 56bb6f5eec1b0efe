"""Opening the bucket a blob URI names, from trio: the sdk's client and store on the loop,
a :class:`~blobfs.bridge.store.TrioStore` for the caller."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import trio
from yarl import URL

from blobfs.bridge.loop import AsyncioThread
from blobfs.bridge.store import TrioStore
from sdk.providers.base import BlobStore


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


__all__ = ["open_source"]
