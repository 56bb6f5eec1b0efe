"""An in-memory provider with the semantics of the real ones, for fast unit tests.

:class:`MemoryAdmin` and :class:`MemoryStore` implement :class:`~sdk.providers.base.ProviderAdmin`
and :class:`~sdk.providers.base.BlobStore` the way S3 behaves (as checked by
``tests/test_store_contract.py``, which runs the same tests against this store, SeaweedFS and
Azurite):

* ETags are the md5 hex digest of the content, without quotes; a multipart object's ETag is
  S3's ``md5(part md5s)-N``.
* Listings are in lexicographic (code point) order, with ``PrefixInfo`` entries folded at the
  delimiter and mixed in order.
* A missing key raises :class:`~sdk.errors.ResourceNotFound` on head, read and delete; a
  stale ``etag`` raises :class:`~sdk.errors.PreconditionFailed`.
* A multipart upload is invisible until it completes; every part but the last must be at
  least :data:`~sdk.providers.base.MIN_PART_SIZE` bytes, checked at completion as S3 does.
* A read streams the version that existed when it was opened, even if the key is replaced
  meanwhile, as an S3 GET does.

Faults are injected per store, to test code that must survive a server going away::

    store.fail_next("put", TransientError("boom"))   # the next put raises
    store.fail_next("upload_part", times=2)          # the next two parts fail (TransientError)
    store.go_offline()                                # every operation fails until go_online()
    store.hook = my_async_hook                        # awaited before every operation

Injected faults reach the caller directly, as if the real provider had exhausted its retries;
the memory store never retries (so tests do not sleep through backoff).
"""

from __future__ import annotations

import asyncio
import bisect
import hashlib
import itertools
import time
from collections import defaultdict, deque
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal
from urllib.parse import quote

from sdk.errors import (
    AlreadyExists,
    InvalidRequest,
    NotEmpty,
    PermissionDenied,
    PreconditionFailed,
    ResourceNotFound,
    TransientError,
)
from sdk.providers import check_expiry
from sdk.providers.base import (
    MIN_PART_SIZE,
    CopySettings,
    CredentialTimes,
    IssuedCredentials,
    ObjectInfo,
    PersistentGrant,
    PrefixInfo,
)
from sdk.providers.part_copy import copy_in_parts

#: Names of the operations faults can be injected into.  ``read_body`` fails a read stream
#: after it delivered its first chunk (a connection dropped mid-transfer); ``copy_part`` is
#: one part of a copy in parts (objects over ``copy_settings.threshold``).
Op = Literal[
    "head",
    "read",
    "read_body",
    "read_range",
    "list",
    "put",
    "start_multipart",
    "upload_part",
    "complete",
    "abort",
    "copy",
    "copy_part",
    "delete",
    "delete_many",
    "sign_url",
    "create_bucket",
    "delete_bucket",
    "check_bucket",
]

#: ``hook(op, key)`` is awaited before each operation; it may sleep, record or raise.
Hook = Callable[[str, str], Awaitable[None]]

DEFAULT_CONTENT_TYPE = "application/octet-stream"
MAX_PART_NUMBER = 10_000
#: S3's page size; listings page internally so a fault can hit the n-th page.
PAGE_SIZE = 1000
#: Size of the chunks a read stream yields.
READ_CHUNK = 1024 * 1024


def _md5(data: bytes) -> str:
    return hashlib.md5(data, usedforsecurity=False).hexdigest()


def _check_metadata(metadata: Mapping[str, str] | None) -> dict[str, str]:
    """Lower-case names, and refuse what an HTTP header (S3 ``x-amz-meta-*``) cannot carry."""
    out: dict[str, str] = {}
    for name, value in (metadata or {}).items():
        if not name or not name.isascii() or not value.isascii():
            raise InvalidRequest(f"metadata must be non-empty ASCII: {name!r}={value!r}")
        out[name.lower()] = value
    return out


