"""The Buckets API end to end, each test body run on SeaweedFS (S3) and on Azurite."""

from __future__ import annotations

import hashlib
import os
from collections.abc import AsyncIterator

import pytest
from yarl import URL

from sdk.client import Client
from sdk.errors import AlreadyExists, NotEmpty, ResourceNotFound
from sdk.progress import AbstractDeleteProgress, StorageProgressDelete
from sdk.types import BlobCommonPrefix, BlobObject, Bucket, BucketUsage

pytestmark = pytest.mark.asyncio

MiB = 1024 * 1024


async def make_bucket(client: Client, name: str = "data") -> Bucket:
    return await client.buckets.create(name)


async def keys_of(client: Client, uri: str, recursive: bool = False) -> list[str]:
    async with client.buckets.list_blobs(URL(uri), recursive=recursive) as it:
        return [e.key async for e in it]


async def put(client: Client, bucket: Bucket, *keys: str, body: bytes = b"x") -> None:
    for key in keys:  # "dir/" keys are markers: empty, as blobfs and the reference make them
        await client.buckets.put_blob(bucket.id, key, b"" if key.endswith("/") else body)


async def fetch(client: Client, bucket: str, key: str, offset: int = 0) -> bytes:
    async with client.buckets.fetch_blob(bucket, key, offset=offset) as it:
        return b"".join([chunk async for chunk in it])


# -- buckets --------------------------------------------------------------------------------


async def test_create_get_list_rm(client: Client) -> None:
    b = await make_bucket(client, "first")
    assert b.id.startswith("bucket-") and b.name == "first" and not b.imported
    assert b.owner == "alice" and b.cluster_name == client.cluster_name
    assert str(b.uri) == f"blob://{client.cluster_name}/alice/first"
    assert await client.buckets.get("first") == b
    assert await client.buckets.get(b.id) == b
    unnamed = await client.buckets.create(None)
    async with client.buckets.list() as it:
        assert {x.id async for x in it} == {b.id, unnamed.id}
    await client.buckets.rm("first")
    await client.buckets.rm(unnamed.id)
    with pytest.raises(ResourceNotFound):
        await client.buckets.get("first")
    async with client.buckets.list() as it:
        assert [x async for x in it] == []


async def test_duplicate_and_invalid_names_change_nothing(client: Client) -> None:
    await make_bucket(client, "dup")
    with pytest.raises(AlreadyExists):
        await client.buckets.create("dup")
    for bad in ("ab", "Upper", "1st", "has space", "x" * 41):
        with pytest.raises(ValueError, match="invalid bucket name"):
            await client.buckets.create(bad)
    async with client.buckets.list() as it:
        assert [x.name async for x in it] == ["dup"]


async def test_rm_non_empty_bucket_is_refused(client: Client) -> None:
    b = await make_bucket(client, "full")
    await put(client, b, "k")
    with pytest.raises(NotEmpty, match="not empty"):
        await client.buckets.rm("full")
    assert await client.buckets.get("full") == b
    assert await fetch(client, "full", "k") == b"x"
    await client.buckets.blob_rm(b.uri, recursive=True)
    await client.buckets.rm("full")


async def test_missing_buckets(client: Client) -> None:
    with pytest.raises(ResourceNotFound):
        await client.buckets.get("nope")
    with pytest.raises(ResourceNotFound):
        await client.buckets.rm("nope")
    with pytest.raises(ResourceNotFound):
        await client.buckets.head_blob("nope", "k")
    with pytest.raises(ResourceNotFound):
        await keys_of(client, "blob:nope/k")


async def test_malformed_uris(client: Client) -> None:
    await make_bucket(client)
    for bad in ("blob:data/k?x=1", "blob:data/k#f", "blob://u@c/alice/data", "http://x/y"):
        with pytest.raises(ValueError):
            await keys_of(client, bad)


# -- blobs ----------------------------------------------------------------------------------


async def test_put_head_fetch_delete(client: Client) -> None:
    b = await make_bucket(client)
    await client.buckets.put_blob("data", "dir/hello.txt", b"hello world")
    entry = await client.buckets.head_blob("data", "dir/hello.txt")
    assert isinstance(entry, BlobObject) and entry.is_file() and not entry.is_dir()
    assert (entry.key, entry.size, entry.name) == ("dir/hello.txt", 11, "hello.txt")
    assert entry.modified_at is not None
    assert entry.uri == URL(f"blob://{client.cluster_name}/alice/data/dir/hello.txt")
    assert entry.bucket == b
    assert await fetch(client, "data", "dir/hello.txt") == b"hello world"
    assert await fetch(client, "data", "dir/hello.txt", offset=6) == b"world"
    assert await fetch(client, "data", "dir/hello.txt", offset=11) == b""
    await client.buckets.delete_blob("data", "dir/hello.txt")
    for call in (
        client.buckets.head_blob("data", "dir/hello.txt"),
        client.buckets.delete_blob("data", "dir/hello.txt"),
        fetch(client, "data", "dir/hello.txt"),
    ):
        with pytest.raises(ResourceNotFound):
            await call


