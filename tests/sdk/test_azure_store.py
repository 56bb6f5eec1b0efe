"""Azure-specific behaviour of :mod:`sdk.providers.azure`, on Azurite.

What every provider must do alike is in ``tests/sdk/test_store_contract.py``; this module covers
what only Azure has: SAS tokens and connection strings, container naming rules, blob SAS
URLs, Copy Blob, block-list uploads, the emulator's quirks (unsorted delimited pages, no blob
batches) and the error table.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import time
import uuid
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import pytest
import pytest_asyncio
from azure.core.exceptions import (
    HttpResponseError,
    IncompleteReadError,
    ServiceRequestError,
    ServiceResponseError,
)
from azure.storage.blob import (
    AccountSasPermissions,
    ContainerSasPermissions,
    ResourceTypes,
    generate_account_sas,
    generate_container_sas,
)

from sdk.errors import (
    AlreadyExists,
    BlobfsError,
    ConfigError,
    InvalidRequest,
    NotEmpty,
    PermissionDenied,
    PreconditionFailed,
    ResourceNotFound,
    TransientError,
)
from sdk.providers.azure import (
    PUT_BLOCK_SIZE,
    AzureAdmin,
    AzureStore,
    translate_error,
    validate_container_name,
)
from sdk.providers.base import MIN_PART_SIZE, BlobStore, CopySettings, ObjectInfo, PrefixInfo

MiB = 1024 * 1024


def _name() -> str:
    return f"az-test-{uuid.uuid4().hex[:16]}"


def _admin(server: Any) -> AzureAdmin:
    return AzureAdmin(
        server.endpoint_url,
        {"account_name": server.account_name, "account_key": server.account_key},
    )


async def _drop(admin: AzureAdmin, name: str) -> None:
    store = await admin.open_bucket(name)
    try:
        keys = [e.key async for e in store.list() if isinstance(e, ObjectInfo)]
        await store.delete_many(keys)
    finally:
        await store.close()
    with contextlib.suppress(ResourceNotFound):
        await admin.delete_bucket(name)


@pytest_asyncio.fixture
async def admin(azure_server: Any) -> AsyncIterator[AzureAdmin]:
    a = _admin(azure_server)
    try:
        yield a
    finally:
        await a.close()


@pytest_asyncio.fixture
async def bucket(admin: AzureAdmin) -> AsyncIterator[str]:
    """A fresh container, emptied and deleted afterwards."""
    name = _name()
    await admin.create_bucket(name)
    try:
        yield name
    finally:
        await _drop(admin, name)


@pytest_asyncio.fixture
async def store(admin: AzureAdmin, bucket: str) -> AsyncIterator[AzureStore]:
    s = await admin.open_bucket(bucket)
    try:
        yield s
    finally:
        await s.close()


def _container_sas(server: Any, container: str, **perms: bool) -> str:
    return generate_container_sas(
        account_name=server.account_name,
        container_name=container,
        account_key=server.account_key,
        permission=ContainerSasPermissions(**perms),
        expiry=datetime.now(UTC) + timedelta(hours=1),
    )


async def _body(store: BlobStore, key: str, **kw: Any) -> bytes:
    async with store.read(key, **kw) as chunks:
        return b"".join([c async for c in chunks])


# -- credentials ---------------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_sas_only_credentials_work_but_cannot_sign(
    admin: AzureAdmin, bucket: str, azure_server: Any
) -> None:
    sas = _container_sas(azure_server, bucket, read=True, write=True, delete=True, list=True)
    creds = {"storage_endpoint": azure_server.endpoint_url, "bucket_name": bucket, "sas_token": sas}
    await admin.check_bucket(bucket, creds)
    store = await admin.open_bucket(bucket, creds)
    try:
        etag = await store.put("dir/a", b"hello", metadata={"mode": "644"})
        info = await store.head("dir/a")
        assert (info.etag, info.size, info.metadata) == (etag, 5, {"mode": "644"})
        assert await _body(store, "dir/a") == b"hello"
        # Copy Blob reads the source through the URL, which must carry the SAS.
        await store.copy("dir/a", "dir/b")
        assert [e.key async for e in store.list("dir/")] == ["dir/a", "dir/b"]
        upload = await store.start_multipart("big")
        await upload.upload_part(1, b"x" * MIN_PART_SIZE)
        await upload.upload_part(2, b"y")
        await upload.complete()
        assert (await store.head("big")).size == MIN_PART_SIZE + 1
        # Put Block From URL (copies in parts) needs the SAS in the source URL as well.
        store.copy_settings = CopySettings(threshold=1, part_size=MIN_PART_SIZE)
        await store.copy("big", "big-copy")
        assert await _body(store, "big-copy") == b"x" * MIN_PART_SIZE + b"y"
        with pytest.raises(InvalidRequest, match="account key"):
            await store.sign_url("dir/a", 60)
        await store.delete_many(["dir/a", "dir/b", "big", "big-copy"])
        assert [e async for e in store.list()] == []
    finally:
        await store.close()


@pytest.mark.asyncio
async def test_scoped_store_copies_in_parts_with_its_container_sas(
    admin: AzureAdmin, bucket: str
) -> None:
    """Put Block From URL needs the source authorised in its URL even within one account;
    a scoped store (renewing container SAS, no key in its requests) appends its SAS."""
    store = await admin.open_scoped_bucket(bucket)
    try:
        data = os.urandom(MIN_PART_SIZE + 10)
        await store.put("big", data, metadata={"mode": "420"})
        store.copy_settings = CopySettings(threshold=1, part_size=MIN_PART_SIZE)
        etag = await store.copy("big", "big-copy", metadata={"mode": "384"})
        info = await store.head("big-copy")
        assert (info.etag, info.metadata) == (etag, {"mode": "384"})
        assert await _body(store, "big-copy") == data
    finally:
        await store.close()


@pytest.mark.asyncio
async def test_read_only_sas_refuses_writes(
    admin: AzureAdmin, bucket: str, azure_server: Any, store: AzureStore
) -> None:
    await store.put("k", b"v")
    sas = _container_sas(azure_server, bucket, read=True, list=True)
    ro = await admin.open_bucket(
        bucket, {"storage_endpoint": azure_server.endpoint_url, "sas_token": sas}
    )
    try:
        assert await ro.read_range("k", 0, 10) == b"v"
        with pytest.raises(PermissionDenied) as err:
            await ro.put("k", b"w")
        assert isinstance(err.value.__cause__, HttpResponseError)
        with pytest.raises(PermissionDenied):
            await ro.delete("k")
    finally:
        await ro.close()
    assert await store.read_range("k", 0, 10) == b"v"


@pytest.mark.asyncio
async def test_wrong_key_and_forged_sas_are_refused(
    admin: AzureAdmin, bucket: str, azure_server: Any
) -> None:
    forged = _container_sas(azure_server, bucket, read=True, list=True).replace("sig=", "sig=A")
    for creds in (
        {"storage_endpoint": azure_server.endpoint_url, "sas_token": forged},
        {
            "storage_endpoint": azure_server.endpoint_url,
            "account_name": azure_server.account_name,
            "credential": "bm90IHRoZSBrZXk=",
        },
    ):
        with pytest.raises(PermissionDenied):
            await admin.check_bucket(bucket, creds)


@pytest.mark.asyncio
async def test_account_sas_admin_and_connection_string(azure_server: Any) -> None:
    sas = generate_account_sas(
        account_name=azure_server.account_name,
        account_key=azure_server.account_key,
        resource_types=ResourceTypes(service=True, container=True, object=True),
        permission=AccountSasPermissions(
            read=True, write=True, delete=True, list=True, create=True
        ),
        expiry=datetime.now(UTC) + timedelta(hours=1),
    )
    name = _name()
    sas_admin = AzureAdmin(azure_server.endpoint_url, {"sas_token": sas})
    cs_admin = AzureAdmin(None, {"connection_string": azure_server.connection_string})
    try:
        await sas_admin.create_bucket(name)
        with pytest.raises(AlreadyExists):
            await cs_admin.create_bucket(name)
        store = await cs_admin.open_bucket(name)
        try:
            await store.put("k", b"v")
            # The connection string carries the account key, so this store can sign.
            assert "sig=" in await store.sign_url("k", 60)
        finally:
            await store.close()
        with pytest.raises(NotEmpty):
            await sas_admin.delete_bucket(name)
    finally:
        await _drop(cs_admin, name)
        await sas_admin.close()
        await cs_admin.close()


def test_credentials_must_say_how_to_authenticate() -> None:
    with pytest.raises(ConfigError):
        AzureAdmin("http://127.0.0.1:1/acct", {"account_name": "acct"})
    with pytest.raises(ConfigError):
        AzureAdmin(None, {"account_key": "a2V5"})  # neither endpoint nor account name


# -- containers ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name",
    ["ab", "a" * 64, "Upper-case", "a--b", "-ab", "ab-", "a_b", "a.b", "ünï"],
)
@pytest.mark.asyncio
async def test_invalid_container_names_are_refused(admin: AzureAdmin, name: str) -> None:
    with pytest.raises(InvalidRequest, match="container name"):
        await admin.create_bucket(name)


@pytest.mark.parametrize("name", ["abc", "a-b-c", "0ab", "a" * 63])
def test_valid_container_names(name: str) -> None:
    validate_container_name(name)


@pytest.mark.asyncio
async def test_longest_container_name_round_trip(admin: AzureAdmin) -> None:
    name = ("z" + uuid.uuid4().hex * 2)[:63]
    await admin.create_bucket(name)
    with pytest.raises(AlreadyExists):
        await admin.create_bucket(name)
    await admin.delete_bucket(name)


@pytest.mark.asyncio
async def test_delete_of_non_empty_container_is_refused(admin: AzureAdmin) -> None:
    name = _name()
    await admin.create_bucket(name)
    store = await admin.open_bucket(name)
    try:
        await store.put("only/marker/", b"")
        with pytest.raises(NotEmpty):
            await admin.delete_bucket(name)
        assert [e.key async for e in store.list()] == ["only/marker/"]  # nothing was lost
        await store.delete("only/marker/")
        await admin.delete_bucket(name)
        with pytest.raises(ResourceNotFound):
            await admin.delete_bucket(name)
        with pytest.raises(ResourceNotFound):
            await store.head("only/marker/")
        # A missing container is an error even when a missing key would not be.
        with pytest.raises(ResourceNotFound):
            await store.delete("k", missing_ok=True)
    finally:
        await store.close()


# -- reading -------------------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_etags_are_unquoted_and_pin_reads(store: AzureStore) -> None:
    etag = await store.put("k", b"0123456789")
    assert etag and '"' not in etag
    assert (await store.head("k")).etag == etag
    listed = [e async for e in store.list()]
    assert isinstance(listed[0], ObjectInfo) and listed[0].etag == etag
    assert await store.read_range("k", 2, 3, etag=etag) == b"234"
    await store.put("k", b"changed")
    with pytest.raises(PreconditionFailed) as err:
        await store.read_range("k", 0, 3, etag=etag)
    assert isinstance(err.value.__cause__, HttpResponseError)
    # Offsets at or past the end read nothing, with or without a length.
    assert await store.read_range("k", 7, 5) == b""
    assert await store.read_range("k", 100, 5) == b""
    assert await _body(store, "k", offset=7) == b""
    assert await _body(store, "k", offset=100) == b""


@pytest.mark.asyncio
async def test_head_returns_times_metadata_and_content_type(store: AzureStore) -> None:
    before = datetime.now(UTC) - timedelta(seconds=5)
    await store.put("k", b"v", metadata={"Mode": "644", "uid": "0"}, content_type="text/plain")
    info = await store.head("k")
    assert info.metadata == {"mode": "644", "uid": "0"}
    assert info.content_type == "text/plain"
    assert info.modified_at is not None and info.modified_at >= before
    assert info.created_at is not None and info.created_at >= before


@pytest.mark.asyncio
async def test_metadata_names_azure_cannot_carry_are_refused(store: AzureStore) -> None:
    with pytest.raises(InvalidRequest, match="metadata"):
        await store.put("k", b"v", metadata={"x-amz-mode": "1"})
    with pytest.raises(InvalidRequest):
        await store.start_multipart("k", metadata={"ok": "ünicode"})
    with pytest.raises(ResourceNotFound):
        await store.head("k")


@pytest.mark.asyncio
async def test_long_read_spans_several_requests(store: AzureStore) -> None:
    data = os.urandom(2 * PUT_BLOCK_SIZE + 12345)
    await store.put("big", data)
    assert await _body(store, "big") == data
    assert (
        await _body(store, "big", offset=PUT_BLOCK_SIZE - 7, length=PUT_BLOCK_SIZE + 14)
        == (data[PUT_BLOCK_SIZE - 7 : 2 * PUT_BLOCK_SIZE + 7])
    )


@pytest.mark.asyncio
async def test_replacing_a_blob_mid_read_fails_the_read(store: AzureStore) -> None:
    """A read longer than one request is pinned to the first response's ETag: it fails
    rather than mix two versions (S3 streams one response and would keep the old one)."""
    await store.put("big", os.urandom(2 * PUT_BLOCK_SIZE))
    with pytest.raises(PreconditionFailed):
        async with store.read("big") as chunks:
            async for _ in chunks:
                await store.put("big", b"new")


class _CuttingProxy:
    """A TCP proxy that cuts server-to-client streams once enough bytes went through.

    Stands in for a network that drops connections: the next ``cuts`` responses that pass
    ``after`` relayed bytes in total are cut after ``keep`` more bytes.
    """

    def __init__(self, host: str, port: int) -> None:
        self.upstream = (host, port)
        self.after = 0
        self.keep = 256 * 1024
        self.cuts = 0
        self.relayed = 0
        self.cut_count = 0
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> int:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return int(self._server.sockets[0].getsockname()[1])

    async def close(self) -> None:
        assert self._server is not None
        self._server.close()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection(*self.upstream)
        down = asyncio.create_task(self._pump(up_reader, writer, count=True))
        up = asyncio.create_task(self._pump(reader, up_writer, count=False))
        self._tasks |= {down, up}
        await asyncio.wait({down, up}, return_when=asyncio.FIRST_COMPLETED)
        for task in (down, up):
            task.cancel()
        for w in (writer, up_writer):
            w.close()

    async def _pump(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, *, count: bool
    ) -> None:
        budget: int | None = None
        while data := await reader.read(64 * 1024):
            if count:
                self.relayed += len(data)
                if budget is None and self.cuts > 0 and self.relayed > self.after:
                    self.cuts -= 1
                    self.cut_count += 1
                    budget = self.keep
                if budget is not None:
                    data = data[:budget]
                    budget -= len(data)
            writer.write(data)
            await writer.drain()
            if budget == 0:
                return


@pytest_asyncio.fixture
async def proxy(azure_server: Any) -> AsyncIterator[tuple[_CuttingProxy, str]]:
    """A cutting proxy in front of Azurite, and the account URL through it."""
    url = azure_server.endpoint_url
    host_port, _, path = url.split("://", 1)[1].partition("/")
    host, _, port = host_port.partition(":")
    p = _CuttingProxy(host, int(port))
    local = await p.start()
    try:
        yield p, f"http://127.0.0.1:{local}/{path}"
    finally:
        await p.close()


@pytest.mark.asyncio
async def test_read_resumes_after_connections_break(
    store: AzureStore, bucket: str, azure_server: Any, proxy: tuple[_CuttingProxy, str]
) -> None:
    cutter, url = proxy
    data = os.urandom(3 * PUT_BLOCK_SIZE)
    await store.put("big", data)
    flaky_admin = AzureAdmin(
        url, {"account_name": azure_server.account_name, "account_key": azure_server.account_key}
    )
    flaky = await flaky_admin.open_bucket(bucket)
    try:
        # The first request (8 MiB) goes through; then four responses in a row are cut: the
        # SDK's own chunk retry gives up after three and the store re-opens at the offset.
        cutter.after = PUT_BLOCK_SIZE + MiB
        cutter.cuts = 4
        assert hashlib.sha256(await _body(flaky, "big")).digest() == hashlib.sha256(data).digest()
        assert cutter.cut_count == 4
        # A broken first request is retried too.
        cutter.after, cutter.cuts = cutter.relayed, 4
        assert await flaky.read_range("big", 5, 3 * MiB) == data[5 : 5 + 3 * MiB]
    finally:
        await flaky.close()
        await flaky_admin.close()


# -- listing -------------------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_delimited_listing_is_in_key_order_across_pages(
    admin: AzureAdmin, bucket: str, store: AzureStore
) -> None:
    """Azurite lists a page's prefixes before its blobs; the store restores key order."""
    keys = ["a-1", "a/1", "a/2", "a/3", "a0", "b/1", "b-", "c", "d/x/y", "d0", "e/1", "e/2", "f"]
    await asyncio.gather(*(store.put(k, b"x") for k in keys))
    expected = ["a-1", "a/", "a0", "b-", "b/", "c", "d/", "d0", "e/", "f"]
    for page_size in (1, 2, 3, 5, 1000):
        paged = AzureStore(store._service, bucket, list_page_size=page_size)
        entries = [e async for e in paged.list(delimiter="/")]
        assert [e.key for e in entries] == expected, page_size
        assert all(isinstance(e, PrefixInfo) == e.key.endswith("/") for e in entries)
        flat = [e.key async for e in paged.list()]
        assert flat == sorted(keys)
    assert [e.key async for e in store.list("a/", delimiter="/")] == ["a/1", "a/2", "a/3"]
    assert [e.key async for e in store.list("d/", delimiter="/")] == ["d/x/"]
    with pytest.raises(InvalidRequest):
        _ = [e async for e in store.list(delimiter="")]


