"""The read policy through the core: what random, strided and sequential readers fetch, what
each cache layer keeps, and the kernel page-cache pushes, against a counting fake store and
a fake kernel (the real kernel is the mount tests')."""

from __future__ import annotations

import os
import random
import tempfile
import threading
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace
from pathlib import Path

import pytest
import trio
import trio.testing

from blobfs import errors
from blobfs.cache.blocks import BlockCache
from blobfs.cache.disk import DiskCache
from blobfs.cache.ledger import FetchLedger
from blobfs.cache.readahead import SLOW_GET, WIDE_FETCH_COVERAGE, Pattern, ReadAhead
from blobfs.fs.filesystem import Filesystem
from blobfs.options import MountOptions
from tests.cache.test_block_cache import BLOCK, CountingStore

FETCH = 8 * BLOCK


class FakeKernel:
    """What the page cache would hold: ``(inode, offset) -> bytes``, every store recorded.
    ``gate`` (when set) holds every store until it is set, like a page lock would."""

    def __init__(self) -> None:
        self.pages: dict[tuple[int, int], bytes] = {}
        self.stores: list[tuple[int, int, int]] = []
        self.gate: threading.Event | None = None
        #: Set when a store is waiting at the gate.
        self.waiting = threading.Event()

    def __call__(self, inode: int, offset: int, data: bytes | memoryview) -> None:
        if self.gate is not None:
            self.waiting.set()
            self.gate.wait(10)
        self.stores.append((inode, offset, len(data)))
        self.pages[(inode, offset)] = bytes(data)


@dataclass
class Core:
    fs: Filesystem
    store: CountingStore
    cache: BlockCache
    kernel: FakeKernel

    async def open(self, key: str) -> int:
        node = await self.fs.lookup(1, key)
        return (await self.fs.open(node.ino, os.O_RDONLY)).fh


@asynccontextmanager
async def core(
    objects: dict[str, bytes], *, disk: DiskCache | None = None, memory: int = 64 * BLOCK
) -> AsyncIterator[Core]:
    store = CountingStore(objects)
    options = replace(
        MountOptions(), block_size=BLOCK, memory=memory, readahead=16 * BLOCK, attr_ttl=0
    )
    with tempfile.TemporaryDirectory(prefix="blobfs-staging-") as staging:
        async with trio.open_nursery() as nursery:
            cache = BlockCache(
                store, nursery, block_size=BLOCK, memory=memory, fetch_size=FETCH, disk=disk
            )
            fs = Filesystem(store, cache, options, staging_dir=Path(staging))  # type: ignore[arg-type]
            kernel = FakeKernel()
            fs.pages.attach(kernel)
            yield Core(fs, store, cache, kernel)
            nursery.cancel_scope.cancel()


@asynccontextmanager
async def opened_disk(root: Path, blocks: int) -> AsyncIterator[DiskCache]:
    """A disk cache of ``blocks`` blocks in ``root``, opened, and closed after."""
    disk = DiskCache(root, blocks * BLOCK, block_size=BLOCK)
    await disk.open()
    try:
        yield disk
    finally:
        disk.close()


async def until(condition: Callable[[], bool], seconds: float = 10) -> None:
    """Wait for work done in worker threads (disk writes, pushes) to show."""
    with trio.fail_after(seconds):
        while not condition():  # noqa: ASYNC110 - work in worker threads, no event
            await trio.sleep(0.01)


def random_offsets(size: int, count: int, seed: int) -> list[int]:
    rng = random.Random(seed)
    # Far apart from each other, so no read looks sequential.
    return [rng.randrange(0, size - 4096) for _ in range(count)]


# -- random readers ------------------------------------------------------------------------------


@pytest.mark.trio
@pytest.mark.parametrize("length", [1, 4095, 4096, BLOCK - 1, BLOCK + 1, 3 * BLOCK + 17])
async def test_random_reads_of_every_size_fetch_each_block_once(length: int) -> None:
    data = os.urandom(40 * BLOCK + 123)
    async with core({"f": data}) as c:
        fh = await c.open("f")
        rng = random.Random(length)
        for _ in range(60):
            off = rng.randrange(0, len(data) + 2)
            assert bytes(await c.fs.read(fh, off, length)) == data[off : off + length]
        await trio.testing.wait_all_tasks_blocked()
        assert all(off % BLOCK == 0 for _, off, _ in c.store.gets)
        assert c.cache.stats.refetched_bytes == 0
        assert sum(n for _, _, n in c.store.gets) <= len(data)


