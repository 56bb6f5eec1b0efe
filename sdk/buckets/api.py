"""The Buckets API (``client.buckets``), as in the reference, over the local registry.

:class:`Buckets` is the API surface only: each method resolves what the caller named (a
bucket by id or name, or a blob URI) with :class:`~sdk.buckets.resolution.BucketResolver`
and hands the record or open store to the part that does the work:

* :mod:`sdk.buckets.lifecycle` -- creating, importing and removing buckets;
* :mod:`sdk.buckets.blobs` -- single blobs, listings, globs, removes, signed URLs;
* :mod:`sdk.buckets.usage` -- disk usage;
* :mod:`sdk.buckets.access` -- temporary and persistent credentials, public access;
* :mod:`sdk.transfer` -- copies between local files and blobs.

List-style methods return async context managers over async iterators, so
``async with buckets.list_blobs(uri) as it: async for entry in it`` releases the provider
listing even when the caller stops early.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from collections.abc import Set as AbstractSet
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import TYPE_CHECKING

from yarl import URL

import sdk.buckets.blobs as blobs
from sdk.buckets.access import BucketAccess
from sdk.buckets.lifecycle import BucketLifecycle
from sdk.buckets.resolution import BucketResolver
from sdk.buckets.usage import disk_usage
from sdk.config import Config
from sdk.progress import (
    AbstractDeleteProgress,
    AbstractFileProgress,
    AbstractRecursiveFileProgress,
)
from sdk.providers.base import BlobStore
from sdk.registry import Registry
from sdk.store_pool import StorePool
from sdk.types import (
    Bucket,
    BucketCredentials,
    BucketEntry,
    BucketUsage,
    PersistentBucketCredentials,
    Provider,
)

if TYPE_CHECKING:
    from sdk.transfer import Transfers


class Buckets:
    """Blob storage buckets: the ``client.buckets`` subsystem."""

    def __init__(self, config: Config, registry: Registry, pool: StorePool) -> None:
        self._resolve = BucketResolver(config, registry, pool)
        self._access = BucketAccess(config, registry, pool)
        self._lifecycle = BucketLifecycle(config, registry, pool, self._access)
        self._transfer_part: Transfers | None = None

    @property
    def _transfers(self) -> Transfers:
        """Copies between local files and blobs, set up on first use: a mount daemon never
        copies, and :mod:`sdk.transfer` loaded would stay resident in it (0.2 MiB)."""
        if self._transfer_part is None:
            from sdk.transfer import Transfers

            self._transfer_part = Transfers(self._resolve.store_at)
        return self._transfer_part

    # -- resolution -----------------------------------------------------------------------------

    async def resolve_uri(self, uri: URL | str) -> tuple[Bucket, str]:
        """The bucket a blob URI names and the key (or prefix) inside it.

        Raises :class:`ValueError` for a malformed URI and :class:`ResourceNotFound` when no
        registered bucket matches.
        """
        record, key = self._resolve.record_at(uri)
        return record.bucket, key

    async def store_for(self, bucket: Bucket) -> BlobStore:
        """The open store of ``bucket`` (shared; closed with the client)."""
        return await self._resolve.store_for(bucket)

    # -- buckets --------------------------------------------------------------------------------

    def list(
        self, cluster_name: str | None = None
    ) -> AbstractAsyncContextManager[AsyncIterator[Bucket]]:
        """The buckets registered on the cluster."""
        return self._lifecycle.list(self._resolve.cluster(cluster_name))

    async def create(
        self,
        name: str | None,
        cluster_name: str | None = None,
        org_name: str | None = None,
    ) -> Bucket:
        """Create a provider bucket and record it.  The provider bucket is removed again if
        the record cannot be written, so a failure leaves nothing behind."""
        cluster = self._resolve.cluster(cluster_name)
        return await self._lifecycle.create(name, cluster, org_name)

    async def import_external(
        self,
        provider: Provider,
        provider_bucket_name: str,
        credentials: Mapping[str, str],
        name: str | None = None,
        cluster_name: str | None = None,
        org_name: str | None = None,
    ) -> Bucket:
        """Register an existing provider bucket, after checking the credentials can list it."""
        cluster = self._resolve.cluster(cluster_name)
        return await self._lifecycle.import_external(
            provider, provider_bucket_name, credentials, name, cluster, org_name
        )

    async def get(
        self,
        bucket_id_or_name: str,
        cluster_name: str | None = None,
        bucket_owner: str | None = None,
    ) -> Bucket:
        """A bucket by id, or by name for ``bucket_owner`` (default: the current user)."""
        return self._resolve.record(bucket_id_or_name, cluster_name, bucket_owner).bucket

    async def rm(
        self,
        bucket_id_or_name: str,
        cluster_name: str | None = None,
        bucket_owner: str | None = None,
    ) -> None:
        """Forget a bucket; for buckets blobfs created, delete the provider bucket too.

        A non-empty provider bucket is refused with :class:`~sdk.errors.NotEmpty` and the
        record is kept (empty it first, e.g. ``blob_rm(uri, recursive=True)``).  Persistent
        credentials that cover only this bucket are revoked; others lose this bucket.
        """
        record = self._resolve.record(bucket_id_or_name, cluster_name, bucket_owner)
        await self._lifecycle.rm(record)

    # -- credentials and public access ----------------------------------------------------------

    async def request_tmp_credentials(
        self,
        bucket_id_or_name: str,
        cluster_name: str | None = None,
        bucket_owner: str | None = None,
        *,
        read_only: bool = False,
    ) -> BucketCredentials:
        """Provider credentials for this bucket alone, expiring after an hour.

        S3 keys: ``access_key_id``, ``secret_access_key``, ``session_token``, ``expiration``,
        ``bucket_name``, ``endpoint_url``, ``region_name``; Azure: ``storage_endpoint``,
        ``bucket_name``, ``sas_token``, ``expiry``.  With ``read_only`` the provider refuses
        writes and deletes.  :class:`~sdk.errors.InvalidRequest` where the provider cannot
        scope credentials (the cluster's own are never handed out).
        """
        record = self._resolve.record(bucket_id_or_name, cluster_name, bucket_owner)
        return await self._access.request_tmp_credentials(record, read_only=read_only)

    async def set_public_access(
        self,
        bucket_id_or_name: str,
        public_access: bool,
        cluster_name: str | None = None,
        bucket_owner: str | None = None,
    ) -> Bucket:
        """Allow or forbid anonymous reads (and listing) of the bucket; returns the bucket
        as now recorded.  The provider is asked only when the setting changes."""
        record = self._resolve.record(bucket_id_or_name, cluster_name, bucket_owner)
        return await self._access.set_public_access(record, public_access)

    def persistent_credentials_list(
        self, cluster_name: str | None = None
    ) -> AbstractAsyncContextManager[AsyncIterator[PersistentBucketCredentials]]:
        """The current user's persistent credentials on the cluster."""
        return self._access.list(self._resolve.cluster(cluster_name))

    async def persistent_credentials_create(
        self,
        bucket_ids: Iterable[str],
        name: str | None,
        read_only: bool | None = False,
        cluster_name: str | None = None,
    ) -> PersistentBucketCredentials:
        """Long-lived credentials for the given buckets (ids or names), optionally
        read-only.  Imported buckets are refused with :class:`~sdk.errors.InvalidRequest`.
        The secrets are kept in the registry so that :meth:`persistent_credentials_get`
        can show them again."""
        return await self._access.create(
            self._resolve.cluster(cluster_name), bucket_ids, name, read_only=bool(read_only)
        )

    async def persistent_credentials_get(
        self, credential_id_or_name: str, cluster_name: str | None = None
    ) -> PersistentBucketCredentials:
        """Persistent credentials by id or name; :class:`ResourceNotFound` if unknown."""
        return self._access.get(self._resolve.cluster(cluster_name), credential_id_or_name)

    async def persistent_credentials_rm(
        self, credential_id_or_name: str, cluster_name: str | None = None
    ) -> None:
        """Revoke persistent credentials (the provider refuses them from then on) and
        forget them."""
        await self._access.rm(self._resolve.cluster(cluster_name), credential_id_or_name)

    # -- blobs ----------------------------------------------------------------------------------

    async def head_blob(
        self,
        bucket_id_or_name: str,
        key: str,
        cluster_name: str | None = None,
        bucket_owner: str | None = None,
    ) -> BucketEntry:
        """Metadata of one blob; :class:`ResourceNotFound` if the key does not exist."""
        bucket, store = await self._resolve.store_named(
            bucket_id_or_name, cluster_name, bucket_owner
        )
        return blobs.entry(bucket, await store.head(key))

    async def put_blob(
        self,
        bucket_id_or_name: str,
        key: str,
        body: AsyncIterator[bytes] | bytes,
        cluster_name: str | None = None,
        bucket_owner: str | None = None,
    ) -> None:
        """Create or replace a blob: ``bytes`` in one request, an async iterator streamed
        as a multipart upload with bounded memory (aborted if the iterator fails)."""
        _, store = await self._resolve.store_named(bucket_id_or_name, cluster_name, bucket_owner)
        await blobs.put(store, key, body)

    def fetch_blob(
        self,
        bucket_id_or_name: str,
        key: str,
        offset: int = 0,
        cluster_name: str | None = None,
        bucket_owner: str | None = None,
    ) -> AbstractAsyncContextManager[AsyncIterator[bytes]]:
        """Stream a blob's content from ``offset``.  The version is pinned when the stream
        opens: if the blob is replaced mid-read the read fails instead of mixing versions."""

        @asynccontextmanager
        async def cm() -> AsyncIterator[AsyncIterator[bytes]]:
            _, store = await self._resolve.store_named(
                bucket_id_or_name, cluster_name, bucket_owner
            )
            info = await store.head(key)
            async with store.read(key, offset, etag=info.etag) as it:
                yield it

        return cm()

    async def delete_blob(
        self,
        bucket_id_or_name: str,
        key: str,
        cluster_name: str | None = None,
        bucket_owner: str | None = None,
    ) -> None:
        """Delete one blob; :class:`ResourceNotFound` if it does not exist."""
        _, store = await self._resolve.store_named(bucket_id_or_name, cluster_name, bucket_owner)
        await store.delete(key)

    def list_blobs(
        self, uri: URL, recursive: bool = False, limit: int | None = None
    ) -> AbstractAsyncContextManager[AsyncIterator[BucketEntry]]:
        """Entries whose key starts with the URI's key, exactly as given.

        Non-recursive listings fold keys with a further ``/`` into
        :class:`~sdk.types.BlobCommonPrefix` entries; recursive ones list objects only.
        ``limit`` counts entries of both kinds.
        """

        @asynccontextmanager
        async def cm() -> AsyncIterator[AsyncIterator[BucketEntry]]:
            bucket, store, prefix = await self._resolve.store_at(uri)
            yield blobs.listing(bucket, store, prefix, recursive=recursive, limit=limit)

        return cm()

    def glob_blobs(self, uri: URL) -> AbstractAsyncContextManager[AsyncIterator[BucketEntry]]:
        """Entries matching a glob pattern in the URI's key (see :mod:`sdk.globbing`)."""

        @asynccontextmanager
        async def cm() -> AsyncIterator[AsyncIterator[BucketEntry]]:
            bucket, store, pattern = await self._resolve.store_at(uri)
            yield blobs.glob(bucket, store, pattern)

        return cm()

    async def blob_is_dir(self, uri: URL) -> bool:
        """Whether the URI names a "folder": the bucket root, or a prefix that holds keys."""
        _, store, key = await self._resolve.store_at(uri)
        return await blobs.is_dir(store, key)

    async def blob_rm(
        self,
        uri: URL,
        *,
        recursive: bool = False,
        progress: AbstractDeleteProgress | None = None,
    ) -> None:
        """Remove a blob, or with ``recursive`` a folder and everything under it.

        :raises FileNotFoundError: nothing exists at the URI.
        :raises IsADirectoryError: the URI is a folder and ``recursive`` is not set.
        """
        bucket, store, key = await self._resolve.store_at(uri)
        await blobs.remove(uri, bucket, store, key, recursive=recursive, progress=progress)

    async def make_signed_url(self, uri: URL, expires_in_seconds: int = 3600) -> URL:
        """A URL that lets anyone GET the blob until it expires (1 s to 7 days)."""
        blobs.check_signed_url_expiry(expires_in_seconds)
        _, store, key = await self._resolve.store_at(uri)
        return await blobs.signed_url(uri, store, key, expires_in_seconds)

    def get_disk_usage(
        self,
        bucket_id_or_name: str,
        cluster_name: str | None = None,
        bucket_owner: str | None = None,
    ) -> AbstractAsyncContextManager[AsyncIterator[BucketUsage]]:
        """Running totals while the bucket is scanned; the last one is the whole bucket.

        Yields at least once, so an empty bucket reports zero rather than nothing.
        """

        @asynccontextmanager
        async def cm() -> AsyncIterator[AsyncIterator[BucketUsage]]:
            _, store = await self._resolve.store_named(
                bucket_id_or_name, cluster_name, bucket_owner
            )
            yield disk_usage(store)

        return cm()

    # -- transfers ------------------------------------------------------------------------------

    async def upload_file(
        self,
        src: URL,
        dst: URL,
        *,
        update: bool = False,
        progress: AbstractFileProgress | None = None,
    ) -> None:
        """Upload local file ``src`` (a ``file:`` URL) to blob ``dst``."""
        await self._transfers.upload_file(src, dst, update=update, progress=progress)

    async def download_file(
        self,
        src: URL,
        dst: URL,
        *,
        update: bool = False,
        continue_: bool = False,
        progress: AbstractFileProgress | None = None,
    ) -> None:
        """Download blob ``src`` to local file ``dst`` (a ``file:`` URL)."""
        await self._transfers.download_file(
            src, dst, update=update, continue_=continue_, progress=progress
        )

    async def upload_dir(
        self,
        src: URL,
        dst: URL,
        *,
        update: bool = False,
        filter: Callable[[str], Awaitable[bool]] | None = None,
        ignore_file_names: AbstractSet[str] = frozenset(),
        progress: AbstractRecursiveFileProgress | None = None,
    ) -> None:
        """Upload local directory ``src`` recursively under blob prefix ``dst``."""
        await self._transfers.upload_dir(
            src,
            dst,
            update=update,
            filter=filter,
            ignore_file_names=ignore_file_names,
            progress=progress,
        )

    async def download_dir(
        self,
        src: URL,
        dst: URL,
        *,
        update: bool = False,
        continue_: bool = False,
        filter: Callable[[str], Awaitable[bool]] | None = None,
        progress: AbstractRecursiveFileProgress | None = None,
    ) -> None:
        """Download blob prefix ``src`` recursively into local directory ``dst``."""
        await self._transfers.download_dir(
            src, dst, update=update, continue_=continue_, filter=filter, progress=progress
        )