@pytest.mark.asyncio
async def test_fast_listing_matches_the_sdk(bucket: str, store: AzureStore) -> None:
    """Listings parsed here agree with the SDK's own deserializer, odd names included.

    (No control characters: Azurite answers a listing that holds one with a 500.)"""
    keys = [
        "plain",
        "dir/a",
        "dir/sub/b",
        "sp ace",
        "pct%20",
        "plus+q",
        "q?x&y=z",
        "h#x",
        "\u00fcml\u00e4ut",
        "tab\there",
        "lt<gt>amp&",
        "emoji\U0001f600",
    ]
    await asyncio.gather(*(store.put(k, k.encode()) for k in keys))
    for page_size in (2, 5000):
        fast = AzureStore(store._service, bucket, list_page_size=page_size)
        slow = AzureStore(store._service, bucket, list_page_size=page_size)
        slow._listing.fast = False
        for prefix, delimiter in (("", None), ("", "/"), ("dir/", "/"), ("p", None)):
            got = [e async for e in fast.list(prefix, delimiter=delimiter)]
            want = [e async for e in slow.list(prefix, delimiter=delimiter)]
            assert got == want, (page_size, prefix, delimiter)
    listed = {e.key async for e in store.list()}
    assert listed == set(keys)
    for key in keys:
        assert await store.read_range(key, 0, 100) == key.encode()


