"""Write-back staging: one local file per inode being written, uploaded on flush.

This module never talks to storage on its own.  It is handed two functions:

* a ``fetch(offset, length)`` that reads the *original* object (the version the file was
  opened on), used to fill the staging file only as far as a write, read, truncate or
  upload needs it; and
* an :class:`Uploader` (``put`` / ``start_multipart``) used by :meth:`Staged.upload`.

A staging file lives in the staging directory (under the cache directory), so a daemon
that is killed leaves the bytes that were not yet uploaded on disk, with a ``.key`` file
next to them naming the object they belong to.

The fill invariant: bytes ``[0, filled)`` of the staging file are final (original data or
data written since); bytes at or past ``source_size`` are whatever was written.  Every
write, read or truncate first fills the original up to the end of the range it touches, so
a later fill can never overwrite written data.

Upload: files up to ``single_put_max`` go up in one PUT; larger ones as a multipart upload
of ``part_size`` parts with at most ``max_in_flight`` parts in flight.  The upload is
completed only after every part is stored, so the object under the key is either the old
one or the complete new one; a failed upload is aborted (best effort) and the error is
raised to the caller, which reports it to ``close()`` / ``fsync()``.  The file stays dirty
and on disk, so a later flush retries.
"""

from __future__ import annotations

import logging
import os
import uuid
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Protocol

import trio

from sdk.providers.base import MIN_PART_SIZE

log = logging.getLogger(__name__)

#: Largest file sent as a single PUT.
SINGLE_PUT_MAX = 8 * 1024 * 1024
#: Part size of multipart uploads (raised for files that would need more than MAX_PARTS).
PART_SIZE = 8 * 1024 * 1024
MAX_PARTS = 10_000
#: Parts of one file uploaded concurrently.
MAX_IN_FLIGHT = 4
#: How much of the original object one fetch brings into the staging file.
FILL_CHUNK = 8 * 1024 * 1024

Fetch = Callable[[int, int], Awaitable[bytes]]


class TrioUpload(Protocol):
    async def upload_part(self, part_number: int, data: bytes) -> None: ...

    async def complete(self) -> str: ...

    async def abort(self) -> None: ...


class Uploader(Protocol):
    async def put(
        self, key: str, data: bytes, *, metadata: Mapping[str, str] | None = None
    ) -> str: ...

    async def start_multipart(
        self, key: str, *, metadata: Mapping[str, str] | None = None
    ) -> TrioUpload: ...


