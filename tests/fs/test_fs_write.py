"""The write path of the core against the in-memory store (no kernel).

Drives :class:`~blobfs.fs.filesystem.Filesystem` as the FUSE adapter would: create / open with write
flags, write, flush (``close()``), fsync, release, setattr, and the namespace changes.  The
durability contract is checked with the memory store's fault injection: a failing or
vanishing server makes ``flush`` raise, and the bucket never holds a partial object.
"""

from __future__ import annotations

import asyncio
import os
import random
import stat
import time
from dataclasses import replace
from typing import Any

import pytest
import trio

from blobfs import errors
from blobfs.fs.handles import FileHandle
from blobfs.fs.inodes import ROOT_INODE
from blobfs.fs.metadata import format_time, parse_time
from blobfs.fs.rename import RENAME_NOREPLACE
from blobfs.write.budget import WriteBudget
from blobfs.write.sidecar import Sidecar
from sdk.errors import TransientError
from sdk.providers.base import MIN_PART_SIZE, CopySettings
from tests.fs.env import Env, body, create_file, data_of, head, make_env, staged_data, write_all

MiB = 1024 * 1024


def local_write(path: Any, offset: int, data: bytes) -> None:
    with open(path, "r+b" if path.exists() else "w+b") as f:
        f.seek(offset)
        f.write(data)


async def read_through(env: Env, handle: FileHandle, size: int) -> bytes:
    out = bytearray()
    while len(out) < size:
        chunk = await env.fs.read(handle.fh, len(out), 64 * 1024)
        if not chunk:
            break
        out += chunk
    return bytes(out)


# -- new files ----------------------------------------------------------------------------------


@pytest.mark.trio
async def test_create_write_close_stores_object_with_s3fs_metadata() -> None:
    async with make_env() as env:
        handle = await env.fs.create(ROOT_INODE, "new.txt", 0o640, os.O_WRONLY | os.O_CREAT)
        env.fs.inodes.ref(handle.node)
        await env.fs.write(handle.fh, 0, b"hello, ")
        await env.fs.write(handle.fh, 7, b"world\n")
        assert "new.txt" not in env.store.keys(), "visible before close"
        assert (await env.fs.getattr(handle.node.ino)).size == 13
        assert await env.listdir() == ["new.txt"]
        await env.fs.flush(handle.fh)
        await env.fs.release(handle.fh)
        info = await head(env, "new.txt")
        assert await body(env, "new.txt") == b"hello, world\n"
        assert int(info.metadata["mode"]) == stat.S_IFREG | 0o640
        assert info.metadata["uid"] == "1000" and info.metadata["gid"] == "1000"
        assert parse_time(info.metadata["mtime"]) == handle.node.mtime_ns
        assert staged_data(env) == [], "staging file left behind"
        # a fresh lookup (after the TTLs) reads the same attributes back
        env.clock.advance(10)
        node = await env.path("new.txt")
        assert (node.size, node.mode) == (13, 0o640)
        assert await env.read_all(node) == b"hello, world\n"


@pytest.mark.trio
async def test_create_existing_name_is_eexist_and_empty_file_is_stored() -> None:
    async with make_env({"f": b"x", "d/g": b"y"}) as env:
        for name in ("f", "d"):
            with pytest.raises(errors.Exists):
                await env.fs.create(ROOT_INODE, name, 0o644, os.O_WRONLY)
        with pytest.raises(errors.NameTooLong):
            await env.fs.create(ROOT_INODE, "n" * 256, 0o644, os.O_WRONLY)
        await create_file(env, "empty", b"")
        assert await body(env, "empty") == b""


@pytest.mark.trio
async def test_large_file_goes_up_as_multipart_and_reads_back() -> None:
    async with make_env() as env:
        data = data_of(20 * MiB + 123, 1)
        node = await create_file(env, "big", data)
        info = await head(env, "big")
        assert info.etag.endswith("-3"), info.etag
        assert await body(env, "big") == data
        assert await env.aio.run(env.store.pending_uploads) == []
        env.clock.advance(10)
        assert await env.read_all(node) == data


# -- existing files -----------------------------------------------------------------------------


@pytest.mark.trio
async def test_partial_overwrite_append_and_truncating_open() -> None:
    original = data_of(3 * MiB, 2)
    async with make_env({"f": original}) as env:
        node = await env.path("f")
        fetched: list[str] = []

        async def hook(op: str, key: str) -> None:
            fetched.append(op)

        env.store.hook = hook
        handle = await env.fs.open(node.ino, os.O_RDWR)
        await env.fs.write(handle.fh, 100, b"XYZ")
        assert fetched.count("read_range") == 1, "the first write fills only what it needs"
        assert await env.fs.read(handle.fh, 98, 7) == original[98:100] + b"XYZ" + original[103:105]
        await env.fs.flush(handle.fh)
        await env.fs.release(handle.fh)
        expected = original[:100] + b"XYZ" + original[103:]
        assert await body(env, "f") == expected

        handle = await env.fs.open(node.ino, os.O_WRONLY | os.O_APPEND)
        await env.fs.write(handle.fh, len(expected), b"tail")
        await env.fs.flush(handle.fh)
        await env.fs.release(handle.fh)
        assert await body(env, "f") == expected + b"tail"

        handle = await env.fs.open(node.ino, os.O_WRONLY | os.O_TRUNC)
        assert handle.node.size == 0
        await env.fs.write(handle.fh, 0, b"short")
        await env.fs.release(handle.fh)  # no flush: release still uploads
        assert await body(env, "f") == b"short"


