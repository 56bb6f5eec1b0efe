"""The upload of a whole staged file: one PUT, or a multipart upload sized for the file.

This is how a file that was not streamed while written goes up at ``flush``/``close``, and
how crash recovery stores a leftover (:mod:`blobfs.write.resume` takes up an upload a
killed daemon left).  Parts are read from the file only once a slot is free, per file
(``max_in_flight``) and mount-wide (the budget), so memory stays bounded whatever the
file's size.  A multipart upload is recorded (``record``) once started, for the sidecar.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping

import trio

from blobfs.write.parts import TrioUpload, Uploader, part_layout, part_size_for
from blobfs.write.sidecar import UploadRecord
from blobfs.write.transfers import Transfer
from blobfs.write.writeback import WriteBack


async def upload_fd(
    fd: int,
    size: int,
    store: Uploader,
    key: str,
    metadata: Mapping[str, str],
    wb: WriteBack,
    record: Callable[[UploadRecord | None], None] | None = None,
) -> str:
    """Store bytes ``[0, size)`` of ``fd`` under ``key``: one PUT, or a multipart upload
    completed only when every part is stored (aborted on any failure, and ``record`` told
    so with ``None``).  Returns the ETag."""
    if size <= wb.single_put_max:
        transfer = wb.transfers.start(key, "put", size)
        try:
            async with wb.budget.hold(size):
                data = os.pread(fd, size, 0) if size else b""
                etag = await store.put(key, data, metadata=metadata)
        finally:
            wb.transfers.end(transfer)
        wb.stats.puts += 1
        return etag
    part = part_size_for(size, wb.part_size)
    upload = await store.start_multipart(key, metadata=metadata)
    wb.stats.multipart_uploads += 1
    if record is not None:
        record(UploadRecord(key, upload.upload_id, part, False))
    transfer = wb.transfers.start(key, "multipart", size)
    try:
        await send_parts(fd, upload, part_layout(size, part, streamed=False), wb, transfer)
        return await upload.complete()
    except BaseException:
        if record is not None:
            record(None)
        await wb.abort(upload, key)
        raise
    finally:
        wb.transfers.end(transfer)


async def send_parts(
    fd: int,
    upload: TrioUpload,
    parts: list[tuple[int, int, int]],
    wb: WriteBack,
    transfer: Transfer | None = None,
) -> None:
    """Upload ``parts`` (number, offset, length) of ``fd``, ``max_in_flight`` at once and
    within the budget, counting them in ``transfer``; raise the first failure once none is
    in flight."""
    limit = trio.Semaphore(wb.max_in_flight)
    failures: list[BaseException] = []

    async def one(number: int, offset: int, length: int, held: int) -> None:
        try:
            if failures:
                return
            data = os.pread(fd, length, offset)
            if len(data) != length:
                raise OSError(f"short read of the staging file: {len(data)} of {length} bytes")
            await upload.upload_part(number, data)
            wb.stats.parts_at_flush += 1
            if transfer is not None:
                transfer.sent += len(data)
                transfer.parts += 1
        except Exception as e:  # collected: the first failure is raised below
            failures.append(e)
        finally:
            wb.budget.release(held)
            limit.release()

    async with trio.open_nursery() as nursery:
        for number, offset, length in parts:
            # Bound memory: read a part only once a slot (per file and mount-wide) is free.
            await limit.acquire()
            held = await wb.budget.acquire(length)
            if failures:
                wb.budget.release(held)
                limit.release()
                break
            nursery.start_soon(one, number, offset, length, held)
    if failures:
        raise failures[0]


__all__ = ["send_parts", "upload_fd"]
