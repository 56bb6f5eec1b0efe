"""The S3 fast ranged-GET path (sdk/providers/s3_fastget.py).

Its wire handling is checked against a small scripted HTTP server on loopback (truncated
bodies, chunked replies, error statuses, stalls, keep-alive), which no real server can be
made to produce on demand; its use by :class:`~sdk.providers.s3.S3Store` is checked on the
real SeaweedFS (keys that need quoting, preconditions, retries).
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import pytest
from botocore.credentials import ReadOnlyCredentials

from sdk.errors import PreconditionFailed, ResourceNotFound, TransientError
from sdk.providers.base import BlobStore
from sdk.providers.s3_fastget import RangeGetter

pytestmark = pytest.mark.asyncio

Handler = Callable[[bytes, asyncio.StreamWriter], Awaitable[None]]


async def _creds() -> ReadOnlyCredentials:
    return ReadOnlyCredentials("AKID", "secret", None)


@asynccontextmanager
async def scripted(handler: Handler) -> AsyncIterator[tuple[str, list[int]]]:
    """A loopback HTTP server calling ``handler(request_head, writer)`` per request; yields
    its URL and a list that counts connections."""
    connections: list[int] = []

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connections.append(1)
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                await handler(head, writer)
                if writer.is_closing():
                    return
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}", connections
    finally:
        server.close()
        await server.wait_closed()


def getter(url: str, read_timeout: float = 5.0) -> RangeGetter:
    return RangeGetter(url, "us-east-1", _creds, connect_timeout=2.0, read_timeout=read_timeout)


BODY = os.urandom(300_000)


async def send_body(head: bytes, writer: asyncio.StreamWriter) -> None:
    """A 206 with the bytes the Range asks for, written in small pieces."""
    spec = next(
        line.split(b"=", 1)[1] for line in head.split(b"\r\n") if line.lower().startswith(b"range")
    )
    first, last = (int(x) for x in spec.split(b"-"))
    part = BODY[first : last + 1]
    writer.write(b"HTTP/1.1 206 Partial Content\r\nContent-Length: %d\r\n\r\n" % len(part))
    for i in range(0, len(part), 7000):
        writer.write(part[i : i + 7000])
        await writer.drain()


async def test_body_in_pieces_and_keep_alive() -> None:
    async with scripted(send_body) as (url, connections):
        g = getter(url)
        first = await g.get("b", "k", 10, 200_000, None)
        second = await g.get("b", "k", 5, 7, None)
        g.close()
    assert first.status == 206 and first.body == BODY[10:200_010]
    assert second.body == BODY[5:12]
    assert len(connections) == 1, "a complete response leaves the connection reusable"


async def test_request_is_signed_and_quoted() -> None:
    seen: list[bytes] = []

    async def record(head: bytes, writer: asyncio.StreamWriter) -> None:
        seen.append(head)
        await send_body(head, writer)

    async with scripted(record) as (url, _):
        g = getter(url)
        await g.get("b", "dir/a b+c%é.txt", 0, 10, "abc")
        g.close()
    lines = seen[0].split(b"\r\n")
    assert lines[0] == b"GET /b/dir/a%20b%2Bc%25%C3%A9.txt HTTP/1.1"
    headers = {k.lower(): v for k, _, v in (x.partition(b": ") for x in lines[1:] if x)}
    assert headers[b"authorization"].startswith(b"AWS4-HMAC-SHA256 Credential=AKID/")
    assert headers[b"if-match"] == b'"abc"'
    assert headers[b"range"] == b"bytes=0-9"


async def test_truncated_body_is_transient() -> None:
    async def cut(head: bytes, writer: asyncio.StreamWriter) -> None:
        writer.write(b"HTTP/1.1 206 Partial Content\r\nContent-Length: 1000\r\n\r\n" + b"x" * 10)
        await writer.drain()
        writer.close()

    async with scripted(cut) as (url, _):
        with pytest.raises(TransientError, match="mid-response"):
            await getter(url).get("b", "k", 0, 1000, None)


@pytest.mark.parametrize(
    "reply",
    [
        b"HTTP/1.1 404 Not Found\r\nContent-Length: 5\r\n\r\nnope!",
        b"HTTP/1.1 412 Precondition Failed\r\nContent-Length: 0\r\n\r\n",
        b"HTTP/1.1 206 Partial Content\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
    ],
    ids=["404", "412", "chunked"],
)
async def test_unexpected_replies_are_handed_back(reply: bytes) -> None:
    async def answer(head: bytes, writer: asyncio.StreamWriter) -> None:
        writer.write(reply)
        await writer.drain()

    async with scripted(answer) as (url, connections):
        g = getter(url)
        first = await g.get("b", "k", 0, 3, None)
        await g.get("b", "k", 0, 3, None)
        g.close()
    assert first.body is None and first.status == int(reply.split()[1])
    assert len(connections) == 2, "a connection left mid-reply is never reused"


async def test_stalled_server_times_out() -> None:
    async def stall(head: bytes, writer: asyncio.StreamWriter) -> None:
        writer.write(b"HTTP/1.1 206 Partial Content\r\nContent-Length: 100\r\n\r\nabc")
        await writer.drain()
        await asyncio.sleep(5)

    async with scripted(stall) as (url, _):
        with pytest.raises(TransientError, match="no data"):
            await getter(url, read_timeout=0.3).get("b", "k", 0, 100, None)


async def test_cancelled_get_drops_its_connection() -> None:
    async def slow(head: bytes, writer: asyncio.StreamWriter) -> None:
        await asyncio.sleep(0.5)
        await send_body(head, writer)

    async with scripted(slow) as (url, connections):
        g = getter(url)
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.1):
                await g.get("b", "k", 0, 10, None)
        assert (await g.get("b", "k", 0, 10, None)).body == BODY[:10]
        g.close()
    assert len(connections) == 2


async def test_refused_connection_is_transient() -> None:
    async with scripted(send_body) as (url, _):
        pass  # closed: nothing listens on the port any more
    with pytest.raises(TransientError, match="cannot connect"):
        await getter(url).get("b", "k", 0, 10, None)


async def test_supports_only_path_style_endpoints() -> None:
    assert RangeGetter.supports("http://127.0.0.1:8333")
    assert RangeGetter.supports("https://minio.example.org")
    assert not RangeGetter.supports("https://s3.eu-west-1.amazonaws.com")
    assert not RangeGetter.supports(None)


# -- through S3Store on the real SeaweedFS --------------------------------------------------------


@pytest.mark.parametrize("store_kind", ["s3"])
async def test_store_reads_through_the_fast_path(store: BlobStore) -> None:
    from sdk.providers.s3 import S3Store

    assert isinstance(store, S3Store)
    fast = store.client.range_getter
    assert fast is not None
    names = ["plain", "dir/with space+plus%percent", "unicodé/ключ", "a//double"]
    data = os.urandom(70_000)
    for name in names:
        etag = await store.put(name, data)
        before = fast.requests
        assert await store.read_range(name, 1000, 5000, etag=etag) == data[1000:6000]
        assert fast.requests == before + 1, f"{name!r} did not take the fast path"
    with pytest.raises(ResourceNotFound):
        await store.read_range("missing", 0, 10)
    with pytest.raises(PreconditionFailed):
        await store.read_range("plain", 0, 10, etag="0" * 32)
    assert await store.read_range("plain", len(data) + 10, 10) == b""
    assert await store.read_range("plain", len(data) - 3, 10) == data[-3:]


@pytest.mark.parametrize("store_kind", ["s3"])
async def test_store_retries_a_broken_fast_get(
    store: BlobStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    from sdk.providers.s3 import S3Store

    assert isinstance(store, S3Store) and store.client.range_getter is not None
    data = os.urandom(100_000)
    await store.put("r", data)
    real = RangeGetter.get
    calls = 0

    async def flaky(self: RangeGetter, *args: Any) -> Any:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise TransientError("connection closed mid-response")
        return await real(self, *args)

    monkeypatch.setattr(RangeGetter, "get", flaky)
    assert await store.read_range("r", 10, 50_000) == data[10:50_010]
    assert calls == 2
