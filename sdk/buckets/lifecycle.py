"""Creating, importing and removing buckets: the provider bucket and its registry record.

The two change together or not at all: :meth:`BucketLifecycle.create` makes the provider
bucket first and deletes it again if the record cannot be written; :meth:`~BucketLifecycle.rm`
keeps the record when the provider refuses to delete a non-empty bucket.  Only buckets blobfs
created are deleted at the provider; an imported bucket is only forgotten.
"""

from __future__ import annotations

import hashlib
import logging
import re
import secrets
from collections.abc import AsyncIterator, Mapping
from contextlib import AbstractAsyncContextManager, asynccontextmanager

from sdk.buckets.access import BucketAccess
from sdk.config import Config
from sdk.errors import AlreadyExists, NotEmpty, ResourceNotFound
from sdk.registry import BucketRecord, Registry, new_bucket_id, utcnow
from sdk.store_pool import StorePool, external_admin
from sdk.types import Bucket, Provider
from sdk.uri import validate_bucket_name

log = logging.getLogger(__name__)


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


class BucketLifecycle:
    """The buckets of one registry: listed, created, imported and removed."""

    def __init__(
        self, config: Config, registry: Registry, pool: StorePool, access: BucketAccess
    ) -> None:
        self._config = config
        self._registry = registry
        self._pool = pool
        self._access = access

    def list(self, cluster: str) -> AbstractAsyncContextManager[AsyncIterator[Bucket]]:
        """The buckets registered on ``cluster``."""
        records = self._registry.list_buckets(cluster)

        @asynccontextmanager
        async def cm() -> AsyncIterator[AsyncIterator[Bucket]]:
            async def gen() -> AsyncIterator[Bucket]:
                for r in records:
                    yield r.bucket

            yield gen()

        return cm()

    def _check_name_free(self, cluster: str, org: str | None, name: str | None) -> None:
        if name is not None:
            validate_bucket_name(name)
            if self._registry.name_taken(cluster, org, self._config.owner, name):
                raise AlreadyExists(f"bucket {name!r} already exists on cluster {cluster!r}")

    def _new_bucket(
        self, cluster: str, org: str | None, provider: Provider, name: str | None, imported: bool
    ) -> Bucket:
        return Bucket(
            id=new_bucket_id(),
            owner=self._config.owner,
            cluster_name=cluster,
            org_name=org,
            provider=provider,
            created_at=utcnow(),
            imported=imported,
            name=name,
        )

    async def create(self, name: str | None, cluster: str, org_name: str | None) -> Bucket:
        """Create a provider bucket on ``cluster`` and record it."""
        org = org_name or self._config.org
        self._check_name_free(cluster, org, name)
        provider = self._config.cluster(cluster).provider
        bucket = self._new_bucket(cluster, org, provider, name, imported=False)
        provider_name = provider_bucket_name(cluster, org, self._config.owner, name)
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
        name: str | None,
        cluster: str,
        org_name: str | None,
    ) -> Bucket:
        """Record an existing provider bucket once ``credentials`` have listed it."""
        org = org_name or self._config.org
        self._check_name_free(cluster, org, name)
        creds = dict(credentials)
        creds.setdefault("bucket_name", provider_bucket_name)
        admin = external_admin(provider, creds)
        try:
            await admin.check_bucket(provider_bucket_name, creds)
        finally:
            await admin.close()
        bucket = self._new_bucket(cluster, org, provider, name, imported=True)
        self._registry.add_bucket(
            BucketRecord(bucket=bucket, provider_bucket=provider_bucket_name, credentials=creds)
        )
        return bucket

    async def rm(self, record: BucketRecord) -> None:
        """Forget a bucket, deleting the provider bucket and the credentials that cover only
        it when blobfs created it."""
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
