"""The staging file pair on disk: ``NAME.data`` and its sidecar ``NAME.key``.

Both live in the staging directory (under the cache directory), so a daemon that is killed
leaves the bytes it had not uploaded on disk, with the :class:`~blobfs.write.sidecar.Sidecar`
naming the object they belong to; :mod:`blobfs.write.recovery` reads them at the next mount.

Invariants:

* The data file is locked (``flock``, exclusive) while the daemon lives: crash recovery of
  another mount of the same source skips locked files, and the kernel drops the lock when
  the process dies.
* The sidecar stays open and is rewritten in place through its descriptor, padded with
  blanks to the longest record so far: no truncate, no rename.  One ``pwrite`` of a page or
  less is not torn by a killed process; a power cut loses the unsynced staging data anyway.
* A pair emptied to be a spare (:meth:`StagingFiles.empty`) has its sidecar cleared
  before its data: killed in between, recovery sees nothing to upload and deletes the pair,
  whatever the data file still holds.
"""

from __future__ import annotations

import fcntl
import logging
import os
import uuid
from pathlib import Path

from blobfs.write.sidecar import Sidecar

log = logging.getLogger(__name__)

#: The sidecar of a spare: nothing to recover (crash recovery deletes the pair).
_SPARE_RECORD = (
    Sidecar(key="", base_etag=None, new=False, source_size=0, filled=0, dirty=False)
    .dumps()
    .encode()
)


class StagingFiles:
    """A data file and its sidecar, open (and the data file locked)."""

    def __init__(self, path: Path, key_path: Path, fd: int, side_fd: int, side_len: int = 0):
        self.path = path
        self.key_path = key_path
        self.fd = fd
        self.side_fd = side_fd
        #: Length of the longest record the sidecar held (shorter ones are padded to it).
        self.side_len = side_len

    @classmethod
    def create(cls, directory: Path) -> StagingFiles:
        """A new pair with a unique name in ``directory`` (created if missing)."""
        name = uuid.uuid4().hex
        path = directory / f"{name}.data"
        key_path = directory / f"{name}.key"
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
        except FileNotFoundError:  # the first file, or the cache was cleaned meanwhile
            directory.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        try:
            side_fd = os.open(key_path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
        except OSError:
            os.close(fd)
            path.unlink(missing_ok=True)
            raise
        return cls(path, key_path, fd, side_fd)

    def record(self, sidecar: Sidecar) -> None:
        """Rewrite the sidecar; a failure is logged, not raised (the data is still staged)."""
        # In place rather than truncate or rename, which cost 0.1-0.4 ms each on ext4
        # against ~10 us for the pwrite, and a sidecar is saved at least twice per file.
        try:
            self._write_record(sidecar.dumps().encode())
        except OSError as e:
            log.warning("cannot record the state of %s: %s", self.path, e)

    def _write_record(self, payload: bytes) -> None:
        length = len(payload)
        if length < self.side_len:
            payload = payload.ljust(self.side_len)
        os.pwrite(self.side_fd, payload, 0)
        self.side_len = max(self.side_len, length)

    def empty(self) -> None:
        """Record nothing to recover, then empty the data file (raises :class:`OSError`)."""
        self._write_record(_SPARE_RECORD)
        os.ftruncate(self.fd, 0)

    def close(self) -> None:
        """Close both descriptors (the files stay on disk)."""
        for fd in (self.fd, self.side_fd):
            try:
                os.close(fd)
            except OSError:
                pass

    def unlink(self) -> None:
        """Remove both names (open descriptors keep the data)."""
        for path in (self.path, self.key_path):
            path.unlink(missing_ok=True)

    def delete(self) -> None:
        """Close and remove both files."""
        self.close()
        self.unlink()


__all__ = ["StagingFiles"]
