"""The Buckets API (``client.buckets``), as in the reference, over the local registry.

Every method resolves its bucket (by id or name, or from a blob URI) in the registry, then
works on the provider through a :class:`~sdk.providers.base.BlobStore` from the
:class:`~sdk.store_pool.StorePool`.  List-style methods return async context managers over
async iterators, so ``async with buckets.list_blobs(uri) as it: async for entry in it``
releases the provider listing even when the caller stops early.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import re
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from collections.abc import Set as AbstractSet
from contextlib import AbstractAsyncContextManager, asynccontextmanager

from yarl import URL

from sdk import globbing
from sdk.config import Config
from sdk.credentials import BucketAccess
from sdk.errors import AlreadyExists, NotEmpty, ResourceNotFound
from sdk.multipart import upload_stream
from sdk.progress import (
    AbstractDeleteProgress,
    AbstractFileProgress,
    AbstractRecursiveFileProgress,
    StorageProgressDelete,
)
from sdk.providers.base import BlobStore, ObjectInfo, PrefixInfo
from sdk.registry import BucketRecord, Registry, new_bucket_id, utcnow
from sdk.store_pool import StorePool, external_admin
from sdk.transfer import Transfers
from sdk.types import (
    BlobCommonPrefix,
    BlobObject,
    Bucket,
    BucketCredentials,
    BucketEntry,
    BucketUsage,
    PersistentBucketCredentials,
    Provider,
)
from sdk.uri import key_uri, parse_blob_uri, validate_bucket_name

log = logging.getLogger(__name__)

#: Keys deleted per batch request by :meth:`Buckets.blob_rm`.
_DELETE_BATCH = 1000
#: Longest signed URL lifetime any provider accepts (7 days).
MAX_SIGNED_URL_SECONDS = 7 * 24 * 3600


def provider_bucket_name(cluster: str, org: str | None, owner: str, name: str | None) -> str:
    """A provider-side bucket name valid for S3 and Azure alike, unique per call.

    ``blobfs-<hash of cluster/org/owner>-<owner>-<name>``, cut to 45 characters, plus a random
    suffix: readable in the provider's console, never colliding, and within both providers'
    rules (3-63 characters of ``[a-z0-9-]``, no doubled or trailing ``-``).
    """
    digest = hashlib.sha256(f"{cluster}/{org or ''}/{owner}".encode()).hexdigest()[:10]
    readable = "-".join(p for p in (org, owner, name) if p)
    readable = re.sub(r"[^a-z0-9]+", "-", readable.lower()).strip("-")
    base = f"blobfs-{digest}-{readable}"[:45].rstrip("-")
    return f"{base}-{secrets.token_hex(6)}"


def _entry(bucket: Bucket, item: ObjectInfo | PrefixInfo) -> BucketEntry:
    if isinstance(item, PrefixInfo):
        return BlobCommonPrefix(key=item.key, bucket=bucket, size=0)
    return BlobObject(
        key=item.key,
        bucket=bucket,
        size=item.size,
        created_at=item.created_at,
        modified_at=item.modified_at,
        etag=item.etag,
    )


class Buckets:
    """Blob storage buckets: the ``client.buckets`` subsystem."""

    def __init__(self, config: Config, registry: Registry, pool: StorePool) -> None:
        self._config = config
        self._registry = registry
        self._pool = pool
        self._transfers = Transfers(self._resolve_for_transfer)
        self._access = BucketAccess(config, registry, pool)

    # -- resolution -----------------------------------------------------------------------------

    def _cluster(self, cluster_name: str | None) -> str:
        return self._config.cluster(cluster_name).name

    def _record(
        self, bucket_id_or_name: str, cluster_name: str | None, bucket_owner: str | None
    ) -> BucketRecord:
        return self._registry.get_bucket(
            self._cluster(cluster_name),
            bucket_id_or_name,
            owner=bucket_owner or self._config.owner,
            org=self._config.org,
        )

    async def resolve_uri(self, uri: URL | str) -> tuple[Bucket, str]:
        """The bucket a blob URI names and the key (or prefix) inside it.

        Raises :class:`ValueError` for a malformed URI and :class:`ResourceNotFound` when no
        registered bucket matches.
        """
        record, key = self._resolve_record(uri)
        return record.bucket, key

    def _resolve_record(self, uri: URL | str) -> tuple[BucketRecord, str]:
        loc = parse_blob_uri(
            uri,
            cluster=self._config.current_cluster,
            owner=self._config.owner,
            org=self._config.org,
        )
        self._config.cluster(loc.cluster)
        return self._registry.find_by_path(loc.cluster, loc.path)

    async def store_for(self, bucket: Bucket) -> BlobStore:
        """The open store of ``bucket`` (shared; closed with the client)."""
        record = self._registry.get_bucket(
            bucket.cluster_name, bucket.id, owner=bucket.owner, org=bucket.org_name
        )
        return await self._pool.store(record)

    async def _open(self, uri: URL | str) -> tuple[Bucket, BlobStore, str]:
        record, key = self._resolve_record(uri)
        return record.bucket, await self._pool.store(record), key

    async def _resolve_for_transfer(self, uri: URL) -> tuple[Bucket, BlobStore, str]:
        return await self._open(uri)

    async def _store_by_name(
        self, bucket_id_or_name: str, cluster_name: str | None, bucket_owner: str | None
    ) -> tuple[Bucket, BlobStore]:
        record = self._record(bucket_id_or_name, cluster_name, bucket_owner)
        return record.bucket, await self._pool.store(record)

    # -- buckets --------------------------------------------------------------------------------

    def list(
        self, cluster_name: str | None = None
    ) -> AbstractAsyncContextManager[AsyncIterator[Bucket]]:
        """The buckets registered on the cluster."""
        records = self._registry.list_buckets(self._cluster(cluster_name))

        @asynccontextmanager
        async def cm() -> AsyncIterator[AsyncIterator[Bucket]]:
            async def gen() -> AsyncIterator[Bucket]:
                for r in records:
                    yield r.bucket

            yield gen()

        return cm()

    async def create(
        self,
        name: str | None,
        cluster_name: str | None = None,
        org_name: str | None = None,
    ) -> Bucket:
        """Create a provider bucket and record it.  The provider bucket is removed again if
        the record cannot be written, so a failure leaves nothing behind."""
        cluster = self._cluster(cluster_name)
        org = org_name or self._config.org
        owner = self._config.owner
        if name is not None:
            validate_bucket_name(name)
            if self._registry.name_taken(cluster, org, owner, name):
                raise AlreadyExists(f"bucket {name!r} already exists on cluster {cluster!r}")
        cluster_cfg = self._config.cluster(cluster)
        bucket = Bucket(
            id=new_bucket_id(),
            owner=owner,
            cluster_name=cluster,
            org_name=org,
            provider=cluster_cfg.provider,
            created_at=utcnow(),
            imported=False,
            name=name,
        )
        provider_name = provider_bucket_name(cluster, org, owner, name)
        admin = await self._pool.admin(cluster)
        await admin.create_bucket(provider_name)
        try:
            self._registry.add_bucket(BucketRecord(bucket=bucket, provider_bucket=provider_name))
        except BaseException:
            await admin.delete_bucket(provider_name)
            raise
        return bucket

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
        cluster = self._cluster(cluster_name)
        org = org_name or self._config.org
        owner = self._config.owner
        if name is not None:
            validate_bucket_name(name)
            if self._registry.name_taken(cluster, org, owner, name):
                raise AlreadyExists(f"bucket {name!r} already exists on cluster {cluster!r}")
        creds = dict(credentials)
        creds.setdefault("bucket_name", provider_bucket_name)
        admin = external_admin(provider, creds)
        try:
            await admin.check_bucket(provider_bucket_name, creds)
        finally:
            await admin.close()
        bucket = Bucket(
            id=new_bucket_id(),
            owner=owner,
            cluster_name=cluster,
            org_name=org,
            provider=provider,
            created_at=utcnow(),
            imported=True,
            name=name,
        )
        self._registry.add_bucket(
            BucketRecord(bucket=bucket, provider_bucket=provider_bucket_name, credentials=creds)
        )
        return bucket

    async def get(
        self,
        bucket_id_or_name: str,
        cluster_name: str | None = None,
        bucket_owner: str | None = None,
    ) -> Bucket:
        """A bucket by id, or by name for ``bucket_owner`` (default: the current user)."""
        return self._record(bucket_id_or_name, cluster_name, bucket_owner).bucket

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
        record = self._record(bucket_id_or_name, cluster_name, bucket_owner)
        bucket = record.bucket
        if not bucket.imported:
            admin = await self._pool.admin(bucket.cluster_name)
            try:
                await admin.delete_bucket(record.provider_bucket)
            except NotEmpty:
                raise NotEmpty(
                    f"bucket {bucket.name or bucket.id!r} is not empty; remove its blobs first"
                ) from None
            except ResourceNotFound:
                log.warning("provider bucket %s was already gone", record.provider_bucket)
            await self._access.forget_bucket(record)
        await self._pool.forget(bucket.id)
        self._registry.remove_bucket(bucket.id)

    # -- credentials and public access (sdk.credentials) ----------------------------------------

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
        record = self._record(bucket_id_or_name, cluster_name, bucket_owner)
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
        record = self._record(bucket_id_or_name, cluster_name, bucket_owner)
        return await self._access.set_public_access(record, public_access)

    def persistent_credentials_list(
        self, cluster_name: str | None = None
    ) -> AbstractAsyncContextManager[AsyncIterator[PersistentBucketCredentials]]:
        """The current user's persistent credentials on the cluster."""
        return self._access.list(self._cluster(cluster_name))

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
            self._cluster(cluster_name), bucket_ids, name, read_only=bool(read_only)
        )

    async def persistent_credentials_get(
        self, credential_id_or_name: str, cluster_name: str | None = None
    ) -> PersistentBucketCredentials:
        """Persistent credentials by id or name; :class:`ResourceNotFound` if unknown."""
        return self._access.get(self._cluster(cluster_name), credential_id_or_name)

    async def persistent_credentials_rm(
        self, credential_id_or_name: str, cluster_name: str | None = None
    ) -> None:
        """Revoke persistent credentials (the provider refuses them from then on) and
        forget them."""
        await self._access.rm(self._cluster(cluster_name), credential_id_or_name)

    # -- blobs ----------------------------------------------------------------------------------

    async def head_blob(
        self,
        bucket_id_or_name: str,
        key: str,
        cluster_name: str | None = None,
        bucket_owner: str | None = None,
    ) -> BucketEntry:
        """Metadata of one blob; :class:`ResourceNotFound` if the key does not exist."""
        bucket, store = await self._store_by_name(bucket_id_or_name, cluster_name, bucket_owner)
        return _entry(bucket, await store.head(key))

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
        _, store = await self._store_by_name(bucket_id_or_name, cluster_name, bucket_owner)
        if isinstance(body, bytes | bytearray | memoryview):
            await store.put(key, bytes(body))
        else:
            await upload_stream(store, key, body)

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
            _, store = await self._store_by_name(bucket_id_or_name, cluster_name, bucket_owner)
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
        _, store = await self._store_by_name(bucket_id_or_name, cluster_name, bucket_owner)
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
            bucket, store, prefix = await self._open(uri)
            yield self._list(bucket, store, prefix, recursive=recursive, limit=limit)

        return cm()

    async def _list(
        self,
        bucket: Bucket,
        store: BlobStore,
        prefix: str,
        *,
        recursive: bool,
        limit: int | None = None,
    ) -> AsyncIterator[BucketEntry]:
        if limit is not None and limit <= 0:
            return
        count = 0
        async for item in store.list(prefix, delimiter=None if recursive else "/"):
            yield _entry(bucket, item)
            count += 1
            if limit is not None and count >= limit:
                return

    def glob_blobs(self, uri: URL) -> AbstractAsyncContextManager[AsyncIterator[BucketEntry]]:
        """Entries matching a glob pattern in the URI's key (see :mod:`sdk.globbing`)."""

        @asynccontextmanager
        async def cm() -> AsyncIterator[AsyncIterator[BucketEntry]]:
            bucket, store, pattern = await self._open(uri)
            yield self._glob(bucket, store, "", pattern)

        return cm()

    async def _glob(
        self, bucket: Bucket, store: BlobStore, base: str, pattern: str
    ) -> AsyncIterator[BucketEntry]:
        # Walk literal components into the prefix; list only where a wildcard needs it.
        parts = pattern.split("/")
        while parts and not globbing.has_magic(parts[0]) and len(parts) > 1:
            base += parts.pop(0) + "/"
        if not parts:
            return
        part, rest = parts[0], parts[1:]
        if not globbing.has_magic(part):  # last component, literal: the key itself
            key = base + part
            try:
                yield _entry(bucket, await store.head(key))
            except ResourceNotFound:
                pass
            return
        if part == "**":
            regex = globbing.translate("/".join(parts))
            async for item in store.list(base):
                if regex.fullmatch(item.key[len(base) :]):
                    yield _entry(bucket, item)
            return
        regex = globbing.translate(part)
        listing_prefix = base + globbing.literal_prefix(part)
        async for item in store.list(listing_prefix, delimiter="/"):
            name = item.key[len(base) :]
            if not regex.fullmatch(name):
                continue
            if not rest:
                yield _entry(bucket, item)
            elif isinstance(item, PrefixInfo):  # middle wildcard: directories only
                async for entry in self._glob(bucket, store, item.key, "/".join(rest)):
                    yield entry

    async def blob_is_dir(self, uri: URL) -> bool:
        """Whether the URI names a "folder": the bucket root, or a prefix that holds keys."""
        _, store, key = await self._open(uri)
        key = key.rstrip("/")
        if not key:
            return True
        async for _ in store.list(key + "/"):
            return True
        return False

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
        bucket, store, key = await self._open(uri)
        removed_file = False
        if key and not key.endswith("/"):
            try:
                await store.delete(key)
            except ResourceNotFound:
                pass
            else:
                removed_file = True
                if progress:
                    progress.delete(
                        StorageProgressDelete(uri=key_uri(bucket.uri, key), is_dir=False)
                    )
        prefix = key.rstrip("/") + "/" if key.rstrip("/") else ""
        has_children = False
        async for _ in store.list(prefix):
            has_children = True
            break
        if not has_children:
            if not removed_file:
                raise FileNotFoundError(f"{uri}: no such blob or folder")
            return
        if not recursive:
            if removed_file:  # the file of that name is gone; its namesake folder stays
                return
            raise IsADirectoryError(f"{uri}: is a folder, use recursive remove")
        await self._rm_tree(bucket, store, prefix, progress)

    async def _rm_tree(
        self,
        bucket: Bucket,
        store: BlobStore,
        prefix: str,
        progress: AbstractDeleteProgress | None,
    ) -> None:
        # Markers ("dir/") go last, deepest first, so an interrupted remove never leaves a
        # folder that looks empty while its contents are still there.
        markers: list[str] = []
        batch: list[str] = []

        async def flush() -> None:
            if not batch:
                return
            await store.delete_many(list(batch))
            if progress:
                for k in batch:
                    progress.delete(StorageProgressDelete(key_uri(bucket.uri, k), is_dir=False))
            batch.clear()

        async for item in store.list(prefix):
            if item.key.endswith("/"):
                markers.append(item.key)
                continue
            batch.append(item.key)
            if len(batch) >= _DELETE_BATCH:
                await flush()
        await flush()
        for marker in sorted(markers, key=lambda k: (-k.count("/"), k)):
            await store.delete(marker, missing_ok=True)
            if progress:
                progress.delete(StorageProgressDelete(key_uri(bucket.uri, marker), is_dir=True))

    async def make_signed_url(self, uri: URL, expires_in_seconds: int = 3600) -> URL:
        """A URL that lets anyone GET the blob until it expires (1 s to 7 days)."""
        if not 1 <= expires_in_seconds <= MAX_SIGNED_URL_SECONDS:
            raise ValueError(
                f"expires_in_seconds must be between 1 and {MAX_SIGNED_URL_SECONDS} "
                f"(7 days), got {expires_in_seconds}"
            )
        _, store, key = await self._open(uri)
        if not key or key.endswith("/"):
            raise ValueError(f"{uri}: a signed URL needs a blob key, not a folder")
        return URL(await store.sign_url(key, expires_in_seconds), encoded=True)

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
            _, store = await self._store_by_name(bucket_id_or_name, cluster_name, bucket_owner)

            async def gen() -> AsyncIterator[BucketUsage]:
                total = count = 0
                loop = asyncio.get_running_loop()
                last = loop.time()
                async for item in store.list(""):
                    assert isinstance(item, ObjectInfo)
                    total += item.size
                    count += 1
                    # Partial results a few times a second: enough for a live display,
                    # without one event per object on a million-object bucket.
                    if loop.time() - last >= 0.2:
                        last = loop.time()
                        yield BucketUsage(total_bytes=total, object_count=count)
                yield BucketUsage(total_bytes=total, object_count=count)

            yield gen()

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