@dataclass(frozen=True)
class _Object:
    data: bytes
    etag: str
    metadata: Mapping[str, str]
    content_type: str
    modified_at: datetime

    def info(self, key: str, *, listing: bool = False) -> ObjectInfo:
        if listing:  # listings carry neither metadata nor content type, as on S3
            return ObjectInfo(
                key=key, size=len(self.data), etag=self.etag, modified_at=self.modified_at
            )
        return ObjectInfo(
            key=key,
            size=len(self.data),
            etag=self.etag,
            modified_at=self.modified_at,
            metadata=dict(self.metadata),
            content_type=self.content_type,
        )


@dataclass
class _Fault:
    exc: BaseException | None
    times: int  # -1: until cleared


class _Faults:
    """Faults armed per operation, consumed in the order they were armed."""

    def __init__(self) -> None:
        self._armed: dict[str, deque[_Fault]] = defaultdict(deque)
        self.offline: BaseException | None = None
        self.hook: Hook | None = None

    def arm(self, op: str, exc: BaseException | None, times: int) -> None:
        self._armed[op].append(_Fault(exc, times))

    def clear(self) -> None:
        self._armed.clear()
        self.offline = None

    def take(self, op: str) -> BaseException | None:
        if self.offline is not None:
            return self.offline
        queue = self._armed.get(op)
        if not queue:
            return None
        fault = queue[0]
        if fault.times > 0:
            fault.times -= 1
            if fault.times == 0:
                queue.popleft()
        return fault.exc or TransientError(f"injected fault in {op}")

    async def check(self, op: str, key: str) -> None:
        # Yield to the loop as a network call would, so concurrent callers interleave.
        await asyncio.sleep(0)
        if self.hook is not None:
            await self.hook(op, key)
        exc = self.take(op)
        if exc is not None:
            raise _fresh(exc)


def _fresh(exc: BaseException) -> BaseException:
    """An exception instance fit to raise again: re-raising one object from several tasks
    would chain their tracebacks together."""
    try:
        new = type(exc)(*exc.args)
    except Exception:
        return exc
    new.__cause__ = exc.__cause__
    return new


@dataclass
class _Bucket:
    objects: dict[str, _Object] = field(default_factory=dict)
    # Sorted keys, kept beside the dict so listings are O(log n + page).
    keys: list[str] = field(default_factory=list)
    uploads: dict[str, _Upload] = field(default_factory=dict)
    public: bool = False

    def store(self, key: str, obj: _Object) -> None:
        if key not in self.objects:
            bisect.insort(self.keys, key)
        self.objects[key] = obj

    def remove(self, key: str) -> bool:
        if self.objects.pop(key, None) is None:
            return False
        del self.keys[bisect.bisect_left(self.keys, key)]
        return True


