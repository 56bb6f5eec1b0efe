"""Small PUTs and small ranged GETs from trio (blobfs/bridge/direct.py, sending the requests
sdk/providers/s3/prepared.py prepares) and their use by the bridge.

On the real SeaweedFS: bytes, metadata and content type land exactly; ranges read back
exactly (start, middle, end, clamped at the end); refusals (a deleted bucket, a wrong
secret), and reads that are not a plain body (a changed object, a missing key, a range past
the end, an implicit directory) are not handled on trio and
:class:`~blobfs.bridge.store.TrioStore`'s fallback gives the store's own result or error;
GETs and PUTs share connections; the credentials snapshot is kept, renewed after its time
and dropped after a refusal. A trio proxy in front of SeaweedFS closes idle connections as a
server may, and terminates TLS: the test fixture's SeaweedFS speaks plain http only, so
https is checked through that proxy (a self-signed certificate for 127.0.0.1), still ending
on the real server. Stalls and replies no server makes on demand come from small scripted
servers."""

from __future__ import annotations

import datetime as dt
import hashlib
import ipaddress
import os
import ssl
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

import pytest
import trio
import trio.testing
from botocore.credentials import ReadOnlyCredentials
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from blobfs.bridge.direct import SMALL_GET, TrioDirect, TrioHttp
from blobfs.bridge.loop import AsyncioThread, asyncio_loop
from blobfs.bridge.store import TrioStore
from sdk.errors import InvalidRequest, PermissionDenied, ResourceNotFound, TransientError
from sdk.providers.base import BlobStore, ObjectInfo, OffersPreparedRequests
from sdk.providers.http1 import HttpReply
from sdk.providers.memory import MemoryAdmin, MemoryStore
from sdk.providers.s3.admin import S3Admin
from sdk.providers.s3.prepared import S3PreparedRequests
from sdk.providers.s3.store import S3Store
from sdk.providers.s3.wire import HASH_IN_THREAD
from tests.harness.servers import SeaweedServer

pytestmark = pytest.mark.trio

T = TypeVar("T")

METADATA = {"Mode": "33188", "mtime": "1700000000.5"}


def md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


@dataclass
class Bucket:
    """A fresh bucket on SeaweedFS, its store on an asyncio thread and the trio view of it."""

    aio: AsyncioThread
    admin: S3Admin
    name: str
    store: S3Store
    tstore: TrioStore

    async def head(self, key: str) -> ObjectInfo:
        return await self.aio.run(self.store.head, key)

    async def read(self, key: str) -> bytes:
        return await self.tstore.read_all(key)


async def _empty(store: BlobStore) -> None:
    await store.delete_many([e.key async for e in store.list() if isinstance(e, ObjectInfo)])


@asynccontextmanager
async def s3_bucket(server: SeaweedServer) -> AsyncIterator[Bucket]:
    async with asyncio_loop() as aio:
        admin = S3Admin(
            endpoint_url=server.endpoint_url, region="us-east-1", credentials=server.credentials
        )
        name = f"blobfs-test-{uuid.uuid4().hex[:16]}"
        await aio.run(admin.create_bucket, name)
        store = await aio.run(admin.open_bucket, name)
        assert isinstance(store, S3Store)
        tstore = TrioStore(store, aio)
        try:
            yield Bucket(aio, admin, name, store, tstore)
        finally:
            with trio.CancelScope(shield=True):
                await tstore.close_trio_side()
                await aio.run(_empty, store)
                await aio.run(admin.delete_bucket, name)
                await aio.run(store.close)
                await aio.run(admin.close)


def trio_client(tstore: TrioStore) -> TrioHttp:
    """The trio client behind a TrioStore's small PUTs."""
    assert tstore.trio_direct is not None
    client = tstore.trio_direct.client
    assert isinstance(client, TrioHttp)
    return client


async def here(fn: Callable[[], Awaitable[T]]) -> T:
    """Runs a credentials source on this trio thread: the store's loop, for a client made
    by :func:`trio_direct`."""
    return await fn()


