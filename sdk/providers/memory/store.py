"""The in-memory :class:`~sdk.providers.base.BlobStore` on one bucket of a memory admin.

Behaves as S3 does where the contract tests look (``tests/sdk/test_store_contract.py``):

* a missing key raises :class:`~sdk.errors.ResourceNotFound` on head, read and delete; a
  stale ``etag`` raises :class:`~sdk.errors.PreconditionFailed`;
* listings are in code point order, paged as a provider pages them, with
  :class:`~sdk.providers.base.PrefixInfo` entries folded at the delimiter and mixed in order;
* a read streams the version that existed when it was opened, even if the key is replaced
  meanwhile, as an S3 GET does;
* a copy above ``copy_settings.threshold`` goes through a multipart upload of copied parts.

Every operation first passes the store's :class:`~sdk.providers.memory.faults.Faults`.
"""

from __future__ import annotations

import bisect
import itertools
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from urllib.parse import quote

from sdk.errors import (
    InvalidRequest,
    PermissionDenied,
    PreconditionFailed,
    ResourceNotFound,
    TransientError,
)
from sdk.providers.base import CopySettings, ObjectInfo, PrefixInfo, check_expiry
from sdk.providers.memory.bucket import (
    DEFAULT_CONTENT_TYPE,
    BucketSource,
    MemoryBucket,
    MemoryObject,
    PendingUpload,
    md5,
    now,
)
from sdk.providers.memory.checks import (
    MEMORY_METADATA,
    check_key,
    check_metadata,
    check_range,
)
from sdk.providers.memory.faults import Faults, Hook, Op
from sdk.providers.memory.upload import MemoryUpload
from sdk.providers.part_copy import copy_in_parts

#: S3's page size; listings page internally so a fault can hit the n-th page.
PAGE_SIZE = 1000
#: Size of the chunks a read stream yields.
READ_CHUNK = 1024 * 1024


#: Upload ids, unique in the process: any store of a bucket may take an upload up by its id.
_UPLOAD_IDS = itertools.count(1)


