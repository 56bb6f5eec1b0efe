"""Server-side copy of a large object in parts, shared by the providers.

One server-side copy request (S3 CopyObject, Azure Copy Blob) is one long request per object,
and S3 refuses it above 5 GiB.  Above :attr:`~sdk.providers.base.CopySettings.threshold` a
provider instead starts a multipart upload of the destination and hands it to
:func:`copy_in_parts`, which fills its parts with server-side copies of ranges of the source
(S3 UploadPartCopy, Azure Put Block From URL), several at once, and completes it.  On any
failure or cancellation the upload is aborted, so a failed copy leaves neither a destination
nor parts behind.  Every part names the source version the copy began with (its ETag), so a
source replaced meanwhile fails the copy with :class:`~sdk.errors.PreconditionFailed` rather
than assembling two versions.
"""

from __future__ import annotations

import asyncio
import logging

from sdk.errors import raise_first
from sdk.providers.base import CopySettings, ObjectInfo, PartCopyUpload

log = logging.getLogger(__name__)


def part_ranges(size: int, settings: CopySettings) -> list[tuple[int, int, int]]:
    """``(part_number, offset, length)`` of every part of an object of ``size`` bytes."""
    step = settings.part_size_for(size)
    return [
        (i + 1, offset, min(step, size - offset)) for i, offset in enumerate(range(0, size, step))
    ]


async def copy_in_parts(upload: PartCopyUpload, src: ObjectInfo, settings: CopySettings) -> str:
    """Fill ``upload`` with copies of the ranges of ``src`` and complete it; return its ETag.

    ``upload`` must be a fresh upload of the destination, started with the metadata and
    content type the copy should have.  At most ``settings.concurrency`` parts are copied at
    once.  Errors are raised as they are (not as an exception group), after the abort.
    """
    slots = asyncio.Semaphore(settings.concurrency)

    async def one(number: int, offset: int, length: int) -> None:
        async with slots:
            await upload.copy_part(number, src.key, offset, length, etag=src.etag)

    try:
        try:
            async with asyncio.TaskGroup() as tg:
                for number, offset, length in part_ranges(src.size, settings):
                    tg.create_task(one(number, offset, length))
        except BaseExceptionGroup as group:
            raise_first(group)
        return await upload.complete()
    except BaseException:
        await _abort(upload)
        raise


async def _abort(upload: PartCopyUpload) -> None:
    # Shielded so a second cancellation cannot leave the parts behind; a failure is only
    # logged because the error that got us here is the one worth raising.
    try:
        await asyncio.shield(upload.abort())
    except asyncio.CancelledError:
        raise
    except Exception:
        log.warning("could not abort the part copy to %r", upload.key, exc_info=True)