@pytest.mark.trio
async def test_random_writes_match_a_local_file(tmp_path: Any) -> None:
    rng = random.Random(7)
    original = data_of(2 * MiB, 3)
    local = bytearray(original)
    async with make_env({"f": original}) as env:
        node = await env.path("f")
        handle = await env.fs.open(node.ino, os.O_RDWR)
        for _ in range(200):
            offset = rng.randrange(0, 3 * MiB)
            chunk = rng.randbytes(rng.randrange(1, 70_000))
            await env.fs.write(handle.fh, offset, chunk)
            if offset > len(local):
                local += bytes(offset - len(local))
            local[offset : offset + len(chunk)] = chunk
        await env.fs.setattr(node.ino, size=len(local) - 1000, fh=handle.fh)
        del local[len(local) - 1000 :]
        assert await read_through(env, handle, len(local) + 10) == bytes(local)
        await env.fs.fsync(handle.fh, False)
        assert await body(env, "f") == bytes(local)
        await env.fs.release(handle.fh)


@pytest.mark.trio
async def test_truncate_closed_file_shrinks_and_grows() -> None:
    async with make_env({"f": b"0123456789"}) as env:
        node = await env.path("f")
        await env.fs.setattr(node.ino, size=4)
        assert await body(env, "f") == b"0123"
        await env.fs.setattr(node.ino, size=6)
        assert await body(env, "f") == b"0123\0\0"
        assert node.size == 6
        assert staged_data(env) == []


@pytest.mark.trio
async def test_reading_a_file_being_written_reads_the_staging_file() -> None:
    async with make_env({"f": b"old content"}) as env:
        node = await env.path("f")
        writer = await env.fs.open(node.ino, os.O_WRONLY)
        reader = await env.fs.open(node.ino, os.O_RDONLY)
        await env.fs.write(writer.fh, 0, b"NEW")
        assert await read_through(env, reader, 100) == b"NEW content"
        await env.fs.release(writer.fh)
        assert await body(env, "f") == b"old content", "uploaded while a handle is open"
        await env.fs.release(reader.fh)  # the last handle
        assert await body(env, "f") == b"NEW content"


@pytest.mark.trio
async def test_chmod_chown_utimens_persist_as_metadata() -> None:
    async with make_env({"f": b"data", "d/": b""}) as env:
        node = await env.path("f")
        await env.fs.setattr(node.ino, mode=0o600, uid=7, gid=8, mtime_ns=1_600_000_000 * 10**9)
        info = await head(env, "f")
        written = info.metadata
        assert written == {
            "mode": str(stat.S_IFREG | 0o600),
            "uid": "7",
            "gid": "8",
            "mtime": "1600000000",
            "atime": written["atime"],  # the object's time: it was never read
            "ctime": format_time(node.ctime_ns),
        }
        assert abs(node.ctime_ns - time.time_ns()) < 10 * 10**9
        assert await body(env, "f") == b"data"
        d = await env.path("d")
        await env.fs.setattr(d.ino, mode=0o700)
        assert int((await head(env, "d/")).metadata["mode"]) == stat.S_IFDIR | 0o700
        env.clock.advance(10)
        env.forget_all()
        again = await env.path("f")
        assert (again.mode, again.uid, again.gid) == (0o600, 7, 8)
        assert again.mtime_ns == 1_600_000_000 * 10**9


# -- streaming while writing ---------------------------------------------------------------------


async def until(condition: Any, what: str) -> None:
    """Wait for background uploads to reach ``condition()`` (an event, not a duration: the
    deadline only turns a hang into a failure)."""
    with trio.fail_after(30):
        while not condition():  # noqa: ASYNC110 - counters of background tasks, no event
            await trio.sleep(0.001)
    assert condition(), what


@pytest.mark.trio
async def test_sequential_write_streams_parts_before_close() -> None:
    async with make_env() as env:
        stats = env.fs.writeback.stats
        data = data_of(40 * MiB + 1000, 11)
        handle = await env.fs.create(ROOT_INODE, "big", 0o644, os.O_WRONLY | os.O_CREAT)
        env.fs.inodes.ref(handle.node)
        await write_all(env, handle, data)
        # Every whole part is up (or going up) before anyone asked for a flush, and the
        # object is not visible yet.
        await until(lambda: stats.parts_streamed == 5, "parts streamed while writing")
        assert await env.store.pending_uploads() == ["big"]
        assert "big" not in env.store.keys()
        await env.fs.flush(handle.fh)
        assert stats.parts_at_flush == 1, "close() uploads only the tail"
        assert (stats.streams, stats.fallbacks, stats.puts) == (1, 0, 0)
        await env.fs.release(handle.fh)
        info = await head(env, "big")
        assert info.etag.endswith("-6") and info.size == len(data)
        assert await body(env, "big") == data
        assert await env.store.pending_uploads() == []
        assert int(info.metadata["mode"]) == stat.S_IFREG | 0o644
        # What the mount shows is what is stored (a streamed upload's mtime is its start).
        assert handle.node.mtime_ns == parse_time(info.metadata["mtime"])
        assert staged_data(env) == []


@pytest.mark.trio
async def test_small_files_stay_one_put_and_truncating_overwrite_streams() -> None:
    async with make_env({"f": b"old"}) as env:
        stats = env.fs.writeback.stats
        await create_file(env, "small", data_of(3 * MiB, 1))
        assert (stats.puts, stats.streams) == (1, 0)
        data = data_of(20 * MiB, 2)
        node = await env.path("f")
        handle = await env.fs.open(node.ino, os.O_WRONLY | os.O_TRUNC)
        await write_all(env, handle, data)
        await until(lambda: stats.parts_streamed == 2, "parts of the overwrite streamed")
        assert await body(env, "f") == b"old", "the old version stays until complete"
        await env.fs.flush(handle.fh)
        await env.fs.release(handle.fh)
        assert await body(env, "f") == data
        assert stats.streams == 1


