"""The shape of uploads: what stores a staged file, and how a file is cut into parts.

The write path never talks to storage on its own: it is handed an :class:`Uploader`
(``put`` / ``start_multipart``).  A file up to ``single_put_max`` goes up as one PUT; a
larger one as a multipart upload (S3) or block upload (Azure).  A file whose size is known
(uploaded whole) gets :func:`part_size_for`; a file streamed while it is written, whose
final size is unknown, gets :func:`stream_part_size` for each part in turn.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol

from sdk.providers.base import MIN_PART_SIZE

#: Largest file sent as a single PUT.
SINGLE_PUT_MAX = 8 * 1024 * 1024
#: Part size of multipart uploads (raised for files that would need more than MAX_PARTS).
PART_SIZE = 8 * 1024 * 1024
MAX_PARTS = 10_000
#: Parts of one file uploaded concurrently.
MAX_IN_FLIGHT = 4
#: A streamed part size doubles after this many parts.
PARTS_PER_SIZE = 2000


class TrioUpload(Protocol):
    """A multipart upload in progress: complete it only once every part is stored."""

    async def upload_part(self, part_number: int, data: bytes) -> None: ...

    async def complete(self) -> str: ...

    async def abort(self) -> None: ...


class Uploader(Protocol):
    """What stores files: a single PUT, or a multipart upload (both return/complete to
    the new ETag)."""

    async def put(
        self, key: str, data: bytes, *, metadata: Mapping[str, str] | None = None
    ) -> str: ...

    async def start_multipart(
        self, key: str, *, metadata: Mapping[str, str] | None = None
    ) -> TrioUpload: ...


def part_size_for(size: int, part_size: int = PART_SIZE) -> int:
    """Part size of a multipart upload of ``size`` bytes: ``part_size`` (at least the
    provider's minimum), doubled until ``MAX_PARTS`` parts are enough."""
    part = max(part_size, MIN_PART_SIZE)
    while -(-size // part) > MAX_PARTS:
        part *= 2
    return part


def stream_part_size(number: int, part_size: int = PART_SIZE) -> int:
    """Size of part ``number`` (1-based) of a streamed upload, whose final size is unknown.

    ``part_size`` doubles every ``PARTS_PER_SIZE`` parts: with 8 MiB, 10,000 parts reach
    496,000 MiB (~484 GiB)."""
    return max(part_size, MIN_PART_SIZE) << ((number - 1) // PARTS_PER_SIZE)


__all__ = [
    "MAX_IN_FLIGHT",
    "MAX_PARTS",
    "PARTS_PER_SIZE",
    "PART_SIZE",
    "SINGLE_PUT_MAX",
    "TrioUpload",
    "Uploader",
    "part_size_for",
    "stream_part_size",
]