class MemoryAdmin:
    """A set of in-memory buckets; stores opened on the same bucket share its objects.

    With ``credentials`` (``access_key_id``/``secret_access_key``) set, a store opened with
    other credentials fails every operation with :class:`~sdk.errors.PermissionDenied`, the
    way a real provider refuses a wrong secret.
    """

    def __init__(self, credentials: Mapping[str, str] | None = None) -> None:
        self._buckets: dict[str, _Bucket] = {}
        self._credentials = dict(credentials or {})
        self._faults = _Faults()
        self.credential_times = CredentialTimes()

    # -- fault injection on admin operations -----------------------------------------------

    def fail_next(self, op: Op, exc: BaseException | None = None, *, times: int = 1) -> None:
        """Make the next ``times`` admin operations ``op`` raise ``exc`` (default: a
        :class:`~sdk.errors.TransientError`)."""
        self._faults.arm(op, exc, times)

    # -- ProviderAdmin -----------------------------------------------------------------------

    async def create_bucket(self, bucket_name: str) -> None:
        """Create an empty bucket; :class:`~sdk.errors.AlreadyExists` if the name is taken."""
        await self._faults.check("create_bucket", bucket_name)
        _check_bucket_name(bucket_name)
        if bucket_name in self._buckets:
            raise AlreadyExists(f"bucket {bucket_name!r} already exists")
        self._buckets[bucket_name] = _Bucket()

    async def delete_bucket(self, bucket_name: str) -> None:
        """Delete an empty bucket."""
        await self._faults.check("delete_bucket", bucket_name)
        bucket = self._bucket(bucket_name)
        if bucket.objects:
            raise NotEmpty(f"bucket {bucket_name!r} is not empty")
        del self._buckets[bucket_name]

    async def open_bucket(
        self, bucket_name: str, credentials: Mapping[str, str] | None = None
    ) -> MemoryStore:
        """A store on ``bucket_name``.  Like the real providers, nothing is checked until the
        first operation."""
        allowed = credentials is None or self._accepts(credentials)
        return MemoryStore(self, bucket_name, allowed=allowed)

    async def check_bucket(self, bucket_name: str, credentials: Mapping[str, str]) -> None:
        """Raise unless ``credentials`` could list ``bucket_name``."""
        await self._faults.check("check_bucket", bucket_name)
        if not self._accepts(credentials):
            raise PermissionDenied("credentials refused")
        self._bucket(bucket_name)

    # -- access control: the in-memory provider has none -------------------------------------

    async def open_scoped_bucket(self, bucket_name: str) -> MemoryStore:
        """A store with the admin's rights: there are no credentials to scope here."""
        return await self.open_bucket(bucket_name)

    def _no_access_control(self) -> InvalidRequest:
        return InvalidRequest("the in-memory provider cannot issue or scope credentials")

    async def temporary_credentials(
        self, bucket_name: str, *, read_only: bool = False
    ) -> IssuedCredentials:
        raise self._no_access_control()

    async def create_persistent_credentials(
        self, credentials_id: str, bucket_names: Sequence[str], *, read_only: bool = False
    ) -> PersistentGrant:
        raise self._no_access_control()

    async def detach_persistent_credentials(
        self, state: Mapping[str, Any], bucket_name: str
    ) -> Mapping[str, Any]:
        raise self._no_access_control()

    async def revoke_persistent_credentials(self, state: Mapping[str, Any]) -> None:
        raise self._no_access_control()

    async def set_public_access(self, bucket_name: str, public: bool) -> None:
        raise self._no_access_control()

    async def close(self) -> None:
        """Nothing to release; the buckets stay for other stores of this admin."""

    # -- inspection helpers for tests --------------------------------------------------------

    def bucket_names(self) -> list[str]:
        return sorted(self._buckets)

    def _accepts(self, credentials: Mapping[str, str]) -> bool:
        return all(
            credentials.get(name) == value
            for name, value in self._credentials.items()
            if name in ("access_key_id", "secret_access_key")
        )

    def _bucket(self, bucket_name: str) -> _Bucket:
        try:
            return self._buckets[bucket_name]
        except KeyError:
            raise ResourceNotFound(f"bucket {bucket_name!r} does not exist") from None


def _check_bucket_name(name: str) -> None:
    # The common ground of S3 and Azure: 3-63 lower-case letters, digits and dashes.
    if (
        not (3 <= len(name) <= 63)
        or not all(c.islower() or c.isdigit() or c == "-" for c in name)
        or not name[0].isalnum()
    ):
        raise InvalidRequest(f"invalid bucket name {name!r}")