@pytest.mark.trio
async def test_write_into_an_uploaded_part_falls_back_to_a_whole_upload() -> None:
    async with make_env() as env:
        stats = env.fs.writeback.stats
        data = bytearray(data_of(25 * MiB, 3))
        handle = await env.fs.create(ROOT_INODE, "f", 0o644, os.O_RDWR | os.O_CREAT)
        env.fs.inodes.ref(handle.node)
        await write_all(env, handle, bytes(data[: 20 * MiB]))
        await until(lambda: stats.parts_streamed == 2, "parts streamed")
        # seek back into part 1 (already stored): the stream is given up and aborted
        await env.fs.write(handle.fh, 100, b"PATCH")
        data[100:105] = b"PATCH"
        assert stats.fallbacks == 1
        await write_all(env, handle, bytes(data[20 * MiB :]), offset=20 * MiB)
        await env.fs.flush(handle.fh)
        await env.fs.release(handle.fh)
        assert await body(env, "f") == bytes(data)
        assert await env.store.pending_uploads() == [], "the abandoned upload left parts"
        assert stats.streams == 1 and stats.multipart_uploads == 2


@pytest.mark.trio
async def test_truncate_during_a_stream() -> None:
    async with make_env() as env:
        stats = env.fs.writeback.stats
        handle = await env.fs.create(ROOT_INODE, "f", 0o644, os.O_RDWR | os.O_CREAT)
        env.fs.inodes.ref(handle.node)
        await write_all(env, handle, data_of(18 * MiB, 4))
        await until(lambda: stats.parts_streamed == 2, "parts streamed")
        # truncate to 0 drops the stream and starts over, streaming again
        await env.fs.setattr(handle.node.ino, size=0, fh=handle.fh)
        data = data_of(30 * MiB, 5)
        await write_all(env, handle, data)
        await until(lambda: stats.streams == 2 and stats.parts_streamed == 5, "restreamed")
        # truncate into a stored part: fall back
        await env.fs.setattr(handle.node.ino, size=10 * MiB, fh=handle.fh)
        await env.fs.flush(handle.fh)
        await env.fs.release(handle.fh)
        assert await body(env, "f") == data[: 10 * MiB]
        assert await env.store.pending_uploads() == []
        assert stats.fallbacks == 2


@pytest.mark.trio
async def test_mostly_sequential_writes_with_seeks_match_a_local_file() -> None:
    """Sequential runs with seeks back, holes, out-of-order chunks and truncates: whatever
    the stream does, the object ends up equal to the same writes on a local buffer."""
    streams = fallbacks = 0
    for seed in range(4):
        rng = random.Random(seed)
        local = bytearray()
        async with make_env() as env:
            handle = await env.fs.create(ROOT_INODE, "f", 0o644, os.O_RDWR | os.O_CREAT)
            env.fs.inodes.ref(handle.node)
            pos = 0
            for _ in range(200):
                roll = rng.random()
                if roll < 0.01:
                    pos = rng.randrange(0, len(local) + 1)  # seek anywhere
                elif roll < 0.02:
                    pos = len(local) + rng.randrange(1, MiB)  # a hole
                elif roll < 0.03:
                    size = rng.randrange(0, len(local) + 1)
                    await env.fs.setattr(handle.node.ino, size=size, fh=handle.fh)
                    del local[size:]
                    continue
                elif roll < 0.08:
                    # the next chunk first, then this one (out of order, as write-back does)
                    a, b = rng.randbytes(128 * 1024), rng.randbytes(128 * 1024)
                    await env.fs.write(handle.fh, pos + len(a), b)
                    await env.fs.write(handle.fh, pos, a)
                    chunk, pos = a + b, pos
                    if pos > len(local):
                        local += bytes(pos - len(local))
                    local[pos : pos + len(chunk)] = chunk
                    pos += len(chunk)
                    continue
                chunk = rng.randbytes(rng.choice([4096, 128 * 1024, 512 * 1024]))
                await env.fs.write(handle.fh, pos, chunk)
                if pos > len(local):
                    local += bytes(pos - len(local))
                local[pos : pos + len(chunk)] = chunk
                pos += len(chunk)
            await env.fs.flush(handle.fh)
            await env.fs.release(handle.fh)
            assert await body(env, "f") == bytes(local), seed
            assert await env.store.pending_uploads() == []
            streams += env.fs.writeback.stats.streams
            fallbacks += env.fs.writeback.stats.fallbacks
    assert streams >= 2 and fallbacks >= 1, (streams, fallbacks)  # both paths were taken


@pytest.mark.trio
async def test_background_part_failure_surfaces_at_the_next_write() -> None:
    async with make_env() as env:
        stats = env.fs.writeback.stats
        data = data_of(24 * MiB, 6)
        handle = await env.fs.create(ROOT_INODE, "f", 0o644, os.O_WRONLY | os.O_CREAT)
        env.fs.inodes.ref(handle.node)
        env.store.fail_next("upload_part")
        await write_all(env, handle, data[: 9 * MiB])
        await until(lambda: stats.part_failures == 1, "the part failed in the background")
        with pytest.raises(errors.StorageFailure):
            await env.fs.write(handle.fh, 9 * MiB, data[9 * MiB : 10 * MiB])
        # raised once: the file falls back, and what was written goes up whole at close
        await write_all(env, handle, data[9 * MiB :], offset=9 * MiB)
        await env.fs.flush(handle.fh)
        await env.fs.release(handle.fh)
        assert await body(env, "f") == data
        assert await env.store.pending_uploads() == []


@pytest.mark.trio
async def test_background_part_failure_surfaces_at_close() -> None:
    async with make_env({"f": b"old"}) as env:
        stats = env.fs.writeback.stats
        data = data_of(17 * MiB, 7)
        node = await env.path("f")
        handle = await env.fs.open(node.ino, os.O_WRONLY | os.O_TRUNC)
        env.store.fail_next("upload_part", times=-1)  # the server refuses parts for good
        writing = asyncio.Event()

        async def hold_parts(op: str, key: str) -> None:
            if op == "upload_part":
                await writing.wait()  # parts fail only once every write returned

        env.store.hook = hold_parts
        await write_all(env, handle, data)
        env.aio.loop.call_soon_threadsafe(writing.set)
        await until(lambda: stats.part_failures == 1, "the part failed in the background")
        with pytest.raises(errors.StorageFailure):
            await env.fs.flush(handle.fh)
        assert await body(env, "f") == b"old", "no partial object"
        assert await env.store.pending_uploads() == []
        env.store.clear_faults()
        await env.fs.flush(handle.fh)  # a retry stores it whole
        await env.fs.release(handle.fh)
        assert await body(env, "f") == data


