"""An on-disk cache of object blocks, bounded in size, that survives remounts.

Each block is one file named by a hash of (block size, key, ETag, block index), so a block
of an object that has since changed is simply never asked for again (its ETag differs) and
ages out; stale data cannot be served.  Files are written to a temporary name and renamed,
so a crash never leaves a partial block under a real name, and a block whose length is not
the expected one is discarded on read.

The directory belongs to one daemon at a time (an ``flock`` on ``lock``, held while it
runs): two daemons sharing it would each evict by their own index and together exceed the
bound.  The bound is ``max_bytes``, and the cache also never fills its file system beyond
:data:`MIN_FREE_FRACTION` of free space: short of that it gives back its oldest blocks and
stops writing.

Concurrency: the index (``_index``, ``_total``) is changed only on the trio thread, between
awaits; file I/O runs in worker threads (``trio.to_thread``) so the FUSE loop never blocks
on the disk, and :class:`DiskWrites` writes what readers fetched behind them, bounded.  A
reader may race an eviction that deletes the file it is about to read; that read sees
``FileNotFoundError`` and counts as a miss.
"""

from __future__ import annotations

import fcntl
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
#: Free space the cache leaves on its file system (mountpoint-s3 keeps 5 % too).
MIN_FREE_FRACTION = 0.05
#: Bytes of blocks waiting to be written behind the readers before further writes are
#: skipped (:class:`DiskWrites`).
MAX_PENDING_BYTES = 32 * 1024 * 1024


class CacheBusy(Exception):
    """Another process holds the cache directory."""


