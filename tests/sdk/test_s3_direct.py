"""The direct S3 client (sdk/providers/s3/direct.py): ranged GETs and PUTs.

Its wire handling is checked against a small scripted HTTP server on loopback (truncated
bodies, chunked replies, error statuses, stalls, dropped connections, slow readers,
keep-alive), which no real server can be made to produce on demand; its use by
:class:`~sdk.providers.s3.store.S3Store` is checked on the real SeaweedFS (keys that need quoting,
preconditions, metadata, multipart uploads, retries, botocore fallback).
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import pytest
from botocore.credentials import ReadOnlyCredentials

from sdk.errors import (
    InvalidRequest,
    PermissionDenied,
    PreconditionFailed,
    ResourceNotFound,
    TransientError,
)
from sdk.providers.base import BlobStore
from sdk.providers.s3.direct import S3Direct
from sdk.providers.s3.store import S3Store
from sdk.providers.s3.upload import S3Upload
from tests.harness.store_fixtures import StoreContext

pytestmark = pytest.mark.asyncio

#: Called with the request head, the stream to read its body from and the reply stream.
Handler = Callable[[bytes, asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


async def _creds() -> ReadOnlyCredentials:
    return ReadOnlyCredentials("AKID", "secret", None)


@asynccontextmanager
async def scripted(
    handler: Handler, *, receive_buffer: int | None = None
) -> AsyncIterator[tuple[str, list[int]]]:
    """A loopback HTTP server calling ``handler(request_head, reader, writer)`` per request
    (the handler reads the body, if it wants it); yields its URL and a list that counts
    connections.  ``receive_buffer`` fixes its sockets' kernel receive buffer (else Linux
    grows it up to tens of MiB, out of the client's sight)."""
    connections: list[int] = []

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connections.append(1)
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                await handler(head, reader, writer)
                if writer.is_closing():
                    return
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    listener = socket.socket()
    if receive_buffer is not None:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
    listener.bind(("127.0.0.1", 0))
    server = await asyncio.start_server(serve, sock=listener)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}", connections
    finally:
        server.close()
        await server.wait_closed()


def direct(url: str, read_timeout: float = 5.0) -> S3Direct:
    return S3Direct(url, "us-east-1", _creds, connect_timeout=2.0, read_timeout=read_timeout)


BODY = os.urandom(300_000)


async def send_body(
    head: bytes, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
) -> None:
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
        g = direct(url)
        first = await g.get("b", "k", 10, 200_000, None)
        second = await g.get("b", "k", 5, 7, None)
        g.close()
    assert first.body is not None and second.body is not None
    assert first.status == 206 and bytes(first.body) == BODY[10:200_010]
    assert bytes(second.body) == BODY[5:12]
    assert first.body.readonly, "a body is handed out as a read-only view"
    assert len(connections) == 1, "a complete response leaves the connection reusable"


