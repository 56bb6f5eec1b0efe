"""The shape of uploads: what stores a staged file, and how a file is cut into parts.

The write path never talks to storage on its own: it is handed an :class:`Uploader`
(``put`` / ``start_multipart``), and crash recovery a :class:`Resumer` as well.  A file up
to ``single_put_max`` goes up as one PUT; a larger one as a multipart upload (S3) or block
upload (Azure).  A file whose size is known (uploaded whole) gets :func:`part_size_for`; a
file streamed while it is written, whose final size is unknown, gets
:func:`stream_part_size` for each part in turn.  :func:`part_layout` gives the parts of
either kind, so an upload can be taken up again where it stopped.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol

from sdk.providers.base import MIN_PART_SIZE, StoredPart

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

    @property
    def upload_id(self) -> str: ...

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


class ResumedUpload(TrioUpload, Protocol):
    """An upload taken up again: the parts it holds, and keeping one without sending it."""

    async def stored_parts(self) -> dict[int, StoredPart]: ...

    def keep_part(self, part: StoredPart) -> None: ...


class Resumer(Uploader, Protocol):
    """An :class:`Uploader` that can take up an upload a killed daemon left unfinished."""

    async def resume_multipart(
        self, key: str, upload_id: str, *, metadata: Mapping[str, str] | None = None
    ) -> ResumedUpload: ...


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


def part_layout(size: int, part_size: int, *, streamed: bool) -> list[tuple[int, int, int]]:
    """``(number, offset, length)`` of each part of a ``size``-byte file: parts of
    :func:`stream_part_size` if ``streamed``, else of ``part_size`` each (the last part
    takes what is left)."""
    out: list[tuple[int, int, int]] = []
    offset, number = 0, 1
    while offset < size:
        step = stream_part_size(number, part_size) if streamed else part_size
        length = min(step, size - offset)
        out.append((number, offset, length))
        offset += length
        number += 1
    return out


__all__ = [
    "MAX_IN_FLIGHT",
    "MAX_PARTS",
    "PARTS_PER_SIZE",
    "PART_SIZE",
    "SINGLE_PUT_MAX",
    "ResumedUpload",
    "Resumer",
    "TrioUpload",
    "Uploader",
    "part_layout",
    "part_size_for",
    "stream_part_size",
]