@pytest.mark.trio
async def test_upload_memory_is_capped_across_files() -> None:
    # memory=128M: the write-back may hold 16 MiB of part data = two 8 MiB parts in flight
    # for the whole mount, though each file alone may have four.
    async with make_env() as env:
        assert replace(env.fs.options, memory=128 * MiB).write_memory == 16 * MiB
        budget = env.fs.writeback.budget = WriteBudget(16 * MiB)
        in_flight = 0
        most = 0

        async def hook(op: str, key: str) -> None:
            nonlocal in_flight, most
            if op == "upload_part":
                in_flight += 1
                most = max(most, in_flight)
                # A slow server: a part waits for a second one to arrive (or a moment, for
                # the last), so parts overlap as far as the budget lets them.
                for _ in range(200):
                    if in_flight >= 2:
                        break
                    await asyncio.sleep(0.001)
                await asyncio.sleep(0.001)
                in_flight -= 1

        env.store.hook = hook
        files = {f"f{i}": data_of(32 * MiB, 20 + i) for i in range(3)}  # 8 MiB parts

        async def writer(name: str) -> None:
            await create_file(env, name, files[name])

        async with trio.open_nursery() as nursery:
            for name in files:
                nursery.start_soon(writer, name)
        assert most == 2, (most, budget.peak)
        assert budget.peak <= budget.capacity and budget.in_use == 0
        for name, data in files.items():
            assert await body(env, name) == data
        assert env.fs.writeback.stats.streams == 3


# -- the durability contract --------------------------------------------------------------------


@pytest.mark.trio
async def test_failed_part_upload_is_an_error_and_leaves_nothing() -> None:
    async with make_env({"big": b"the old version"}) as env:
        data = data_of(12 * MiB, 4)
        node = await env.path("big")
        handle = await env.fs.open(node.ino, os.O_WRONLY | os.O_TRUNC)
        await write_all(env, handle, data)
        env.store.fail_next("upload_part")
        with pytest.raises(errors.StorageFailure):
            await env.fs.flush(handle.fh)
        assert await body(env, "big") == b"the old version"
        assert await env.aio.run(env.store.pending_uploads) == [], "failed upload not aborted"
        # the data is still staged: a retry (fsync, or the next close) stores it
        await env.fs.fsync(handle.fh, False)
        await env.fs.release(handle.fh)
        assert await body(env, "big") == data


@pytest.mark.trio
async def test_server_gone_mid_upload_fails_close_and_no_object_appears() -> None:
    async with make_env() as env:
        data = data_of(30 * MiB, 5)
        handle = await env.fs.create(ROOT_INODE, "f", 0o644, os.O_WRONLY)
        env.fs.inodes.ref(handle.node)
        await write_all(env, handle, data)
        parts = 0

        async def hook(op: str, key: str) -> None:
            # Most parts went up while writing; the server goes away with the tail.
            nonlocal parts
            if op in ("upload_part", "complete"):
                parts += 1
                if parts == 1:
                    env.store.go_offline()

        env.store.hook = hook
        with pytest.raises(errors.StorageFailure):
            await env.fs.flush(handle.fh)
        assert "f" not in env.store.keys(), "a partial object is visible"
        assert await env.store.pending_uploads() in ([], ["f"])  # abort failed: offline
        env.store.hook = None
        env.store.go_online()
        await env.fs.release(handle.fh)  # the server is back: the last close stores it
        assert await body(env, "f") == data
        assert staged_data(env) == []
        # The first upload could not be aborted while offline; it is, once the server answers.
        assert await env.store.pending_uploads() == []


@pytest.mark.trio
async def test_failed_upload_at_last_release_keeps_the_staging_file() -> None:
    async with make_env() as env:
        handle = await env.fs.create(ROOT_INODE, "f", 0o644, os.O_WRONLY)
        env.fs.inodes.ref(handle.node)
        await env.fs.write(handle.fh, 0, b"precious")
        env.store.go_offline()
        await env.fs.release(handle.fh)  # the kernel ignores release errors: logged, kept
        env.store.go_online()
        files = {p.suffix: p for p in env.fs.staging_dir.iterdir()}
        assert files[".data"].read_bytes() == b"precious"
        side = Sidecar.load(files[".key"])
        assert side is not None and (side.key, side.new, side.dirty) == ("f", True, True)
        assert "f" not in env.store.keys()


@pytest.mark.trio
async def test_drain_uploads_files_still_open() -> None:
    async with make_env() as env:
        handle = await env.fs.create(ROOT_INODE, "f", 0o644, os.O_WRONLY)
        env.fs.inodes.ref(handle.node)
        await env.fs.write(handle.fh, 0, b"unflushed")
        await env.fs.drain()
        assert await body(env, "f") == b"unflushed"
        await env.fs.release(handle.fh)


