"""The contents of one in-memory bucket: its objects, their sorted keys and open uploads.

Keys are kept sorted beside the object table, so a listing page costs O(log n + page).  An
object's ETag is the md5 hex digest of its content, without quotes, and its modification
time has whole seconds, as S3's Last-Modified header does.
"""

from __future__ import annotations

import bisect
import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Protocol

from sdk.providers.base import ObjectInfo

DEFAULT_CONTENT_TYPE = "application/octet-stream"


def md5(data: bytes) -> str:
    """The ETag of ``data``."""
    return hashlib.md5(data, usedforsecurity=False).hexdigest()


def now() -> datetime:
    """A modification time.  S3 keeps whole seconds in Last-Modified headers and
    milliseconds in listings; whole seconds keep head and list consistent with each other."""
    return datetime.now(UTC).replace(microsecond=0)


@dataclass(frozen=True)
class MemoryObject:
    """One stored version of a key."""

    data: bytes
    etag: str
    metadata: Mapping[str, str]
    content_type: str
    modified_at: datetime

    def info(self, key: str, *, listing: bool = False) -> ObjectInfo:
        """What a head (or, with ``listing``, a listing) reports of the object at ``key``."""
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


@dataclass(eq=False)
class PendingUpload:
    """What the server keeps of a multipart upload in progress (any store of the bucket
    may take it up by its id)."""

    key: str
    metadata: Mapping[str, str]
    content_type: str
    parts: dict[int, bytes] = field(default_factory=dict)


@dataclass
class MemoryBucket:
    """Objects by key, the keys in order, and the multipart uploads in progress."""

    objects: dict[str, MemoryObject] = field(default_factory=dict)
    keys: list[str] = field(default_factory=list)
    #: Multipart uploads in progress, by upload id.
    uploads: dict[str, PendingUpload] = field(default_factory=dict)
    public: bool = False

    def store(self, key: str, obj: MemoryObject) -> None:
        """Create or replace ``key``."""
        if key not in self.objects:
            bisect.insort(self.keys, key)
        self.objects[key] = obj

    def remove(self, key: str) -> bool:
        """Delete ``key``; False if it did not exist."""
        if self.objects.pop(key, None) is None:
            return False
        del self.keys[bisect.bisect_left(self.keys, key)]
        return True


class BucketSource(Protocol):
    """Where a store finds its bucket's contents (the admin that holds every bucket)."""

    def bucket(self, bucket_name: str) -> MemoryBucket:
        """The contents of ``bucket_name``; raises if the bucket does not exist."""
        ...
