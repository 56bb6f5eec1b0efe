"""What the in-memory provider refuses, as S3 does: bucket names, keys, ranges, metadata."""

from __future__ import annotations

from collections.abc import Mapping

from sdk.errors import InvalidRequest
from sdk.providers.base import MetadataRules

#: As on S3 (:data:`sdk.providers.s3.conventions.S3_METADATA`): 2 KiB of names and values.
MEMORY_METADATA = MetadataRules(2048, "x-amz-meta-")


def check_bucket_name(name: str) -> None:
    """Refuse a name outside the common ground of S3 and Azure: 3-63 lower-case letters,
    digits and dashes, starting with a letter or digit."""
    if (
        not (3 <= len(name) <= 63)
        or not all(c.islower() or c.isdigit() or c == "-" for c in name)
        or not name[0].isalnum()
    ):
        raise InvalidRequest(f"invalid bucket name {name!r}")


def check_key(key: str) -> None:
    """Refuse an empty key or one over 1024 bytes."""
    if not key or len(key.encode()) > 1024:
        raise InvalidRequest(f"invalid key {key!r}: must be 1 to 1024 bytes")


def check_range(offset: int, length: int | None) -> None:
    """Refuse a negative offset or length."""
    if offset < 0 or (length is not None and length < 0):
        raise InvalidRequest(f"invalid range offset={offset} length={length}")


def check_metadata(metadata: Mapping[str, str] | None) -> dict[str, str]:
    """Lower-case names, and refuse what an HTTP header (S3 ``x-amz-meta-*``) cannot carry."""
    out: dict[str, str] = {}
    for name, value in (metadata or {}).items():
        if not name or not name.isascii() or not value.isascii():
            raise InvalidRequest(f"metadata must be non-empty ASCII: {name!r}={value!r}")
        out[name.lower()] = value
    if MEMORY_METADATA.size(out) > MEMORY_METADATA.limit:
        raise InvalidRequest(f"metadata over {MEMORY_METADATA.limit} bytes")
    return out