def trio_direct(
    url: str,
    bucket: str,
    credentials: Callable[[], Awaitable[ReadOnlyCredentials]],
    *,
    connect_timeout: float,
    read_timeout: float,
    ssl_context: ssl.SSLContext | None = None,
) -> TrioDirect:
    """A trio-side client of ``bucket`` on the endpoint ``url``, with no store behind it."""
    requests = S3PreparedRequests(
        bucket,
        url,
        "us-east-1",
        credentials,
        connect_timeout=connect_timeout,
        read_timeout=read_timeout,
    )
    return TrioDirect(requests, here, ssl_context=ssl_context)


async def put(
    client: TrioDirect, key: str, body: bytes, metadata: Mapping[str, str] | None = None
) -> HttpReply:
    """The reply to the PUT of ``key`` its store would make."""
    request = client.prepared.put_request(key, body, metadata=metadata)
    assert request is not None
    return await client.send(request)


async def get(
    client: TrioDirect, key: str, offset: int, length: int, etag: str | None
) -> HttpReply:
    """The reply to the ranged GET of ``key`` its store would make."""
    request = client.prepared.read_request(key, offset, length, etag=etag)
    assert request is not None
    return await client.send(request)


class Counting:
    """A credentials source that counts its calls; ``secret`` may be changed."""

    def __init__(self, server: SeaweedServer) -> None:
        self.access_key = server.credentials["access_key_id"]
        self.secret = server.credentials["secret_access_key"]
        self.calls = 0

    async def __call__(self) -> ReadOnlyCredentials:
        self.calls += 1
        return ReadOnlyCredentials(self.access_key, self.secret, None)


# -- through TrioStore on the real SeaweedFS ------------------------------------------------------


async def test_small_puts_land_exactly_without_crossing(s3_server: SeaweedServer) -> None:
    async with s3_bucket(s3_server) as b:
        client = trio_client(b.tstore)
        loop_side = b.store.client.direct
        assert loop_side is not None
        data = os.urandom(4096)
        names = ["plain", "dir/with space+plus%percent", "unicodé/ключ", "a//double", "empty"]
        for name in names:
            body = b"" if name == "empty" else data
            before = client.requests
            etag = await b.tstore.put(name, body, metadata=METADATA)
            assert client.requests == before + 1, f"{name!r} did not take the trio path"
            assert etag == md5(body)
            info = await b.head(name)
            assert (info.size, info.etag) == (len(body), etag)
            assert info.content_type == "application/octet-stream"
            assert info.metadata == {"mode": "33188", "mtime": "1700000000.5"}
            assert await b.read(name) == body
        largest = os.urandom(HASH_IN_THREAD - 1)
        assert await b.tstore.put("largest", largest) == md5(largest)
        assert await b.read("largest") == largest
        assert client.requests == len(names) + 1
        assert loop_side.requests == 0, "no PUT was repeated on the loop"
        assert client.connects == 1, "one keep-alive connection served every PUT"
        await b.tstore.put("plain", b"replaced")
        info = await b.head("plain")
        assert (info.size, info.metadata) == (8, {})


async def test_what_the_trio_path_leaves_to_the_loop(s3_server: SeaweedServer) -> None:
    """Bodies too large to hash on the trio thread, and metadata that needs encoding, take
    the store's own PUT, with its outcome (stored, or refused before anything is)."""
    async with s3_bucket(s3_server) as b:
        client = trio_client(b.tstore)
        assert b.tstore.trio_direct is not None
        large = os.urandom(HASH_IN_THREAD)
        assert await b.tstore.trio_direct.put("large", large) is None
        assert await b.tstore.put("large", large) == md5(large)
        assert await b.read("large") == large
        await b.tstore.put("tab", b"x", metadata={"note": "a\tb"})
        assert (await b.head("tab")).metadata == {"note": "a\tb"}
        with pytest.raises(InvalidRequest, match="ASCII"):
            await b.tstore.put("accent", b"x", metadata={"name": "café"})
        with pytest.raises(InvalidRequest):
            await b.tstore.put("", b"x")
        assert client.requests == 0


