"""The trio-side requests (blobfs/bridge/direct.py) where the network is not plain: a
server whose certificate comes from a private CA named by ``AWS_CA_BUNDLE``, a network that
breaks only the trio path, and a server that says it is busy.  Real SeaweedFS (over https
too) and the fault-injecting proxy of tests/harness/proxies.py; the trio path's requests
are told from the loop's by the proxy (botocore's carry its User-Agent, the direct clients'
none; the loop's direct client steps aside in the same network, so it is turned off).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
import trio

from blobfs.bridge.loop import AsyncioThread, asyncio_loop
from blobfs.bridge.store import TrioStore
from sdk.providers.base import ObjectInfo
from sdk.providers.s3.store import S3Store
from sdk.providers.step_aside import FAILURES
from sdk.retry import FIRST_WAIT
from tests.harness.proxies import FaultProxy, Faults
from tests.harness.servers import SeaweedServer
from tests.harness.tls import TlsSeaweedServer

pytestmark = pytest.mark.trio


@asynccontextmanager
async def trio_store(
    server: SeaweedServer, endpoint: str, bucket: str
) -> AsyncIterator[tuple[AsyncioThread, S3Store, TrioStore]]:
    async with asyncio_loop() as aio:
        store = await aio.run(S3Store.open, bucket, server.credentials, endpoint_url=endpoint)
        tstore = TrioStore(store, aio)
        try:
            yield aio, store, tstore
        finally:
            with trio.CancelScope(shield=True):
                await tstore.close()


async def test_the_trio_path_trusts_the_ca_bundle(
    tls_s3_server: TlsSeaweedServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_CA_BUNDLE", str(tls_s3_server.ca.ca))
    async with trio_store(tls_s3_server, tls_s3_server.endpoint_url, "trio-tls") as (aio, s, t):
        await aio.run(s.client.call, "create", "create_bucket", Bucket="trio-tls")
        assert t.trio_direct is not None
        data = os.urandom(10_000)
        etag = await t.put("k", data)
        assert bytes(await t.read_view("k", 10, 5000, etag=etag)) == data[10:5010]
        assert t.trio_direct.client.requests == 2, "the trio path did not serve both"


def trio_path(head: bytes) -> bool:
    return b"botocore" not in head.lower()


@asynccontextmanager
async def faulty(s3_server: SeaweedServer, faults: Faults) -> AsyncIterator[tuple[FaultProxy, str]]:
    """A fault proxy in front of ``s3_server`` applying ``faults``, and a new bucket."""
    assert s3_server.ports is not None
    name = f"trio-net-{uuid.uuid4().hex[:8]}"
    with FaultProxy(("127.0.0.1", s3_server.ports.s3)) as proxy:
        async with trio_store(s3_server, s3_server.endpoint_url, name) as (aio, s, _):
            await aio.run(s.client.call, "create", "create_bucket", Bucket=name)
            proxy.set(faults)
            try:
                yield proxy, name
            finally:
                with trio.CancelScope(shield=True):
                    keys = [e.key async for e in _listing(aio, s)]
                    await aio.run(s.delete_many, keys)
                    await aio.run(s.client.call, "delete", "delete_bucket", Bucket=name)


async def _listing(aio: AsyncioThread, store: S3Store) -> AsyncIterator[ObjectInfo]:
    async def collect() -> list[ObjectInfo]:
        return [e async for e in store.list() if isinstance(e, ObjectInfo)]

    for entry in await aio.run(collect):
        yield entry


async def test_repeated_connection_failures_set_the_trio_path_aside(
    s3_server: SeaweedServer,
) -> None:
    async with faulty(s3_server, Faults(drop=1.0, only=trio_path)) as (proxy, name):
        async with trio_store(s3_server, proxy.url, name) as (_, store, t):
            store.client.direct = None  # the loop's direct client: botocore is the fallback
            assert t.trio_direct is not None
            for i in range(2 * FAILURES):
                data = os.urandom(1000 + i)
                etag = await t.put(f"k{i}", data)
                assert bytes(await t.read_view(f"k{i}", 0, len(data), etag=etag)) == data
            assert t.trio_direct.health.steps == 1 and not t.trio_direct.health.usable
    assert proxy.stats["drop"] == FAILURES, "the trio path kept trying"


async def test_a_busy_reply_pauses_before_the_loop_repeats_it(s3_server: SeaweedServer) -> None:
    async with faulty(s3_server, Faults(slowdown=1.0, only=trio_path, most=1)) as (proxy, name):
        async with trio_store(s3_server, proxy.url, name) as (_, store, t):
            store.client.direct = None
            assert t.trio_direct is not None
            started = trio.current_time()
            assert await t.put("busy", b"x") is not None
            assert trio.current_time() - started >= FIRST_WAIT
            assert t.trio_direct.health.usable, "a 503 is no broken network"
            await t.put("then", b"y")
            assert t.trio_direct.client.requests == 2
    assert proxy.stats["slowdown"] == 1