# -- writing -------------------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_put_larger_than_one_block_is_staged_and_committed(store: AzureStore) -> None:
    data = os.urandom(PUT_BLOCK_SIZE * 2 + 3)
    etag = await store.put("big", data, metadata={"k": "v"}, content_type="application/x-test")
    info = await store.head("big")
    assert (info.etag, info.size, info.metadata, info.content_type) == (
        etag,
        len(data),
        {"k": "v"},
        "application/x-test",
    )
    assert await store.read_range("big", 0, len(data)) == data


@pytest.mark.asyncio
async def test_failed_or_aborted_upload_leaves_no_blob(store: AzureStore) -> None:
    upload = await store.start_multipart("k", metadata={"a": "b"})
    await upload.upload_part(2, b"tail")
    await upload.upload_part(1, b"too small")
    with pytest.raises(InvalidRequest, match="at least"):
        await upload.complete()
    with pytest.raises(ResourceNotFound):
        await store.head("k")
    await upload.abort()
    await upload.abort()
    with pytest.raises(ResourceNotFound):
        await upload.upload_part(3, b"x")
    with pytest.raises(ResourceNotFound):
        await upload.complete()
    assert [e async for e in store.list()] == []
    # The staged blocks of the aborted upload do not disturb the next one of the same key.
    again = await store.start_multipart("k")
    await again.upload_part(1, b"fresh")
    await again.complete()
    assert await store.read_range("k", 0, 100) == b"fresh"


