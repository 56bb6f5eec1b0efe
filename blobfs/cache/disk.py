"""An on-disk cache of object blocks, bounded in size, that survives remounts.

Each block is one file named by a hash of (block size, key, ETag, block index), so a block
of an object that has since changed is simply never asked for again (its ETag differs) and
ages out; stale data cannot be served.  Files are written to a temporary name and renamed,
so a crash never leaves a partial block under a real name, and a block whose length is not
the expected one is discarded on read.

Concurrency: the index (``_index``, ``_total``) is changed only on the trio thread, between
awaits; file I/O runs in worker threads (``trio.to_thread``) so the FUSE loop never blocks
on the disk.  A reader may race an eviction that deletes the file it is about to read; that
read sees ``FileNotFoundError`` and counts as a miss.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections import OrderedDict
from pathlib import Path

import trio

log = logging.getLogger(__name__)

#: Disk threads at once: enough to overlap a read with a write, few enough to not starve
#: the FUSE loop's own threads.
DISK_THREADS = 4


def _scan(root: Path) -> list[tuple[float, str, int]]:
    found: list[tuple[float, str, int]] = []
    for sub in root.iterdir() if root.exists() else ():
        if not sub.is_dir():
            continue
        for entry in os.scandir(sub):
            if entry.name.endswith(".tmp"):
                # Left by a crash mid-write.
                os.unlink(entry.path)
                continue
            st = entry.stat()
            found.append((st.st_mtime, entry.name, st.st_size))
    found.sort()
    return found


def _read(path: Path) -> bytes | None:
    try:
        with open(path, "rb") as f:
            data = f.read()
        os.utime(path)  # keep LRU order across remounts
        return data
    except FileNotFoundError:
        return None


def _write(path: Path, data: bytes | memoryview) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


def _unlink(path: Path) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


class DiskCache:
    """Blocks on disk under ``root``, at most ``max_bytes`` in total (LRU)."""

    def __init__(self, root: Path, max_bytes: int, *, block_size: int) -> None:
        self.root = root / "blocks"
        self.max_bytes = max_bytes
        self.block_size = block_size
        self._index: OrderedDict[str, int] = OrderedDict()
        self._total = 0
        self._limiter = trio.CapacityLimiter(DISK_THREADS)
        self.hits = 0
        self.misses = 0
        self.evictions = 0

    @property
    def total_bytes(self) -> int:
        return self._total

    async def open(self) -> None:
        """Index what a previous mount left, oldest first; trim to the size bound."""
        await trio.to_thread.run_sync(lambda: self.root.mkdir(parents=True, exist_ok=True))
        found = await trio.to_thread.run_sync(_scan, self.root)
        for _mtime, name, size in found:
            self._index[name] = size
            self._total += size
        await self._evict()
        log.info("disk cache %s: %d blocks, %d bytes", self.root, len(self._index), self._total)

    def _name(self, key: str, etag: str, index: int) -> str:
        h = hashlib.sha256(f"{self.block_size}\0{key}\0{etag}\0{index}".encode())
        return h.hexdigest()

    def _path(self, name: str) -> Path:
        return self.root / name[:2] / name

    async def get(self, key: str, etag: str, index: int, expected_len: int) -> bytes | None:
        name = self._name(key, etag, index)
        if name not in self._index:
            self.misses += 1
            return None
        self._index.move_to_end(name)
        data = await trio.to_thread.run_sync(_read, self._path(name), limiter=self._limiter)
        if data is None or len(data) != expected_len:
            self._forget(name)
            if data is not None:
                await trio.to_thread.run_sync(_unlink, self._path(name), limiter=self._limiter)
            self.misses += 1
            return None
        self.hits += 1
        return data

    async def put(self, key: str, etag: str, index: int, data: bytes | memoryview) -> None:
        if len(data) > self.max_bytes:
            return
        name = self._name(key, etag, index)
        if name in self._index:
            return
        try:
            await trio.to_thread.run_sync(_write, self._path(name), data, limiter=self._limiter)
        except OSError as e:
            # A full or failing cache disk only costs speed.
            log.warning("disk cache write failed: %s", e)
            return
        if name not in self._index:
            self._index[name] = len(data)
            self._total += len(data)
        await self._evict()

    def _forget(self, name: str) -> None:
        size = self._index.pop(name, None)
        if size is not None:
            self._total -= size

    async def _evict(self) -> None:
        while self._total > self.max_bytes and self._index:
            name, _ = next(iter(self._index.items()))
            self._forget(name)
            self.evictions += 1
            await trio.to_thread.run_sync(_unlink, self._path(name), limiter=self._limiter)
