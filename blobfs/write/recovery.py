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

An incomplete multipart upload the killed daemon had started stays on the server (S3: until
a lifecycle rule aborts it; Azure discards uncommitted blocks after 7 days); recovery
uploads the file anew.
"""

from __future__ import annotations

import fcntl
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from blobfs.write.fill import FILL_CHUNK
from blobfs.write.parts import Uploader
from blobfs.write.sidecar import Sidecar
from blobfs.write.upload import upload_fd
from blobfs.write.writeback import WriteBack
from sdk.errors import BlobfsError, ResourceNotFound
from sdk.providers.base import ObjectInfo

log = logging.getLogger(__name__)


class RecoveryStore(Uploader, Protocol):
    """An :class:`~blobfs.write.parts.Uploader` that also tells an object's version and reads
    it (to check the base, and to fill what the staging file lacks)."""

    async def head(self, key: str) -> ObjectInfo: ...

    async def read_range(
        self, key: str, offset: int, length: int, *, etag: str | None = None
    ) -> bytes: ...


@dataclass
class Recovered:
    """What :func:`recover` did: keys uploaded, leftovers kept (path, key, why), and clean
    leftovers removed."""

    uploaded: list[str] = field(default_factory=list)
    kept: list[tuple[Path, str, str]] = field(default_factory=list)
    removed: int = 0


class _Keep(Exception):
    """This leftover must stay on disk (the message says why)."""


async def recover(directory: Path, store: RecoveryStore, wb: WriteBack) -> Recovered:
    """Upload or keep every leftover staging file in ``directory`` (see the module doc)."""
    out = Recovered()
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
                    _remove(data, sidecar_path)
                    out.removed += 1
                    continue
                await _upload(fd, side, store, wb, data)
            except _Keep as why:
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
            log.warning("uploaded %r from data an earlier daemon left in %s", side.key, data)
        finally:
            os.close(fd)
    return out


async def _upload(fd: int, side: Sidecar, store: RecoveryStore, wb: WriteBack, path: Path) -> None:
    key = side.key
    try:
        info: ObjectInfo | None = await store.head(key)
    except ResourceNotFound:
        info = None
    except BlobfsError as e:
        raise _Keep(f"cannot check the object: {e}") from e
    if side.new:
        if info is not None:
            raise _Keep("an object was created under its name since")
    elif side.base_etag is None:
        raise _Keep("the version it was based on is unknown")
    elif info is None:
        raise _Keep("the object it was based on was deleted since")
    elif info.etag != side.base_etag:
        raise _Keep("the object changed in the bucket since")
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
        await upload_fd(fd, st.st_size, store, key, metadata, wb)
    except BlobfsError as e:
        raise _Keep(f"upload failed: {e}") from e
    except OSError as e:
        raise _Keep(f"cannot read the staging file: {e}") from e


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