@pytest.mark.trio
async def test_staging_files_are_reused_and_deleted_when_the_mount_goes() -> None:
    async with make_env({"old": b"original"}) as env:
        wb = env.fs.writeback
        await create_file(env, "a", b"first")
        [spare] = wb.spares
        assert staged_data(env) == [] and spare.path.stat().st_size == 0
        # The next file is staged in the same (emptied) file: nothing of "a" shows through.
        node = await env.path("old")
        handle = await env.fs.open(node.ino, os.O_RDWR)
        assert handle.staged is not None and handle.staged.path == spare.path
        assert wb.spares == []
        await env.fs.write(handle.fh, 8, b"+")
        assert await env.fs.read(handle.fh, 0, 100) == b"original+"
        await env.fs.flush(handle.fh)
        await env.fs.release(handle.fh)
        assert await body(env, "old") == b"original+" and await body(env, "a") == b"first"
        # At most max_spares are kept, however many files were open at once.
        handles = []
        for i in range(wb.max_spares + 3):
            h = await env.fs.create(ROOT_INODE, f"n{i}", 0o644, os.O_WRONLY | os.O_CREAT)
            env.fs.inodes.ref(h.node)
            await env.fs.write(h.fh, 0, b"n%d" % i)
            handles.append(h)
        for h in handles:
            await env.fs.flush(h.fh)
            await env.fs.release(h.fh)
        assert len(wb.spares) == wb.max_spares and staged_data(env) == []
        assert len(list(env.fs.staging_dir.iterdir())) == 2 * wb.max_spares
        last = wb.max_spares + 2
        assert [await body(env, f"n{i}") for i in (0, last)] == [b"n0", b"n%d" % last]
        # A file whose name went away while open is deleted, never kept as a spare.
        h = await env.fs.create(ROOT_INODE, "gone", 0o644, os.O_WRONLY | os.O_CREAT)
        env.fs.inodes.ref(h.node)
        staged = h.staged
        assert staged is not None
        await env.fs.unlink(ROOT_INODE, "gone")
        await env.fs.release(h.fh)
        assert not staged.path.exists() and all(sp.path != staged.path for sp in wb.spares)
        await env.fs.drain()  # the daemon's last step
        assert wb.spares == [] and list(env.fs.staging_dir.iterdir()) == []


# -- the namespace ------------------------------------------------------------------------------


@pytest.mark.trio
async def test_mkdir_rmdir_unlink_and_their_errors() -> None:
    async with make_env({"f": b"x", "full/g": b"y"}) as env:
        d = await env.fs.mkdir(ROOT_INODE, "d", 0o750)
        env.fs.inodes.ref(d)
        assert "d/" in env.store.keys()
        assert int((await head(env, "d/")).metadata["mode"]) == stat.S_IFDIR | 0o750
        assert sorted(await env.listdir()) == ["d", "f", "full"]
        with pytest.raises(errors.Exists):
            await env.fs.mkdir(ROOT_INODE, "f", 0o755)
        with pytest.raises(errors.NotEmpty):
            await env.fs.rmdir(ROOT_INODE, "full")
        with pytest.raises(errors.NotADirectory):
            await env.fs.rmdir(ROOT_INODE, "f")
        with pytest.raises(errors.IsADirectory):
            await env.fs.unlink(ROOT_INODE, "d")
        with pytest.raises(errors.NotFound):
            await env.fs.unlink(ROOT_INODE, "nothing")
        f = await env.path("f")
        with pytest.raises(errors.NotADirectory):
            await env.fs.create(f.ino, "x", 0o644, os.O_WRONLY)
        await create_file(env, "inner", b"z", parent=d.ino)
        with pytest.raises(errors.NotEmpty):
            await env.fs.rmdir(ROOT_INODE, "d")
        await env.fs.unlink(d.ino, "inner")
        await env.fs.rmdir(ROOT_INODE, "d")
        await env.fs.unlink(ROOT_INODE, "f")
        assert env.store.keys() == ["full/g"]
        assert await env.listdir() == ["full"]
        with pytest.raises(errors.NotFound):
            await env.fs.lookup(ROOT_INODE, "f")


@pytest.mark.trio
async def test_a_new_file_counts_in_rmdir_before_it_is_uploaded() -> None:
    async with make_env({"d/": b""}) as env:
        d = await env.path("d")
        handle = await env.fs.create(d.ino, "f", 0o644, os.O_WRONLY)
        env.fs.inodes.ref(handle.node)
        with pytest.raises(errors.NotEmpty):
            await env.fs.rmdir(ROOT_INODE, "d")
        await env.fs.release(handle.fh)


@pytest.mark.trio
async def test_unlink_of_an_open_new_file_never_uploads_it() -> None:
    async with make_env() as env:
        handle = await env.fs.create(ROOT_INODE, "tmp", 0o644, os.O_WRONLY)
        env.fs.inodes.ref(handle.node)
        await env.fs.write(handle.fh, 0, b"scratch")
        await env.fs.unlink(ROOT_INODE, "tmp")
        await env.fs.flush(handle.fh)
        await env.fs.release(handle.fh)
        assert env.store.keys() == []
        assert staged_data(env) == []
        # the same while its parts stream: the upload is dropped, writes still work
        handle = await env.fs.create(ROOT_INODE, "big", 0o644, os.O_RDWR)
        env.fs.inodes.ref(handle.node)
        await write_all(env, handle, data_of(18 * MiB, 9))
        await env.fs.unlink(ROOT_INODE, "big")
        assert staged_data(env) == [], "a crash would resurrect it"
        await write_all(env, handle, data_of(9 * MiB, 10), offset=18 * MiB)
        assert await env.fs.read(handle.fh, 18 * MiB, 4) == data_of(9 * MiB, 10)[:4]
        await env.fs.flush(handle.fh)
        await env.fs.release(handle.fh)
        await until(lambda: env.fs.writeback.stats.fallbacks == 1, "stream dropped")
        assert env.store.keys() == []
        await env.fs.drain()  # waits for the aborts running in the background
        assert await env.store.pending_uploads() == []


@pytest.mark.trio
async def test_rename_file_over_existing_and_noreplace() -> None:
    async with make_env({"a": b"A", "b": b"B", "dir/x": b"x"}) as env:
        await env.fs.setattr((await env.path("a")).ino, mode=0o600)
        with pytest.raises(errors.Exists):
            await env.fs.rename(ROOT_INODE, "a", ROOT_INODE, "b", RENAME_NOREPLACE)
        with pytest.raises(errors.IsADirectory):
            await env.fs.rename(ROOT_INODE, "a", ROOT_INODE, "dir", 0)
        with pytest.raises(errors.NotADirectory):
            await env.fs.rename(ROOT_INODE, "dir", ROOT_INODE, "a", 0)
        with pytest.raises(errors.NotFound):
            await env.fs.rename(ROOT_INODE, "nothing", ROOT_INODE, "z", 0)
        await env.fs.rename(ROOT_INODE, "a", ROOT_INODE, "b", 0)
        assert env.store.keys() == ["b", "dir/x"]
        assert await body(env, "b") == b"A"
        assert int((await head(env, "b")).metadata["mode"]) == stat.S_IFREG | 0o600
        assert sorted(await env.listdir()) == ["b", "dir"]
        d = await env.path("dir")
        await env.fs.rename(ROOT_INODE, "b", d.ino, "moved", 0)
        assert env.store.keys() == ["dir/moved", "dir/x"]
        node = await env.path("dir/moved")
        assert await env.read_all(node) == b"A"