def _lock(root: Path) -> int:
    """Create ``root`` and take its lock; the descriptor holds it (:class:`CacheBusy`)."""
    root.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(root / "lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise CacheBusy(f"{root} is in use by another blobfs daemon") from None
    return fd


def _spare(root: Path) -> int:
    """Bytes that may still be written on ``root``'s file system before its free space falls
    under :data:`MIN_FREE_FRACTION` (negative: that much is missing)."""
    st = os.statvfs(root)
    return int(st.f_bavail * st.f_frsize - MIN_FREE_FRACTION * st.f_blocks * st.f_frsize)


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


def _read_one(path: str, length: int) -> bytes | None:
    """The block at ``path`` (``None`` if it is gone), read with one ``read`` of one byte
    more than ``length`` so a longer file shows itself.  Raw descriptors, not buffered
    files: 32 against 50 us a 256 KiB block here."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    try:
        data = os.read(fd, length + 1)
        os.utime(fd)  # keep LRU order across remounts
    finally:
        os.close(fd)
    return data if len(data) == length else None


def _read(paths: list[str], lengths: list[int]) -> list[bytes | None]:
    """The blocks at ``paths``, in one worker-thread job."""
    return [_read_one(path, length) for path, length in zip(paths, lengths, strict=True)]


def _write(items: list[tuple[Path, bytes | memoryview]], root: Path) -> int:
    """Write the blocks, in one worker-thread job, unless that would eat into the free-space
    floor; return the spare bytes left (negative: none was written)."""
    spare = _spare(root) - sum(len(data) for _, data in items)
    if spare < 0:
        return spare
    for path, data in items:
        if not path.parent.is_dir():
            path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        with open(tmp, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    return spare


def _unlink(path: Path) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


class DiskCache:
    """Blocks on disk in the directory ``root``, at most ``max_bytes`` in total (LRU)."""

    def __init__(self, root: Path, max_bytes: int, *, block_size: int) -> None:
        self.root = root
        self.max_bytes = max_bytes
        self.block_size = block_size
        self._index: OrderedDict[str, int] = OrderedDict()
        self._total = 0
        self._limiter = trio.CapacityLimiter(DISK_THREADS)
        self._lock_fd: int | None = None
        self._writing: set[str] = set()
        self.hits = 0
        self.misses = 0
        #: Blocks not written for want of free space.
        self.skipped_writes = 0
        self.evictions = 0

    @property
    def total_bytes(self) -> int:
        return self._total

    async def open(self) -> None:
        """Take the directory (:class:`CacheBusy` if another daemon has it), index what a
        previous mount left, oldest first, and trim to the size bound."""
        self._lock_fd = await trio.to_thread.run_sync(_lock, self.root)
        found = await trio.to_thread.run_sync(_scan, self.root)
        for _mtime, name, size in found:
            self._index[name] = size
            self._total += size
        await self._evict()
        log.info("disk cache %s: %d blocks, %d bytes", self.root, len(self._index), self._total)

    def close(self) -> None:
        """Let the directory go (another daemon may take it)."""
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    def _name(self, key: str, etag: str, index: int) -> str:
        h = hashlib.sha256(f"{self.block_size}\0{key}\0{etag}\0{index}".encode())
        return h.hexdigest()

    def _path(self, name: str) -> Path:
        return self.root / name[:2] / name

    def holds(self, key: str, etag: str, index: int) -> bool:
        """Whether the block is kept (or being written), without reading it."""
        name = self._name(key, etag, index)
        return name in self._index or name in self._writing

    async def get(self, key: str, etag: str, index: int, expected_len: int) -> bytes | None:
        """Block ``index`` of version ``etag`` of ``key`` if it is cached whole."""
        return (await self.get_many(key, etag, [(index, expected_len)]))[0]

    async def get_many(
        self, key: str, etag: str, blocks: list[tuple[int, int]]
    ) -> list[bytes | None]:
        """Blocks ``(index, expected length)`` of one version, read in one worker job."""
        names = [self._name(key, etag, index) for index, _ in blocks]
        out: list[bytes | None] = [None] * len(blocks)
        present = [n for n, name in enumerate(names) if name in self._index]
        self.misses += len(blocks) - len(present)
        if not present:
            return out
        for n in present:
            self._index.move_to_end(names[n])
        paths = [os.fspath(self._path(names[n])) for n in present]
        lengths = [blocks[n][1] for n in present]
        found = await trio.to_thread.run_sync(_read, paths, lengths, limiter=self._limiter)
        for n, data in zip(present, found, strict=True):
            if data is None:
                # Gone, or of the wrong length: forgotten, and its file (if any) removed.
                self._forget(names[n])
                await trio.to_thread.run_sync(_unlink, self._path(names[n]))
                self.misses += 1
                continue
            self.hits += 1
            out[n] = data
        return out

    async def put(self, key: str, etag: str, index: int, data: bytes | memoryview) -> None:
        """Keep a block (unless it is cached already or the disk is nearly full)."""
        await self.put_many(key, etag, [(index, data)])

    async def put_many(
        self, key: str, etag: str, blocks: list[tuple[int, bytes | memoryview]]
    ) -> None:
        """Keep blocks of one version, written in one worker job."""
        todo = []
        for index, data in blocks:
            name = self._name(key, etag, index)
            known = name in self._index or name in self._writing
            if len(data) <= self.max_bytes and not known:
                self._writing.add(name)
                todo.append((name, data))
        if not todo:
            return
        items = [(self._path(name), data) for name, data in todo]
        try:
            spare = await trio.to_thread.run_sync(_write, items, self.root, limiter=self._limiter)
        except OSError as e:
            # A full or failing cache disk only costs speed.
            log.warning("disk cache write failed: %s", e)
            return
        finally:
            for name, _ in todo:
                self._writing.discard(name)
        if spare < 0:
            # The file system is nearly full: give back what is missing, oldest first.
            self.skipped_writes += 1
            await self._evict(max(0, self._total + spare))
            return
        for name, data in todo:
            if name not in self._index:
                self._index[name] = len(data)
                self._total += len(data)
        await self._evict()

    def _forget(self, name: str) -> None:
        size = self._index.pop(name, None)
        if size is not None:
            self._total -= size

    async def _evict(self, bound: int | None = None) -> None:
        bound = self.max_bytes if bound is None else min(bound, self.max_bytes)
        while self._total > bound and self._index:
            name, _ = next(iter(self._index.items()))
            self._forget(name)
            self.evictions += 1
            await trio.to_thread.run_sync(_unlink, self._path(name), limiter=self._limiter)


class DiskWrites:
    """Blocks written to a :class:`DiskCache` behind the readers that fetched them, in the
    background: a reader never waits for the disk.  At most :data:`MAX_PENDING_BYTES` wait
    to be written; beyond that a write is skipped (the block stays in memory a while, and
    a disk that falls behind must not hold fetched bodies alive without bound)."""

    def __init__(self, disk: DiskCache, nursery: trio.Nursery) -> None:
        self.disk = disk
        self._nursery = nursery
        self._pending_bytes = 0
        self._idle = trio.Event()
        self._idle.set()

    def put(self, key: str, etag: str, blocks: list[tuple[int, bytes | memoryview]]) -> None:
        """Write ``blocks`` of one version soon (or never, when too much is waiting)."""
        size = sum(len(data) for _, data in blocks)
        if self._pending_bytes + size > MAX_PENDING_BYTES:
            return
        if self._pending_bytes == 0:
            self._idle = trio.Event()
        self._pending_bytes += size
        self._nursery.start_soon(self._write, key, etag, blocks, size)

    async def settle(self) -> None:
        """Return once the blocks on their way are written (at unmount: what was fetched is
        found again by the next mount)."""
        await self._idle.wait()

    async def _write(
        self, key: str, etag: str, blocks: list[tuple[int, bytes | memoryview]], size: int
    ) -> None:
        try:
            await self.disk.put_many(key, etag, blocks)
        finally:
            self._pending_bytes -= size
            if self._pending_bytes == 0:
                self._idle.set()
