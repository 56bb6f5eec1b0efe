"""Multipart uploads of the in-memory store: invisible until completed, checked as S3 does.

Every part but the last must be at least :data:`~sdk.providers.base.MIN_PART_SIZE` bytes,
checked at completion as S3 does, and a completed object's ETag is S3's
``md5(part md5s)-N``.  A completed or aborted upload refuses further parts.
"""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable
from typing import Protocol

from sdk.errors import InvalidRequest, ResourceNotFound
from sdk.providers.base import MIN_PART_SIZE, StoredPart
from sdk.providers.memory.bucket import MemoryBucket, MemoryObject, PendingUpload, md5, now

MAX_PART_NUMBER = 10_000


class UploadHost(Protocol):
    """What an upload needs of its store: entering an operation (faults, the bucket's
    existence) and finding a version of a key."""

    def enter(self, op: str, key: str = "") -> Awaitable[MemoryBucket]: ...

    def version(self, bucket: MemoryBucket, key: str, etag: str | None) -> MemoryObject: ...


class MemoryUpload:
    """A multipart upload of a :class:`~sdk.providers.memory.MemoryStore`."""

    def __init__(
        self,
        store: UploadHost,
        upload_id: str,
        state: PendingUpload,
    ) -> None:
        """A handle on the upload ``upload_id`` whose server-side ``state`` is registered in
        the bucket (or, for an upload that is gone, not: then every use fails)."""
        self.key = state.key
        self.upload_id = upload_id
        self._store = store
        self._state = state
        self._parts = state.parts

    def _live(self, bucket: MemoryBucket) -> None:
        if bucket.uploads.get(self.upload_id) is not self._state:
            raise ResourceNotFound(f"upload of {self.key!r} was completed or aborted")

    async def upload_part(self, part_number: int, data: bytes) -> None:
        """Store part ``part_number`` (1..10000); uploading a number again replaces it."""
        if not 1 <= part_number <= MAX_PART_NUMBER:
            raise InvalidRequest(f"part number {part_number} outside 1..{MAX_PART_NUMBER}")
        bucket = await self._store.enter("upload_part", self.key)
        self._live(bucket)
        self._parts[part_number] = bytes(data)

    async def copy_part(
        self, part_number: int, src_key: str, offset: int, length: int, *, etag: str
    ) -> None:
        """Make part ``part_number`` the range ``offset``..``offset+length`` of version
        ``etag`` of ``src_key``."""
        if not 1 <= part_number <= MAX_PART_NUMBER:
            raise InvalidRequest(f"part number {part_number} outside 1..{MAX_PART_NUMBER}")
        bucket = await self._store.enter("copy_part", src_key)
        self._live(bucket)
        src = self._store.version(bucket, src_key, etag)
        if length < 1 or offset < 0 or offset + length > len(src.data):
            raise InvalidRequest(f"copy range {offset}+{length} outside {src_key!r}")
        self._parts[part_number] = src.data[offset : offset + length]

    async def stored_parts(self) -> dict[int, StoredPart]:
        """The parts stored so far, with their MD5s."""
        bucket = await self._store.enter("list_parts", self.key)
        self._live(bucket)
        return {
            n: StoredPart(n, len(data), md5(data), md5(data)) for n, data in self._parts.items()
        }

    def keep_part(self, part: StoredPart) -> None:
        """Nothing to do: the part is still held."""
        if part.number not in self._parts:
            raise InvalidRequest(f"upload of {self.key!r} holds no part {part.number}")

    async def complete(self) -> str:
        """Assemble the parts in number order and make the object visible."""
        bucket = await self._store.enter("complete", self.key)
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
            self.key,
            MemoryObject(
                b"".join(parts), etag, self._state.metadata, self._state.content_type, now()
            ),
        )
        self._parts.clear()
        return etag

    async def abort(self) -> None:
        """Drop the parts; a no-op when already aborted or completed."""
        bucket = await self._store.enter("abort", self.key)
        bucket.uploads.pop(self.upload_id, None)
        self._parts.clear()