async def test_deleted_bucket_falls_back_to_not_found(s3_server: SeaweedServer) -> None:
    async with s3_bucket(s3_server) as b:
        other = f"blobfs-test-{uuid.uuid4().hex[:16]}"
        await b.aio.run(b.admin.create_bucket, other)
        store = await b.aio.run(b.admin.open_bucket, other)
        tstore = TrioStore(store, b.aio)
        try:
            assert await tstore.put("k", b"before") == md5(b"before")
            await b.aio.run(store.delete, "k")
            await b.aio.run(b.admin.delete_bucket, other)
            assert tstore.trio_direct is not None
            assert await tstore.trio_direct.put("k", b"after") is None
            with pytest.raises(ResourceNotFound):
                await tstore.put("k", b"after")
        finally:
            await tstore.close()


async def test_wrong_secret_falls_back_to_permission_denied(s3_server: SeaweedServer) -> None:
    async with s3_bucket(s3_server) as b:
        wrong = dict(
            s3_server.credentials,
            secret_access_key=s3_server.credentials["secret_access_key"] + "-wrong",
        )
        store = await b.aio.run(b.admin.open_bucket, b.name, wrong)
        tstore = TrioStore(store, b.aio)
        try:
            assert tstore.trio_direct is not None
            assert await tstore.trio_direct.put("k", b"x") is None
            with pytest.raises(PermissionDenied):
                await tstore.put("k", b"x")
            assert trio_client(tstore).requests == 2
        finally:
            await tstore.close()
        with pytest.raises(ResourceNotFound):
            await b.head("k")


async def test_credentials_snapshot_is_kept_renewed_and_dropped(
    s3_server: SeaweedServer, mock_clock: trio.testing.MockClock
) -> None:
    """The snapshot serves PUTs for a minute (trio's clock here is a fake one the test
    moves), is asked for again after it, and after a refusal at once."""
    source = Counting(s3_server)
    async with s3_bucket(s3_server) as b:
        client = trio_direct(
            s3_server.endpoint_url, b.name, source, connect_timeout=5, read_timeout=30
        )
        try:
            for i in range(3):
                assert (await put(client, f"k{i}", b"x")).status == 200
            assert source.calls == 1
            mock_clock.jump(59)
            assert (await put(client, "k", b"x")).status == 200
            assert source.calls == 1
            mock_clock.jump(2)
            assert (await put(client, "k", b"x")).status == 200
            assert source.calls == 2
            # Renewed (or revoked) credentials: the server refuses the cached ones.
            good, source.secret = source.secret, "outdated"
            mock_clock.jump(61)
            assert (await put(client, "k", b"x")).status == 403
            source.secret = good
            assert (await put(client, "k", b"y")).status == 200
            assert source.calls == 4, "a refusal drops the snapshot"
        finally:
            await client.aclose()
        assert await b.read("k") == b"y"


def counted_crossings(
    run: Callable[[Callable[[], Awaitable[Any]]], Awaitable[Any]],
) -> tuple[list[object], Callable[[Callable[[], Awaitable[Any]]], Awaitable[Any]]]:
    """``run`` (the bridge's crossing to the asyncio loop), and the list of what it ran."""
    crossings: list[object] = []

    async def counting(fn: Callable[[], Awaitable[Any]]) -> Any:
        crossings.append(fn)
        return await run(fn)

    return crossings, counting


async def test_bridge_fetches_credentials_on_the_loop(s3_server: SeaweedServer) -> None:
    """The store's renewing credentials are asked for through the bridge, once per
    snapshot, not once per PUT."""
    async with s3_bucket(s3_server) as b:
        crossings, counting = counted_crossings(b.aio.run)
        requests = b.store.prepared_requests()
        assert requests is not None
        direct = TrioDirect(requests, counting)
        try:
            for i in range(5):
                assert await direct.put(f"k{i}", b"abc") == md5(b"abc")
        finally:
            await direct.aclose()
        assert len(crossings) == 1