async def test_put_empty_and_replace(client: Client) -> None:
    await make_bucket(client)
    await client.buckets.put_blob("data", "e", b"")
    assert (await client.buckets.head_blob("data", "e")).size == 0
    assert await fetch(client, "data", "e") == b""
    await client.buckets.put_blob("data", "e", b"new")
    assert await fetch(client, "data", "e") == b"new"


@pytest.mark.slow
async def test_stream_over_100_mib(client: Client) -> None:
    """A body larger than 100 MiB goes up as a stream and comes back from an offset."""
    await make_bucket(client)
    chunk = os.urandom(MiB)
    n_chunks = 101
    sent = hashlib.sha256()

    async def body() -> AsyncIterator[bytes]:
        for i in range(n_chunks):
            piece = chunk[i:] + chunk[:i]  # every MiB differs, so misordered parts show
            sent.update(piece)
            yield piece

    await client.buckets.put_blob("data", "big.bin", body())
    size = n_chunks * MiB
    assert (await client.buckets.head_blob("data", "big.bin")).size == size

    offset = 37 * MiB + 12345
    got = hashlib.sha256()
    total = 0
    async with client.buckets.fetch_blob("data", "big.bin", offset=offset) as it:
        async for data in it:
            got.update(data)
            total += len(data)
    assert total == size - offset
    expected = hashlib.sha256()
    i, skip = 0, offset
    for i in range(n_chunks):
        piece = chunk[i:] + chunk[:i]
        if skip >= len(piece):
            skip -= len(piece)
            continue
        expected.update(piece[skip:])
        skip = 0
    assert got.hexdigest() == expected.hexdigest()


async def test_failed_stream_leaves_nothing(client: Client) -> None:
    await make_bucket(client)

    async def body() -> AsyncIterator[bytes]:
        yield os.urandom(6 * MiB)
        yield os.urandom(6 * MiB)
        raise RuntimeError("source broke")

    with pytest.raises(RuntimeError, match="source broke"):
        await client.buckets.put_blob("data", "partial.bin", body())
    with pytest.raises(ResourceNotFound):
        await client.buckets.head_blob("data", "partial.bin")


# -- listing --------------------------------------------------------------------------------


async def test_list_blobs(client: Client) -> None:
    b = await make_bucket(client)
    await put(client, b, "folder/", "folder/a", "folder/sub/b", "folderx", "top")
    assert await keys_of(client, "blob:data") == ["folder/", "folderx", "top"]
    assert await keys_of(client, "blob:data/folder") == ["folder/", "folderx"]
    assert await keys_of(client, "blob:data/folder/") == ["folder/", "folder/a", "folder/sub/"]
    assert await keys_of(client, "blob:data", recursive=True) == [
        "folder/",
        "folder/a",
        "folder/sub/b",
        "folderx",
        "top",
    ]
    async with client.buckets.list_blobs(URL("blob:data/folder/")) as it:
        entries = [e async for e in it]
    kinds = {e.key: type(e) for e in entries}
    assert kinds["folder/sub/"] is BlobCommonPrefix and kinds["folder/a"] is BlobObject
    assert kinds["folder/"] is BlobObject  # the marker is an object, and a dir
    assert all(e.is_dir() for e in entries if e.key.endswith("/"))
    async with client.buckets.list_blobs(URL("blob:data"), limit=2) as it:
        assert len([e async for e in it]) == 2
    async with client.buckets.list_blobs(URL("blob:data"), recursive=True, limit=4) as it:
        assert len([e async for e in it]) == 4


async def test_glob_blobs(client: Client) -> None:
    b = await make_bucket(client)
    await put(
        client, b, "a.txt", "b.bin", "d1/x.txt", "d1/y.bin", "d2/deep/z.txt", "d2/q.txt", "e[1]"
    )

    async def glob(pattern: str) -> list[str]:
        # built, not parsed: "?" in a pattern is a wildcard, not a query
        async with client.buckets.glob_blobs(
            URL.build(scheme="blob", path=f"data/{pattern}")
        ) as it:
            return sorted([e.key async for e in it])

    assert await glob("*.txt") == ["a.txt"]
    assert await glob("**/*.txt") == ["a.txt", "d1/x.txt", "d2/deep/z.txt", "d2/q.txt"]
    assert await glob("d*/*.txt") == ["d1/x.txt", "d2/q.txt"]
    assert await glob("d?/*") == ["d1/x.txt", "d1/y.bin", "d2/deep/", "d2/q.txt"]
    assert await glob("d2/**") == ["d2/deep/z.txt", "d2/q.txt"]
    assert await glob("[ab].*") == ["a.txt", "b.bin"]
    assert await glob("d1/x.txt") == ["d1/x.txt"]
    assert await glob("nothing*") == []