async def test_request_is_signed_and_quoted() -> None:
    seen: list[bytes] = []

    async def record(
        head: bytes, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        seen.append(head)
        await send_body(head, reader, writer)

    async with scripted(record) as (url, _):
        g = direct(url)
        await g.get("b", "dir/a b+c%é.txt", 0, 10, "abc")
        g.close()
    lines = seen[0].split(b"\r\n")
    assert lines[0] == b"GET /b/dir/a%20b%2Bc%25%C3%A9.txt HTTP/1.1"
    headers = {k.lower(): v for k, _, v in (x.partition(b": ") for x in lines[1:] if x)}
    assert headers[b"authorization"].startswith(b"AWS4-HMAC-SHA256 Credential=AKID/")
    assert headers[b"if-match"] == b'"abc"'
    assert headers[b"range"] == b"bytes=0-9"


async def test_truncated_body_is_transient() -> None:
    async def cut(head: bytes, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"HTTP/1.1 206 Partial Content\r\nContent-Length: 1000\r\n\r\n" + b"x" * 10)
        await writer.drain()
        writer.close()

    async with scripted(cut) as (url, _):
        with pytest.raises(TransientError, match="mid-response"):
            await direct(url).get("b", "k", 0, 1000, None)


@pytest.mark.parametrize(
    "reply",
    [
        b"HTTP/1.1 404 Not Found\r\nContent-Length: 5\r\n\r\nnope!",
        b"HTTP/1.1 412 Precondition Failed\r\nContent-Length: 0\r\n\r\n",
        b"HTTP/1.1 206 Partial Content\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
        # A length far beyond the range asked for: no buffer is sized by that claim.
        b"HTTP/1.1 206 Partial Content\r\nContent-Length: 4611686018427387904\r\n\r\nabc",
        b"HTTP/1.1 206 Partial Content\r\nContent-Length: 4\r\n\r\nabcd",
        b"HTTP/1.1 206 Partial Content\r\nContent-Length: -3\r\n\r\nabc",
    ],
    ids=["404", "412", "chunked", "huge-length", "longer-than-asked", "negative-length"],
)
async def test_unexpected_replies_are_handed_back(reply: bytes) -> None:
    async def answer(
        head: bytes, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        writer.write(reply)
        await writer.drain()

    async with scripted(answer) as (url, connections):
        g = direct(url)
        first = await g.get("b", "k", 0, 3, None)
        await g.get("b", "k", 0, 3, None)
        g.close()
    assert first.body is None and first.status == int(reply.split()[1])
    assert len(connections) == 2, "a connection left mid-reply is never reused"


async def test_stalled_server_times_out() -> None:
    async def stall(
        head: bytes, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        writer.write(b"HTTP/1.1 206 Partial Content\r\nContent-Length: 100\r\n\r\nabc")
        await writer.drain()
        await asyncio.sleep(5)

    async with scripted(stall) as (url, _):
        with pytest.raises(TransientError, match="no data"):
            await direct(url, read_timeout=0.3).get("b", "k", 0, 100, None)


async def test_cancelled_get_drops_its_connection() -> None:
    async def slow(head: bytes, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await asyncio.sleep(0.5)
        await send_body(head, reader, writer)

    async with scripted(slow) as (url, connections):
        g = direct(url)
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.1):
                await g.get("b", "k", 0, 10, None)
        body = (await g.get("b", "k", 0, 10, None)).body
        assert body is not None and bytes(body) == BODY[:10]
        g.close()
    assert len(connections) == 2


async def test_refused_connection_is_transient() -> None:
    async with scripted(send_body) as (url, _):
        pass  # closed: nothing listens on the port any more
    with pytest.raises(TransientError, match="cannot connect"):
        await direct(url).get("b", "k", 0, 10, None)


async def test_supports_only_path_style_endpoints() -> None:
    assert S3Direct.supports("http://127.0.0.1:8333")
    assert S3Direct.supports("https://minio.example.org")
    assert not S3Direct.supports("https://s3.eu-west-1.amazonaws.com")
    assert not S3Direct.supports(None)


# -- PUT on the scripted server ------------------------------------------------------------------


def headers_of(head: bytes) -> dict[bytes, bytes]:
    lines = head.rstrip(b"\r\n").split(b"\r\n")[1:]
    return {k.strip().lower(): v.strip() for k, _, v in (x.partition(b":") for x in lines)}


async def read_body(
    head: bytes, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
) -> bytes:
    headers = headers_of(head)
    if headers.get(b"expect", b"").lower() == b"100-continue":
        writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
    return await reader.readexactly(int(headers.get(b"content-length", b"0")))


def etag_reply(body: bytes) -> bytes:
    etag = hashlib.md5(body).hexdigest().encode()
    return b'HTTP/1.1 200 OK\r\nETag: "%s"\r\nContent-Length: 0\r\n\r\n' % etag


async def store_body(
    head: bytes, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
) -> None:
    """A 200 with the body's MD5 as the ETag, as S3 answers a PUT."""
    writer.write(etag_reply(await read_body(head, reader, writer)))
    await writer.drain()


async def test_put_sends_head_and_body_signed_and_keeps_alive() -> None:
    seen: list[tuple[bytes, bytes]] = []

    async def record(
        head: bytes, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        body = await read_body(head, reader, writer)
        seen.append((head, body))
        writer.write(etag_reply(body))

    small, large = b"hello", os.urandom(3 * 1024 * 1024 + 5)
    async with scripted(record) as (url, connections):
        d = direct(url)
        first = await d.put(
            "b",
            "dir/a b.txt",
            small,
            headers={"Content-Type": "text/plain", "x-amz-meta-mode": "420"},
        )
        second = await d.put("b", "k", large, query=(("uploadId", "u/1+2"), ("partNumber", "3")))
        empty = await d.put("b", "e", b"")
        d.close()
    assert len(connections) == 1, "complete exchanges leave the connection reusable"
    for response, body in zip((first, second, empty), (small, large, b""), strict=True):
        assert response.status == 200
        assert response.headers["etag"] == f'"{hashlib.md5(body).hexdigest()}"'
    assert [body for _, body in seen] == [small, large, b""]
    lines = seen[0][0].split(b"\r\n")
    assert lines[0] == b"PUT /b/dir/a%20b.txt HTTP/1.1"
    assert seen[1][0].split(b"\r\n")[0] == b"PUT /b/k?partNumber=3&uploadId=u%2F1%2B2 HTTP/1.1"
    for head, body in seen:
        headers = headers_of(head)
        # The payload is signed as botocore signs it: its SHA-256 in the signed headers.
        assert headers[b"x-amz-content-sha256"] == hashlib.sha256(body).hexdigest().encode()
        assert headers[b"content-length"] == str(len(body)).encode()
        assert b"x-amz-content-sha256" in headers[b"authorization"]
    headers = headers_of(seen[0][0])
    assert (headers[b"content-type"], headers[b"x-amz-meta-mode"]) == (b"text/plain", b"420")
    assert b"content-type;host;x-amz-content-sha256" in headers[b"authorization"]


async def test_put_error_reply_is_handed_back() -> None:
    async def refuse(
        head: bytes, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        await read_body(head, reader, writer)
        writer.write(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 7\r\n\r\ndenied!")

    async with scripted(refuse) as (url, connections):
        d = direct(url)
        first = await d.put("b", "k", b"data")
        await d.put("b", "k", b"data")
        d.close()
    assert (first.status, first.body) == (403, None)
    assert len(connections) == 2, "a connection left mid-reply is never reused"


async def test_put_early_reply_stops_the_body() -> None:
    """A server that answers before reading the body (an error) and stops reading: the
    client stops sending, hands the reply back and drops the connection, rather than
    waiting for a drain that never comes."""
    release = asyncio.Event()

    async def refuse_at_once(
        head: bytes, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        writer.write(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n")
        await writer.drain()
        await release.wait()
        writer.close()

    async with scripted(refuse_at_once) as (url, _):
        d = direct(url, read_timeout=2.0)
        try:
            # Far more than the socket buffers hold: the sender is stuck until the reply.
            response = await d.put("b", "k", bytes(64 * 1024 * 1024))
        finally:
            release.set()
        d.close()
    assert response.status == 403


async def test_put_dropped_mid_body_is_transient() -> None:
    async def drop(head: bytes, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readexactly(1000)
        writer.close()

    async with scripted(drop) as (url, _):
        with pytest.raises(TransientError, match="connection closed"):
            await direct(url).put("b", "k", os.urandom(8 * 1024 * 1024))


async def test_put_without_reply_times_out() -> None:
    release = asyncio.Event()

    async def silent(
        head: bytes, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        await read_body(head, reader, writer)
        await release.wait()

    async with scripted(silent) as (url, _):
        try:
            with pytest.raises(TransientError, match="no data"):
                await direct(url, read_timeout=0.3).put("b", "k", b"x" * 1000)
        finally:
            release.set()


async def test_put_to_a_slow_reader_is_no_timeout() -> None:
    """Sending counts as activity, the tail left in the kernel's send buffer included: a
    body that takes several read timeouts to go out at a steady pace succeeds (the server
    takes 16 MiB at about 6 MiB/s; the timeout is 0.4 s, less than the 4 MiB send buffer
    takes to drain)."""

    async def slow_reader(
        head: bytes, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        length = int(headers_of(head)[b"content-length"])
        body = bytearray()
        while len(body) < length:
            body += await reader.readexactly(min(64 * 1024, length - len(body)))
            await asyncio.sleep(0.01)
        writer.write(etag_reply(bytes(body)))

    data = os.urandom(16 * 1024 * 1024)
    async with scripted(slow_reader, receive_buffer=64 * 1024) as (url, _):
        d = direct(url, read_timeout=0.4)
        response = await d.put("b", "k", data)
        d.close()
    assert response.headers["etag"] == f'"{hashlib.md5(data).hexdigest()}"'


# -- S3Store on the scripted server: retries and the botocore fallback ---------------------------


@asynccontextmanager
async def scripted_store(handler: Handler) -> AsyncIterator[tuple[S3Store, list[bytes]]]:
    """An :class:`S3Store` on a scripted server; yields it and the heads it received."""
    heads: list[bytes] = []

    async def recording(
        head: bytes, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        heads.append(head)
        await handler(head, reader, writer)

    async with scripted(recording) as (url, _):
        store = await S3Store.open(
            "b", {"access_key_id": "AKID", "secret_access_key": "secret"}, endpoint_url=url
        )
        try:
            yield store, heads
        finally:
            await store.close()


def by_botocore(head: bytes) -> bool:
    return b"botocore" in headers_of(head).get(b"user-agent", b"").lower()


@pytest.mark.parametrize(
    ("code", "status", "error"),
    [("AccessDenied", 403, PermissionDenied), ("NoSuchUpload", 404, ResourceNotFound)],
)
async def test_store_error_reply_is_repeated_through_botocore(
    code: str, status: int, error: type[Exception]
) -> None:
    async def refuse(
        head: bytes, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        await read_body(head, reader, writer)
        xml = f"<Error><Code>{code}</Code><Message>scripted</Message></Error>".encode()
        writer.write(
            b"HTTP/1.1 %d Nope\r\nContent-Type: application/xml\r\nContent-Length: %d\r\n\r\n%s"
            % (status, len(xml), xml)
        )

    async with scripted_store(refuse) as (store, heads):
        with pytest.raises(error, match="scripted"):
            await store.put("k", b"data", metadata={"mode": "420"})
        assert [by_botocore(h) for h in heads] == [False, True]
        upload = S3Upload(store, "k", "some-upload")
        with pytest.raises(error, match="scripted"):
            await upload.upload_part(1, b"part")
        assert [by_botocore(h) for h in heads[2:]] == [False, True]


async def test_store_repeats_a_dropped_put_through_botocore() -> None:
    attempts = 0

    async def drop_first(
        head: bytes, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        nonlocal attempts
        attempts += 1
        if attempts == 1:
            await reader.readexactly(100)
            writer.close()
            return
        await store_body(head, reader, writer)

    data = os.urandom(1024 * 1024)
    async with scripted_store(drop_first) as (store, heads):
        assert await store.put("k", data) == hashlib.md5(data).hexdigest()
        assert store.client.direct is not None and store.client.direct.requests == 0
        assert store.client.direct.health.usable, "one failure does not set the client aside"
    assert [by_botocore(h) for h in heads] == [False, True]


async def test_store_takes_botocore_for_a_reply_without_etag() -> None:
    async def no_etag(
        head: bytes, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        body = await read_body(head, reader, writer)
        if by_botocore(head):
            writer.write(etag_reply(body))
        else:
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")

    async with scripted_store(no_etag) as (store, heads):
        assert await store.put("k", b"abc") == hashlib.md5(b"abc").hexdigest()
    assert [by_botocore(h) for h in heads] == [False, True]


async def read_all(store: BlobStore, key: str) -> bytes:
    async with store.read(key) as chunks:
        return b"".join([chunk async for chunk in chunks])


# -- through S3Store on the real SeaweedFS --------------------------------------------------------


@pytest.mark.parametrize("store_kind", ["s3"])
async def test_store_reads_through_the_fast_path(store: BlobStore) -> None:
    assert isinstance(store, S3Store)
    fast = store.client.direct
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
async def test_store_repeats_a_broken_fast_get_through_botocore(
    store: BlobStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert isinstance(store, S3Store) and store.client.direct is not None
    data = os.urandom(100_000)
    await store.put("r", data)
    real = S3Direct.get
    calls = 0

    async def flaky(self: S3Direct, *args: Any) -> Any:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise TransientError("connection closed mid-response")
        return await real(self, *args)

    monkeypatch.setattr(S3Direct, "get", flaky)
    assert await store.read_range("r", 10, 50_000) == data[10:50_010]
    assert calls == 1, "the direct client is not asked twice"


@pytest.mark.parametrize("store_kind", ["s3"])
async def test_store_puts_through_the_direct_path(store: BlobStore) -> None:
    assert isinstance(store, S3Store) and store.client.direct is not None
    fast = store.client.direct
    data = os.urandom(70_000)
    for name in ["plain", "dir/with space+plus%percent", "unicodé/ключ", "empty"]:
        body = b"" if name == "empty" else data
        before = fast.requests
        etag = await store.put(
            name, body, metadata={"Mode": "33188", "mtime": "1700000000.5"}, content_type="text/csv"
        )
        assert fast.requests == before + 1, f"{name!r} did not take the direct path"
        assert etag == hashlib.md5(body).hexdigest()
        info = await store.head(name)
        assert (info.size, info.etag, info.content_type) == (len(body), etag, "text/csv")
        assert info.metadata == {"mode": "33188", "mtime": "1700000000.5"}
        assert await read_all(store, name) == body
    await store.put("plain", b"replaced")
    info = await store.head("plain")
    assert (info.content_type, info.metadata) == ("application/octet-stream", {})


@pytest.mark.parametrize("store_kind", ["s3"])
async def test_store_metadata_that_is_not_plain_ascii_takes_botocore(store: BlobStore) -> None:
    """Values the direct path would have to encode go through botocore, which decides as it
    always has: a tab is sent, non-ASCII is refused before anything is stored."""
    assert isinstance(store, S3Store) and store.client.direct is not None
    before = store.client.direct.requests
    await store.put("tab", b"x", metadata={"note": "a\tb"})
    assert (await store.head("tab")).metadata == {"note": "a\tb"}
    with pytest.raises(InvalidRequest, match="ASCII"):
        await store.put("accent", b"x", metadata={"name": "café"})
    with pytest.raises(ResourceNotFound):
        await store.head("accent")
    assert store.client.direct.requests == before


@pytest.mark.parametrize("store_kind", ["s3"])
async def test_store_multipart_parts_go_direct(store: BlobStore) -> None:
    assert isinstance(store, S3Store) and store.client.direct is not None
    first, last = os.urandom(5 * 1024 * 1024 + 7), os.urandom(1000)
    upload = await store.start_multipart("mp", metadata={"mode": "420"}, content_type="text/x")
    before = store.client.direct.requests
    await upload.upload_part(2, last)
    await upload.upload_part(1, first)
    assert store.client.direct.requests == before + 2
    etag = await upload.complete()
    md5s = [hashlib.md5(p).digest() for p in (first, last)]
    assert etag == f"{hashlib.md5(b''.join(md5s)).hexdigest()}-2"
    info = await store.head("mp")
    assert (info.size, info.etag, info.metadata) == (len(first) + 1000, etag, {"mode": "420"})
    assert info.content_type == "text/x"
    assert await read_all(store, "mp") == first + last


@pytest.mark.parametrize("store_kind", ["s3"])
async def test_store_direct_errors_translate(store_ctx: StoreContext) -> None:
    """Refusals of direct PUTs come back as the same sdk errors as through botocore."""
    store = store_ctx.store
    assert isinstance(store, S3Store)
    upload = await store.start_multipart("mp")
    await upload.abort()
    with pytest.raises(ResourceNotFound):
        await upload.upload_part(1, b"part")
    bad = await store_ctx.admin.open_bucket(store_ctx.bucket_name, store_ctx.wrong_credentials)
    try:
        assert isinstance(bad, S3Store) and bad.client.direct is not None
        with pytest.raises(PermissionDenied):
            await bad.put("k", b"x" * 100_000)
        assert bad.client.direct.requests == 1
    finally:
        await bad.close()
    with pytest.raises(ResourceNotFound):
        await store.head("k")


@pytest.mark.parametrize("store_kind", ["s3"])
async def test_store_empty_key_is_refused_before_any_request(store: BlobStore) -> None:
    """``/bucket/`` names the bucket: a direct GET of it would list the bucket and a PUT
    create it.  An empty key goes to botocore, which refuses it."""
    assert isinstance(store, S3Store) and store.client.direct is not None
    with pytest.raises(InvalidRequest):
        await store.put("", b"x")
    with pytest.raises(InvalidRequest):
        await store.read_range("", 0, 10)
    assert store.client.direct.requests == 0
    with pytest.raises(ValueError, match="needs a key"):
        await store.client.direct.get(store.bucket_name, "", 0, 10, None)