@pytest.mark.asyncio
async def test_concurrent_uploads_of_one_key_never_mix(store: AzureStore) -> None:
    first = await store.start_multipart("k")
    second = await store.start_multipart("k")
    await first.upload_part(1, b"A" * MIN_PART_SIZE)
    await second.upload_part(1, b"B" * MIN_PART_SIZE)
    await first.upload_part(2, b"a")
    await second.upload_part(2, b"b")
    await second.complete()
    assert await store.read_range("k", MIN_PART_SIZE - 1, 2) == b"Bb"
    # Committing discards the blob's other uncommitted blocks, so the loser fails rather
    # than overwrite (S3 would let it win); either way no blob mixes the two.
    with pytest.raises(InvalidRequest):
        await first.complete()
    assert await store.read_range("k", MIN_PART_SIZE - 1, 2) == b"Bb"


@pytest.mark.asyncio
async def test_parts_commit_in_number_order_not_upload_order(store: AzureStore) -> None:
    upload = await store.start_multipart("k", content_type="text/x-parts")
    parts = {n: bytes([64 + n]) * MIN_PART_SIZE for n in range(1, 12)}
    parts[12] = b"end"
    await asyncio.gather(*(upload.upload_part(n, d) for n, d in reversed(parts.items())))
    await upload.upload_part(3, b"#" * MIN_PART_SIZE)  # a re-uploaded part replaces the old
    parts[3] = b"#" * MIN_PART_SIZE
    etag = await upload.complete()
    info = await store.head("k")
    assert (info.etag, info.content_type) == (etag, "text/x-parts")
    got = await _body(store, "k")
    assert hashlib.sha256(got).digest() == hashlib.sha256(b"".join(parts.values())).digest()


