"""From what a caller names to a registry record and an open store.

A bucket is named by id or name (with an optional cluster and owner: the current ones by
default) or by a blob URI, which also names a key.  :class:`BucketResolver` looks the bucket
up in the registry and takes its store from the :class:`~sdk.store_pool.StorePool`, so every
operation on one bucket shares one open store.  A bucket that is not registered raises
:class:`~sdk.errors.ResourceNotFound`; a malformed URI, :class:`ValueError`.
"""

from __future__ import annotations

from yarl import URL

from sdk.config import Config
from sdk.providers.base import BlobStore
from sdk.registry import BucketRecord, Registry
from sdk.store_pool import StorePool
from sdk.types import Bucket
from sdk.uri import parse_blob_uri


class BucketResolver:
    """Looks buckets up in one registry and opens their stores from one pool."""

    def __init__(self, config: Config, registry: Registry, pool: StorePool) -> None:
        self._config = config
        self._registry = registry
        self._pool = pool

    def cluster(self, cluster_name: str | None) -> str:
        """The configured cluster of that name, or the current one."""
        return self._config.cluster(cluster_name).name

    def record(
        self, bucket_id_or_name: str, cluster_name: str | None, bucket_owner: str | None
    ) -> BucketRecord:
        """A bucket by id, or by name for ``bucket_owner`` (default: the current user)."""
        return self._registry.get_bucket(
            self.cluster(cluster_name),
            bucket_id_or_name,
            owner=bucket_owner or self._config.owner,
            org=self._config.org,
        )

    def record_at(self, uri: URL | str) -> tuple[BucketRecord, str]:
        """The bucket a blob URI names and the key (or prefix) inside it."""
        loc = parse_blob_uri(
            uri,
            cluster=self._config.current_cluster,
            owner=self._config.owner,
            org=self._config.org,
        )
        self._config.cluster(loc.cluster)
        return self._registry.find_by_path(loc.cluster, loc.path)

    async def store_named(
        self, bucket_id_or_name: str, cluster_name: str | None, bucket_owner: str | None
    ) -> tuple[Bucket, BlobStore]:
        """The bucket named as in :meth:`record`, and its open store."""
        record = self.record(bucket_id_or_name, cluster_name, bucket_owner)
        return record.bucket, await self._pool.store(record)

    async def store_at(self, uri: URL | str) -> tuple[Bucket, BlobStore, str]:
        """The bucket a blob URI names, its open store, and the key inside it."""
        record, key = self.record_at(uri)
        return record.bucket, await self._pool.store(record), key

    async def store_for(self, bucket: Bucket) -> BlobStore:
        """The open store of ``bucket``."""
        record = self._registry.get_bucket(
            bucket.cluster_name, bucket.id, owner=bucket.owner, org=bucket.org_name
        )
        return await self._pool.store(record)
