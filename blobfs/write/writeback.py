"""What the staging files of one mount share: :class:`WriteBack`.

That is the staging directory, the nursery where streamed uploads run in the background,
the memory budget, the upload shape, the counters, the uploads in flight and the failures
(:mod:`blobfs.write.transfers`, for ``blobfs status``), the uploads given up and not yet
aborted (kept on disk too: :mod:`blobfs.write.aborts`), and the spare staging files.

Spares: creating, locking and deleting a staging file and its sidecar for every file
written is a good part of a small file's cost on the daemon's side, so a staging file whose
data is stored is emptied and kept (:meth:`WriteBack.keep_spare`, at most ``max_spares``)
for the next file instead; how a crash while emptying is safe is in
:mod:`blobfs.write.files`.  :meth:`WriteBack.close_spares` deletes them when the mount
goes away.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import trio

from blobfs.bridge.requests import FailureLog
from blobfs.write.aborts import PendingAborts
from blobfs.write.budget import WriteBudget
from blobfs.write.files import StagingFiles
from blobfs.write.parts import MAX_IN_FLIGHT, PART_SIZE, SINGLE_PUT_MAX, TrioUpload
from blobfs.write.sidecar import Sidecar
from blobfs.write.transfers import KeptFile, Transfers

log = logging.getLogger(__name__)


@dataclass
class WriteStats:
    """Counters of the write-back of one mount (logged at exit, read by tests)."""

    puts: int = 0
    multipart_uploads: int = 0
    #: Multipart uploads started while the file was being written.
    streams: int = 0
    #: Parts stored by the background workers of streams (before any flush asked).
    parts_streamed: int = 0
    #: Parts stored by flushes (tails of streams and whole-file multipart uploads).
    parts_at_flush: int = 0
    #: Streams given up for a whole-file upload (non-sequential writes, renames).
    fallbacks: int = 0
    #: Background part failures (each raised once at the next write/flush).
    part_failures: int = 0


@dataclass
class WriteBack:
    """What the staging files of one mount share: where they live, the nursery their
    background uploads run in, the budget, the upload shape and the counters."""

    directory: Path
    #: Where streams run their background parts; ``None``: no streaming.
    nursery: trio.Nursery | None
    budget: WriteBudget
    single_put_max: int = SINGLE_PUT_MAX
    part_size: int = PART_SIZE
    max_in_flight: int = MAX_IN_FLIGHT
    stats: WriteStats = field(default_factory=WriteStats)
    #: The ``done`` events of the streams whose background task still runs (uploading, or
    #: aborting when given up).
    running: set[trio.Event] = field(default_factory=set)
    #: Uploads whose abort failed (the server was unreachable): aborted again after the
    #: next upload that succeeds and at unmount, so their parts do not stay on the server.
    failed_aborts: list[tuple[TrioUpload, str]] = field(default_factory=list)
    #: Emptied staging files kept open for the next files written, at most ``max_spares``.
    #: Creating, locking and later deleting a pair cost 154 us per file on ext4 here,
    #: emptying and reusing one 27 us.
    spares: list[StagingFiles] = field(default_factory=list)
    max_spares: int = 8
    #: Uploads in flight, with their progress.
    transfers: Transfers = field(default_factory=Transfers)
    #: Uploads that failed, and whether they will be tried again.
    failures: FailureLog = field(default_factory=FailureLog)
    #: Files whose upload failed after their last close (stored at the next mount).
    kept: list[KeptFile] = field(default_factory=list)
    #: Uploads given up and not yet aborted, as listed on disk for the next mount.
    pending: PendingAborts = field(init=False)

    def __post_init__(self) -> None:
        self.pending = PendingAborts(self.directory)

    def staging_files(self) -> StagingFiles:
        """A spare staging file pair if one is kept, else a new pair in :attr:`directory`."""
        return self.spares.pop() if self.spares else StagingFiles.create(self.directory)

    def keep_spare(self, files: StagingFiles) -> bool:
        """Empty ``files`` and keep them for the next file; ``False`` if ``max_spares`` are
        kept already or emptying fails (the caller still owns ``files``)."""
        if len(self.spares) >= self.max_spares:
            return False
        try:
            files.empty()
        except OSError:
            return False
        self.spares.append(files)
        return True

    def close_spares(self) -> None:
        """Delete the spare staging files (when the mount goes away)."""
        spares, self.spares = self.spares, []
        for spare in spares:
            spare.delete()

    async def abort(self, upload: TrioUpload, key: str) -> None:
        """Abort ``upload`` (of ``key``), shielded; if that fails it is listed in
        :attr:`failed_aborts` to be tried again.  Listed in :attr:`pending` until done."""
        self.pending.add(key, upload.upload_id)
        with trio.CancelScope(shield=True):
            try:
                await upload.abort()
            except Exception as e:
                log.warning("abort of the upload of %r failed (tried again later): %s", key, e)
                self.failed_aborts.append((upload, key))
                return
        self.pending.done(upload.upload_id)

    async def retry_aborts(self) -> None:
        """Abort again the uploads whose abort failed; those that fail again stay listed."""
        pending, self.failed_aborts = self.failed_aborts, []
        for upload, key in pending:
            await self.abort(upload, key)

    async def settle(self) -> None:
        """Wait until no stream runs: given-up uploads are aborted (before exit)."""
        while self.running:
            await next(iter(self.running)).wait()
        await self.retry_aborts()


def leftovers(directory: Path) -> list[tuple[Path, str]]:
    """Staging files a previous daemon left behind with writes it had not uploaded (or an
    unreadable sidecar), with their keys."""
    out: list[tuple[Path, str]] = []
    if not directory.is_dir():
        return out
    for data in sorted(directory.glob("*.data")):
        side = Sidecar.load(data.with_suffix(".key"))
        if side is None or side.dirty:
            out.append((data, side.key if side is not None else "?"))
    return out


__all__ = ["WriteBack", "WriteStats", "leftovers"]