class MemoryStore:
    """A :class:`~sdk.providers.base.BlobStore` on one bucket of a :class:`MemoryAdmin`."""

    def __init__(self, admin: MemoryAdmin, bucket_name: str, *, allowed: bool = True) -> None:
        self.bucket_name = bucket_name
        self._admin = admin
        self._allowed = allowed
        self._faults = _Faults()
        self._closed = False
        self._upload_ids = itertools.count(1)
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

    async def _enter(self, op: str, key: str = "") -> _Bucket:
        if self._closed:
            raise RuntimeError("store is closed")
        await self._faults.check(op, key)
        if not self._allowed:
            raise PermissionDenied(f"{op} on {self.bucket_name!r}: credentials refused")
        return self._data()

    def _data(self) -> _Bucket:
        return self._admin._bucket(self.bucket_name)

    def _get(self, bucket: _Bucket, key: str, etag: str | None) -> _Object:
        obj = bucket.objects.get(key)
        if obj is None:
            raise ResourceNotFound(f"{self.bucket_name}/{key} does not exist")
        if etag is not None and obj.etag != etag:
            raise PreconditionFailed(f"{self.bucket_name}/{key} is no longer version {etag}")
        return obj

    async def head(self, key: str) -> ObjectInfo:
        """Metadata of ``key``."""
        bucket = await self._enter("head", key)
        return self._get(bucket, key, None).info(key)

    def read(
        self,
        key: str,
        offset: int = 0,
        length: int | None = None,
        *,
        etag: str | None = None,
    ) -> AbstractAsyncContextManager[AsyncIterator[bytes]]:
        """Stream part of ``key``; the version read is fixed when the stream opens."""
        _check_range(offset, length)
        return self._read(key, offset, length, etag)

    @asynccontextmanager
    async def _read(
        self, key: str, offset: int, length: int | None, etag: str | None
    ) -> AsyncIterator[AsyncIterator[bytes]]:
        bucket = await self._enter("read", key)
        obj = self._get(bucket, key, etag)
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
        _check_range(offset, length)
        bucket = await self._enter("read_range", key)
        return self._get(bucket, key, etag).data[offset : offset + length]

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
            bucket = await self._enter("list", prefix)
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
        _check_key(key)
        meta = _check_metadata(metadata)
        bucket = await self._enter("put", key)
        obj = _Object(bytes(data), _md5(data), meta, content_type or DEFAULT_CONTENT_TYPE, _now())
        bucket.store(key, obj)
        return obj.etag

    async def start_multipart(
        self,
        key: str,
        *,
        metadata: Mapping[str, str] | None = None,
        content_type: str | None = None,
    ) -> _Upload:
        """Begin an upload of ``key`` that stays invisible until completed."""
        _check_key(key)
        meta = _check_metadata(metadata)
        bucket = await self._enter("start_multipart", key)
        upload = _Upload(
            self, key, str(next(self._upload_ids)), meta, content_type or DEFAULT_CONTENT_TYPE
        )
        bucket.uploads[upload.upload_id] = upload
        return upload

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
        _check_key(dst_key)
        meta = None if metadata is None else _check_metadata(metadata)
        bucket = await self._enter("copy", src_key)
        src = self._get(bucket, src_key, None)
        if len(src.data) > self.copy_settings.threshold:
            info = src.info(src_key)
            upload = await self.start_multipart(
                dst_key,
                metadata=src.metadata if meta is None else meta,
                content_type=src.content_type,
            )
            return await copy_in_parts(upload, info, self.copy_settings)
        obj = _Object(
            src.data, src.etag, src.metadata if meta is None else meta, src.content_type, _now()
        )
        bucket.store(dst_key, obj)
        return obj.etag

    async def delete(self, key: str, *, missing_ok: bool = False) -> None:
        """Delete ``key``; :class:`~sdk.errors.ResourceNotFound` if missing."""
        bucket = await self._enter("delete", key)
        if not bucket.remove(key) and not missing_ok:
            raise ResourceNotFound(f"{self.bucket_name}/{key} does not exist")

    async def delete_many(self, keys: Sequence[str]) -> None:
        """Delete ``keys`` in batches of 1000 (a fault hits one batch); missing are ignored."""
        for start in range(0, len(keys), 1000):
            bucket = await self._enter("delete_many", keys[start])
            for key in keys[start : start + 1000]:
                bucket.remove(key)

    async def sign_url(self, key: str, expires_in_seconds: int) -> str:
        """A ``memory://bucket/key?expires=…`` URL (the key need not exist, as on S3)."""
        check_expiry(expires_in_seconds)
        await self._enter("sign_url", key)
        expires = int(time.time()) + expires_in_seconds
        return f"memory://{self.bucket_name}/{quote(key)}?expires={expires}"

    async def close(self) -> None:
        """Refuse further use, as a real store with a closed connection pool would."""
        self._closed = True


