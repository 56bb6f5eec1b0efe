"""Public data types of the Buckets API (read-only dataclasses, as in the reference)."""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from yarl import URL


class _Provider(enum.StrEnum):
    """Blob storage provider a bucket lives in."""

    AWS = "aws"  #: Amazon Web Services S3
    MINIO = "minio"  #: MinIO S3
    S3 = "s3"  #: any other S3-compatible store (SeaweedFS, Ceph RGW, ...)
    AZURE = "azure"  #: Azure Blob Storage container
    GCP = "gcp"  #: reserved, no provider implementation yet
    OPEN_STACK = "open_stack"  #: reserved, no provider implementation yet

    @property
    def is_s3(self) -> bool:
        return self in (_Provider.AWS, _Provider.MINIO, _Provider.S3)


@dataclass(frozen=True)
class Bucket:
    """One bucket known to the local registry."""

    id: str
    owner: str
    cluster_name: str
    provider: _Provider
    created_at: datetime
    imported: bool
    org_name: str | None = None
    public: bool = False
    name: str | None = None

    Provider = _Provider

    @property
    def uri(self) -> URL:
        """``blob://cluster[/org]/owner/{name or id}``."""
        parts = [self.org_name] if self.org_name else []
        parts += [self.owner, self.name or self.id]
        return URL.build(scheme="blob", host=self.cluster_name, path="/" + "/".join(parts))

    def __repr__(self) -> str:  # keep it short in logs and tracebacks
        return f"Bucket(id={self.id!r}, name={self.name!r}, owner={self.owner!r})"


# Keep ``Bucket.Provider`` and the module-level name pointing at one enum.
Provider = _Provider


@dataclass(frozen=True)
class BucketEntry:
    """A listing entry: an object (:class:`BlobObject`) or a common prefix."""

    key: str
    bucket: Bucket
    size: int
    created_at: datetime | None = None
    modified_at: datetime | None = None

    @property
    def uri(self) -> URL:
        return self.bucket.uri / self.key if self.key else self.bucket.uri

    @property
    def name(self) -> str:
        """The part of the key after the last ``/`` (a prefix keeps its own name)."""
        return self.key.rstrip("/").rsplit("/", 1)[-1] if self.key else ""

    def is_dir(self) -> bool:
        raise NotImplementedError

    def is_file(self) -> bool:
        return not self.is_dir()


@dataclass(frozen=True)
class BlobObject(BucketEntry):
    """A key that exists in the store."""

    etag: str | None = field(default=None, compare=False)

    def is_dir(self) -> bool:
        # A directory marker: ``folder/`` with no content.
        return self.key.endswith("/") and self.size == 0


@dataclass(frozen=True)
class BlobCommonPrefix(BucketEntry):
    """A common prefix (a "folder") in a non-recursive listing; key ends with ``/``."""

    def is_dir(self) -> bool:
        return True


@dataclass(frozen=True)
class BucketCredentials:
    """Provider credentials for one bucket.

    ``credentials`` holds secrets; ``repr`` shows only which keys are present.
    """

    bucket_id: str
    provider: _Provider
    credentials: Mapping[str, str] = field(repr=False)

    def __repr__(self) -> str:
        return (
            f"BucketCredentials(bucket_id={self.bucket_id!r}, provider={self.provider.value!r}, "
            f"keys={sorted(self.credentials)!r})"
        )


@dataclass(frozen=True)
class PersistentBucketCredentials:
    """Long-lived credentials for a set of buckets."""

    id: str
    owner: str
    cluster_name: str
    name: str | None
    read_only: bool
    credentials: Sequence[BucketCredentials]


@dataclass(frozen=True)
class BucketUsage:
    """Disk usage of a bucket, possibly partial while the scan runs."""

    total_bytes: int
    object_count: int
