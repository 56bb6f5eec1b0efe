"""The S3 direct client where the network is not plain: proxies, a private CA, IPv6
literals, AWS's China partition, a network that breaks only the direct path, and a server
that says it is busy (sdk/providers/s3/transport.py, client.py, direct.py).

Real parts throughout: SeaweedFS (also over https with a certificate of a private CA), an HTTP
proxy and the fault-injecting TCP proxy of tests/harness/proxies.py.  What the proxies saw
tells which client sent what: botocore's requests carry its User-Agent, the direct
client's none.
"""

from __future__ import annotations

import os
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager

import pytest
from botocore.credentials import ReadOnlyCredentials

from sdk.errors import TransientError
from sdk.providers.s3.client import S3Client
from sdk.providers.s3.direct import S3Direct
from sdk.providers.s3.store import S3Store
from sdk.providers.s3.transport import botocore_verify
from sdk.providers.step_aside import FAILURES
from sdk.retry import FIRST_WAIT
from tests.harness.proxies import FaultProxy, Faults, HttpProxy
from tests.harness.servers import SeaweedServer
from tests.harness.store_fixtures import StoreContext
from tests.harness.tls import TlsSeaweedServer

pytestmark = pytest.mark.asyncio

_PROXY_VARS = ("HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "ALL_PROXY")
_CA_VARS = ("AWS_CA_BUNDLE", "REQUESTS_CA_BUNDLE")


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """No proxy or CA setting of the machine's leaks in; each test sets its own."""
    for name in (*_PROXY_VARS, *_CA_VARS):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)


@pytest.fixture
def http_proxy() -> Iterator[HttpProxy]:
    with HttpProxy() as proxy:
        yield proxy


def by_botocore(head: bytes) -> bool:
    return b"botocore" in head.lower()


@asynccontextmanager
async def opened(name: str, server: SeaweedServer, endpoint: str) -> AsyncIterator[S3Store]:
    store = await S3Store.open(name, server.credentials, endpoint_url=endpoint)
    try:
        yield store
    finally:
        await store.close()


async def round_trip(store: S3Store, key: str = "k") -> None:
    data = os.urandom(70_000)
    etag = await store.put(key, data)
    assert await store.read_range(key, 100, 5000, etag=etag) == data[100:5100]
    assert [info.key async for info in store.list(key)] == [key]


# -- proxies and CA bundles -----------------------------------------------------------------------


