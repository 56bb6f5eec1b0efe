"""Fixtures giving one fresh, empty provider bucket per test, on every kind of store.

``store_kind`` runs a test once per provider: the in-memory store, S3 on SeaweedFS and Azure
on Azurite (the real servers come from the session fixtures ``s3_server`` and
``azure_server`` of ``tests.conftest_servers``).  ``store`` is a :class:`BlobStore` on a
bucket with a unique name, emptied and deleted after the test; ``store_ctx`` has the admin,
the bucket name and credentials that the provider refuses, for tests that need them.
"""

from __future__ import annotations

import base64
import uuid
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Any

import pytest
import pytest_asyncio

from sdk.providers.base import BlobStore, ObjectInfo, ProviderAdmin
from sdk.providers.memory import MemoryAdmin

STORE_KINDS = ["memory", "s3", "azure"]

_MEMORY_CREDENTIALS = {"access_key_id": "memory", "secret_access_key": "memory-secret"}


@dataclass
class StoreContext:
    """A fresh provider bucket and what a test may need around it."""

    kind: str
    admin: ProviderAdmin
    bucket_name: str
    store: BlobStore
    #: Credentials for this bucket with a wrong secret; opening with them succeeds, using
    #: the store fails with PermissionDenied.
    wrong_credentials: Mapping[str, str]


@pytest.fixture(params=STORE_KINDS)
def store_kind(request: pytest.FixtureRequest) -> str:
    """Runs a test against the memory store, SeaweedFS (S3) and Azurite (Azure)."""
    return str(request.param)


def _admin(kind: str, request: pytest.FixtureRequest) -> tuple[ProviderAdmin, dict[str, str]]:
    """An admin for ``kind`` and the shape of wrong credentials for it."""
    if kind == "memory":
        wrong = dict(_MEMORY_CREDENTIALS, secret_access_key="wrong")
        return MemoryAdmin(credentials=_MEMORY_CREDENTIALS), wrong
    if kind == "s3":
        from sdk.providers.s3.admin import S3Admin

        server: Any = request.getfixturevalue("s3_server")
        admin = S3Admin(
            endpoint_url=server.endpoint_url,
            region="us-east-1",
            credentials=server.credentials,
        )
        wrong = {
            "access_key_id": server.access_key_id,
            "secret_access_key": server.secret_access_key + "-wrong",
            "endpoint_url": server.endpoint_url,
            "region_name": "us-east-1",
        }
        return admin, wrong
    if kind == "azure":
        from sdk.providers.azure import AzureAdmin

        server = request.getfixturevalue("azure_server")
        azure_admin = AzureAdmin(
            endpoint_url=server.endpoint_url,
            credentials={"account_name": server.account_name, "account_key": server.account_key},
        )
        wrong = {
            "storage_endpoint": server.endpoint_url,
            "account_name": server.account_name,
            "credential": base64.b64encode(b"not the account key" * 3).decode(),
        }
        return azure_admin, wrong
    raise ValueError(f"unknown store kind {kind!r}")


@pytest_asyncio.fixture
async def store_ctx(store_kind: str, request: pytest.FixtureRequest) -> AsyncIterator[StoreContext]:
    """A new bucket (unique name) on ``store_kind``, deleted with its contents afterwards."""
    admin, wrong = _admin(store_kind, request)
    name = f"blobfs-test-{uuid.uuid4().hex[:16]}"
    try:
        await admin.create_bucket(name)
        store = await admin.open_bucket(name)
    except BaseException:
        await admin.close()
        raise
    wrong = dict(wrong, bucket_name=name)
    azure = request.getfixturevalue("azure_server") if store_kind == "azure" else None
    try:
        yield StoreContext(store_kind, admin, name, store, wrong)
    finally:
        try:
            if azure is not None:
                await _delete_container(azure, name)
            else:
                await _empty(store)
                await admin.delete_bucket(name)
        finally:
            await store.close()
            await admin.close()


async def _delete_container(server: Any, name: str) -> None:
    """Delete a container with what it holds, in one request: emptying it first deletes
    blob by blob on Azurite (it refuses batches), 7.8 s for a test's 1,100 blobs."""
    from azure.storage.blob.aio import BlobServiceClient

    async with BlobServiceClient.from_connection_string(server.connection_string) as service:
        await service.delete_container(name)


async def _empty(store: BlobStore) -> None:
    clear = getattr(store, "clear_faults", None)
    if clear is not None:
        clear()  # a memory store a test left offline
    keys = [e.key async for e in store.list() if isinstance(e, ObjectInfo)]
    await store.delete_many(keys)


@pytest_asyncio.fixture
async def store(store_ctx: StoreContext) -> BlobStore:
    """A :class:`BlobStore` on a fresh, empty bucket of ``store_kind``."""
    return store_ctx.store