async def test_bridge_fetches_credentials_on_the_loop_for_gets_too(
    s3_server: SeaweedServer,
) -> None:
    """GETs and PUTs share the credentials snapshot: one crossing for both."""
    async with s3_bucket(s3_server) as b:
        crossings, counting = counted_crossings(b.aio.run)
        requests = b.store.prepared_requests()
        assert requests is not None
        direct = TrioDirect(requests, counting)
        try:
            assert await direct.put("k", b"abcdef") == md5(b"abcdef")
            for i in range(5):
                view = await direct.read_view("k", i, 2, etag=md5(b"abcdef"))
                assert view is not None and bytes(view) == b"abcdef"[i : i + 2]
        finally:
            await direct.aclose()
        assert len(crossings) == 1


async def test_only_s3_offers_the_trio_path() -> None:
    assert issubclass(S3Store, OffersPreparedRequests)
    assert not issubclass(MemoryStore, OffersPreparedRequests)
    from sdk.providers.azure import AzureStore

    assert not issubclass(AzureStore, OffersPreparedRequests)
    async with asyncio_loop() as aio:
        admin = MemoryAdmin()
        await aio.run(admin.create_bucket, "bucket")
        tstore = TrioStore(await aio.run(admin.open_bucket, "bucket"), aio)
        assert tstore.trio_direct is None
        await tstore.put("k", b"v")
        assert await tstore.read_all("k") == b"v"


# -- small ranged reads through TrioStore on the real SeaweedFS ------------------------------------


async def outcome(read: Awaitable[bytes | memoryview]) -> tuple[str, object]:
    """What a read gives: its bytes, or its error's type and message."""
    try:
        return "bytes", bytes(await read)
    except Exception as e:
        return type(e).__name__, str(e)


async def test_small_reads_land_exactly_without_crossing(s3_server: SeaweedServer) -> None:
    """Ranges at the start, middle and end of an object, and one clamped at the end, are
    read on the trio thread with the bytes (and the clamping) the store's own read gives."""
    async with s3_bucket(s3_server) as b:
        client = trio_client(b.tstore)
        loop_side = b.store.client.direct
        assert loop_side is not None
        data = os.urandom(10_000)
        names = ["plain", "dir/with space+plus%percent", "unicodé/ключ"]
        for name in names:
            await b.aio.run(b.store.put, name, data)
        etag = md5(data)
        ranges = [(0, 100), (0, 10_000), (5000, 1234), (9000, 1000), (9999, 1), (9500, 1000)]
        for name in names:
            for offset, length in ranges:
                expected = data[offset : offset + length]
                for pin in (None, etag):
                    before = client.requests
                    view = await b.tstore.read_view(name, offset, length, etag=pin)
                    assert isinstance(view, memoryview) and view.readonly
                    assert bytes(view) == expected, (name, offset, length, pin)
                    got = await b.tstore.read_range(name, offset, length, etag=pin)
                    assert isinstance(got, bytes) and got == expected
                    assert client.requests == before + 2, f"{name!r} did not take the trio path"
        before = loop_side.requests
        bridged = await b.aio.run(b.store.read_view, "plain", 9500, 1000, etag=etag)
        assert bytes(bridged) == data[9500:] and loop_side.requests == before + 1
        assert client.connects == 1, "one keep-alive connection served every GET"