@pytest.mark.parametrize("store_kind", ["s3"])
async def test_a_proxy_from_the_environment_leaves_everything_to_botocore(
    store_ctx: StoreContext,
    s3_server: SeaweedServer,
    http_proxy: HttpProxy,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("HTTP_PROXY", http_proxy.url)
    async with opened(store_ctx.bucket_name, s3_server, s3_server.endpoint_url) as store:
        assert store.client.direct is None and store.prepared_requests() is None
        await round_trip(store)
    assert http_proxy.requests, "botocore did not use the proxy"
    assert all(r.split()[1].startswith(s3_server.endpoint_url) for r in http_proxy.requests)

    # NO_PROXY naming the host: botocore goes straight, and so does the direct client.
    seen = len(http_proxy.requests)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    async with opened(store_ctx.bucket_name, s3_server, s3_server.endpoint_url) as store:
        assert store.client.direct is not None
        await round_trip(store)
        assert store.client.direct.requests == 2
    assert len(http_proxy.requests) == seen


@pytest.mark.parametrize("store_kind", ["s3"])
async def test_plain_http_gets_no_tls_settings_unless_a_proxy_applies(
    store_ctx: StoreContext,
    s3_server: SeaweedServer,
    http_proxy: HttpProxy,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    url = s3_server.endpoint_url
    assert url.startswith("http://") and botocore_verify(url) is False
    assert botocore_verify("https://s3.example.com") is None and botocore_verify(None) is None
    async with opened(store_ctx.bucket_name, s3_server, url) as store:
        # Verification off for http: aiobotocore then builds no TLS context for the pool.
        assert store.client.client._endpoint.http_session._verify is False
        await store.client.call("list", "list_objects_v2", Bucket=store_ctx.bucket_name)
        await round_trip(store)

    # A proxy may itself be reached over TLS: botocore keeps its own settings then.
    monkeypatch.setenv("HTTP_PROXY", http_proxy.url.replace("http://", "https://"))
    assert botocore_verify(url) is None
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    assert botocore_verify(url) is False


async def test_https_through_a_proxy_tunnels_and_trusts_the_bundle(
    tls_s3_server: TlsSeaweedServer,
    http_proxy: HttpProxy,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("AWS_CA_BUNDLE", str(tls_s3_server.ca.ca))
    monkeypatch.setenv("HTTPS_PROXY", http_proxy.url)
    async with opened("proxied", tls_s3_server, tls_s3_server.endpoint_url) as store:
        assert store.client.direct is None
        await store.client.call("create bucket", "create_bucket", Bucket="proxied")
        await round_trip(store)
    host = tls_s3_server.endpoint_url.removeprefix("https://")
    assert http_proxy.requests and set(http_proxy.requests) == {f"CONNECT {host}"}


@pytest.mark.parametrize("variable", _CA_VARS)
async def test_the_direct_client_trusts_the_ca_bundle_botocore_trusts(
    tls_s3_server: TlsSeaweedServer, variable: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(variable, str(tls_s3_server.ca.ca))
    name = f"ca-{variable.lower().replace('_', '-')}"
    async with opened(name, tls_s3_server, tls_s3_server.endpoint_url) as store:
        await store.client.call("create bucket", "create_bucket", Bucket=name)
        direct = store.client.direct
        assert direct is not None
        await round_trip(store)
        assert direct.requests == 2, "the direct client did not serve the GET and the PUT"
        prepared = store.prepared_requests()
        assert prepared is not None
        context = prepared.ssl_context()
        assert context is not None and context.get_ca_certs()[0]["subject"] == (
            (("commonName", "blobfs test CA"),),
        )
    # Without the bundle the private CA is trusted by nobody: not by the direct client.
    keys = tls_s3_server.credentials

    async def credentials() -> ReadOnlyCredentials:
        return ReadOnlyCredentials(keys["access_key_id"], keys["secret_access_key"], None)

    stranger = S3Direct(
        tls_s3_server.endpoint_url, "us-east-1", credentials, connect_timeout=5, read_timeout=5
    )
    with pytest.raises(TransientError, match="CERTIFICATE_VERIFY_FAILED"):
        await stranger.get(name, "k", 0, 10, None)
    stranger.close()


# -- endpoints ----------------------------------------------------------------------------------


@pytest.mark.parametrize("store_kind", ["s3"])
async def test_an_ipv6_endpoint_is_named_in_brackets(
    store_ctx: StoreContext, s3_server: SeaweedServer
) -> None:
    assert s3_server.ports is not None
    with FaultProxy(("127.0.0.1", s3_server.ports.s3), host="::1") as proxy:
        assert proxy.url.startswith("http://[::1]:")
        async with opened(store_ctx.bucket_name, s3_server, proxy.url) as store:
            await round_trip(store)
            assert store.client.direct is not None and store.client.direct.requests == 2
    hosts = {
        line.split(b":", 1)[1].strip()
        for head in proxy.heads
        for line in head.split(b"\r\n")
        if line.lower().startswith(b"host:")
    }
    assert hosts == {proxy.address.encode()}, "botocore and the direct client differ"
    assert any(by_botocore(h) for h in proxy.heads)
    assert not all(by_botocore(h) for h in proxy.heads)


@pytest.mark.parametrize(
    "url",
    [
        "https://s3.cn-north-1.amazonaws.com.cn",
        "https://s3.dualstack.cn-northwest-1.amazonaws.com.cn",
        "https://s3.eu-west-1.amazonaws.com",
    ],
)
async def test_aws_endpoints_china_included_take_botocore_virtual_hosts(url: str) -> None:
    assert not S3Direct.supports(url)
    client = S3Client()
    await client.open({"access_key_id": "AKID", "secret_access_key": "s"}, url, "cn-north-1")
    try:
        assert client.direct is None
        assert client.client.meta.config.s3["addressing_style"] == "auto"
    finally:
        await client.close()


# -- a network that breaks only the direct path; a busy server ------------------------------------


def direct_only(head: bytes) -> bool:
    return not by_botocore(head)


@pytest.mark.parametrize("store_kind", ["s3"])
async def test_repeated_connection_failures_step_aside_to_botocore(
    store_ctx: StoreContext, s3_server: SeaweedServer
) -> None:
    assert s3_server.ports is not None
    with FaultProxy(("127.0.0.1", s3_server.ports.s3)) as proxy:
        proxy.set(Faults(drop=1.0, only=direct_only))
        async with opened(store_ctx.bucket_name, s3_server, proxy.url) as store:
            assert store.client.direct is not None
            started = time.monotonic()
            for i in range(6):
                await round_trip(store, f"k{i}")
            elapsed = time.monotonic() - started
            assert store.client.direct.health.steps == 1
            assert not store.client.direct.health.usable
    assert proxy.stats["drop"] == FAILURES, "the direct client kept trying"
    assert elapsed < 5, f"{elapsed:.1f} s: the fallback waited instead of stepping aside"


@pytest.mark.parametrize("store_kind", ["s3"])
async def test_a_busy_reply_is_repeated_through_botocore_after_a_pause(
    store_ctx: StoreContext, s3_server: SeaweedServer
) -> None:
    assert s3_server.ports is not None
    with FaultProxy(("127.0.0.1", s3_server.ports.s3)) as proxy:
        proxy.set(Faults(slowdown=1.0, only=direct_only, most=2))
        async with opened(store_ctx.bucket_name, s3_server, proxy.url) as store:
            started = time.monotonic()
            await round_trip(store)
            elapsed = time.monotonic() - started
            direct = store.client.direct
            assert direct is not None and direct.health.usable, "a 503 is no broken network"
            await round_trip(store, "after")
            assert direct.requests == 4, "the direct client answered 503s and then the rest"
    assert proxy.stats["slowdown"] == 2
    assert elapsed >= 2 * FIRST_WAIT, f"two busy replies, {elapsed:.3f} s: no pause"
    first = next(i for i, h in enumerate(proxy.heads) if direct_only(h))
    again = next(i for i in range(first + 1, len(proxy.heads)) if by_botocore(proxy.heads[i]))
    gap = proxy.head_times[again] - proxy.head_times[first]
    assert gap >= FIRST_WAIT, f"a busy reply was repeated through botocore after {gap:.3f} s"