@pytest.mark.asyncio
async def test_copy_of_a_large_blob(store: AzureStore) -> None:
    data = os.urandom(5 * PUT_BLOCK_SIZE + 1)
    await store.put("src", data, metadata={"orig": "1"}, content_type="video/x-test")
    etag = await store.copy("src", "dst")
    info = await store.head("dst")
    assert (info.etag, info.size, info.metadata, info.content_type) == (
        etag,
        len(data),
        {"orig": "1"},
        "video/x-test",
    )
    assert hashlib.sha256(await _body(store, "dst")).digest() == hashlib.sha256(data).digest()
    await store.copy("src", "dst", metadata={"new": "2"})
    assert (await store.head("dst")).metadata == {"new": "2"}
    # An empty mapping replaces too, although Copy Blob alone would keep the source's.
    await store.copy("src", "dst", metadata={})
    assert (await store.head("dst")).metadata == {}
    # Onto itself, to change metadata in place.
    await store.copy("src", "src", metadata={"self": "3"})
    assert (await store.head("src")).metadata == {"self": "3"}
    with pytest.raises(ResourceNotFound):
        await store.copy("missing", "dst2")


# -- deleting ------------------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_delete_many_without_batch_support(store: AzureStore) -> None:
    keys = [f"d/{i:04d}" for i in range(300)]
    sem = asyncio.Semaphore(32)

    async def put(key: str) -> None:
        async with sem:
            await store.put(key, b"")

    await asyncio.gather(*(put(k) for k in keys))
    await store.delete_many([*keys, "never-existed"])
    assert [e async for e in store.list()] == []
    # Azurite answers blob batches with InvalidInput; the store noticed and fell back.
    assert store._deleter.batch_supported is not None


