"""The block cache, the disk cache and read-ahead, against a counting fake store.

No asyncio here: the cache only needs ``read_view`` (and the core, for the read-ahead
tests, ``head`` and listings), which the fake provides natively on trio.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

import pytest
import trio

from blobfs import errors
from blobfs.cache.blocks import BlockCache
from blobfs.cache.disk import CacheBusy, DiskCache
from blobfs.cache.readahead import INITIAL_WINDOW, ReadAhead
from blobfs.fs.filesystem import Filesystem
from blobfs.options import MountOptions
from sdk.errors import PreconditionFailed, ResourceNotFound
from sdk.providers.base import ObjectInfo, PrefixInfo

BLOCK = 256 * 1024
MiB = 1024 * 1024


class CountingStore:
    """Objects in a dict; records every ranged GET as (key, offset, length)."""

    bucket_name = "fake"

    def __init__(self, objects: dict[str, bytes]) -> None:
        self.objects = dict(objects)
        self.etags = {k: f"v1-{k}" for k in objects}
        self.gets: list[tuple[str, int, int]] = []
        self.delay = 0.0

    def replace(self, key: str, data: bytes) -> None:
        self.objects[key] = data
        self.etags[key] = self.etags[key] + "+"

    async def read_range(
        self, key: str, offset: int, length: int, *, etag: str | None = None
    ) -> bytes:
        self.gets.append((key, offset, length))
        if self.delay:
            await trio.sleep(self.delay)
        if key not in self.objects:
            raise ResourceNotFound(key)
        if etag is not None and etag != self.etags[key]:
            raise PreconditionFailed(key)
        return self.objects[key][offset : offset + length]

    async def read_view(
        self, key: str, offset: int, length: int, *, etag: str | None = None
    ) -> memoryview:
        return memoryview(await self.read_range(key, offset, length, etag=etag))

    async def head(self, key: str) -> ObjectInfo:
        if key not in self.objects:
            raise ResourceNotFound(key)
        return ObjectInfo(key=key, size=len(self.objects[key]), etag=self.etags[key])

    async def first_entry(self, prefix: str, *, delimiter: str | None = "/") -> None:
        return None

    async def list_pages(
        self, prefix: str, *, delimiter: str | None = "/"
    ) -> AsyncIterator[list[ObjectInfo | PrefixInfo]]:
        yield [
            ObjectInfo(key=k, size=len(v), etag=self.etags[k])
            for k, v in sorted(self.objects.items())
            if k.startswith(prefix)
        ]


def data_of(size: int) -> bytes:
    return os.urandom(size)


def block_files(root: Path) -> list[Path]:
    """The block files of a disk cache directory."""
    return [p for p in root.rglob("*") if p.is_file() and p.name != "lock"]


# -- memory budget, sharing, invalidation -----------------------------------------------------


@pytest.mark.trio
async def test_memory_budget_is_respected() -> None:
    data = data_of(40 * BLOCK)
    store = CountingStore({"k": data})
    async with trio.open_nursery() as nursery:
        cache = BlockCache(store, nursery, block_size=BLOCK, memory=8 * BLOCK)
        for i in range(40):
            block = await cache.get("k", "v1-k", len(data), i)
            assert block == data[i * BLOCK : (i + 1) * BLOCK]
            assert cache.memory_used <= 8 * BLOCK
        assert cache.memory_used == 8 * BLOCK
        assert cache.cached("k", "v1-k", 39) is not None
        assert cache.cached("k", "v1-k", 0) is None  # evicted, least recently used


@pytest.mark.trio
async def test_prefetch_range_coalesces_missing_blocks() -> None:
    data = data_of(20 * BLOCK + 5)
    store = CountingStore({"k": data})
    async with trio.open_nursery() as nursery:
        cache = BlockCache(
            store, nursery, block_size=BLOCK, memory=64 * BLOCK, fetch_size=4 * BLOCK
        )
        await cache.get("k", "v1-k", len(data), 3)
        cache.prefetch_range("k", "v1-k", len(data), 0, 100)
        await trio.testing.wait_all_tasks_blocked()
        offsets = sorted((off // BLOCK, length) for _, off, length in store.gets)
        # Block 3 was cached, so runs are [0-2], [4-7], [8-11], [12-15], [16-19], [20].
        assert offsets == [
            (0, 3 * BLOCK),
            (3, BLOCK),
            (4, 4 * BLOCK),
            (8, 4 * BLOCK),
            (12, 4 * BLOCK),
            (16, 4 * BLOCK),
            (20, 5),
        ]
        got = b"".join([await cache.get("k", "v1-k", len(data), i) for i in range(21)])
        assert got == data
        assert len(store.gets) == 7


@pytest.mark.trio
async def test_concurrent_readers_of_a_block_share_one_get() -> None:
    store = CountingStore({"k": data_of(2 * BLOCK)})
    store.delay = 0.05
    async with trio.open_nursery() as nursery:
        cache = BlockCache(store, nursery, block_size=BLOCK, memory=8 * BLOCK)
        cache.prefetch_range("k", "v1-k", 2 * BLOCK, 1, 1)
        results: list[bytes | memoryview] = []

        async def reader() -> None:
            results.append(await cache.get("k", "v1-k", 2 * BLOCK, 1))

        async with trio.open_nursery() as readers:
            for _ in range(5):
                readers.start_soon(reader)
        assert len(store.gets) == 1
        assert len(set(results)) == 1 and len(results) == 5


@pytest.mark.trio
async def test_waiters_share_a_failure_and_outlive_a_cancelled_owner() -> None:
    data = data_of(2 * BLOCK)
    store = CountingStore({"k": data})
    store.delay = 0.05
    async with trio.open_nursery() as nursery:
        cache = BlockCache(store, nursery, block_size=BLOCK, memory=8 * BLOCK)
        # A failure reaches every waiter of that fetch, and is not kept.
        failures: list[BaseException] = []

        async def reader(etag: str) -> None:
            try:
                await cache.get("k", etag, 2 * BLOCK, 0)
            except errors.Stale as e:
                failures.append(e)

        async with trio.open_nursery() as readers:
            for _ in range(3):
                readers.start_soon(reader, "v0-k")
        assert len(store.gets) == 1 and len(failures) == 3
        # The owner's request is interrupted: a waiter fetches the block itself.
        got: list[bytes | memoryview] = []
        owner = trio.CancelScope()

        async def owner_read() -> None:
            with owner:
                await cache.get("k", "v1-k", 2 * BLOCK, 1)

        async def waiter() -> None:
            got.append(await cache.get("k", "v1-k", 2 * BLOCK, 1))

        async with trio.open_nursery() as readers:
            readers.start_soon(owner_read)
            await trio.testing.wait_all_tasks_blocked()
            readers.start_soon(waiter)
            await trio.testing.wait_all_tasks_blocked()
            owner.cancel()
        assert got == [data[BLOCK:]]
        assert len(store.gets) == 3


@pytest.mark.trio
async def test_etag_change_invalidates(tmp_path: Path) -> None:
    old, new = data_of(2 * BLOCK), data_of(2 * BLOCK)
    store = CountingStore({"k": old})
    disk = DiskCache(tmp_path, 100 * BLOCK, block_size=BLOCK)
    await disk.open()
    async with trio.open_nursery() as nursery:
        cache = BlockCache(store, nursery, block_size=BLOCK, memory=8 * BLOCK, disk=disk)
        assert await cache.get("k", "v1-k", 2 * BLOCK, 0) == old[:BLOCK]
        store.replace("k", new)
        # The old version is cached, so a reader of it is served without a request...
        assert await cache.get("k", "v1-k", 2 * BLOCK, 0) == old[:BLOCK]
        # ...but its uncached blocks cannot be fetched any more: stale, never mixed.
        with pytest.raises(errors.Stale):
            await cache.get("k", "v1-k", 2 * BLOCK, 1)
        # The new version is a different block identity.
        assert await cache.get("k", "v1-k+", 2 * BLOCK, 0) == new[:BLOCK]
        await trio.testing.wait_all_tasks_blocked()
    assert await disk.get("k", "v1-k+", 0, BLOCK) == new[:BLOCK]
    assert await disk.get("k", "v1-k", 0, BLOCK) == old[:BLOCK]
    assert await disk.get("k", "v1-k", 1, BLOCK) is None


# -- the disk cache -----------------------------------------------------------------------------


@pytest.mark.trio
async def test_disk_cache_survives_reopen(tmp_path: Path) -> None:
    data = data_of(6 * BLOCK + 100)
    store = CountingStore({"k": data})
    disk = DiskCache(tmp_path, 100 * BLOCK, block_size=BLOCK)
    await disk.open()
    async with trio.open_nursery() as nursery:
        cache = BlockCache(store, nursery, block_size=BLOCK, memory=8 * BLOCK, disk=disk)
        for i in range(7):
            await cache.get("k", "v1-k", len(data), i)
    assert len(store.gets) == 7
    # A new mount: fresh memory, the same directory (which one daemon holds at a time).
    with pytest.raises(CacheBusy):
        await DiskCache(tmp_path, 100 * BLOCK, block_size=BLOCK).open()
    disk.close()
    store.gets.clear()
    disk2 = DiskCache(tmp_path, 100 * BLOCK, block_size=BLOCK)
    await disk2.open()
    assert disk2.total_bytes == len(data)
    async with trio.open_nursery() as nursery:
        cache = BlockCache(store, nursery, block_size=BLOCK, memory=8 * BLOCK, disk=disk2)
        got = b"".join([await cache.get("k", "v1-k", len(data), i) for i in range(7)])
    assert got == data
    assert store.gets == []
    assert disk2.hits == 7


@pytest.mark.trio
async def test_disk_cache_size_bound_and_corruption(tmp_path: Path) -> None:
    disk = DiskCache(tmp_path, 3 * BLOCK, block_size=BLOCK)
    await disk.open()
    blocks = [data_of(BLOCK) for _ in range(5)]
    for i, b in enumerate(blocks):
        await disk.put("k", "e", i, b)
        assert disk.total_bytes <= 3 * BLOCK
    assert await disk.get("k", "e", 0, BLOCK) is None  # evicted
    assert await disk.get("k", "e", 4, BLOCK) == blocks[4]
    # A truncated file (a crash, a full disk) is discarded, not served.
    for p in block_files(tmp_path):
        p.write_bytes(b"short")
    assert await disk.get("k", "e", 4, BLOCK) is None
    # A reopen with a smaller bound trims the cache.
    disk.close()
    disk2 = DiskCache(tmp_path, BLOCK, block_size=BLOCK)
    await disk2.open()
    assert disk2.total_bytes <= BLOCK


# -- read-ahead ---------------------------------------------------------------------------------


def test_readahead_window_grows_and_resets() -> None:
    ra = ReadAhead(block_size=MiB, max_window=16 * MiB)
    size = 1 << 30
    windows = []
    for i in range(64):
        plan = ra.on_read(i * 128 * 1024, 128 * 1024, size)
        assert plan.sequential
        windows.append(ra.window)
    assert windows[0] == INITIAL_WINDOW
    assert windows[-1] == 16 * MiB  # doubled up to the limit
    assert windows == sorted(windows)
    plan = ra.on_read(500 * MiB, 4096, size)
    assert not plan.sequential and len(plan.prefetch) == 0
    assert ra.window == INITIAL_WINDOW


@pytest.mark.trio
@pytest.mark.parametrize("pattern", ["sequential", "random"])
async def test_readahead_through_the_core(pattern: str, tmp_path: Path) -> None:
    size = 64 * BLOCK
    data = data_of(size)
    store = CountingStore({"f": data})
    options = replace(MountOptions(), block_size=BLOCK, memory=64 * BLOCK, readahead=16 * BLOCK)
    async with trio.open_nursery() as nursery:
        cache = BlockCache(
            store, nursery, block_size=BLOCK, memory=options.memory, fetch_size=4 * BLOCK
        )
        fs = Filesystem(store, cache, options, staging_dir=tmp_path)  # type: ignore[arg-type]
        node = await fs.lookup(1, "f")
        h = await fs.open(node.ino, os.O_RDONLY)
        if pattern == "sequential":
            for off in range(0, size, 128 * 1024):
                assert await fs.read(h.fh, off, 128 * 1024) == data[off : off + 128 * 1024]
                await trio.testing.wait_all_tasks_blocked()
            # Every byte fetched once, in block-aligned GETs of several blocks, and the
            # read-ahead ran ahead of the reader.
            assert sum(length for _, _, length in store.gets) == size
            assert all(off % BLOCK == 0 and length % BLOCK == 0 for _, off, length in store.gets)
            assert len({off for _, off, _ in store.gets}) == len(store.gets)
            assert len(store.gets) < 64 // 2
            assert h.readahead.window == 16 * BLOCK
            assert cache.stats.memory_hits > 0
        else:
            import random

            rng = random.Random(5)
            offsets = [rng.randrange(0, size - 4096) // 4096 * 4096 for _ in range(50)]
            for off in offsets:
                assert await fs.read(h.fh, off, 4096) == data[off : off + 4096]
            await trio.testing.wait_all_tasks_blocked()
            # Random reads fetch the whole blocks they touch, each once: aligned GETs, no
            # byte twice, never more than the object.
            assert all(off % BLOCK == 0 for _, off, _ in store.gets)
            assert cache.stats.refetched_bytes == 0
            assert sum(length for _, _, length in store.gets) <= size
            # (A read that happens to follow the one before may start a read-ahead window.)
            assert len(store.gets) <= len({off // BLOCK for off in offsets}) + 4
            assert h.readahead.window <= INITIAL_WINDOW
        await fs.release(h.fh)
        fs.forget([(node.ino, 1)])
        fs.check_consistency()
        nursery.cancel_scope.cancel()
