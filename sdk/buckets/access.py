"""Bucket credentials and public access: the logic behind ``Buckets.request_tmp_credentials``,
``set_public_access`` and ``persistent_credentials_*``.

What is handed out is always narrower than what blobfs holds: credentials for one bucket (or
the listed buckets), read-only when asked, issued by the provider's own mechanism so that the
server refuses anything else (see :mod:`sdk.providers.s3.access` and
:mod:`sdk.providers.azure.access`).  The cluster's administrative credentials never leave the
process; a provider that cannot scope credentials fails with
:class:`~sdk.errors.InvalidRequest`.

Persistent credentials are recorded in the registry (mode 0600), secrets included, since
there is no server to ask for them again; the provider state kept with them (an IAM user
name, a stored access policy id) is what revokes them.

Imported buckets: temporary credentials and public access are attempted with the
credentials the bucket was imported with (the provider decides whether they may); persistent
credentials are refused, since blobfs holds no administrative rights there to create or
revoke them.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import AsyncIterator, Iterable, Mapping
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any, cast

from sdk import logsafe
from sdk.config import Config
from sdk.errors import AlreadyExists, InvalidRequest, ResourceNotFound
from sdk.providers.base import ProviderAdmin
from sdk.registry import BucketRecord, CredentialsRecord, Registry, new_credentials_id, utcnow
from sdk.store_pool import StorePool, external_admin
from sdk.types import Bucket, BucketCredentials, PersistentBucketCredentials
from sdk.uri import BUCKET_NAME_MAX, BUCKET_NAME_MIN, BUCKET_NAME_RE

log = logging.getLogger(__name__)

# Providers' debug logs would otherwise print what this module hands out.
logsafe.install()


def validate_credentials_name(name: str) -> None:
    """Raise :class:`ValueError` unless ``name`` is valid: the rules of bucket names."""
    if not BUCKET_NAME_MIN <= len(name) <= BUCKET_NAME_MAX or not BUCKET_NAME_RE.match(name):
        raise ValueError(
            f"invalid credentials name {name!r}: {BUCKET_NAME_MIN}-{BUCKET_NAME_MAX} "
            "characters, a lower-case letter first, then lower-case letters, digits, '-', '_'"
        )
    if name.startswith("bucket-credentials-"):
        raise ValueError(f"invalid credentials name {name!r}: looks like a credentials id")


class BucketAccess:
    """Credentials and public access of the buckets in one registry."""

    def __init__(self, config: Config, registry: Registry, pool: StorePool) -> None:
        self._config = config
        self._registry = registry
        self._pool = pool

    @asynccontextmanager
    async def _admin(self, record: BucketRecord) -> AsyncIterator[ProviderAdmin]:
        """The cluster's admin, or for an imported bucket one made of its credentials."""
        bucket = record.bucket
        if not bucket.imported:
            yield await self._pool.admin(bucket.cluster_name)
            return
        admin = external_admin(bucket.provider, record.credentials or {})
        try:
            yield admin
        finally:
            await admin.close()

    # -- temporary credentials and public access -----------------------------------------------

    async def request_tmp_credentials(
        self, record: BucketRecord, *, read_only: bool = False
    ) -> BucketCredentials:
        """Credentials for this bucket alone that expire (by default after an hour)."""
        async with self._admin(record) as admin:
            issued = await admin.temporary_credentials(record.provider_bucket, read_only=read_only)
        return BucketCredentials(
            bucket_id=record.bucket.id,
            provider=record.bucket.provider,
            credentials=dict(issued.credentials),
        )

    async def set_public_access(self, record: BucketRecord, public: bool) -> Bucket:
        """Make the bucket readable (and listable) by anyone, or not.  The provider is only
        asked when the recorded setting changes, as in the reference."""
        bucket = record.bucket
        if bucket.public == public:
            return bucket
        async with self._admin(record) as admin:
            await admin.set_public_access(record.provider_bucket, public)
        self._registry.set_public(bucket.id, public)
        return dataclasses.replace(bucket, public=public)

    # -- persistent credentials ----------------------------------------------------------------

    def _to_public(self, record: CredentialsRecord) -> PersistentBucketCredentials:
        per_bucket = _per_bucket(record)
        provider = record.data.get("provider")
        creds = [
            BucketCredentials(
                bucket_id=bucket_id,
                provider=Bucket.Provider(str(provider)),
                credentials=dict(per_bucket[bucket_id]),
            )
            for bucket_id in record.bucket_ids
            if bucket_id in per_bucket
        ]
        return PersistentBucketCredentials(
            id=record.id,
            owner=record.owner,
            cluster_name=record.cluster,
            name=record.name,
            read_only=record.read_only,
            credentials=creds,
        )

    def list(
        self, cluster: str
    ) -> AbstractAsyncContextManager[AsyncIterator[PersistentBucketCredentials]]:
        """The current user's persistent credentials on ``cluster``."""
        owner = self._config.owner
        records = [r for r in self._registry.list_credentials(cluster) if r.owner == owner]

        @asynccontextmanager
        async def cm() -> AsyncIterator[AsyncIterator[PersistentBucketCredentials]]:
            async def gen() -> AsyncIterator[PersistentBucketCredentials]:
                for r in records:
                    yield self._to_public(r)

            yield gen()

        return cm()

    def _record(self, cluster: str, id_or_name: str) -> CredentialsRecord:
        return self._registry.get_credentials(cluster, id_or_name, owner=self._config.owner)

    def get(self, cluster: str, id_or_name: str) -> PersistentBucketCredentials:
        """Persistent credentials by id, or by name for the current user."""
        return self._to_public(self._record(cluster, id_or_name))

    async def create(
        self,
        cluster: str,
        buckets: Iterable[str],
        name: str | None,
        *,
        read_only: bool = False,
    ) -> PersistentBucketCredentials:
        """Create persistent credentials for ``buckets`` (ids or names of the current user's
        buckets on ``cluster``)."""
        owner = self._config.owner
        if name is not None:
            validate_credentials_name(name)
            try:
                existing = self._record(cluster, name)
            except ResourceNotFound:
                pass
            else:
                raise AlreadyExists(
                    f"credentials {name!r} already exist on cluster {cluster!r} ({existing.id})"
                )
        records: dict[str, BucketRecord] = {}
        for text in buckets:
            found = self._registry.get_bucket(cluster, text, owner=owner, org=self._config.org)
            if found.bucket.imported:
                raise InvalidRequest(
                    f"bucket {found.bucket.name or found.bucket.id!r} is imported: blobfs holds "
                    "no administrative rights on it, so it cannot create or revoke persistent "
                    "credentials for it"
                )
            records[found.bucket.id] = found
        if not records:
            raise InvalidRequest("persistent credentials need at least one bucket")
        credentials_id = new_credentials_id()
        admin = await self._pool.admin(cluster)
        grant = await admin.create_persistent_credentials(
            credentials_id, [r.provider_bucket for r in records.values()], read_only=read_only
        )
        provider = next(iter(records.values())).bucket.provider
        data: dict[str, Any] = {
            "provider": provider.value,
            "state": dict(grant.state),
            "buckets": {
                bucket_id: dict(grant.per_bucket[r.provider_bucket])
                for bucket_id, r in records.items()
            },
        }
        record = CredentialsRecord(
            id=credentials_id,
            cluster=cluster,
            owner=owner,
            name=name,
            read_only=read_only,
            bucket_ids=list(records),
            data=data,
            created_at=utcnow(),
        )
        try:
            self._registry.add_credentials(record)
        except BaseException:
            # Unrecorded credentials could never be revoked through blobfs: revoke them now.
            await admin.revoke_persistent_credentials(grant.state)
            raise
        return self._to_public(record)

    async def rm(self, cluster: str, id_or_name: str) -> None:
        """Revoke persistent credentials at the provider, then forget them."""
        record = self._record(cluster, id_or_name)
        admin = await self._pool.admin(cluster)
        await admin.revoke_persistent_credentials(_state(record))
        self._registry.remove_credentials(record.id)

    async def forget_bucket(self, bucket: BucketRecord) -> None:
        """Before a bucket's record goes: revoke persistent credentials that cover only
        this bucket, and take it out of those that cover others too."""
        cluster = bucket.bucket.cluster_name
        bucket_id = bucket.bucket.id
        for record in self._registry.list_credentials(cluster):
            if bucket_id not in record.bucket_ids:
                continue
            admin = await self._pool.admin(cluster)
            remaining = [b for b in record.bucket_ids if b != bucket_id]
            if not remaining:
                await admin.revoke_persistent_credentials(_state(record))
                self._registry.remove_credentials(record.id)
                continue
            state = await admin.detach_persistent_credentials(
                _state(record), bucket.provider_bucket
            )
            per_bucket = dict(_per_bucket(record))
            per_bucket.pop(bucket_id, None)
            data = {**record.data, "state": dict(state), "buckets": per_bucket}
            self._registry.update_credentials(record.id, remaining, data)


def _per_bucket(record: CredentialsRecord) -> Mapping[str, Mapping[str, str]]:
    buckets = record.data.get("buckets")
    return cast("Mapping[str, Mapping[str, str]]", buckets if isinstance(buckets, Mapping) else {})


def _state(record: CredentialsRecord) -> Mapping[str, Any]:
    state = record.data.get("state")
    if not isinstance(state, Mapping):
        raise InvalidRequest(f"credentials {record.id}: no provider state recorded")
    return state
