"""What a mount keeps of what it read, and that none of it is ever stale: real mounts through
/dev/fuse on SeaweedFS (S3) and Azurite (Azure).

Each test mounts with ``log_level=INFO``: at unmount the daemon logs the GETs it made, the
bytes they brought and how many of those it had fetched before, and where reads were served
from -- the counts these tests check (:func:`read_stats`).
"""

from __future__ import annotations

import errno
import os
import random
import re
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from blobfs.mount import mountpoint
from tests.mount.world import MiB, World, new_world, payload, unmount_all

pytestmark = pytest.mark.mount

if not os.path.exists("/dev/fuse") or os.geteuid() != 0:
    pytest.skip("needs /dev/fuse and root", allow_module_level=True)

#: Short TTLs, as the other mount tests use; the memory and cache defaults stay.
OPTIONS = "attr_ttl=1,entry_ttl=1,dir_ttl=1,negative_ttl=1,log_level=INFO"
RANDOM_SIZE = 5 * MiB + 12345
BUDGET_SIZE = 64 * MiB
BLOCK = 256 * 1024


@pytest.fixture(scope="module", params=["s3", "azure"])
def world(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[World]:
    w = new_world(request, tmp_path_factory, "cache")
    w.put_many({"rand": payload(RANDOM_SIZE, 7), "budget": payload(BUDGET_SIZE, 8)})
    yield w
    unmount_all(w)


def mount(world: World, name: str, options: str = "") -> Path:
    """A mount with its own cache directory ``name`` (kept across remounts of that name)."""
    cache = world.tmp / f"cache-{name}"
    extra = f",cache_dir={cache}" + (f",{options}" if options else "")
    return world.mount(f"blob:{world.bucket}", world.tmp / f"mnt-{name}", OPTIONS + extra)


def read_stats(world: World, where: Path) -> dict[str, int]:
    """Unmount ``where`` and return what its daemon logged about reads (the last mount's)."""
    world.umount(where)
    text = (world.tmp / f"{where.name}.log").read_text()
    requests = re.findall(r"(\d+) GET \((\d+) bytes, (\d+) fetched before\)", text)[-1]
    caches = re.findall(r"(\d+) memory hits, (\d+) disk hits", text)[-1]
    pushed = re.findall(r"(\d+) pushed to the kernel", text)[-1]
    return {
        "gets": int(requests[0]),
        "fetched": int(requests[1]),
        "refetched": int(requests[2]),
        "memory_hits": int(caches[0]),
        "disk_hits": int(caches[1]),
        "pushed": int(pushed),
    }


def drop_kernel_cache(path: Path) -> None:
    """Make the kernel forget its pages of ``path``: the next reads reach the daemon."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


def pread_at(path: Path, offsets: list[int], size: int) -> list[bytes]:
    fd = os.open(path, os.O_RDONLY)
    try:
        return [os.pread(fd, size, off) for off in offsets]
    finally:
        os.close(fd)


def disk_cache_bytes(world: World, name: str) -> int:
    root = world.tmp / f"cache-{name}" / "blocks"
    return sum(p.stat().st_size for p in root.rglob("*") if p.is_file() and p.name != "lock")


# -- correctness ---------------------------------------------------------------------------------


def test_random_reads_of_every_size_return_the_objects_bytes(world: World) -> None:
    data = payload(RANDOM_SIZE, 7)
    where = mount(world, "sizes")
    try:
        rng = random.Random(1)
        fd = os.open(where / "rand", os.O_RDONLY)
        try:
            for size in (1, 4095, 4096, 65536, BLOCK - 1, BLOCK + 1, MiB + 3):
                for _ in range(12):
                    off = rng.randrange(0, RANDOM_SIZE + 2)
                    assert os.pread(fd, size, off) == data[off : off + size], (size, off)
            assert os.pread(fd, 10, RANDOM_SIZE) == b""
        finally:
            os.close(fd)
        # Once more from the caches alone (the kernel's dropped): the same bytes.
        drop_kernel_cache(where / "rand")
        assert (where / "rand").read_bytes() == data
    finally:
        if where in world.mounts:
            world.umount(where)


def test_a_block_fetched_once_is_served_again_without_a_get(world: World) -> None:
    data = payload(RANDOM_SIZE, 7)
    # Every other block, in random order: no read follows another closely enough to look
    # sequential (a stream's blocks are not kept on disk).
    offsets = [b * BLOCK + 1000 for b in range(0, RANDOM_SIZE // BLOCK, 2)]
    random.Random(2).shuffle(offsets)
    expected = [data[off : off + 4096] for off in offsets]
    where = mount(world, "again")
    assert pread_at(where / "rand", offsets, 4096) == expected
    drop_kernel_cache(where / "rand")
    assert pread_at(where / "rand", offsets, 4096) == expected
    first = read_stats(world, where)
    assert first["gets"] > 0 and first["pushed"] > 0
    assert first["refetched"] == 0
    assert first["fetched"] <= RANDOM_SIZE
    assert first["memory_hits"] > 0

    # A new mount: memory and kernel are new, the disk cache is the same.
    where = mount(world, "again")
    assert pread_at(where / "rand", offsets, 4096) == expected
    second = read_stats(world, where)
    assert second["gets"] == 0
    assert second["disk_hits"] > 0


def test_a_replaced_object_is_never_served_stale(world: World) -> None:
    size = MiB + 7
    versions = [payload(size, seed) for seed in (11, 12, 13)]
    world.put_many({"stale/f": versions[0]})
    where = mount(world, "stale")
    path = where / "stale" / "f"
    rng = random.Random(3)
    offsets = sorted(rng.randrange(0, size - 4096) for _ in range(30))
    # Version 1 everywhere: the kernel's cache (pushed blocks, whole-file reads), memory
    # and disk.
    assert pread_at(path, offsets, 4096) == [versions[0][o : o + 4096] for o in offsets]
    assert path.read_bytes() == versions[0]
    held = os.open(path, os.O_RDONLY)
    try:
        # Same size, new content: only the ETag tells them apart.
        world.put_many({"stale/f": versions[1]})
        # A handle opened on version 1 reads version 1 (or ESTALE) while no new open of
        # the file has read version 2 into the kernel's page cache, which is per file.
        for offset in (offsets[0], size - 4096):
            try:
                old = os.pread(held, 4096, offset)
            except OSError as e:
                assert e.errno == errno.ESTALE
            else:
                assert old == versions[0][offset : offset + 4096]
    finally:
        os.close(held)
    deadline = time.monotonic() + 10
    while True:
        seen = path.read_bytes()
        assert seen in (versions[0], versions[1])  # a whole version, never a mix
        if seen == versions[1]:
            break
        assert time.monotonic() < deadline, "the new version never showed"
        time.sleep(0.2)
    # Every layer now gives the new version, the kernel's dropped or not.
    assert pread_at(path, offsets, 4096) == [versions[1][o : o + 4096] for o in offsets]
    drop_kernel_cache(path)
    assert path.read_bytes() == versions[1]
    world.umount(where)

    # Replaced while unmounted: the remount's disk cache holds versions 1 and 2.
    world.put_many({"stale/f": versions[2]})
    where = mount(world, "stale")
    try:
        assert pread_at(path, offsets, 4096) == [versions[2][o : o + 4096] for o in offsets]
        assert path.read_bytes() == versions[2]
    finally:
        world.umount(where)


# -- bounds --------------------------------------------------------------------------------------


def test_memory_budget_holds_under_concurrent_random_readers(world: World) -> None:
    data = payload(BUDGET_SIZE, 8)
    budget = 256 * MiB  # below the default: the tighter bound must hold too
    # cache_size=0: memory is the only cache of the daemon.
    where = mount(world, "budget", f"cache_size=0,memory={budget}")
    try:
        failures: list[str] = []

        def reader(seed: int) -> None:
            rng = random.Random(seed)
            fd = os.open(where / "budget", os.O_RDONLY)
            try:
                for _ in range(150):
                    size = rng.choice((4096, 128 * 1024))
                    off = rng.randrange(0, BUDGET_SIZE - size)
                    if os.pread(fd, size, off) != data[off : off + size]:
                        failures.append(f"{seed} {off} {size}")
                    if rng.random() < 0.05:
                        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            finally:
                os.close(fd)

        threads = [threading.Thread(target=reader, args=(seed,)) for seed in range(12)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert failures == []
        pid = mountpoint.read_pid(where)
        assert pid is not None
        status = Path(f"/proc/{pid}/status").read_text()
        peak = int(re.search(r"VmHWM:\s+(\d+) kB", status).group(1)) * 1024  # type: ignore[union-attr]
        assert peak <= budget, f"peak RSS {peak >> 20} MiB over the {budget >> 20} MiB budget"
    finally:
        world.umount(where)


def test_the_disk_cache_respects_its_bound(world: World) -> None:
    data = payload(RANDOM_SIZE, 7)
    bound = 8 * BLOCK
    where = mount(world, "bound", f"cache_size={bound}")
    # One random read in every block: each is fetched and kept on disk, oldest evicted.
    offsets = list(range(100, RANDOM_SIZE, BLOCK))
    random.Random(4).shuffle(offsets)
    assert pread_at(where / "rand", offsets, 100) == [data[o : o + 100] for o in offsets]
    stats = read_stats(world, where)
    assert stats["fetched"] > bound
    assert 0 < disk_cache_bytes(world, "bound") <= bound
    # Remounted with a smaller bound, the cache shrinks to it.
    where = mount(world, "bound", f"cache_size={2 * BLOCK}")
    world.umount(where)
    assert disk_cache_bytes(world, "bound") <= 2 * BLOCK
