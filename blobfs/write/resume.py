"""Taking up a multipart upload a killed daemon left, where it stopped.

A staging file whose sidecar records an upload in progress (:class:`UploadRecord`: streamed
parts, or a whole-file upload at close) is not sent again from byte 0: recovery asks the
server which parts the upload holds (S3 ListParts, Azure's uncommitted block list), keeps
each part that holds exactly the staged bytes of that part, uploads only the parts that are
missing or different, and completes.  "Exactly": the part has the size the layout gives it
and, where the server tells the MD5 of a part's bytes (S3's part ETags), the MD5 of the
staged bytes; Azure tells no checksum, and there the record's invariant vouches for the
bytes (a recorded upload's parts are never rewritten in the staging file:
:class:`~blobfs.write.sidecar.UploadRecord`).  When the upload is gone (completed, aborted,
expired) :func:`resume_fd` answers ``None`` and the caller uploads the file anew.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping
from dataclasses import dataclass

import trio

from blobfs.write.parts import Resumer, part_layout
from blobfs.write.sidecar import UploadRecord
from blobfs.write.upload import send_parts
from blobfs.write.writeback import WriteBack
from sdk.errors import ResourceNotFound
from sdk.providers.base import StoredPart


@dataclass(frozen=True)
class Resumed:
    """A resumed upload completed: its ETag, the bytes sent now and the bytes the server
    held already."""

    etag: str
    sent: int
    kept: int


def _md5(fd: int, offset: int, length: int) -> str:
    """MD5 of ``length`` staged bytes at ``offset`` (blocking: run in a worker thread)."""
    digest = hashlib.md5(usedforsecurity=False)
    step = 1024 * 1024
    for start in range(offset, offset + length, step):
        digest.update(os.pread(fd, min(step, offset + length - start), start))
    return digest.hexdigest()


async def _holds(fd: int, part: StoredPart | None, offset: int, length: int) -> bool:
    """Whether the stored ``part`` holds exactly the staged bytes ``[offset, +length)``."""
    if part is None or part.size != length:
        return False
    if part.md5 is None:
        return True  # no checksum told: the record's invariant vouches for the bytes
    return await trio.to_thread.run_sync(_md5, fd, offset, length) == part.md5


async def resume_fd(
    fd: int,
    size: int,
    store: Resumer,
    key: str,
    metadata: Mapping[str, str],
    wb: WriteBack,
    record: UploadRecord,
) -> Resumed | None:
    """Finish upload ``record`` with bytes ``[0, size)`` of ``fd`` (see the module
    docstring); ``None`` if the upload is gone.  Raises what the store raises; the upload is
    left as it is then (the next attempt takes it up again)."""
    upload = await store.resume_multipart(key, record.upload_id, metadata=metadata)
    try:
        stored = await upload.stored_parts()
    except ResourceNotFound:
        return None
    layout = part_layout(size, record.part_size, streamed=record.streamed)
    if not layout:  # an empty file: one PUT, and this upload is of no use
        await wb.abort(upload, key)
        return None
    missing: list[tuple[int, int, int]] = []
    kept = 0
    # Every kept part is counted before any part is sent (the upload's bookkeeping is not
    # shared with parts in flight).
    for number, offset, length in layout:
        part = stored.get(number)
        if part is not None and await _holds(fd, part, offset, length):
            upload.keep_part(part)
            kept += length
        else:
            missing.append((number, offset, length))
    await send_parts(fd, upload, missing, wb)
    etag = await upload.complete()
    return Resumed(etag, size - kept, kept)


__all__ = ["Resumed", "resume_fd"]