@pytest.mark.asyncio
async def test_delete_missing(store: AzureStore) -> None:
    with pytest.raises(ResourceNotFound):
        await store.delete("nope")
    await store.delete("nope", missing_ok=True)
    await store.delete_many([])


# -- signed URLs ---------------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_signed_url_allows_a_plain_get_until_it_expires(store: AzureStore) -> None:
    key = "dir/with space+plus/ünï.txt"
    await store.put(key, b"signed content")
    url = await store.sign_url(key, 2)
    issued = time.monotonic()
    async with aiohttp.ClientSession() as http:
        async with http.get(url) as resp:
            assert resp.status == 200
            assert await resp.read() == b"signed content"
        async with http.get(url.split("?", 1)[0]) as resp:
            assert resp.status in (401, 403, 404)  # anonymous access is off
        # The expiry is rounded up to a whole second: refused within 4.2 s of signing.
        while True:
            async with http.get(url) as resp:
                if resp.status == 403:
                    break
                assert resp.status == 200, resp.status
            assert time.monotonic() < issued + 4.2, "the signed URL did not expire"
            await asyncio.sleep(0.2)


@pytest.mark.parametrize("seconds", [0, -1, 7 * 24 * 3600 + 1])
@pytest.mark.asyncio
async def test_signed_url_expiry_limits(store: AzureStore, seconds: int) -> None:
    with pytest.raises(InvalidRequest):
        await store.sign_url("k", seconds)