class MemoryStore:
    """A :class:`~sdk.providers.base.BlobStore` on one bucket of a :class:`MemoryAdmin`."""

    metadata_rules = MEMORY_METADATA

    def __init__(self, admin: BucketSource, bucket_name: str, *, allowed: bool = True) -> None:
        self.bucket_name = bucket_name
        self._admin = admin
        self._allowed = allowed
        self._faults = Faults()
        self._closed = False
        #: Chunk size of read streams; tests may lower it to exercise chunk boundaries.
        self.read_chunk = READ_CHUNK
        self.copy_settings = CopySettings()

    # -- fault injection ---------------------------------------------------------------------

    def fail_next(self, op: Op, exc: BaseException | None = None, *, times: int = 1) -> None:
        """Make the next ``times`` calls of ``op`` raise ``exc``.

        ``exc`` defaults to :class:`~sdk.errors.TransientError`; ``times=-1`` keeps failing
        until :meth:`clear_faults`.  Faults of one op fire in the order they were armed.
        """
        if times == 0 or times < -1:
            raise ValueError("times must be positive or -1")
        self._faults.arm(op, exc, times)

    def go_offline(self, exc: BaseException | None = None) -> None:
        """Fail every operation (default :class:`~sdk.errors.TransientError`) until
        :meth:`go_online` -- a server that went away."""
        self._faults.offline = exc or TransientError("memory store is offline")

    def go_online(self) -> None:
        self._faults.offline = None

    def clear_faults(self) -> None:
        """Disarm every fault and come back online."""
        self._faults.clear()

    @property
    def hook(self) -> Hook | None:
        """An async callable ``hook(op, key)`` awaited before every operation."""
        return self._faults.hook

    @hook.setter
    def hook(self, value: Hook | None) -> None:
        self._faults.hook = value

    # -- inspection helpers for tests --------------------------------------------------------

    def keys(self) -> list[str]:
        """Every key in the bucket, sorted (no faults, no awaiting)."""
        return list(self._data().keys)

    async def pending_uploads(self, prefix: str = "") -> list[str]:
        """Keys of multipart uploads started and neither completed nor aborted."""
        uploads = self._data().uploads.values()
        return sorted(u.key for u in uploads if u.key.startswith(prefix))

    # -- BlobStore ---------------------------------------------------------------------------

    async def enter(self, op: str, key: str = "") -> MemoryBucket:
        """Start operation ``op``: pass the faults and the credentials check; the bucket."""
        if self._closed:
            raise RuntimeError("store is closed")
        await self._faults.check(op, key)
        if not self._allowed:
            raise PermissionDenied(f"{op} on {self.bucket_name!r}: credentials refused")
        return self._data()

    def _data(self) -> MemoryBucket:
        return self._admin.bucket(self.bucket_name)

    def version(self, bucket: MemoryBucket, key: str, etag: str | None) -> MemoryObject:
        """The object at ``key``, which must still be version ``etag`` when one is given."""
        obj = bucket.objects.get(key)
        if obj is None:
            raise ResourceNotFound(f"{self.bucket_name}/{key} does not exist")
        if etag is not None and obj.etag != etag:
            raise PreconditionFailed(f"{self.bucket_name}/{key} is no longer version {etag}")
        return obj

    async def head(self, key: str) -> ObjectInfo:
        """Metadata of ``key``."""
        bucket = await self.enter("head", key)
        return self.version(bucket, key, None).info(key)

    def read(
        self,
        key: str,
        offset: int = 0,
        length: int | None = None,
        *,
        etag: str | None = None,
    ) -> AbstractAsyncContextManager[AsyncIterator[bytes]]:
        """Stream part of ``key``; the version read is fixed when the stream opens."""
        check_range(offset, length)
        return self._read(key, offset, length, etag)

    @asynccontextmanager
    async def _read(
        self, key: str, offset: int, length: int | None, etag: str | None
    ) -> AsyncIterator[AsyncIterator[bytes]]:
        bucket = await self.enter("read", key)
        obj = self.version(bucket, key, etag)
        end = len(obj.data) if length is None else min(len(obj.data), offset + length)
        yield self._chunks(key, memoryview(obj.data), offset, end)

    async def _chunks(
        self, key: str, data: memoryview, offset: int, end: int
    ) -> AsyncIterator[bytes]:
        first = True
        while offset < end:
            if not first:
                await self._faults.check("read_body", key)
            first = False
            n = min(self.read_chunk, end - offset)
            yield bytes(data[offset : offset + n])
            offset += n

    async def read_range(
        self, key: str, offset: int, length: int, *, etag: str | None = None
    ) -> bytes:
        """Up to ``length`` bytes of ``key`` at ``offset``."""
        check_range(offset, length)
        bucket = await self.enter("read_range", key)
        return self.version(bucket, key, etag).data[offset : offset + length]

    async def read_view(
        self, key: str, offset: int, length: int, *, etag: str | None = None
    ) -> memoryview:
        """:meth:`read_range` as a view (the slice is a copy already)."""
        return memoryview(await self.read_range(key, offset, length, etag=etag))

    async def list(
        self, prefix: str = "", *, delimiter: str | None = None
    ) -> AsyncIterator[ObjectInfo | PrefixInfo]:
        """Keys starting with ``prefix`` in order, folded at ``delimiter``.

        Pages through the keys like a provider does: a concurrent change shows up or not
        depending on which page it falls in, and a fault armed for ``list`` hits one page.
        """
        if delimiter == "":
            raise InvalidRequest("delimiter must not be empty")
        after = ""  # continuation: last key or prefix handed out
        while True:
            bucket = await self.enter("list", prefix)
            keys = bucket.keys
            i = bisect.bisect_right(keys, after) if after else bisect.bisect_left(keys, prefix)
            page: list[ObjectInfo | PrefixInfo] = []
            while i < len(keys) and len(page) < PAGE_SIZE:
                key = keys[i]
                if not key.startswith(prefix):
                    break
                cut = key.find(delimiter, len(prefix)) if delimiter else -1
                if cut >= 0:
                    common = key[: cut + len(delimiter or "")]
                    page.append(PrefixInfo(key=common))
                    # Skip the rest of the prefix: every key starting with it sorts before
                    # the first key past common + U+10FFFF.
                    i = bisect.bisect_left(keys, common + "\U0010ffff", i)
                    after = common + "\U0010ffff"
                else:
                    page.append(bucket.objects[key].info(key, listing=True))
                    after = key
                    i += 1
            for entry in page:
                yield entry
            if len(page) < PAGE_SIZE:
                return

    async def put(
        self,
        key: str,
        data: bytes,
        *,
        metadata: Mapping[str, str] | None = None,
        content_type: str | None = None,
    ) -> str:
        """Create or replace ``key``; returns the md5 ETag."""
        check_key(key)
        meta = check_metadata(metadata)
        bucket = await self.enter("put", key)
        obj = MemoryObject(
            bytes(data), md5(data), meta, content_type or DEFAULT_CONTENT_TYPE, now()
        )
        bucket.store(key, obj)
        return obj.etag

    async def start_multipart(
        self,
        key: str,
        *,
        metadata: Mapping[str, str] | None = None,
        content_type: str | None = None,
    ) -> MemoryUpload:
        """Begin an upload of ``key`` that stays invisible until completed."""
        check_key(key)
        meta = check_metadata(metadata)
        bucket = await self.enter("start_multipart", key)
        state = PendingUpload(key, meta, content_type or DEFAULT_CONTENT_TYPE)
        upload_id = str(next(_UPLOAD_IDS))
        bucket.uploads[upload_id] = state
        return MemoryUpload(self, upload_id, state)

    async def resume_multipart(
        self,
        key: str,
        upload_id: str,
        *,
        metadata: Mapping[str, str] | None = None,
        content_type: str | None = None,
    ) -> MemoryUpload:
        """The unfinished upload ``upload_id`` of ``key``; no check is made until it is used."""
        state = self._data().uploads.get(upload_id)
        if state is None or state.key != key:
            # Gone: a handle that fails as a completed or aborted upload does.
            return MemoryUpload(self, upload_id, PendingUpload(key, {}, DEFAULT_CONTENT_TYPE))
        return MemoryUpload(self, upload_id, state)

    async def copy(
        self,
        src_key: str,
        dst_key: str,
        *,
        metadata: Mapping[str, str] | None = None,
        size: int | None = None,
    ) -> str:
        """Server-side copy; content type and (unless replaced) metadata come along.
        (``size`` saves a real store a request; here it changes nothing.)

        Above ``copy_settings.threshold`` the copy goes through a multipart upload of copied
        parts as on the real providers (new ETag ``md5(part md5s)-N``; faults in
        ``copy_part`` and ``complete`` leave no destination)."""
        check_key(dst_key)
        meta = None if metadata is None else check_metadata(metadata)
        bucket = await self.enter("copy", src_key)
        src = self.version(bucket, src_key, None)
        if len(src.data) > self.copy_settings.threshold:
            info = src.info(src_key)
            upload = await self.start_multipart(
                dst_key,
                metadata=src.metadata if meta is None else meta,
                content_type=src.content_type,
            )
            return await copy_in_parts(upload, info, self.copy_settings)
        obj = MemoryObject(
            src.data, src.etag, src.metadata if meta is None else meta, src.content_type, now()
        )
        bucket.store(dst_key, obj)
        return obj.etag

    async def delete(self, key: str, *, missing_ok: bool = False) -> None:
        """Delete ``key``; :class:`~sdk.errors.ResourceNotFound` if missing."""
        bucket = await self.enter("delete", key)
        if not bucket.remove(key) and not missing_ok:
            raise ResourceNotFound(f"{self.bucket_name}/{key} does not exist")

    async def delete_many(self, keys: Sequence[str]) -> None:
        """Delete ``keys`` in batches of 1000 (a fault hits one batch); missing are ignored."""
        for start in range(0, len(keys), 1000):
            bucket = await self.enter("delete_many", keys[start])
            for key in keys[start : start + 1000]:
                bucket.remove(key)

    async def sign_url(self, key: str, expires_in_seconds: int) -> str:
        """A ``memory://bucket/key?expires=…`` URL (the key need not exist, as on S3)."""
        check_expiry(expires_in_seconds)
        await self.enter("sign_url", key)
        expires = int(time.time()) + expires_in_seconds
        return f"memory://{self.bucket_name}/{quote(key)}?expires={expires}"

    async def close(self) -> None:
        """Refuse further use, as a real store with a closed connection pool would."""
        self._closed = True