async def test_blob_is_dir(client: Client) -> None:
    b = await make_bucket(client)
    await put(client, b, "d/f", "empty/", "file")
    assert await client.buckets.blob_is_dir(URL("blob:data/d"))
    assert await client.buckets.blob_is_dir(URL("blob:data/d/"))
    assert await client.buckets.blob_is_dir(URL("blob:data/empty"))
    assert await client.buckets.blob_is_dir(URL("blob:data"))
    assert not await client.buckets.blob_is_dir(URL("blob:data/file"))
    assert not await client.buckets.blob_is_dir(URL("blob:data/missing"))


class Recorder(AbstractDeleteProgress):
    def __init__(self) -> None:
        self.events: list[StorageProgressDelete] = []

    def delete(self, data: StorageProgressDelete) -> None:
        self.events.append(data)


async def test_blob_rm(client: Client) -> None:
    b = await make_bucket(client)
    await put(client, b, "f", "g", "d/", "d/a", "d/s/", "d/s/b", "keep")
    with pytest.raises(FileNotFoundError):
        await client.buckets.blob_rm(URL("blob:data/missing"))
    with pytest.raises(IsADirectoryError, match="recursive"):
        await client.buckets.blob_rm(URL("blob:data/d"))
    assert await keys_of(client, "blob:data/d/", recursive=True) == ["d/", "d/a", "d/s/", "d/s/b"]
    await client.buckets.blob_rm(URL("blob:data/f"))
    await client.buckets.blob_rm(URL("blob:data/g"), recursive=True)  # a file, recursively
    rec = Recorder()
    await client.buckets.blob_rm(URL("blob:data/d"), recursive=True, progress=rec)
    assert await keys_of(client, "blob:data", recursive=True) == ["keep"]
    assert [e.uri.path.rsplit("/alice/data/", 1)[1] for e in rec.events][-2:] == ["d/s/", "d/"]
    assert {e.is_dir for e in rec.events if e.uri.path.endswith("/")} == {True}


async def test_blob_rm_many(client: Client) -> None:
    import asyncio

    b = await make_bucket(client)
    await asyncio.gather(*(client.buckets.put_blob(b.id, f"t/{i:04}", b"") for i in range(1100)))
    rec = Recorder()
    await client.buckets.blob_rm(URL("blob:data/t/"), recursive=True, progress=rec)
    assert len(rec.events) == 1100
    assert await keys_of(client, "blob:data", recursive=True) == []


async def test_disk_usage(client: Client) -> None:
    b = await make_bucket(client)

    async def usage() -> list[BucketUsage]:
        async with client.buckets.get_disk_usage("data") as it:
            return [u async for u in it]

    assert (await usage())[-1] == BucketUsage(total_bytes=0, object_count=0)
    await put(client, b, "a", "b/", "b/c", body=b"12345")
    assert (await usage())[-1] == BucketUsage(total_bytes=10, object_count=3)


async def test_signed_url_bounds(client: Client) -> None:
    b = await make_bucket(client)
    await put(client, b, "k")
    for bad in (0, -5, 7 * 24 * 3600 + 1):
        with pytest.raises(ValueError, match="between 1 and"):
            await client.buckets.make_signed_url(URL("blob:data/k"), bad)
    url = await client.buckets.make_signed_url(URL("blob:data/k"), 60)
    assert url.scheme in ("http", "https")


async def test_import_external(
    client: Client, provider_kind: str, request: pytest.FixtureRequest
) -> None:
    # Create a provider bucket through the sdk, then import it again by its provider name
    # with raw credentials, as a user would with a bucket made elsewhere.
    own = await make_bucket(client, "origin")
    await put(client, own, "shared.txt", body=b"shared")
    record = client._registry.get_bucket(  # the provider-side name, for the test
        own.cluster_name, own.id, owner="alice", org=None
    )
    server = request.getfixturevalue(f"{provider_kind}_server")
    if provider_kind == "s3":
        creds = {
            "access_key_id": server.access_key_id,
            "secret_access_key": server.secret_access_key,
            "endpoint_url": server.endpoint_url,
            "region_name": "us-east-1",
        }
        provider = own.provider
    else:
        creds = {"storage_endpoint": server.endpoint_url, "credential": server.account_key}
        provider = own.provider
    imported = await client.buckets.import_external(
        provider, record.provider_bucket, creds, name="imported"
    )
    assert imported.imported and imported.name == "imported"
    assert await fetch(client, "imported", "shared.txt") == b"shared"

    bad = dict(creds)
    bad["secret_access_key" if provider_kind == "s3" else "credential"] = (
        "d3Jvbmcta2V5LXdyb25nLWtleS13cm9uZy1rZXk="
    )
    with pytest.raises(PermissionError):
        await client.buckets.import_external(provider, record.provider_bucket, bad, name="bad")
    with pytest.raises(ResourceNotFound):
        await client.buckets.get("bad")

    await client.buckets.rm("imported")  # forgets only; the provider bucket stays
    assert await fetch(client, "origin", "shared.txt") == b"shared"