def part_size_for(size: int, part_size: int = PART_SIZE) -> int:
    part = max(part_size, MIN_PART_SIZE)
    while -(-size // part) > MAX_PARTS:
        part *= 2
    return part


class Staged:
    """The staging file of one inode.  Use from one trio thread; methods serialise."""

    def __init__(
        self,
        directory: Path,
        key: str,
        *,
        source_size: int = 0,
        fetch: Fetch | None = None,
    ) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        name = uuid.uuid4().hex
        self.path = directory / f"{name}.data"
        self.key_path = directory / f"{name}.key"
        self.key_path.write_text(key + "\n")
        self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
        self.source_size = source_size if fetch is not None else 0
        self._fetch = fetch
        self.filled = 0
        self.size = source_size if fetch is not None else 0
        self.dirty = False
        #: Open handles sharing this staging file.
        self.handles = 0
        #: The name was removed (unlink, or replaced by a rename): never upload.
        self.unlinked = False
        self._lock = trio.Lock()

    # -- filling from the original ---------------------------------------------------------------

    async def _fill(self, upto: int) -> None:
        upto = min(upto, self.source_size)
        while self.filled < upto:
            assert self._fetch is not None
            length = min(FILL_CHUNK, self.source_size - self.filled)
            data = await self._fetch(self.filled, length)
            if len(data) != length:
                raise OSError(f"short read of the original: {len(data)} of {length} bytes")
            os.pwrite(self._fd, data, self.filled)
            self.filled += length

    # -- file operations -------------------------------------------------------------------------

    async def write(self, offset: int, data: bytes) -> int:
        async with self._lock:
            await self._fill(offset + len(data))
            written = os.pwrite(self._fd, data, offset)
            self.size = max(self.size, offset + written)
            self.dirty = True
            return written

    async def read(self, offset: int, size: int) -> bytes:
        async with self._lock:
            end = min(offset + size, self.size)
            if end <= offset:
                return b""
            await self._fill(end)
            return os.pread(self._fd, end - offset, offset)

    async def truncate(self, size: int) -> None:
        async with self._lock:
            await self._fill(size)
            # Original bytes past the new end are gone for good.
            self.source_size = min(self.source_size, size)
            self.filled = min(self.filled, size)
            os.ftruncate(self._fd, size)
            self.size = size
            self.dirty = True

    async def fill_all(self) -> None:
        """Bring in the rest of the original, so the original is no longer needed."""
        async with self._lock:
            await self._fill(self.source_size)

    def rename_key(self, key: str) -> None:
        try:
            self.key_path.write_text(key + "\n")
        except OSError:
            log.warning("cannot record the new key of %s", self.path)

    # -- upload ----------------------------------------------------------------------------------

    async def upload(
        self,
        store: Uploader,
        key: str,
        metadata: Mapping[str, str],
        *,
        single_put_max: int = SINGLE_PUT_MAX,
        part_size: int = PART_SIZE,
        max_in_flight: int = MAX_IN_FLIGHT,
    ) -> str:
        """Store the file's bytes under ``key``; return the new ETag.  Raises what the store
        raises; on failure nothing new is visible under ``key`` and the file stays dirty."""
        async with self._lock:
            # Shielded: an unmount (pyfuse3 cancels its workers) must not cut an upload
            # short; it waits for it instead.
            with trio.CancelScope(shield=True):
                await self._fill(self.source_size)
                size = self.size
                if size <= single_put_max:
                    data = os.pread(self._fd, size, 0) if size else b""
                    etag = await store.put(key, data, metadata=metadata)
                else:
                    etag = await self._multipart(
                        store, key, metadata, size, part_size, max_in_flight
                    )
                self.dirty = False
            return etag

    async def _multipart(
        self,
        store: Uploader,
        key: str,
        metadata: Mapping[str, str],
        size: int,
        part_size: int,
        max_in_flight: int,
    ) -> str:
        part = part_size_for(size, part_size)
        count = -(-size // part)
        upload = await store.start_multipart(key, metadata=metadata)
        limit = trio.Semaphore(max_in_flight)
        failures: list[BaseException] = []

        async def one(number: int) -> None:
            async with limit:
                if failures:
                    return
                offset = (number - 1) * part
                data = os.pread(self._fd, min(part, size - offset), offset)
                try:
                    await upload.upload_part(number, data)
                except Exception as e:  # collected: the first failure is raised below
                    failures.append(e)

        try:
            async with trio.open_nursery() as nursery:
                for number in range(1, count + 1):
                    await limit.acquire()  # bound memory: read parts only when a slot is free
                    limit.release()
                    if failures:
                        break
                    nursery.start_soon(one, number)
            if failures:
                raise failures[0]
            return await upload.complete()
        except BaseException:
            try:
                await upload.abort()
            except Exception as e:
                log.warning("abort of the upload of %r failed (parts may remain): %s", key, e)
            raise

    # -- lifetime --------------------------------------------------------------------------------

    def discard(self) -> None:
        """Close and delete the staging file (its data is uploaded or no longer wanted)."""
        try:
            os.close(self._fd)
        except OSError:
            pass
        for path in (self.path, self.key_path):
            try:
                path.unlink()
            except FileNotFoundError:
                pass

    def keep(self) -> None:
        """Close the staging file but leave it on disk (an upload failed at release)."""
        try:
            os.close(self._fd)
        except OSError:
            pass


def leftovers(directory: Path) -> list[tuple[Path, str]]:
    """Staging files a previous daemon left behind (killed before uploading), with keys."""
    out: list[tuple[Path, str]] = []
    if not directory.is_dir():
        return out
    for data in sorted(directory.glob("*.data")):
        key_file = data.with_suffix(".key")
        key = key_file.read_text().strip() if key_file.exists() else "?"
        out.append((data, key))
    return out


__all__ = ["Staged", "TrioUpload", "Uploader", "leftovers", "part_size_for"]