@pytest.mark.trio
async def test_rename_of_a_file_being_written_uploads_under_the_new_name() -> None:
    async with make_env() as env:
        handle = await env.fs.create(ROOT_INODE, "f.tmp", 0o644, os.O_WRONLY)
        env.fs.inodes.ref(handle.node)
        await env.fs.write(handle.fh, 0, b"saved by rename")
        await env.fs.rename(ROOT_INODE, "f.tmp", ROOT_INODE, "f", 0)
        assert env.store.keys() == ["f"]
        await env.fs.write(handle.fh, 0, b"S")
        await env.fs.release(handle.fh)
        assert env.store.keys() == ["f"]
        assert await body(env, "f") == b"Saved by rename"


@pytest.mark.trio
async def test_rename_directory_moves_every_key() -> None:
    objects = {"src/a": b"1", "src/sub/b": b"2", "src/sub/deep/c": b"3", "src/empty/": b""}
    async with make_env({**objects, "other/": b"", "full/x": b"x"}) as env:
        inner = await env.path("src/sub/b")
        await env.fs.rename(ROOT_INODE, "src", ROOT_INODE, "dst", 0)
        assert env.store.keys() == sorted(
            ["dst/", "dst/a", "dst/sub/b", "dst/sub/deep/c", "dst/empty/", "other/", "full/x"]
        )
        assert inner.key == "dst/sub/b", "open inodes follow the rename"
        assert await env.read_all(await env.path("dst/sub/deep/c")) == b"3"
        assert sorted(await env.listdir()) == ["dst", "full", "other"]
        # onto an empty directory: replaces it; onto a non-empty one: ENOTEMPTY
        await env.fs.rename(ROOT_INODE, "dst", ROOT_INODE, "other", 0)
        assert "other/sub/b" in env.store.keys() and "dst/a" not in env.store.keys()
        with pytest.raises(errors.NotEmpty):
            await env.fs.rename(ROOT_INODE, "other", ROOT_INODE, "full", 0)
        other = await env.path("other")
        with pytest.raises(errors.InvalidName):
            await env.fs.rename(ROOT_INODE, "other", other.ino, "inside", 0)


TREE = {
    "src/": b"",
    "src/a": b"alpha",
    "src/b": b"bravo" * 1000,
    "src/sub/": b"",
    "src/sub/c": b"charlie",
    "src/sub/deep/d": b"delta",
    "src/z": b"",
}


def moved(tree: dict[str, bytes], old: str, new: str) -> dict[str, bytes]:
    return {(new + k[len(old) :] if k.startswith(old) else k): v for k, v in tree.items()}


async def bucket_tree(env: Env) -> dict[str, bytes]:
    return {key: await body(env, key) for key in env.store.keys()}


def crash_at(env: Env, n: int) -> list[str]:
    """Make the ``n``-th (from 0) copy, put or delete fail, as if the daemon died there;
    returns the log of the operations that were attempted."""
    log: list[str] = []

    async def hook(op: str, key: str) -> None:
        if op in ("copy", "put", "delete"):
            log.append(f"{op} {key}")
            if len(log) == n + 1:
                raise TransientError(f"daemon died before {op} {key}")

    env.store.hook = hook
    return log


@pytest.mark.trio
async def test_interrupted_directory_rename_completes_when_run_again() -> None:
    """Whatever copy or delete the rename dies at, the bucket holds every file under one of
    the two names, and renaming the same source again finishes the move: the same tree as
    an uninterrupted rename, nothing lost, nothing left twice."""
    expected = moved(TREE, "src/", "dst/")
    # An uninterrupted rename, to count its operations.
    async with make_env({**TREE, "other": b"o"}) as env:
        log = crash_at(env, 10**6)
        await env.fs.rename(ROOT_INODE, "src", ROOT_INODE, "dst", 0)
        steps = len(log)
        assert await bucket_tree(env) == {**expected, "other": b"o"}
    # Every key copied once; files deleted, then directories (sub/deep/ too, implied by a
    # key), then src/ itself.
    assert steps == len(TREE) + 5 + 3
    for n in range(steps):
        async with make_env({**TREE, "other": b"o"}) as env:
            crash_at(env, n)
            with pytest.raises(errors.StorageFailure):
                await env.fs.rename(ROOT_INODE, "src", ROOT_INODE, "dst", 0)
            env.store.hook = None
            state = await bucket_tree(env)
            for key, data in TREE.items():  # every file under at least one name
                new_key = "dst/" + key[4:]
                assert state.get(key, state.get(new_key)) == data, (n, key)
            if n % 2:
                env.clock.advance(10)  # a later look, after every cache expired
            assert "src" in await env.listdir(), n
            if n == steps - 1:
                # Died before deleting src/ itself: an empty directory is left, which (as
                # any empty directory) cannot be renamed onto the full one; rmdir ends it.
                with pytest.raises(errors.NotEmpty):
                    await env.fs.rename(ROOT_INODE, "src", ROOT_INODE, "dst", 0)
                await env.fs.rmdir(ROOT_INODE, "src")
            else:
                await env.fs.rename(ROOT_INODE, "src", ROOT_INODE, "dst", 0)
            assert await bucket_tree(env) == {**expected, "other": b"o"}, n
            assert sorted(await env.listdir()) == ["dst", "other"]
            node = await env.path("dst/sub/deep/d")
            assert await env.read_all(node) == b"delta"