class _Upload:
    """A multipart upload of a :class:`MemoryStore`."""

    def __init__(
        self,
        store: MemoryStore,
        key: str,
        upload_id: str,
        metadata: Mapping[str, str],
        content_type: str,
    ) -> None:
        self.key = key
        self.upload_id = upload_id
        self._store = store
        self._metadata = metadata
        self._content_type = content_type
        self._parts: dict[int, bytes] = {}

    def _live(self, bucket: _Bucket) -> None:
        if self.upload_id not in bucket.uploads:
            raise ResourceNotFound(f"upload of {self.key!r} was completed or aborted")

    async def upload_part(self, part_number: int, data: bytes) -> None:
        """Store part ``part_number`` (1..10000); uploading a number again replaces it."""
        if not 1 <= part_number <= MAX_PART_NUMBER:
            raise InvalidRequest(f"part number {part_number} outside 1..{MAX_PART_NUMBER}")
        bucket = await self._store._enter("upload_part", self.key)
        self._live(bucket)
        self._parts[part_number] = bytes(data)

    async def copy_part(
        self, part_number: int, src_key: str, offset: int, length: int, *, etag: str
    ) -> None:
        """Make part ``part_number`` the range ``offset``..``offset+length`` of version
        ``etag`` of ``src_key``."""
        if not 1 <= part_number <= MAX_PART_NUMBER:
            raise InvalidRequest(f"part number {part_number} outside 1..{MAX_PART_NUMBER}")
        bucket = await self._store._enter("copy_part", src_key)
        self._live(bucket)
        src = self._store._get(bucket, src_key, etag)
        if length < 1 or offset < 0 or offset + length > len(src.data):
            raise InvalidRequest(f"copy range {offset}+{length} outside {src_key!r}")
        self._parts[part_number] = src.data[offset : offset + length]

    async def complete(self) -> str:
        """Assemble the parts in number order and make the object visible."""
        bucket = await self._store._enter("complete", self.key)
        self._live(bucket)
        if not self._parts:
            raise InvalidRequest(f"upload of {self.key!r} has no parts")
        numbers = sorted(self._parts)
        for n in numbers[:-1]:
            if len(self._parts[n]) < MIN_PART_SIZE:
                raise InvalidRequest(
                    f"part {n} of {self.key!r} is {len(self._parts[n])} bytes; every part but "
                    f"the last must be at least {MIN_PART_SIZE}"
                )
        parts = [self._parts[n] for n in numbers]
        digest = hashlib.md5(
            b"".join(hashlib.md5(p, usedforsecurity=False).digest() for p in parts),
            usedforsecurity=False,
        )
        etag = f"{digest.hexdigest()}-{len(parts)}"
        del bucket.uploads[self.upload_id]
        bucket.store(
            self.key, _Object(b"".join(parts), etag, self._metadata, self._content_type, _now())
        )
        self._parts.clear()
        return etag

    async def abort(self) -> None:
        """Drop the parts; a no-op when already aborted or completed."""
        bucket = await self._store._enter("abort", self.key)
        bucket.uploads.pop(self.upload_id, None)
        self._parts.clear()


def _now() -> datetime:
    # S3 keeps whole seconds in Last-Modified headers; listings have milliseconds.  Whole
    # seconds keep head and list of the memory store consistent with each other.
    return datetime.now(UTC).replace(microsecond=0)


def _check_key(key: str) -> None:
    if not key or len(key.encode()) > 1024:
        raise InvalidRequest(f"invalid key {key!r}: must be 1 to 1024 bytes")


def _check_range(offset: int, length: int | None) -> None:
    if offset < 0 or (length is not None and length < 0):
        raise InvalidRequest(f"invalid range offset={offset} length={length}")
