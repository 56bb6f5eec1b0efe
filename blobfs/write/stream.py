"""The streamed upload of a file written front to back: parts go up while it is written.

A file with no original content to keep (created, opened with ``O_TRUNC``, or empty) is
*streamable*.  Its writes are tracked as a contiguous frontier from offset 0 (plus a few
out-of-order extents ahead of it, which the kernel may send with its write-back cache).
Once the frontier passes ``single_put_max``, a multipart upload (S3) or block upload
(Azure) is started in the background and every part that lies wholly behind the frontier
is handed to it; a background task uploads handed parts, at most ``max_in_flight`` of this
file at once and never more part data than the mount-wide
:class:`~blobfs.write.budget.WriteBudget` allows across all files.  Part sizes follow
:func:`~blobfs.write.parts.stream_part_size`.  ``flush`` / ``fsync`` then hands the tail,
waits for the parts in flight and completes the upload: only the tail is uploaded at
``close()``.  Files that never pass ``single_put_max`` go up whole at close
(:func:`~blobfs.write.upload.upload_fd`).

Anything that is not front-to-back is handled by **falling back**: a write or truncate
that touches a part already handed to the stream, a rename (the key changes), too many
out-of-order extents, or running out of part numbers *abandons* the stream -- its upload is
aborted in the background (the parts in flight finish first) -- and the next flush uploads
the whole staging file (one PUT, or a multipart upload sized for the file).  The staging
file always holds every byte, so falling back never needs data from the store.  A
``truncate`` to 0 abandons the stream and makes the file streamable again.

A stream's upload is recorded in the file's sidecar as soon as it has started, and the
record cleared the moment the stream is abandoned -- before the write that abandons it
touches the file -- so a daemon killed while streaming leaves an upload the next mount takes
up again (:mod:`blobfs.write.resume`), and never one whose parts the file no longer holds.
An abandoned upload is listed for abort on disk (:mod:`blobfs.write.aborts`) until its
abort succeeds.

A part that fails in the background (after the sdk's retries) is remembered; the next
``write``, ``flush`` or ``fsync`` of the file raises it once, and the stream is abandoned.
The data stays staged and dirty, so a later flush retries with a whole-file upload.  A
stream's upload is completed only after every part is stored, and aborted otherwise.

Metadata: a multipart upload carries its metadata from its start, so a streamed object's
``mtime`` metadata is the time its stream started (the file's first ``single_put_max``
bytes written).  A ``chmod``/``chown``/explicit ``utime`` during the write is applied at
completion by the caller (:attr:`Staged.stored_metadata
<blobfs.write.staging.Staged.stored_metadata>` says what was stored).
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Callable, Mapping

import trio

from blobfs.bridge.requests import describe
from blobfs.write.parts import MAX_PARTS, TrioUpload, Uploader, stream_part_size
from blobfs.write.sidecar import UploadRecord
from blobfs.write.transfers import Transfer
from blobfs.write.writeback import WriteBack

log = logging.getLogger(__name__)

#: Out-of-order extents tracked ahead of the write frontier before streaming gives up.
MAX_AHEAD = 32

#: Where a stream's upload is recorded for crash recovery (``None``: there is none).
Record = Callable[[UploadRecord | None], None]


def _no_record(record: UploadRecord | None) -> None:
    pass


class Stream:
    """A multipart upload fed with parts while its file is written."""

    def __init__(
        self,
        wb: WriteBack,
        store: Uploader,
        fd: int,
        key: str,
        meta: Mapping[str, str],
        record: Record = _no_record,
    ):
        self.wb = wb
        self._record = record
        self.store = store
        # A descriptor of its own: the staging file may be closed (discarded) while parts
        # are still being read for an abandoned stream.
        self.fd = os.dup(fd)
        self.key = key
        self.metadata = dict(meta)
        self.upload: TrioUpload | None = None
        self.error: BaseException | None = None
        self.surfaced = False
        self.abandoned = False
        self.completed = False
        self._aborted = False
        #: Bytes ``[0, handed)`` belong to parts given to the upload: never to change again.
        self.handed = 0
        self.next_number = 1
        self.parts_stored = 0
        self._send, self._receive = trio.open_memory_channel[tuple[int, int, int]](math.inf)
        self._slots = trio.Semaphore(wb.max_in_flight)
        self.done = trio.Event()
        self._during_flush = False
        #: Its progress, for ``blobfs status``: registered while :meth:`run` runs.
        self.transfer = Transfer(key, "stream", 0)

    def hand(self, length: int) -> None:
        """Give the next ``length`` bytes to the upload as its next part."""
        self._send.send_nowait((self.next_number, self.handed, length))
        self.next_number += 1
        self.handed += length
        self.transfer.total = self.handed

    def finish(self) -> None:
        """No more parts: the flush has handed the tail."""
        self._during_flush = True
        self._send.close()

    def abandon(self, *, fallback: bool = True) -> None:
        """Stop taking parts; :meth:`run` aborts the upload once the parts in flight end.
        ``fallback``: counted as a fall back to a whole-file upload."""
        if not self.abandoned and not self.completed:
            self.abandoned = True
            if fallback:
                self.wb.stats.fallbacks += 1
            self._send.close()
            self._record(None)
            if self.upload is not None:
                self.wb.pending.add(self.key, self.upload.upload_id)

    async def abort_once(self) -> None:
        """Abort the upload, if started and not aborted already."""
        if self.upload is not None and not self._aborted:
            self._aborted = True
            await self.wb.abort(self.upload, self.key)

    async def run(self) -> None:
        """The background task: start the upload, store handed parts; :attr:`done` is set
        when it ends (the upload aborted if it was abandoned or failed)."""
        self.wb.running.add(self.done)
        self.wb.transfers.add(self.transfer)
        try:
            self.upload = await self.store.start_multipart(self.key, metadata=self.metadata)
            self.wb.stats.multipart_uploads += 1
            self.wb.stats.streams += 1
            if not self.abandoned:
                self._record(UploadRecord(self.key, self.upload.upload_id, self.wb.part_size, True))
            async with trio.open_nursery() as workers:
                async for number, start, length in self._receive:
                    if self.error is not None or self.abandoned:
                        continue
                    await self._slots.acquire()
                    held = await self.wb.budget.acquire(length)
                    workers.start_soon(self._part, number, start, length, held)
        except Exception as e:
            self._fail(e)
        finally:
            if self.abandoned or self.error is not None:
                await self.abort_once()
            os.close(self.fd)
            self.wb.transfers.end(self.transfer)
            self.wb.running.discard(self.done)
            self.done.set()

    def _fail(self, e: BaseException) -> None:
        if self.error is None:
            self.error = e
            self.wb.stats.part_failures += 1
            log.warning("background upload of a part of %r failed: %s", self.key, e)
            self.wb.failures.record(
                self.key,
                f"upload of a part failed: {describe(e)}",
                "at the file's next close or fsync, as a whole file",
            )

    async def _part(self, number: int, start: int, length: int, held: int) -> None:
        try:
            if self.error is not None or self.abandoned:
                return
            data = os.pread(self.fd, length, start)
            if len(data) != length:
                raise OSError(f"short read of the staging file: {len(data)} of {length} bytes")
            assert self.upload is not None
            await self.upload.upload_part(number, data)
            self.parts_stored += 1
            self.transfer.sent += length
            self.transfer.parts += 1
            if self._during_flush:
                self.wb.stats.parts_at_flush += 1
            else:
                self.wb.stats.parts_streamed += 1
        except Exception as e:
            self._fail(e)
        finally:
            self.wb.budget.release(held)
            self._slots.release()


class Frontier:
    """The written bytes of a file written front to back: ``[0, end)``, plus the extents
    written ahead of it."""

    def __init__(self) -> None:
        self.end = 0
        self.ahead: list[tuple[int, int]] = []

    def add(self, start: int, end: int) -> bool:
        """Record written bytes ``[start, end)``; ``False`` once more than ``MAX_AHEAD``
        extents wait ahead of the frontier."""
        if end <= self.end:
            return True
        if start > self.end:
            merged: list[tuple[int, int]] = []
            for a, b in sorted([*self.ahead, (start, end)]):
                if merged and a <= merged[-1][1]:
                    merged[-1] = (merged[-1][0], max(merged[-1][1], b))
                else:
                    merged.append((a, b))
            self.ahead = merged
            return len(self.ahead) <= MAX_AHEAD
        self.end = end
        while self.ahead and self.ahead[0][0] <= self.end:
            self.end = max(self.end, self.ahead.pop(0)[1])
        return True

    def cut(self, size: int) -> None:
        """The file was truncated to ``size``."""
        self.end = min(self.end, size)
        self.ahead = [(a, min(b, size)) for a, b in self.ahead if a < size]


class Streaming:
    """The streaming of one staging file: whether it may stream, its write frontier, the
    stream in progress, and the streams given up that may still be aborting."""

    def __init__(
        self,
        wb: WriteBack,
        store: Uploader | None,
        metadata_of: Callable[[], Mapping[str, str]] | None,
        record: Record = _no_record,
    ) -> None:
        """Without a nursery in ``wb``, a ``store`` or ``metadata_of`` (the metadata a new
        upload carries), the file never streams.  ``record`` keeps the sidecar's record of
        the stream's upload."""
        self._wb = wb
        self._record = record
        self._store = store
        self._metadata_of = metadata_of
        self._stream: Stream | None = None
        self._old: list[Stream] = []
        self._streamable = False
        self._frontier = Frontier()

    def reset(self, *, empty: bool) -> None:
        """Start over: the file streams from offset 0 if it is ``empty`` (no content and no
        original to keep) and streaming is possible at all."""
        self._streamable = (
            self._wb.nursery is not None
            and self._store is not None
            and self._metadata_of is not None
            and empty
        )
        self._frontier = Frontier()

    @property
    def active(self) -> bool:
        """A streamed upload is in progress."""
        return self._stream is not None

    @property
    def reading(self) -> bool:
        """A stream given up may still read parts of the file (through its own
        descriptor) until :meth:`wait_old` has seen it end."""
        return bool(self._old)

    def abandon(self, why: str) -> None:
        """Give up the stream in progress (its upload is aborted in the background) and
        stop streaming: the next upload takes the whole file."""
        stream = self._stream
        if stream is not None:
            log.debug("%s: streaming upload given up (%s); whole file at close", stream.key, why)
            stream.abandon()
            self._old.append(stream)
            self._stream = None
        self._streamable = False

    async def surface_error(self) -> None:
        """Raise a background part failure once (then the file falls back), once its
        upload is aborted."""
        stream = self._stream
        if stream is not None and stream.error is not None and not stream.surfaced:
            stream.surfaced = True
            error = stream.error
            self.abandon("a part failed")
            await self.wait_old()
            raise error

    async def wait_old(self) -> None:
        """Let abandoned streams finish aborting, so no parts are left when we return."""
        while self._old:
            await self._old[0].done.wait()
            self._old.pop(0)

    def overwriting(self, offset: int) -> None:
        """A write at ``offset`` is coming: give up the stream if a part holds it."""
        stream = self._stream
        if stream is not None and offset < stream.handed:
            self.abandon("write into an uploaded part")

    def wrote(self, start: int, end: int, fd: int, key: str) -> None:
        """Bytes ``[start, end)`` of ``fd`` (the staging file of ``key``) were written:
        advance the frontier and hand the parts behind it."""
        if not self._streamable:
            return
        if not self._frontier.add(start, end):
            self.abandon("random writes")
        self._feed(fd, key)

    def truncated(self, size: int) -> None:
        """The file was truncated to ``size``."""
        stream = self._stream
        if size == 0:
            self.abandon("truncated to 0")
            self.reset(empty=True)
        elif stream is not None and size < stream.handed:
            self.abandon("truncated into an uploaded part")
        else:
            self._frontier.cut(size)

    def _feed(self, fd: int, key: str) -> None:
        """Hand every part wholly behind the frontier to the stream (starting it once the
        file is larger than a single PUT)."""
        wb = self._wb
        if not self._streamable or wb.nursery is None:
            return
        while True:
            stream = self._stream
            number = stream.next_number if stream is not None else 1
            start = stream.handed if stream is not None else 0
            if number > MAX_PARTS:
                self.abandon("out of part numbers")
                return
            length = stream_part_size(number, wb.part_size)
            if self._frontier.end < start + length:
                return
            if stream is None:
                if self._frontier.end <= wb.single_put_max:
                    return
                assert self._store is not None and self._metadata_of is not None
                stream = Stream(wb, self._store, fd, key, self._metadata_of(), self._record)
                self._stream = stream
                wb.nursery.start_soon(stream.run)
            stream.hand(length)

    async def before_upload(self, key: str) -> None:
        """Ready for an upload under ``key``: a part failure is raised once, a stream for
        another key (the file was renamed) is given up, and streams given up have finished
        aborting."""
        await self.surface_error()
        stream = self._stream
        if stream is not None and stream.key != key:
            self.abandon("renamed")
        await self.wait_old()

    async def finish(self, size: int) -> tuple[str, Mapping[str, str]]:
        """Hand the tail up to ``size``, wait for every part, complete; return the ETag and
        the metadata the object carries.  The stream is over either way, and later writes
        go up as a whole file."""
        stream = self._stream
        assert stream is not None
        self._stream = None
        self._streamable = False
        try:
            while stream.handed < size:
                if stream.next_number > MAX_PARTS:
                    raise OSError("too many parts for a streamed upload")
                part = stream_part_size(stream.next_number, self._wb.part_size)
                stream.hand(min(part, size - stream.handed))
            stream.finish()
            await stream.done.wait()
            if stream.error is not None:
                stream.surfaced = True
                raise stream.error
            assert stream.upload is not None
            etag = await stream.upload.complete()
        except BaseException:
            stream.abandon(fallback=False)
            await stream.done.wait()
            await stream.abort_once()
            raise
        stream.completed = True
        return etag, stream.metadata


__all__ = ["MAX_AHEAD", "Frontier", "Stream", "Streaming"]