@pytest.mark.trio
async def test_directory_rename_onto_a_non_empty_directory() -> None:
    """POSIX: only onto an empty directory.  A destination that merely shares names with the
    source, or holds a different version of one of its files, is not an interrupted rename
    of it: ENOTEMPTY and nothing changes."""
    cases: dict[str, dict[str, bytes]] = {
        "unrelated": {"dst/x": b"x"},
        "one more file": {"dst/a": TREE["src/a"], "dst/extra": b"e"},
        "other content": {"dst/a": b"ALPHA"},
        "src empty": {},
    }
    for case, dst in cases.items():
        src = {"src/": b""} if case == "src empty" else TREE
        if case == "src empty":
            dst = {"dst/x": b"x"}
        async with make_env({**src, "dst/": b"", **dst}) as env:
            before = await bucket_tree(env)
            with pytest.raises(errors.NotEmpty):
                await env.fs.rename(ROOT_INODE, "src", ROOT_INODE, "dst", 0)
            assert await bucket_tree(env) == before, case
    # A source file changed after an interrupted rename copied it: not taken for the copy.
    async with make_env(TREE) as env:
        crash_at(env, 5)
        with pytest.raises(errors.StorageFailure):
            await env.fs.rename(ROOT_INODE, "src", ROOT_INODE, "dst", 0)
        env.store.hook = None
        copied = [k for k in env.store.keys() if k.startswith("dst/") and k[-1] != "/"]
        assert copied
        source = "src/" + copied[0][4:]
        await env.put(source, b"X" * len(TREE[source]))  # same size, other md5
        with pytest.raises(errors.NotEmpty):
            await env.fs.rename(ROOT_INODE, "src", ROOT_INODE, "dst", 0)
    # Keys that appeared under a name this mount still caches as missing count too.
    async with make_env(TREE) as env:
        with pytest.raises(errors.NotFound):
            await env.path("dst")  # now cached as missing
        await env.put("dst/x", b"written by another mount")
        with pytest.raises(errors.NotEmpty):
            await env.fs.rename(ROOT_INODE, "src", ROOT_INODE, "dst", 0)
        assert await body(env, "dst/x") == b"written by another mount"
    # Onto an empty directory, and onto a file: replaced / ENOTDIR.
    async with make_env({**TREE, "empty/": b"", "file": b"f"}) as env:
        with pytest.raises(errors.NotADirectory):
            await env.fs.rename(ROOT_INODE, "src", ROOT_INODE, "file", 0)
        await env.fs.rename(ROOT_INODE, "src", ROOT_INODE, "empty", 0)
        assert await bucket_tree(env) == {**moved(TREE, "src/", "empty/"), "file": b"f"}


@pytest.mark.trio
async def test_rename_of_a_large_file_copies_it_in_parts() -> None:
    async with make_env() as env:
        env.store.copy_settings = CopySettings(threshold=MIN_PART_SIZE, part_size=MIN_PART_SIZE)
        data = data_of(2 * MIN_PART_SIZE + 5, 3)
        await env.put("big", data, metadata={"mode": str(stat.S_IFREG | 0o600)})
        await env.fs.rename(ROOT_INODE, "big", ROOT_INODE, "moved", 0)
        info = await head(env, "moved")
        assert info.etag.endswith("-3") and int(info.metadata["mode"]) == stat.S_IFREG | 0o600
        assert env.store.keys() == ["moved"]
        assert await env.read_all(await env.path("moved")) == data
        # A part that fails: the rename fails, the source stays, no destination appears.
        env.store.fail_next("copy_part")
        with pytest.raises(errors.StorageFailure):
            await env.fs.rename(ROOT_INODE, "moved", ROOT_INODE, "again", 0)
        assert env.store.keys() == ["moved"]
        assert await env.aio.run(env.store.pending_uploads) == []


@pytest.mark.trio
async def test_symlink_stored_as_s3fs_does() -> None:
    async with make_env() as env:
        node = await env.fs.symlink(ROOT_INODE, "link", "target/file")
        env.fs.inodes.ref(node)
        assert await body(env, "link") == b"target/file"
        assert int((await head(env, "link")).metadata["mode"]) == stat.S_IFLNK | 0o777
        assert await env.fs.readlink(node.ino) == b"target/file"
        with pytest.raises(errors.Exists):
            await env.fs.symlink(ROOT_INODE, "link", "x")
        # a fresh mount that HEADs it sees a symlink
        env.forget_all()
        env.clock.advance(10)
        again = await env.path("link")
        assert again.symlink
        assert await env.fs.readlink(again.ino) == b"target/file"


@pytest.mark.trio
async def test_a_symlink_stays_one_after_its_directory_is_renamed() -> None:
    """After a directory rename the known files keep their metadata (the copies kept it),
    also when the next look at them comes from a listing (``ls -l``, ``find``) -- on every
    store, whether or not its copies get new ETags."""
    async with make_env({"d/": b"", "d/f": b"x"}) as env:
        d = await env.path("d")
        link = await env.fs.symlink(d.ino, "link", "f")
        env.fs.inodes.ref(link)
        await env.fs.rename(ROOT_INODE, "d", ROOT_INODE, "e", 0)
        assert sorted(await env.listdir(d.ino)) == ["f", "link"]  # readdir first
        again = await env.path("e/link")
        assert again is link and again.symlink
        assert await env.fs.readlink(again.ino) == b"f"


@pytest.mark.trio
async def test_hard_links_are_not_supported() -> None:
    async with make_env({"f": b"x"}) as env:
        node = await env.path("f")
        with pytest.raises(errors.NotSupported):
            await env.fs.link(node.ino, ROOT_INODE, "g")