@pytest.mark.trio
async def test_a_reader_covering_much_of_an_object_fetches_wide() -> None:
    size = 64 * BLOCK
    data = os.urandom(size)
    async with core({"f": data}) as c:
        order = list(range(1, 64))
        random.Random(1).shuffle(order)
        wide_from = int(WIDE_FETCH_COVERAGE * 64)
        for n, index in enumerate([*order, 0]):
            # A fresh handle per read: every read is a random one.
            fh = await c.open("f")
            off = index * BLOCK + 100
            assert await c.fs.read(fh, off, 10) == data[off : off + 10]
            await c.fs.release(fh)
            await trio.testing.wait_all_tasks_blocked()
            if n < wide_from:
                assert len(c.store.gets) == n + 1  # one block per miss
        # Past a quarter of the object, misses fetch fetch_size groups: far fewer GETs.
        assert len(c.store.gets) < wide_from + (64 - wide_from) // 2
        assert c.cache.stats.refetched_bytes == 0
        assert sum(n for _, _, n in c.store.gets) == size


@pytest.mark.trio
async def test_a_slow_store_gets_wide_fetches_from_the_first_misses() -> None:
    data = os.urandom(64 * BLOCK)
    async with core({"f": data}) as c:
        c.store.delay = SLOW_GET * 1.5  # every request costs more than its bytes
        fh = await c.open("f")
        for index in (40, 10, 55, 20):
            off = index * BLOCK + 7
            assert await c.fs.read(fh, off, 10) == data[off : off + 10]
            await trio.testing.wait_all_tasks_blocked()
        # The first misses learnt the latency (one sample is not enough: a first GET also
        # connects); the next fetched a whole aligned group (the object is too large to be
        # filled whole without a disk cache).
        assert [n // BLOCK for _, _, n in c.store.gets[:4]] == [1, 1, 1, FETCH // BLOCK]
        assert c.cache.stats.refetched_bytes == 0


@pytest.mark.trio
async def test_a_slow_stores_object_is_filled_in_the_background(tmp_path: Path) -> None:
    data = os.urandom(64 * BLOCK + 99)
    # A quarter of the disk cache holds the object (the most a fill takes).
    async with opened_disk(tmp_path, 400) as disk, core({"db": data}, disk=disk) as c:
        c.store.delay = SLOW_GET * 1.5
        fh = await c.open("db")
        fills = c.fs.state.fills
        for index in (40, 10, 55, 20):
            off = index * BLOCK + 7
            assert await c.fs.read(fh, off, 10) == data[off : off + 10]
        # The latency learnt, the fourth miss started the fill and fetched only its block.
        assert [n // BLOCK for _, _, n in c.store.gets[:4]] == [1, 1, 1, 1]
        assert fills.running("db", c.store.etags["db"])
        await until(lambda: fills.stats.finished == 1)
        # Every block fetched once, all of them kept on disk, in aligned fetch_size GETs.
        assert sum(n for _, _, n in c.store.gets) == len(data)
        assert c.cache.stats.refetched_bytes == 0
        assert disk.total_bytes == len(data)
        assert all(n <= FETCH for _, _, n in c.store.gets)
        # And in the kernel's page cache: every block, the bytes of this version.
        ino = c.fs.state.handles.file(fh).node.ino
        await until(lambda: len(c.kernel.pages) == len(data) // BLOCK + 1)
        kept = b"".join(c.kernel.pages[(ino, i * BLOCK)] for i in range(len(data) // BLOCK + 1))
        assert kept == data
        gets = len(c.store.gets)
        for off in random_offsets(len(data), 30, 5):
            assert await c.fs.read(fh, off, 4096) == data[off : off + 4096]
        assert len(c.store.gets) == gets


@pytest.mark.trio
async def test_a_fill_stops_when_nobody_reads_and_when_the_object_changes(tmp_path: Path) -> None:
    data = os.urandom(64 * BLOCK)
    async with (
        opened_disk(tmp_path, 400) as disk,
        core({"closed": data, "changed": data}, disk=disk) as c,
    ):
        c.store.delay = SLOW_GET * 1.5
        fills = c.fs.state.fills
        fh = await c.open("closed")
        for index in (40, 10, 55, 20):
            await c.fs.read(fh, index * BLOCK, 10)
        await c.fs.release(fh)
        await until(lambda: not fills.running("closed", c.store.etags["closed"]))
        # Only what was on its way at the close came in.
        assert sum(n for k, _, n in c.store.gets if k == "closed") < len(data)
        assert fills.stats.finished == 0

        fh = await c.open("changed")
        etag = c.store.etags["changed"]
        for index in (40, 10, 55, 20):
            await c.fs.read(fh, index * BLOCK, 10)
        c.store.replace("changed", os.urandom(len(data)))
        await until(lambda: not fills.running("changed", etag))
        # Nothing of the new version was kept under the old one's name, nor served.
        assert disk.total_bytes <= 2 * len(data)
        with pytest.raises(errors.Stale):
            for off in random_offsets(len(data), 30, 6):
                assert await c.fs.read(fh, off, 4096) == data[off : off + 4096]


@pytest.mark.trio
async def test_strided_reader_gets_its_next_strides_ahead() -> None:
    data = os.urandom(100 * BLOCK)
    async with core({"f": data}) as c:
        fh = await c.open("f")
        handle = c.fs.state.handles.file(fh)
        stride = 5 * BLOCK
        for n in range(12):
            off = n * stride + 1000
            assert await c.fs.read(fh, off, 4096) == data[off : off + 4096]
            await trio.testing.wait_all_tasks_blocked()
        assert handle.readahead.stride_depth > 0
        # The later reads found their blocks fetched ahead of them.
        assert c.cache.stats.memory_hits + c.cache.stats.shared_waits >= 8


def test_pattern_detection() -> None:
    ra = ReadAhead(block_size=BLOCK, max_window=16 * BLOCK)
    size = 1000 * BLOCK
    assert ra.on_read(0, 4096, size).pattern is Pattern.SEQUENTIAL
    assert ra.on_read(100 * BLOCK, 4096, size).pattern is Pattern.RANDOM
    assert ra.on_read(90 * BLOCK, 4096, size).pattern is Pattern.RANDOM
    # Backwards by a fixed step: strided, the next steps predicted.
    plan = ra.on_read(80 * BLOCK, 4096, size)
    assert plan.pattern is Pattern.STRIDED
    assert plan.ahead[:2] == (70, 60)
    assert ra.on_read(333 * BLOCK, 4096, size).pattern is Pattern.RANDOM


# -- what each layer keeps -----------------------------------------------------------------------


@pytest.mark.trio
async def test_random_blocks_go_to_disk_and_kernel_sequential_ones_do_not(tmp_path: Path) -> None:
    data = os.urandom(48 * BLOCK)
    async with opened_disk(tmp_path, 100) as disk, core({"seq": data, "rnd": data}, disk=disk) as c:
        fh = await c.open("seq")
        for off in range(0, len(data), 128 * 1024):
            assert await c.fs.read(fh, off, 128 * 1024) == data[off : off + 128 * 1024]
            await trio.testing.wait_all_tasks_blocked()
        # A stream: nothing on disk, nothing pushed, and memory let go behind the reader.
        assert disk.total_bytes == 0
        assert c.kernel.stores == []
        assert c.cache.stats.dropped_behind > 0
        assert c.cache.memory_used <= 24 * BLOCK

        fh = await c.open("rnd")
        node = c.fs.state.handles.file(fh).node
        offsets = random_offsets(len(data), 20, 2)
        for off in offsets:
            assert await c.fs.read(fh, off, 4096) == data[off : off + 4096]
        fetched = sum(n for k, _, n in c.store.gets if k == "rnd")
        await until(lambda: disk.total_bytes == fetched)
        # Every block a random reader touched went to the kernel whole, at its offset.
        for (ino, offset), pushed in c.kernel.pages.items():
            assert ino == node.ino
            assert pushed == data[offset : offset + BLOCK]
        touched = {i for off in offsets for i in (off // BLOCK, (off + 4095) // BLOCK)}
        assert {off // BLOCK for _, off in c.kernel.pages} >= touched


@pytest.mark.trio
async def test_a_replaced_object_is_never_pushed_or_served_stale() -> None:
    old, new = os.urandom(16 * BLOCK), os.urandom(16 * BLOCK)
    async with core({"f": old}) as c:
        fh = await c.open("f")
        node = c.fs.state.handles.file(fh).node
        assert await c.fs.read(fh, 5 * BLOCK, 10) == old[5 * BLOCK : 5 * BLOCK + 10]
        await trio.testing.wait_all_tasks_blocked()
        # Pushes of the old version held (a page lock) while the object is replaced and
        # opened again: the open must not answer before they are done.
        c.kernel.gate = gate = threading.Event()
        assert await c.fs.read(fh, 9 * BLOCK, 10) == old[9 * BLOCK : 9 * BLOCK + 10]
        await until(c.kernel.waiting.is_set)  # a push of the old version is in the kernel
        c.store.replace("f", new)
        opened = trio.Event()

        async def reopen() -> None:
            h = await c.fs.open(node.ino, os.O_RDONLY)
            assert not h.keep_cache  # the kernel drops what it holds of the old version
            opened.set()

        async with trio.open_nursery() as nursery:
            nursery.start_soon(reopen)
            await trio.sleep(0.05)
            assert not opened.is_set()
            gate.set()
        assert opened.is_set()
        stores = len(c.kernel.stores)
        # The old handle still reads its version from memory; nothing of it is pushed now.
        assert await c.fs.read(fh, 5 * BLOCK, 10) == old[5 * BLOCK : 5 * BLOCK + 10]
        with pytest.raises(errors.Stale):
            await c.fs.read(fh, 12 * BLOCK, 10)
        await trio.testing.wait_all_tasks_blocked()
        assert len(c.kernel.stores) == stores


@pytest.mark.trio
async def test_memory_stays_within_budget_under_concurrent_random_readers() -> None:
    data = os.urandom(200 * BLOCK)
    budget = 16 * BLOCK
    async with core({"f": data}, memory=budget) as c:
        c.store.delay = 0.001

        async def reader(seed: int) -> None:
            fh = await c.open("f")
            for off in random_offsets(len(data), 40, seed):
                assert await c.fs.read(fh, off, 4096) == data[off : off + 4096]
                assert c.cache.memory_used <= budget

        async with trio.open_nursery() as nursery:
            for seed in range(8):
                nursery.start_soon(reader, seed)


def test_ledger_counts_what_was_fetched_twice() -> None:
    ledger = FetchLedger(max_versions=2)
    assert ledger.record("k", "e", [0, 1, 9], [10, 10, 5]) == 0
    assert ledger.count("k", "e") == 3
    assert ledger.record("k", "e", [1, 2], [10, 10]) == 10
    assert ledger.count("k", "e") == 4
    ledger.record("a", "e", [0], [1])
    ledger.record("b", "e", [0], [1])  # "k" is forgotten: its blocks count as new again
    assert ledger.record("k", "e", [1], [10]) == 0


@pytest.mark.trio
async def test_disk_cache_keeps_free_space(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from blobfs.cache import disk as disk_module

    async with opened_disk(tmp_path, 100) as disk:
        spare = [10 * BLOCK]
        monkeypatch.setattr(disk_module, "_spare", lambda root: spare[0])
        for i in range(4):
            await disk.put("k", "e", i, os.urandom(BLOCK))
        assert disk.total_bytes == 4 * BLOCK
        # The file system filled up from elsewhere: the cache gives back what is missing.
        spare[0] = -BLOCK
        await disk.put("k", "e", 9, os.urandom(BLOCK))
        assert disk.skipped_writes == 1
        assert disk.total_bytes <= 2 * BLOCK
        assert await disk.get("k", "e", 0, BLOCK) is None  # the oldest went first
