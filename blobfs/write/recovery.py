"""Crash recovery: store what a killed daemon left in the staging directory.

A daemon that is killed (``kill -9``, OOM, power cut of the process) leaves each file it was
writing as ``NAME.data`` plus its sidecar ``NAME.key``
(:class:`~blobfs.write.sidecar.Sidecar`) in the staging directory of its source. The next
mount of the same source runs :func:`recover` before it serves requests. For each leftover
with unsaved writes:

* the file was **new** (created on the mount): it is uploaded if no object has appeared
  under its key since;
* it was based on a **version** of an object (written in place, appended, truncated): it is
  uploaded if the object still has that ETag -- first filling the parts of that version the
  staging file had not copied in yet, read with the ETag as a precondition;
* otherwise -- the object changed or vanished meanwhile, the base version is unknown, the
  sidecar is unreadable, or the upload fails -- the staging file is **kept** where it is and
  a warning names the key and the path.  Newer data in the bucket is never overwritten, and
  staged data is never dropped silently.

Leftovers without unsaved writes (uploaded already, or opened and never changed) are simply
removed.  The check is a HEAD just before the upload, so a writer elsewhere that changes
the object in that instant can still be overwritten: the window is one round trip, not the
time since the crash.  Staging files of a daemon still running (another mount of the same
source) are locked by it and skipped.

A multipart upload the killed daemon had in progress (recorded in the sidecar) is taken up
where it stopped: only the parts the server does not hold with the staged bytes are sent
(:mod:`blobfs.write.resume`); the upload recovery makes is recorded the same way, so a crash
during recovery loses no more.  Uploads the killed daemon created and no one can use any
more are aborted: those it had given up (listed in :mod:`blobfs.write.aborts`), a recorded
upload of a file renamed since, of a file already stored, or of a file kept because the
object changed (the staged data stays; its upload would never be completed).
"""

from __future__ import annotations

import fcntl
import logging
import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Protocol

from blobfs.write.aborts import PendingAborts
from blobfs.write.fill import FILL_CHUNK
from blobfs.write.parts import Resumer
from blobfs.write.resume import resume_fd
from blobfs.write.sidecar import Sidecar, UploadRecord
from blobfs.write.upload import upload_fd
from blobfs.write.writeback import WriteBack
from sdk.errors import BlobfsError, ResourceNotFound
from sdk.providers.base import ObjectInfo

log = logging.getLogger(__name__)


class RecoveryStore(Resumer, Protocol):
    """A :class:`~blobfs.write.parts.Resumer` that also tells an object's version and reads
    it (to check the base, and to fill what the staging file lacks)."""

    async def head(self, key: str) -> ObjectInfo: ...

    async def read_range(
        self, key: str, offset: int, length: int, *, etag: str | None = None
    ) -> bytes: ...


@dataclass
class Recovered:
    """What :func:`recover` did: keys uploaded, leftovers kept (path, key, why), clean
    leftovers removed, bytes sent and bytes a resumed upload held already, and uploads
    aborted that no one could use any more."""

    uploaded: list[str] = field(default_factory=list)
    kept: list[tuple[Path, str, str]] = field(default_factory=list)
    removed: int = 0
    sent: int = 0
    kept_on_server: int = 0
    aborted: int = 0


class _Keep(Exception):
    """This leftover must stay on disk (the message says why); ``final``: for good (the
    object changed), not for now (the server failed)."""

    def __init__(self, why: str, *, final: bool = False) -> None:
        super().__init__(why)
        self.final = final


async def recover(directory: Path, store: RecoveryStore, wb: WriteBack) -> Recovered:
    """Upload or keep every leftover staging file in ``directory`` (see the module doc)."""
    out = Recovered()
    await _abort_given_up(directory, store, wb, out)
    # A directory listing at mount time, before any request is served: blocking is fine.
    leftovers = sorted(directory.glob("*.data")) if directory.is_dir() else []  # noqa: ASYNC240
    for data in leftovers:
        sidecar_path = data.with_suffix(".key")
        try:
            fd = os.open(data, os.O_RDWR)
        except FileNotFoundError:
            continue
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                continue  # a running daemon's file
            side = Sidecar.load(sidecar_path)
            key = side.key if side is not None else _raw_key(sidecar_path)
            try:
                if side is None:
                    raise _Keep("its sidecar is missing or unreadable")
                if not side.dirty:
                    await _abort_recorded(side.upload, store, wb, out)
                    _remove(data, sidecar_path)
                    out.removed += 1
                    continue
                sent, held = await _upload(fd, side, store, wb, sidecar_path, out)
            except _Keep as why:
                if why.final and side is not None and side.upload is not None:
                    await _abort_recorded(side.upload, store, wb, out)
                    _rewrite(sidecar_path, replace(side, upload=None))
                out.kept.append((data, key, str(why)))
                log.warning(
                    "staged data of %r left by an earlier daemon was NOT uploaded (%s); "
                    "it is kept in %s",
                    key,
                    why,
                    data,
                )
                continue
            _remove(data, sidecar_path)
            out.uploaded.append(side.key)
            out.sent += sent
            out.kept_on_server += held
            log.warning(
                "uploaded %r from data an earlier daemon left in %s (%d bytes sent, %d held "
                "by its upload on the server already)",
                side.key,
                data,
                sent,
                held,
            )
        finally:
            os.close(fd)
    return out


