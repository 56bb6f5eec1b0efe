"""The staging file of one inode being written: :class:`Staged`.

A write lands in a local staging file (:class:`~blobfs.write.files.StagingFiles`, in the
staging directory under the cache directory); ``flush``/``fsync``/``close`` store it in the
bucket.  The staging file never talks to storage on its own: it is handed a ``fetch`` that
reads the original object (:mod:`blobfs.write.fill`) and an
:class:`~blobfs.write.parts.Uploader` that stores the file, either streamed while it is
written (:mod:`blobfs.write.stream`) or whole at flush (:mod:`blobfs.write.upload`).

Its sidecar records what :mod:`blobfs.write.recovery` needs (the key, the base version, how
much of it was filled in, whether there are unsaved writes, the multipart upload in
progress) and is rewritten when that changes.  An upload is completed only after every part
is stored, and aborted on failure: the object under the key is either the old one or the
complete new one, and a file whose upload failed stays staged and dirty.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping
from pathlib import Path

import trio

from blobfs.write.budget import WriteBudget
from blobfs.write.files import StagingFiles
from blobfs.write.fill import Fetch, Original
from blobfs.write.parts import MAX_IN_FLIGHT, PART_SIZE, Uploader
from blobfs.write.sidecar import Sidecar, UploadRecord
from blobfs.write.stream import Streaming
from blobfs.write.upload import upload_fd
from blobfs.write.writeback import WriteBack


class Staged:
    """The staging file of one inode.  Use from one trio thread; methods serialise."""

    def __init__(
        self,
        directory: Path | WriteBack,
        key: str,
        *,
        source_size: int = 0,
        fetch: Fetch | None = None,
        base_etag: str | None = None,
        new: bool = False,
        store: Uploader | None = None,
        metadata: Callable[[], Mapping[str, str]] | None = None,
        dirty: bool = False,
    ) -> None:
        """``directory`` is the staging directory, or the mount's :class:`WriteBack` (then
        the file streams when ``store`` and ``metadata`` -- the metadata a new upload
        carries -- are given too).  ``dirty``: the file must be stored even if never
        written (a file just created)."""
        if isinstance(directory, WriteBack):
            self.wb = directory
        else:  # a file of its own: per-file limits only, no streaming, no spares
            self.wb = WriteBack(
                directory, None, WriteBudget(MAX_IN_FLIGHT * PART_SIZE), max_spares=0
            )
        self.key = key
        self._files = self.wb.staging_files()
        self._original = Original(fetch, source_size)
        self.size = self._original.source_size
        self._dirty = dirty
        #: When the file last went from stored to dirty (Unix time; for ``blobfs status``).
        self.dirty_since = time.time()
        self._base_etag = base_etag
        self._new = new
        self._metadata_of = metadata
        #: Open handles sharing this staging file.
        self.handles = 0
        self._unlinked = False
        #: The metadata the last upload stored (a streamed upload's is from its start).
        self.stored_metadata: Mapping[str, str] = {}
        #: A ``utime`` set the mtime while the file was dirty (the caller's bookkeeping).
        self.mtime_explicit = False
        self._lock = trio.Lock()
        #: The multipart upload of this file in progress (streamed or whole), for recovery.
        self._upload: UploadRecord | None = None
        self._streaming = Streaming(self.wb, store, metadata, self._record_upload)
        self._streaming.reset(empty=self.size == 0)
        self._save_sidecar()

    # -- state kept on disk ------------------------------------------------------------------

    @property
    def path(self) -> Path:
        """The data file."""
        return self._files.path

    @property
    def key_path(self) -> Path:
        """The sidecar."""
        return self._files.key_path

    @property
    def source_size(self) -> int:
        """Bytes of the original object that belong in the file."""
        return self._original.source_size

    @property
    def filled(self) -> int:
        """Bytes ``[0, filled)`` of the staging file are final."""
        return self._original.filled

    @property
    def dirty(self) -> bool:
        """Writes not yet stored in the bucket (recorded in the sidecar)."""
        return self._dirty

    @dirty.setter
    def dirty(self, value: bool) -> None:
        if value != self._dirty:
            self._dirty = value
            if value:
                self.dirty_since = time.time()
            self._save_sidecar()

    @property
    def unlinked(self) -> bool:
        """The name was removed (unlink, or replaced by a rename): never upload."""
        return self._unlinked

    @unlinked.setter
    def unlinked(self, value: bool) -> None:
        if value and not self._unlinked:
            self._unlinked = True
            self._streaming.abandon("unlinked")
            # Nothing to recover after a crash: the open descriptor keeps the data for the
            # handles still open.
            self._files.unlink()

    @property
    def streaming(self) -> bool:
        """A streamed upload is in progress (parts are going up while the file is written)."""
        return self._streaming.active

    def _record_upload(self, record: UploadRecord | None) -> None:
        """An upload of the file started (or ended: ``None``): recorded at once."""
        if record != self._upload:
            self._upload = record
            self._save_sidecar()

    def _save_sidecar(self) -> None:
        if self._unlinked:
            return
        meta = dict(self._metadata_of()) if self._metadata_of is not None else {}
        self._files.record(
            Sidecar(
                key=self.key,
                base_etag=self._base_etag,
                new=self._new,
                source_size=self._original.source_size,
                filled=self._original.filled,
                dirty=self._dirty,
                metadata=meta,
                upload=self._upload,
            )
        )

    async def _fill(self, upto: int) -> None:
        await self._original.fill(self._files.fd, upto, self._save_sidecar)

    # -- file operations -------------------------------------------------------------------------

    async def write(self, offset: int, data: bytes) -> int:
        """Write ``data`` at ``offset``; return how much was written.  Raises a background
        part failure of the file's stream once."""
        async with self._lock:
            await self._streaming.surface_error()
            await self._fill(offset + len(data))
            self._streaming.overwriting(offset)
            written = os.pwrite(self._files.fd, data, offset)
            self.size = max(self.size, offset + written)
            self.dirty = True
            self._streaming.wrote(offset, offset + written, self._files.fd, self.key)
            return written

    async def read(self, offset: int, size: int) -> bytes:
        """Up to ``size`` bytes at ``offset`` (fewer at the end of the file)."""
        async with self._lock:
            end = min(offset + size, self.size)
            if end <= offset:
                return b""
            await self._fill(end)
            return os.pread(self._files.fd, end - offset, offset)

    async def truncate(self, size: int) -> None:
        """Cut or extend the file to ``size`` bytes."""
        async with self._lock:
            await self._fill(size)
            # Before the file changes: a stream whose parts it cuts is given up (and its
            # record cleared) first.
            self._streaming.truncated(size)
            self._original.cut(size)
            os.ftruncate(self._files.fd, size)
            self.size = size
            self.dirty = True
            self._save_sidecar()

    async def fill_all(self) -> None:
        """Bring in the rest of the original, so the original is no longer needed."""
        async with self._lock:
            await self._fill(self._original.source_size)

    def rename_key(self, key: str) -> None:
        """The file is now stored under ``key`` (recorded in the sidecar)."""
        self.key = key
        self._save_sidecar()

    def rebase(self, etag: str) -> None:
        """This mount replaced the object with the same content under a new version
        ``etag`` (a metadata copy onto itself, the copy of a rename): recovery must take
        ``etag``, not the version the file was opened on, for the object it started from.
        Only for a file filled in whole, which needs nothing of the old version any more."""
        if self._original.filled < self._original.source_size:
            raise ValueError(f"{self.key}: rebased before the original was filled in")
        self._base_etag = etag
        self._save_sidecar()

    # -- upload ----------------------------------------------------------------------------------

    async def upload(
        self,
        store: Uploader,
        key: str,
        metadata: Mapping[str, str],
    ) -> str:
        """Store the file's bytes under ``key``; return the new ETag.  Raises what the store
        raises; on failure nothing new is visible under ``key`` and the file stays dirty.

        A streamed upload in progress is finished (tail handed, completed); otherwise the
        whole file goes up.  :attr:`stored_metadata` is what the object now carries."""
        async with self._lock:
            # Shielded: an unmount (pyfuse3 cancels its workers) must not cut an upload
            # short; it waits for it instead.
            with trio.CancelScope(shield=True):
                await self._streaming.before_upload(key)
                await self._fill(self._original.source_size)
                size = self.size
                if self._streaming.active:
                    etag, self.stored_metadata = await self._streaming.finish(size)
                else:
                    etag = await upload_fd(
                        self._files.fd, size, store, key, metadata, self.wb, self._record_upload
                    )
                    self.stored_metadata = dict(metadata)
                self._base_etag, self._new = etag, False
                self._dirty = False
                self._upload = None
                self._save_sidecar()
                if self.wb.failed_aborts:  # the server answers again
                    await self.wb.retry_aborts()
            return etag

    async def settled(self) -> None:
        """Return once no upload (nor write) of the file is in progress."""
        async with self._lock:
            pass

    # -- lifetime --------------------------------------------------------------------------------

    def discard(self) -> None:
        """Close and delete the staging file (its data is uploaded or no longer wanted), or
        empty it and keep it as a spare for the next file."""
        if self._streaming.active:
            self._streaming.abandon("discarded")
        if not self._make_spare():
            self._files.delete()

    def _make_spare(self) -> bool:
        # Not a file whose name is gone, nor one an abandoned stream may still read parts
        # of through its own descriptor.
        if self._unlinked or self._streaming.reading or not self.wb.keep_spare(self._files):
            return False
        # The files belong to the spare now: this object must never touch them again
        # (descriptors of -1 fail loudly) nor record or upload anything.
        self._files = StagingFiles(self._files.path, self._files.key_path, -1, -1)
        self._unlinked = True
        return True

    def keep(self) -> None:
        """Close the staging file but leave it on disk (an upload failed at release)."""
        if self._streaming.active:
            self._streaming.abandon("kept for later")
        self._files.close()


__all__ = ["Staged"]
