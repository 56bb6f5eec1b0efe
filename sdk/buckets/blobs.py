"""Blob operations of the Buckets API on an open store, in the API's terms.

Each function takes the :class:`~sdk.types.Bucket` and the store it was resolved to
(:mod:`sdk.buckets.resolution`) and speaks :class:`~sdk.types.BucketEntry`, blob URIs and
progress events.  Invariants a reader must keep:

* a read is pinned to the version it opened on, so a blob replaced mid-read fails the read
  instead of mixing versions;
* a recursive remove deletes folder markers (``dir/``) last, deepest first, so an interrupted
  remove never leaves a folder that looks empty while its contents are still there.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from yarl import URL

from sdk import globbing
from sdk.errors import ResourceNotFound
from sdk.multipart import upload_stream
from sdk.progress import AbstractDeleteProgress, StorageProgressDelete
from sdk.providers.base import MAX_SIGNED_URL_SECONDS, BlobStore, ObjectInfo, PrefixInfo
from sdk.types import BlobCommonPrefix, BlobObject, Bucket, BucketEntry
from sdk.uri import key_uri

#: Keys deleted per batch request by :func:`remove`.
DELETE_BATCH = 1000


def entry(bucket: Bucket, item: ObjectInfo | PrefixInfo) -> BucketEntry:
    """The API's entry for a listed or looked-up item of ``bucket``."""
    if isinstance(item, PrefixInfo):
        return BlobCommonPrefix(key=item.key, bucket=bucket, size=0)
    return BlobObject(
        key=item.key,
        bucket=bucket,
        size=item.size,
        created_at=item.created_at,
        modified_at=item.modified_at,
        etag=item.etag,
    )


async def put(store: BlobStore, key: str, body: AsyncIterator[bytes] | bytes) -> None:
    """``bytes`` in one request; an async iterator as a multipart upload."""
    if isinstance(body, bytes | bytearray | memoryview):
        await store.put(key, bytes(body))
    else:
        await upload_stream(store, key, body)


async def listing(
    bucket: Bucket, store: BlobStore, prefix: str, *, recursive: bool, limit: int | None
) -> AsyncIterator[BucketEntry]:
    """Entries under ``prefix``; folded at ``/`` unless ``recursive``; at most ``limit``."""
    if limit is not None and limit <= 0:
        return
    count = 0
    async for item in store.list(prefix, delimiter=None if recursive else "/"):
        yield entry(bucket, item)
        count += 1
        if limit is not None and count >= limit:
            return


async def glob(bucket: Bucket, store: BlobStore, pattern: str) -> AsyncIterator[BucketEntry]:
    """Entries whose key matches ``pattern`` (see :mod:`sdk.globbing`)."""
    async for item in globbing.glob(store, pattern):
        yield entry(bucket, item)


async def is_dir(store: BlobStore, key: str) -> bool:
    """Whether ``key`` is a folder: the bucket root, or a prefix that holds keys."""
    key = key.rstrip("/")
    if not key:
        return True
    async for _ in store.list(key + "/"):
        return True
    return False


async def remove(
    uri: URL,
    bucket: Bucket,
    store: BlobStore,
    key: str,
    *,
    recursive: bool,
    progress: AbstractDeleteProgress | None,
) -> None:
    """Remove the blob at ``key``, and with ``recursive`` the folder of that name.

    :raises FileNotFoundError: nothing exists at ``key``.
    :raises IsADirectoryError: ``key`` is a folder and ``recursive`` is not set.
    """
    removed_file = False
    if key and not key.endswith("/"):
        try:
            await store.delete(key)
        except ResourceNotFound:
            pass
        else:
            removed_file = True
            if progress:
                progress.delete(StorageProgressDelete(uri=key_uri(bucket.uri, key), is_dir=False))
    prefix = key.rstrip("/") + "/" if key.rstrip("/") else ""
    has_children = False
    async for _ in store.list(prefix):
        has_children = True
        break
    if not has_children:
        if not removed_file:
            raise FileNotFoundError(f"{uri}: no such blob or folder")
        return
    if not recursive:
        if removed_file:  # the file of that name is gone; its namesake folder stays
            return
        raise IsADirectoryError(f"{uri}: is a folder, use recursive remove")
    await _remove_tree(bucket, store, prefix, progress)


async def _remove_tree(
    bucket: Bucket, store: BlobStore, prefix: str, progress: AbstractDeleteProgress | None
) -> None:
    markers: list[str] = []
    batch: list[str] = []

    async def flush() -> None:
        if not batch:
            return
        await store.delete_many(list(batch))
        if progress:
            for k in batch:
                progress.delete(StorageProgressDelete(key_uri(bucket.uri, k), is_dir=False))
        batch.clear()

    async for item in store.list(prefix):
        if item.key.endswith("/"):
            markers.append(item.key)
            continue
        batch.append(item.key)
        if len(batch) >= DELETE_BATCH:
            await flush()
    await flush()
    for marker in sorted(markers, key=lambda k: (-k.count("/"), k)):
        await store.delete(marker, missing_ok=True)
        if progress:
            progress.delete(StorageProgressDelete(key_uri(bucket.uri, marker), is_dir=True))


def check_signed_url_expiry(expires_in_seconds: int) -> None:
    """Raise :class:`ValueError` unless 1 s <= ``expires_in_seconds`` <= 7 days."""
    if not 1 <= expires_in_seconds <= MAX_SIGNED_URL_SECONDS:
        raise ValueError(
            f"expires_in_seconds must be between 1 and {MAX_SIGNED_URL_SECONDS} "
            f"(7 days), got {expires_in_seconds}"
        )


async def signed_url(uri: URL, store: BlobStore, key: str, expires_in_seconds: int) -> URL:
    """The provider's signed GET URL of the blob at ``key``."""
    if not key or key.endswith("/"):
        raise ValueError(f"{uri}: a signed URL needs a blob key, not a folder")
    return URL(await store.sign_url(key, expires_in_seconds), encoded=True)