async def test_what_the_trio_reads_leave_to_the_loop(s3_server: SeaweedServer) -> None:
    """Everything but a plain body -- ranges at or past the end (416), empty, negative or
    large ranges, a changed object (412), a missing key (404), an implicit directory -- is
    answered by the store's own read, with the same bytes or the same error as a read that
    never tried the trio path."""
    async with s3_bucket(s3_server) as b:
        assert b.tstore.trio_direct is not None
        client = trio_client(b.tstore)
        old = os.urandom(5000)
        old_etag = await b.tstore.put("k", old)
        new = os.urandom(SMALL_GET + 10)
        new_etag = await b.tstore.put("k", new)
        await b.tstore.put("implicit/x", b"1")
        await b.tstore.put("explicit/", b"")
        cases: list[tuple[str, int, int, str | None]] = [
            ("k", len(new), 10, None),  # at the end: 416, read as empty
            ("k", len(new) + 100, 10, new_etag),  # past the end
            ("k", 10, 0, new_etag),  # empty: a HEAD checks the version
            ("k", 10, 0, old_etag),
            ("k", -1, 10, None),
            ("k", 0, SMALL_GET + 1, new_etag),  # large: the loop's own direct client
            ("k", 100, 1000, old_etag),  # changed since: 412
            ("k", len(new) + 100, 10, old_etag),
            ("missing", 0, 100, None),  # 404
            ("missing", 0, 100, "0" * 32),
            ("implicit/", 0, 10, None),  # SeaweedFS answers for the directory
            ("", 0, 10, None),
        ]
        for key, offset, length, pin in cases:
            before = client.requests
            handled = await b.tstore.trio_direct.read_view(key, offset, length, etag=pin)
            assert handled is None, (key, offset, length, pin)
            tried = client.requests - before
            trio_side = await outcome(b.tstore.read_view(key, offset, length, etag=pin))
            trio_bytes = await outcome(b.tstore.read_range(key, offset, length, etag=pin))
            loop_side = await outcome(b.aio.run(b.store.read_view, key, offset, length, etag=pin))
            loop_bytes = await outcome(b.aio.run(b.store.read_range, key, offset, length, etag=pin))
            assert trio_side == loop_side and trio_bytes == loop_bytes, (key, offset, length, pin)
            small = 0 < length <= SMALL_GET and offset >= 0 and key
            assert tried == (1 if small else 0), (key, offset, length, pin)
        assert (await outcome(b.tstore.read_view("k", 100, 1000, etag=old_etag)))[0] == (
            "PreconditionFailed"
        )
        assert (await outcome(b.tstore.read_view("missing", 0, 100)))[0] == "ResourceNotFound"
        assert (await outcome(b.tstore.read_view("implicit/", 0, 10)))[0] == "ResourceNotFound"
        assert await outcome(b.tstore.read_view("k", len(new), 10)) == ("bytes", b"")
        assert await outcome(b.tstore.read_view("k", 0, SMALL_GET + 1)) == (
            "bytes",
            new[: SMALL_GET + 1],
        )
        # A range of an empty object: SeaweedFS answers 200 with no body (S3 416), plain
        # bytes that both paths take as they come.
        marker = await b.tstore.trio_direct.read_view("explicit/", 0, 10)
        assert marker is not None and bytes(marker) == b""
        assert await outcome(b.aio.run(b.store.read_view, "explicit/", 0, 10)) == ("bytes", b"")
        largest = await b.tstore.read_view("k", 10, SMALL_GET, etag=new_etag)
        assert bytes(largest) == new[10 : SMALL_GET + 10]


async def test_gets_and_puts_share_one_connection(s3_server: SeaweedServer) -> None:
    """GETs and PUTs alternate on one keep-alive connection, none of them crossing; a GET
    after the server closed that connection is sent again on a fresh one."""
    async with s3_bucket(s3_server) as b, proxy(s3_server) as p:
        store = await b.aio.run(S3Store.open, b.name, s3_server.credentials, endpoint_url=p.url)
        tstore = TrioStore(store, b.aio)
        try:
            client = trio_client(tstore)
            for i in range(5):
                data = os.urandom(4096 + i)
                etag = await tstore.put(f"f{i}", data)
                assert bytes(await tstore.read_view(f"f{i}", 0, 4096 + i, etag=etag)) == data
                assert await tstore.read_range(f"f{i}", 4000, 200, etag=etag) == data[4000:]
            assert (client.requests, client.connects, p.accepted) == (15, 1, 1)
            await p.drop_all()
            assert await tstore.read_range("f0", 0, 10) == (await b.read("f0"))[:10]
            assert (client.requests, client.connects, p.accepted) == (16, 2, 2)
            assert store.client.direct is not None
            assert store.client.direct.requests == 0, "nothing was repeated on the loop"
        finally:
            await tstore.close()


# -- through a proxy in front of SeaweedFS ---------------------------------------------------------


