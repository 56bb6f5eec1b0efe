"""How objects look through the S3 provider, whatever the server: ETags without quotes, times
in UTC, user metadata with lower-case names, an explicit content type, and no object where
SeaweedFS answers for an implicit directory; and which endpoints are AWS's own.

Every request path (botocore, the direct clients, prepared requests) applies these, so a
caller sees the same object whichever path served it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

from sdk.providers.base import MetadataRules

#: Sent when the caller names no content type: SeaweedFS would sniff one, and every provider
#: should report the same.
DEFAULT_CONTENT_TYPE = "application/octet-stream"


#: S3 allows 2 KiB of user metadata ("the sum of the bytes of each key and value"); names are
#: counted with their ``x-amz-meta-`` prefix, the stricter reading.
S3_METADATA = MetadataRules(2048, "x-amz-meta-")


def is_aws(endpoint_url: str | None) -> bool:
    """Whether ``endpoint_url`` is AWS's own S3 (``None``: botocore's default endpoint),
    China's partition (``amazonaws.com.cn``) included."""
    if endpoint_url is None:
        return True
    host = (urlsplit(endpoint_url).hostname or "").rstrip(".")
    return host.endswith((".amazonaws.com", ".amazonaws.com.cn"))


def strip_etag(raw: str) -> str:
    """An ETag without the quotes HTTP puts around it (one convention for every provider)."""
    return raw.strip('"')


def as_utc(value: datetime | None) -> datetime | None:
    """``value`` in UTC: botocore parses listing times in the local zone, header times in
    UTC."""
    return None if value is None else value.astimezone(UTC)


def lower_metadata(metadata: Mapping[str, str] | None) -> dict[str, str]:
    """User metadata with lower-case names, as S3 returns them."""
    return {k.lower(): v for k, v in (metadata or {}).items()}


def is_implicit_directory(key: str, resp: Mapping[str, Any]) -> bool:
    """Whether a HEAD/GET reply (its ``ETag`` and ``ContentType``) is SeaweedFS answering
    for ``dir/`` only because keys lie under it (or once did), with an ETag ending in
    ``-0``; S3 answers 404 because no such object was ever written.  No real object has a
    zero-part multipart ETag."""
    return (
        key.endswith("/")
        and str(resp.get("ETag", "")).strip('"').endswith("-0")
        and resp.get("ContentType") == "application/x-directory"
    )


def multipart_etag(part_etags: list[str]) -> str:
    """S3's ETag of a multipart object: md5 of the parts' binary md5s, dash, part count."""
    digest = hashlib.md5(b"".join(bytes.fromhex(e) for e in part_etags), usedforsecurity=False)
    return f"{digest.hexdigest()}-{len(part_etags)}"


__all__ = [
    "DEFAULT_CONTENT_TYPE",
    "S3_METADATA",
    "as_utc",
    "is_aws",
    "is_implicit_directory",
    "lower_metadata",
    "multipart_etag",
    "strip_etag",
]
