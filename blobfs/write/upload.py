"""The upload of a whole staged file: one PUT, or a multipart upload sized for the file.

This is how a file that was not streamed while written goes up at ``flush``/``close``, and
how crash recovery stores a leftover.  Parts are read from the file only once a slot is
free, per file (``max_in_flight``) and mount-wide (the budget), so memory stays bounded
whatever the file's size.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

import trio

from blobfs.write.parts import Uploader, part_size_for
from blobfs.write.writeback import WriteBack


async def upload_fd(
    fd: int,
    size: int,
    store: Uploader,
    key: str,
    metadata: Mapping[str, str],
    wb: WriteBack,
) -> str:
    """Store bytes ``[0, size)`` of ``fd`` under ``key``: one PUT, or a multipart upload
    completed only when every part is stored (aborted on any failure).  Returns the ETag."""
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
    count = -(-size // part)
    upload = await store.start_multipart(key, metadata=metadata)
    wb.stats.multipart_uploads += 1
    limit = trio.Semaphore(wb.max_in_flight)
    failures: list[BaseException] = []
    transfer = wb.transfers.start(key, "multipart", size)

    async def one(number: int, held: int) -> None:
        try:
            if failures:
                return
            offset = (number - 1) * part
            data = os.pread(fd, min(part, size - offset), offset)
            await upload.upload_part(number, data)
            wb.stats.parts_at_flush += 1
            transfer.sent += len(data)
            transfer.parts += 1
        except Exception as e:  # collected: the first failure is raised below
            failures.append(e)
        finally:
            wb.budget.release(held)
            limit.release()

    try:
        async with trio.open_nursery() as nursery:
            for number in range(1, count + 1):
                # Bound memory: read a part only once a slot (per file and mount-wide) is free.
                await limit.acquire()
                held = await wb.budget.acquire(min(part, size - (number - 1) * part))
                if failures:
                    wb.budget.release(held)
                    limit.release()
                    break
                nursery.start_soon(one, number, held)
        if failures:
            raise failures[0]
        return await upload.complete()
    except BaseException:
        await wb.abort(upload, key)
        raise
    finally:
        wb.transfers.end(transfer)


__all__ = ["upload_fd"]