@dataclass
class Proxy:
    """Forwards connections to an upstream server; optionally terminates TLS."""

    upstream: tuple[str, int]
    tls: ssl.SSLContext | None = None
    port: int = 0
    accepted: int = 0
    open: set[trio.abc.Stream] = field(default_factory=set)

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self.port}"

    async def serve(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        tcp = await trio.open_tcp_listeners(0, host="127.0.0.1")
        self.port = tcp[0].socket.getsockname()[1]
        listeners: list[trio.abc.Listener[trio.abc.Stream]] = list(tcp)
        if self.tls is not None:
            listeners = [trio.SSLListener(t, self.tls, https_compatible=True) for t in tcp]
        task_status.started()
        await trio.serve_listeners(self._handle, listeners)

    async def _handle(self, down: trio.abc.Stream) -> None:
        self.accepted += 1
        self.open.add(down)
        try:
            async with down, await trio.open_tcp_stream(*self.upstream) as up:
                async with trio.open_nursery() as nursery:

                    async def pump(src: trio.abc.Stream, dst: trio.abc.Stream) -> None:
                        try:
                            async for chunk in src:
                                await dst.send_all(chunk)
                        except (trio.BrokenResourceError, trio.ClosedResourceError):
                            pass
                        finally:
                            nursery.cancel_scope.cancel()  # one side ended: end both

                    nursery.start_soon(pump, down, up)
                    nursery.start_soon(pump, up, down)
        finally:
            self.open.discard(down)

    async def drop_all(self) -> None:
        """Close every client connection, as a server closes idle keep-alive ones."""
        for stream in list(self.open):
            await trio.aclose_forcefully(stream)
        await trio.testing.wait_all_tasks_blocked()


@asynccontextmanager
async def proxy(server: SeaweedServer, tls: ssl.SSLContext | None = None) -> AsyncIterator[Proxy]:
    host, _, port = server.endpoint_url.removeprefix("http://").partition(":")
    p = Proxy((host, int(port)), tls)
    async with trio.open_nursery() as nursery:
        await nursery.start(p.serve)
        yield p
        nursery.cancel_scope.cancel()


def tls_contexts(directory: Path) -> tuple[ssl.SSLContext, ssl.SSLContext]:
    """A server context with a self-signed certificate for 127.0.0.1 and a client context
    that trusts it (and nothing else)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "blobfs test")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(hours=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server.load_cert_chain(cert_path, key_path)
    client = ssl.create_default_context(cafile=str(cert_path))
    return server, client


async def test_idle_connection_closed_by_the_server_is_retried(s3_server: SeaweedServer) -> None:
    async with s3_bucket(s3_server) as b, proxy(s3_server) as p:
        client = trio_direct(p.url, b.name, Counting(s3_server), connect_timeout=5, read_timeout=30)
        try:
            assert (await put(client, "k", b"first")).status == 200
            await p.drop_all()
            response = await put(client, "k", b"second")
            assert (response.status, response.headers["etag"]) == (200, f'"{md5(b"second")}"')
            assert (client.client.connects, p.accepted) == (2, 2)
        finally:
            await client.aclose()
        assert await b.read("k") == b"second"


async def test_https_puts_and_gets_keep_alive(s3_server: SeaweedServer, tmp_path: Path) -> None:
    server_tls, client_tls = tls_contexts(tmp_path)
    async with s3_bucket(s3_server) as b, proxy(s3_server, server_tls) as p:
        client = trio_direct(
            p.url,
            b.name,
            Counting(s3_server),
            connect_timeout=5,
            read_timeout=30,
            ssl_context=client_tls,
        )
        data = os.urandom(100_000)
        try:
            for name in ("a", "dir/b c"):
                response = await put(client, name, data, {"mode": "420"})
                assert (response.status, response.headers["etag"]) == (200, f'"{md5(data)}"')
            got = await get(client, "dir/b c", 1000, 50_000, md5(data))
            assert got.body is not None
            assert (got.status, bytes(got.body)) == (206, data[1000:51_000])
            assert (client.client.connects, p.accepted) == (1, 1)
            await p.drop_all()
            assert (await put(client, "a", b"again")).status == 200
            assert client.client.connects == 2
        finally:
            await client.aclose()
        await trio.testing.wait_all_tasks_blocked()
        assert not p.open, "aclose closed the idle connection"
        assert await b.read("dir/b c") == data
        assert (await b.head("dir/b c")).metadata == {"mode": "420"}
        assert await b.read("a") == b"again"


async def test_close_trio_side_closes_the_connections(s3_server: SeaweedServer) -> None:
    async with s3_bucket(s3_server) as b, proxy(s3_server) as p:
        store = await b.aio.run(S3Store.open, b.name, s3_server.credentials, endpoint_url=p.url)
        tstore = TrioStore(store, b.aio)
        try:
            assert await tstore.put("k", b"v") == md5(b"v")
            assert store.client.direct is not None
            assert (trio_client(tstore).requests, store.client.direct.requests) == (1, 0)
            assert len(p.open) == 1
            await tstore.close_trio_side()
            await trio.testing.wait_all_tasks_blocked()
            assert not p.open
        finally:
            await tstore.close()


# -- scripted servers: failures no real server produces on demand ---------------------------------

Handler = Callable[[trio.SocketStream], Awaitable[None]]


@asynccontextmanager
async def scripted(handler: Handler) -> AsyncIterator[str]:
    """A loopback server calling ``handler`` per connection; yields its URL."""

    async def guarded(stream: trio.SocketStream) -> None:
        try:
            await handler(stream)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass  # the client went away

    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(partial(trio.serve_tcp, guarded, 0, host="127.0.0.1"))
        port = listeners[0].socket.getsockname()[1]
        yield f"http://127.0.0.1:{port}"
        nursery.cancel_scope.cancel()


async def read_request(stream: trio.SocketStream) -> bytes | None:
    """Read one request (head and body) and return it; ``None`` when the client closed the
    connection instead."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = await stream.receive_some(65536)
        if not chunk:
            return None
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.lower().split(b"\r\n")
    length = next(
        (int(line.split(b":")[1]) for line in lines if line.startswith(b"content-length")), 0
    )
    while len(body) < length:
        body += await stream.receive_some(65536)
    return head + b"\r\n\r\n" + body


def quick(url: str, **kwargs: Any) -> TrioDirect:
    async def creds() -> ReadOnlyCredentials:
        return ReadOnlyCredentials("AKID", "secret", None)

    kwargs = {"connect_timeout": 2.0, "read_timeout": 2.0, **kwargs}
    return trio_direct(url, "b", creds, **kwargs)


async def test_fresh_connection_closed_before_a_reply_is_transient() -> None:
    async def hang_up(stream: trio.SocketStream) -> None:
        await read_request(stream)
        await stream.aclose()

    async with scripted(hang_up) as url:
        client = quick(url)
        with pytest.raises(TransientError, match="closed the connection"):
            await put(client, "k", b"data")
        assert client.client.connects == 1, "a fresh connection is not tried twice"


async def test_silent_server_times_out_and_its_connection_is_dropped() -> None:
    seen = 0

    async def silent_once(stream: trio.SocketStream) -> None:
        nonlocal seen
        seen += 1
        request = await read_request(stream)
        if seen == 1:
            await trio.sleep_forever()
        assert request is not None
        body = request.partition(b"\r\n\r\n")[2]
        await stream.send_all(
            b'HTTP/1.1 200 OK\r\nETag: "%s"\r\nContent-Length: 0\r\n\r\n' % md5(body).encode()
        )
        await read_request(stream)  # until the client closes the connection

    async with scripted(silent_once) as url:
        client = quick(url, read_timeout=0.3)
        with pytest.raises(TransientError, match="no reply"):
            await put(client, "k", b"data")
        response = await put(client, "k", b"data")
        await client.aclose()
    assert response.status == 200
    assert client.client.connects == 2, "a connection that timed out is never reused"


async def test_tls_handshake_that_never_comes_times_out() -> None:
    async def mute(stream: trio.SocketStream) -> None:
        await trio.sleep_forever()

    async with scripted(mute) as url:
        client = quick(url.replace("http:", "https:"), connect_timeout=0.3)
        with pytest.raises(TransientError, match="cannot connect"):
            await put(client, "k", b"data")


@pytest.mark.parametrize(
    "reply",
    [
        b"HTTP/1.1 500 Internal Server Error\r\nContent-Length: 5\r\n\r\nerror",
        b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
        b'HTTP/1.1 200 OK\r\nETag: "x"\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n',
        b'HTTP/1.1 200 OK\r\nETag: "x"\r\nConnection: close\r\nContent-Length: 0\r\n\r\n',
    ],
    ids=["500", "no-etag", "chunked", "connection-close"],
)
async def test_replies_that_leave_the_connection_unusable(reply: bytes) -> None:
    async def answer(stream: trio.SocketStream) -> None:
        while await read_request(stream) is not None:
            await stream.send_all(reply)

    async with scripted(answer) as url:
        client = quick(url)
        first = await put(client, "k", b"data")
        await put(client, "k", b"data")
        await client.aclose()
    assert first.status == int(reply.split()[1])
    expected = 1 if reply.startswith(b"HTTP/1.1 200 OK\r\nContent-Length: 0") else 2
    assert client.client.connects == expected, "only a complete 200 leaves the connection reusable"


async def test_large_bodies_are_refused() -> None:
    client = quick("http://127.0.0.1:9")
    assert client.prepared.put_request("k", bytes(HASH_IN_THREAD)) is None
    assert await client.put("k", bytes(HASH_IN_THREAD)) is None
    assert await client.read_view("k", 0, SMALL_GET + 1) is None
    assert client.client.connects == 0


async def test_get_body_in_pieces_is_whole_and_the_connection_reused() -> None:
    """A body that trickles in (head alone first, then small pieces) is assembled exactly;
    the request is the ranged, pinned GET the asyncio client sends."""
    body = os.urandom(100_000)
    requests: list[bytes] = []

    async def trickle(stream: trio.SocketStream) -> None:
        while (request := await read_request(stream)) is not None:
            requests.append(request)
            await stream.send_all(b"HTTP/1.1 206 Partial Content\r\n")
            await stream.send_all(b"Content-Length: %d\r\n\r\n" % len(body))
            for start in range(0, len(body), 7000):
                await stream.send_all(body[start : start + 7000])
                await trio.sleep(0.001)  # so the client sees them arrive apart

    async with scripted(trickle) as url:
        client = quick(url)
        first = await get(client, "dir/k", 1000, len(body), "abc")
        second = await get(client, "dir/k", 1000, len(body), None)
        await client.aclose()
    assert first.status == 206 and first.body is not None and bytes(first.body) == body
    assert second.body is not None and bytes(second.body) == body
    assert client.client.connects == 1
    head = requests[0].lower()
    assert head.startswith(b"get /b/dir/k http/1.1\r\n")
    assert b"\r\nrange: bytes=1000-100999\r\n" in head
    assert b'\r\nif-match: "abc"\r\n' in head
    assert b"if-match" not in requests[1].lower()


@pytest.mark.parametrize(
    ("reply", "status"),
    [
        (b"HTTP/1.1 404 Not Found\r\nContent-Length: 9\r\n\r\nnot found", 404),
        (b"HTTP/1.1 412 Precondition Failed\r\nContent-Length: 0\r\n\r\n", 412),
        (b"HTTP/1.1 206 Partial Content\r\nContent-Length: 11\r\n\r\n0123456789a", 206),
        (b"HTTP/1.1 206 Partial Content\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 206),
        (b"HTTP/1.1 206 Partial Content\r\nContent-Length: 10\r\n\r\n01234", 206),
    ],
    ids=["404", "412", "longer-than-asked", "chunked", "cut-short"],
)
async def test_get_replies_without_a_plain_body(reply: bytes, status: int) -> None:
    """Anything but a whole 200/206 body of at most the range asked comes without a body
    (the store then asks again on its loop), and its connection is not reused."""

    async def answer(stream: trio.SocketStream) -> None:
        while await read_request(stream) is not None:
            await stream.send_all(reply)
            if reply.endswith(b"01234"):
                await stream.aclose()  # the rest never comes
                return

    async with scripted(answer) as url:
        client = quick(url)
        first = await get(client, "k", 0, 10, "abc")
        second = await get(client, "k", 0, 10, "abc")
        await client.aclose()
    assert (first.status, first.body, second.status) == (status, None, status)
    assert client.client.connects == 2
