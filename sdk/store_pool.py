"""Open provider connections, shared for the life of a :class:`~sdk.client.Client`.

One :class:`~sdk.providers.base.ProviderAdmin` per cluster and one
:class:`~sdk.providers.base.BlobStore` per bucket, opened on first use: connection pools are
expensive to build and cheap to keep.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping

from sdk.config import Config
from sdk.errors import InvalidRequest
from sdk.providers import open_admin
from sdk.providers.base import BlobStore, ProviderAdmin
from sdk.registry import BucketRecord
from sdk.types import Provider


def external_admin(provider: Provider, credentials: Mapping[str, str]) -> ProviderAdmin:
    """An admin for a bucket outside any configured cluster, from its raw credentials.

    Credential keys as in the reference: S3 ``access_key_id``, ``secret_access_key``,
    ``endpoint_url``?, ``region_name``?, ``session_token``?; Azure ``storage_endpoint`` with
    ``sas_token`` or ``credential`` (the account key).
    """
    if provider.is_s3:
        from sdk.providers.s3.admin import S3Admin

        return S3Admin(
            endpoint_url=credentials.get("endpoint_url"),
            region=credentials.get("region_name"),
            credentials=credentials,
        )
    if provider is Provider.AZURE:
        from sdk.providers.azure import AzureAdmin

        return AzureAdmin(endpoint_url=credentials.get("storage_endpoint"), credentials=credentials)
    raise InvalidRequest(f"provider {provider.value!r} is not supported by blobfs")


class StorePool:
    """Caches admins per cluster and stores per bucket; closes them all on :meth:`close`."""

    def __init__(self, config: Config) -> None:
        self._config = config
        self._admins: dict[str, ProviderAdmin] = {}
        self._stores: dict[str, BlobStore] = {}
        self._external: dict[str, ProviderAdmin] = {}
        self._lock = asyncio.Lock()
        self._opening: dict[str, asyncio.Lock] = {}

    async def admin(self, cluster_name: str) -> ProviderAdmin:
        async with self._lock:
            admin = self._admins.get(cluster_name)
            if admin is None:
                admin = await open_admin(self._config.cluster(cluster_name))
                self._admins[cluster_name] = admin
            return admin

    async def store(self, record: BucketRecord) -> BlobStore:
        bucket = record.bucket
        store = self._stores.get(bucket.id)
        if store is not None:
            return store
        # One opener per bucket: opening a scoped store asks the provider for credentials,
        # and a thousand concurrent first requests (a recursive copy) must not each do it.
        opening = self._opening.setdefault(bucket.id, asyncio.Lock())
        async with opening:
            store = self._stores.get(bucket.id)
            if store is not None:
                return store
            if bucket.imported:
                admin = external_admin(bucket.provider, record.credentials or {})
                store = await admin.open_bucket(record.provider_bucket, record.credentials)
                async with self._lock:
                    self._external[bucket.id] = admin
            else:
                # The sdk's own requests use credentials for this bucket alone, renewed
                # before they expire, rather than the cluster's.
                admin = await self.admin(bucket.cluster_name)
                store = await admin.open_scoped_bucket(record.provider_bucket)
            async with self._lock:
                self._stores[bucket.id] = store
        return store

    async def forget(self, bucket_id: str) -> None:
        """Close the store of a bucket that was removed."""
        async with self._lock:
            store = self._stores.pop(bucket_id, None)
            admin = self._external.pop(bucket_id, None)
            self._opening.pop(bucket_id, None)
        if store is not None:
            await store.close()
        if admin is not None:
            await admin.close()

    async def close(self) -> None:
        async with self._lock:
            stores = list(self._stores.values())
            admins = list(self._admins.values()) + list(self._external.values())
            self._stores.clear()
            self._admins.clear()
            self._external.clear()
        for store in stores:
            await store.close()
        for admin in admins:
            await admin.close()