@pytest.mark.trio
async def test_random_operations_match_a_local_directory(tmp_path: Any) -> None:
    """A random sequence of file operations on the core and on a local directory."""
    rng = random.Random(11)
    local = tmp_path / "ref"
    local.mkdir()
    names = ["a", "b", "c", "d"]
    async with make_env() as env:
        for _ in range(150):
            op = rng.choice(["write", "append", "truncate", "rename", "unlink"])
            name = rng.choice(names)
            path = local / name
            exists = path.exists()
            if op == "write":
                data = rng.randbytes(rng.randrange(0, 5000))
                offset = rng.randrange(0, 6000)
                if exists:
                    node = await env.path(name)
                    handle = await env.fs.open(node.ino, os.O_RDWR)
                else:
                    handle = await env.fs.create(ROOT_INODE, name, 0o644, os.O_RDWR)
                    env.fs.inodes.ref(handle.node)
                await env.fs.write(handle.fh, offset, data)
                await env.fs.flush(handle.fh)
                await env.fs.release(handle.fh)
                local_write(path, offset, data)
            elif op == "append" and exists:
                node = await env.path(name)
                handle = await env.fs.open(node.ino, os.O_WRONLY | os.O_APPEND)
                await env.fs.write(handle.fh, node.size, b"++")
                await env.fs.release(handle.fh)
                local_write(path, path.stat().st_size, b"++")
            elif op == "truncate" and exists:
                size = rng.randrange(0, 7000)
                await env.fs.setattr((await env.path(name)).ino, size=size)
                os.truncate(path, size)
            elif op == "rename" and exists:
                new = rng.choice(names)
                if new != name:
                    await env.fs.rename(ROOT_INODE, name, ROOT_INODE, new, 0)
                    os.rename(path, local / new)
            elif op == "unlink" and exists:
                await env.fs.unlink(ROOT_INODE, name)
                path.unlink()
            env.clock.advance(rng.choice([0, 0, 2]))
        assert sorted(env.store.keys()) == sorted(os.listdir(local))
        assert sorted(await env.listdir()) == sorted(os.listdir(local))
        for name in os.listdir(local):
            assert await body(env, name) == (local / name).read_bytes(), name
            assert await env.read_all(await env.path(name)) == (local / name).read_bytes()


@pytest.mark.trio
async def test_metadata_survives_the_kernel_forgetting_a_node() -> None:
    """After a drop_caches the kernel forgets every inode; a node made again from a listing
    must show the mode/owner/mtime this mount stored, not listing defaults."""
    async with make_env() as env:
        node = await create_file(env, "f", b"data")
        await env.fs.setattr(node.ino, mode=0o600, mtime_ns=1_600_000_000 * 10**9)
        env.forget_all()
        assert "f" not in {n.name for n in env.fs.inodes}
        env.clock.advance(10)
        assert await env.listdir() == ["f"]  # a new node, from the listing
        again = await env.path("f")
        assert again is not node
        assert (again.mode, again.mtime_ns) == (0o600, 1_600_000_000 * 10**9)


@pytest.mark.trio
async def test_writes_after_a_listing_keep_the_objects_metadata() -> None:
    """A node known only from a listing (``ls -l``, then ``> file``, ``truncate`` or
    ``chmod``) must not store the mount's defaults over the object's s3fs metadata."""
    meta = {"mode": str(stat.S_IFREG | 0o600), "uid": "7", "gid": "8", "mtime": "1600000000"}
    async with make_env() as env:
        for key in ("trunc", "setsize", "chmod"):
            await env.put(key, b"old content", metadata=meta)
        assert sorted(await env.listdir()) == ["chmod", "setsize", "trunc"]  # readdirplus

        node = await env.path("trunc")  # a lookup the listing answers
        handle = await env.fs.open(node.ino, os.O_WRONLY | os.O_TRUNC)
        await env.fs.write(handle.fh, 0, b"new")
        await env.fs.release(handle.fh)
        stored = (await head(env, "trunc")).metadata
        assert (stored["mode"], stored["uid"], stored["gid"]) == (meta["mode"], "7", "8")

        await env.fs.setattr((await env.path("setsize")).ino, size=3)
        stored = (await head(env, "setsize")).metadata
        assert (stored["mode"], stored["uid"], stored["gid"]) == (meta["mode"], "7", "8")
        assert stored["mtime"] != meta["mtime"]  # a truncate is a change

        await env.fs.setattr((await env.path("chmod")).ino, mode=0o640)
        stored = (await head(env, "chmod")).metadata
        # atime and ctime: the object had none, so they were its modification time; a
        # chmod moves ctime.
        assert stored == {
            **meta,
            "mode": str(stat.S_IFREG | 0o640),
            "atime": stored["atime"],
            "ctime": stored["ctime"],
        }
        assert parse_time(stored["ctime"]) > parse_time(stored["atime"])


@pytest.mark.trio
@pytest.mark.parametrize("change", ["chmod", "rename"])
async def test_a_copy_by_this_mount_becomes_the_staged_files_base_version(change: str) -> None:
    """A file open for writing but unwritten, copied by this mount (a chmod's copy onto
    itself, a rename): where the copy is a new version (Azure, copies in parts), crash
    recovery must compare the object with that version, not the one the file was opened on,
    or it would keep the file's later writes instead of storing them."""
    async with make_env({"f": data_of(1000)}) as env:
        copies = 0

        async def new_version_per_copy(op: str, key: str) -> None:
            nonlocal copies
            if op == "head" and copies:
                # What a store whose copies are new versions would answer.
                bucket = env.store._data()
                for name, obj in bucket.objects.items():
                    bucket.objects[name] = replace(obj, etag=f"copy{copies}")
            elif op == "copy":
                copies += 1

        node = await env.path("f")
        handle = await env.fs.open(node.ino, os.O_RDWR)
        env.store.hook = new_version_per_copy
        if change == "chmod":
            await env.fs.setattr(node.ino, mode=0o600)
            key = "f"
        else:
            await env.fs.rename(ROOT_INODE, "f", ROOT_INODE, "g", 0)
            key = "g"
        env.store.hook = None
        assert handle.staged is not None
        side = Sidecar.load(handle.staged.key_path)
        assert side is not None and side.key == key
        assert side.base_etag == (await head(env, key)).etag == "copy1"
        await env.fs.release(handle.fh)
        env.fs.check_consistency()
