"""Checks made before a request (container names, keys, metadata, ranges) and ETag quoting.

Azure refuses some of these with less detail than a :class:`~sdk.errors.InvalidRequest`
raised here, and Azurite does not refuse all of them; the rules follow S3 where the two
providers differ, so the contract tests behave alike on both.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Final

from sdk.errors import InvalidRequest
from sdk.providers.base import MetadataRules

# Container names: 3-63 characters of lower-case letters, digits and single hyphens, starting
# and ending with a letter or digit.  Azurite does not enforce all of it, so it is checked here.
_CONTAINER_NAME = re.compile(r"^[a-z0-9](?:[a-z0-9]|-(?=[a-z0-9])){2,62}$")


def validate_container_name(name: str) -> None:
    """Raise :class:`~sdk.errors.InvalidRequest` unless ``name`` is a valid container name."""
    if not _CONTAINER_NAME.match(name):
        raise InvalidRequest(
            f"invalid Azure container name {name!r}: use 3-63 lower-case letters, digits and "
            "single hyphens, starting and ending with a letter or digit"
        )


#: Azure allows 8 KiB of metadata names and values per blob.
AZURE_METADATA: Final = MetadataRules(8192)
#: Azure metadata names are C# identifiers (they travel as ``x-ms-meta-<name>`` headers).
_METADATA_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
#: Azure's (and S3's) longest key, in bytes.
_MAX_KEY_BYTES: Final = 1024


def check_key(key: str) -> None:
    """Refuse an empty key or one longer than Azure allows."""
    if not key or len(key.encode()) > _MAX_KEY_BYTES:
        raise InvalidRequest(f"invalid key {key!r}: must be 1 to {_MAX_KEY_BYTES} bytes")


def check_metadata(metadata: Mapping[str, str] | None) -> dict[str, str]:
    """Lower-cased metadata, refused up front where Azure would refuse it with less detail.

    Names must be identifiers (letters, digits, ``_``): Azure rejects ``-`` which S3 allows,
    so portable callers should stick to identifiers.  Values must be ASCII, as on S3.
    """
    out: dict[str, str] = {}
    for name, value in (metadata or {}).items():
        if not _METADATA_NAME.match(name) or not value.isascii():
            raise InvalidRequest(
                f"metadata {name!r}={value!r}: Azure needs names made of letters, digits and "
                "'_' (not starting with a digit) and ASCII values"
            )
        out[name.lower()] = value
    return out


def check_range(offset: int, length: int | None) -> None:
    """Refuse a negative offset or length."""
    if offset < 0 or (length is not None and length < 0):
        raise InvalidRequest(f"invalid range offset={offset} length={length}")


def strip_etag(etag: object) -> str:
    """Azure's ETag (``"0x8DC..."``) without its quotes, as the S3 provider returns them."""
    return str(etag or "").strip('"')


def quote_etag(etag: str) -> str:
    """``etag`` in quotes, for a conditional request."""
    # Azure accepts both, but If-Match is defined on quoted entity tags.
    return etag if etag.startswith('"') else f'"{etag}"'