@pytest.mark.asyncio
async def test_signed_url_longest_expiry(store: AzureStore) -> None:
    url = await store.sign_url("k", 7 * 24 * 3600)
    assert "sp=r" in url and "se=" in url


# -- error table ---------------------------------------------------------------------------------


def _http_error(status: int, code: str | None) -> HttpResponseError:
    e = HttpResponseError(message=f"status {status}\nRequestId:x")
    e.status_code = status
    e.error_code = code  # type: ignore[attr-defined]
    return e


@pytest.mark.parametrize(
    ("make", "expected"),
    [
        (lambda: _http_error(404, "BlobNotFound"), ResourceNotFound),
        (lambda: _http_error(404, "ContainerNotFound"), ResourceNotFound),
        (lambda: _http_error(409, "ContainerAlreadyExists"), AlreadyExists),
        (lambda: _http_error(409, "ContainerBeingDeleted"), TransientError),
        (lambda: _http_error(403, "AuthenticationFailed"), PermissionDenied),
        (lambda: _http_error(403, "AuthorizationFailure"), PermissionDenied),
        (lambda: _http_error(403, None), PermissionDenied),
        (lambda: _http_error(412, "ConditionNotMet"), PreconditionFailed),
        (lambda: _http_error(412, None), PreconditionFailed),
        (lambda: _http_error(503, "ServerBusy"), TransientError),
        (lambda: _http_error(500, "InternalError"), TransientError),
        (lambda: _http_error(502, None), TransientError),
        (lambda: _http_error(429, None), TransientError),
        (lambda: _http_error(416, "InvalidRange"), InvalidRequest),
        (lambda: _http_error(400, "InvalidBlockList"), InvalidRequest),
        (lambda: _http_error(409, "LeaseIdMissing"), BlobfsError),
        (lambda: ServiceRequestError("connect refused"), TransientError),
        (lambda: ServiceResponseError("reset"), TransientError),
        (lambda: IncompleteReadError("cut"), TransientError),
        (lambda: aiohttp.ServerDisconnectedError(), TransientError),
        (lambda: TimeoutError(), TransientError),
        # How the SDK's downloader reports a body read that kept failing.
        (lambda: HttpResponseError("x", error=IncompleteReadError("cut")), TransientError),
    ],
)
def test_error_table(make: Callable[[], BaseException], expected: type[BlobfsError]) -> None:
    original = make()
    err = translate_error(original, "azure:b/k")
    assert type(err) is expected
    assert str(err).startswith("azure:b/k: ")


# -- many blocks in flight --------------------------------------------------------------------


@pytest.mark.asyncio
async def test_blocks_staged_in_parallel_read_back_every_way(store: AzureStore) -> None:
    """Put a 64 MiB blob as 8 MiB blocks (the client's request size), 4 staged at once so
    they finish out of order, then fetch it with 8 MiB ranged reads, 4 at once, and with
    one stream: the same bytes each way.  (Its speed is measured by scripts/bench_sdk.py.)"""
    size, part, inflight = 64 * MiB, 8 * MiB, 4
    data = os.urandom(size)
    limit = asyncio.Semaphore(inflight)

    async def stage(upload: Any, n: int) -> None:
        async with limit:
            await upload.upload_part(n, data[(n - 1) * part : n * part])

    upload = await store.start_multipart("big")
    await asyncio.gather(*(stage(upload, n) for n in reversed(range(1, size // part + 1))))
    await upload.complete()

    async def fetch(offset: int) -> bytes:
        async with limit:
            return await store.read_range("big", offset, part)

    pieces = await asyncio.gather(*(fetch(o) for o in range(0, size, part)))
    assert b"".join(pieces) == data

    streamed = bytearray()
    async with store.read("big") as chunks:
        async for chunk in chunks:
            streamed += chunk
    assert streamed == data