async def _upload(
    fd: int, side: Sidecar, store: RecoveryStore, wb: WriteBack, sidecar_path: Path, out: Recovered
) -> tuple[int, int]:
    """Check, fill and store one leftover; the bytes sent and those its resumed upload held
    already."""
    key = side.key
    try:
        info: ObjectInfo | None = await store.head(key)
    except ResourceNotFound:
        info = None
    except BlobfsError as e:
        raise _Keep(f"cannot check the object: {e}") from e
    if side.new:
        if info is not None:
            raise _Keep("an object was created under its name since", final=True)
    elif side.base_etag is None:
        raise _Keep("the version it was based on is unknown", final=True)
    elif info is None:
        raise _Keep("the object it was based on was deleted since", final=True)
    elif info.etag != side.base_etag:
        raise _Keep("the object changed in the bucket since", final=True)
    try:
        filled = side.filled
        while filled < side.source_size:
            length = min(FILL_CHUNK, side.source_size - filled)
            chunk = await store.read_range(key, filled, length, etag=side.base_etag)
            if len(chunk) != length:
                raise _Keep("short read of the version it was based on")
            os.pwrite(fd, chunk, filled)
            filled += length
        st = os.fstat(fd)
        metadata = dict(side.metadata)
        # The staging file's own mtime is the time of the last write.
        metadata["mtime"] = str(int(st.st_mtime))
        record = side.upload
        if record is not None and record.key == key:
            resumed = await resume_fd(fd, st.st_size, store, key, metadata, wb, record)
            if resumed is not None:
                return resumed.sent, resumed.kept
        elif record is not None:  # of the name the file had before a rename: of no use
            await _abort_recorded(record, store, wb, out)

        def note(upload: UploadRecord | None) -> None:
            _rewrite(sidecar_path, replace(side, upload=upload))

        await upload_fd(fd, st.st_size, store, key, metadata, wb, note)
        return st.st_size, 0
    except BlobfsError as e:
        raise _Keep(f"upload failed: {e}") from e
    except OSError as e:
        raise _Keep(f"cannot read the staging file: {e}") from e


async def _abort_recorded(
    record: UploadRecord | None, store: RecoveryStore, wb: WriteBack, out: Recovered
) -> None:
    """Abort a recorded upload no one will complete (listed for later if that fails)."""
    if record is None:
        return
    try:
        upload = await store.resume_multipart(record.key, record.upload_id)
    except BlobfsError as e:
        log.warning("cannot abort upload %s of %r: %s", record.upload_id, record.key, e)
        return
    await wb.abort(upload, record.key)
    if upload.upload_id not in wb.pending.ids():
        out.aborted += 1


async def _abort_given_up(
    directory: Path, store: RecoveryStore, wb: WriteBack, out: Recovered
) -> None:
    """Abort the uploads an earlier daemon gave up and did not see aborted."""
    for upload_id, key in PendingAborts.load(directory).items():
        await _abort_recorded(UploadRecord(key, upload_id, 0, False), store, wb, out)


def _rewrite(path: Path, side: Sidecar) -> None:
    """Replace a leftover's sidecar (no daemon writes it: the data file is locked)."""
    temporary = path.with_suffix(".tmp")
    try:
        temporary.write_text(side.dumps())
        os.replace(temporary, path)
    except OSError as e:
        log.warning("cannot update %s: %s", path, e)


def _raw_key(path: Path) -> str:
    """The key of a sidecar that is not JSON (an older blobfs wrote just the key)."""
    try:
        return path.read_text().strip() or "?"
    except OSError:
        return "?"


def _remove(*paths: Path) -> None:
    for path in paths:
        try:
            path.unlink()
        except FileNotFoundError:
            pass


__all__ = ["Recovered", "RecoveryStore", "recover"]
