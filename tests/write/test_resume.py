"""Part-granular crash recovery (blobfs/write/resume.py, recovery.py, aborts.py) on the
in-memory store, which tells the MD5 of stored parts as S3 does.

A "kill" here cancels the nursery the staging file's background uploads run in (nothing is
aborted, as when the process dies) and closes its files as the kernel would.  The same on
SeaweedFS and Azurite with a real ``kill -9`` is
``tests/mount/test_mount_write.py::test_killed_daemon_data_is_uploaded_by_the_next_mount``;
the provider side of resuming is ``tests/sdk/test_store_contract.py``.
"""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
import trio

from blobfs.bridge.loop import AsyncioThread, asyncio_loop
from blobfs.bridge.store import TrioStore
from blobfs.write.aborts import NAME as ABORTS
from blobfs.write.budget import WriteBudget
from blobfs.write.recovery import Recovered, recover
from blobfs.write.sidecar import Sidecar
from blobfs.write.staging import Staged
from blobfs.write.writeback import WriteBack
from sdk.providers.memory import MemoryAdmin, MemoryStore
from tests.fs.env import data_of

pytestmark = pytest.mark.trio

MiB = 1024 * 1024
PART = 8 * MiB
META = {"mode": "33188"}


@asynccontextmanager
async def memory() -> AsyncIterator[tuple[AsyncioThread, MemoryStore, TrioStore]]:
    async with asyncio_loop() as aio:
        admin = MemoryAdmin()
        await aio.run(admin.create_bucket, "bucket")
        store = await aio.run(admin.open_bucket, "bucket")
        assert isinstance(store, MemoryStore)
        yield aio, store, TrioStore(store, aio)


async def killed_while_streaming(
    directory: Path, store: TrioStore, key: str, data: bytes, parts: int
) -> Sidecar:
    """Write ``data`` to ``key`` front to back; kill the daemon once ``parts`` parts are
    stored.  Returns the sidecar it left."""
    async with trio.open_nursery() as nursery:
        wb = WriteBack(directory, nursery, WriteBudget(64 * MiB))
        staged = Staged(wb, key, new=True, store=store, metadata=lambda: META, dirty=True)
        for offset in range(0, len(data), MiB):
            await staged.write(offset, data[offset : offset + MiB])
        with trio.fail_after(30):
            # Parts are stored by tasks of this run: no event tells of each.
            while wb.stats.parts_streamed < parts:  # noqa: ASYNC110
                await trio.sleep(0.005)
        nursery.cancel_scope.cancel()
    staged._files.close()  # the kernel closes a killed process's files
    side = Sidecar.load(staged.key_path)
    assert side is not None and side.upload is not None and side.upload.streamed
    return side


def names(directory: Path) -> list[str]:
    return sorted(os.listdir(directory))


def files(directory: Path, pattern: str) -> list[Path]:
    return sorted(directory.glob(pattern))


def patch(path: Path, offset: int, data: bytes) -> None:
    """Write ``data`` at ``offset`` of ``path`` (created if missing)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        os.pwrite(fd, data, offset)
    finally:
        os.close(fd)


async def recover_in(directory: Path, store: TrioStore) -> Recovered:
    async with trio.open_nursery() as nursery:
        return await recover(directory, store, WriteBack(directory, nursery, WriteBudget(PART)))


async def object_of(aio: AsyncioThread, store: MemoryStore, key: str) -> bytes:
    return await aio.run(store.read_range, key, 0, 1 << 40)


async def test_a_killed_stream_is_resumed_where_it_stopped(tmp_path: Path) -> None:
    data = data_of(45 * MiB, 1)
    async with memory() as (aio, store, tstore):
        side = await killed_while_streaming(tmp_path, tstore, "big", data, parts=3)
        assert await aio.run(store.pending_uploads) == ["big"]
        done = await recover_in(tmp_path, tstore)
        assert done.uploaded == ["big"]
        assert done.kept_on_server >= 3 * PART, "the stored parts were sent again"
        assert done.sent + done.kept_on_server == len(data)
        assert await object_of(aio, store, "big") == data
        assert (await aio.run(store.head, "big")).metadata == META
        assert await aio.run(store.pending_uploads) == []
        assert side.upload is not None and names(tmp_path) == []


async def test_a_stored_part_that_differs_from_the_staged_bytes_is_sent_again(
    tmp_path: Path,
) -> None:
    data = bytearray(data_of(30 * MiB, 2))
    async with memory() as (aio, store, tstore):
        await killed_while_streaming(tmp_path, tstore, "f", bytes(data), parts=3)
        # The staged bytes of part 2 are not what the server holds (MD5s differ).
        [staged] = files(tmp_path, "*.data")
        patch(staged, PART + 5, b"different")
        data[PART + 5 : PART + 14] = b"different"
        done = await recover_in(tmp_path, tstore)
        assert done.kept_on_server == 2 * PART and done.sent == len(data) - 2 * PART
        assert await object_of(aio, store, "f") == data


async def test_a_gone_upload_starts_over_and_renamed_uploads_are_aborted(
    tmp_path: Path,
) -> None:
    data = data_of(20 * MiB, 3)
    async with memory() as (aio, store, tstore):
        side = await killed_while_streaming(tmp_path / "a", tstore, "a", data, parts=2)
        assert side.upload is not None
        await aio.run((await aio.run(store.resume_multipart, "a", side.upload.upload_id)).abort)
        done = await recover_in(tmp_path / "a", tstore)
        assert (done.sent, done.kept_on_server) == (len(data), 0)
        assert await object_of(aio, store, "a") == data

        # Renamed after its stream began: the stream's upload (of the old name) is aborted.
        await killed_while_streaming(tmp_path / "b", tstore, "old", data, parts=2)
        [key_file] = files(tmp_path / "b", "*.key")
        original = key_file.read_bytes()
        renamed = json.dumps(dict(json.loads(original), key="new")).encode()
        patch(key_file, 0, renamed.ljust(len(original)))  # as the daemon rewrites it
        done = await recover_in(tmp_path / "b", tstore)
        assert done.uploaded == ["new"] and done.aborted == 1
        assert await object_of(aio, store, "new") == data
        assert await aio.run(store.pending_uploads) == []


async def test_uploads_no_one_can_use_are_aborted(tmp_path: Path) -> None:
    data = data_of(20 * MiB, 4)
    async with memory() as (aio, store, tstore):
        # Kept for good (an object appeared under the name): its data stays, its upload goes.
        await killed_while_streaming(tmp_path, tstore, "taken", data, parts=2)
        await aio.run(store.put, "taken", b"someone else's")
        done = await recover_in(tmp_path, tstore)
        assert [key for _, key, _ in done.kept] == ["taken"] and done.aborted == 1
        assert await aio.run(store.pending_uploads) == []
        [key_file] = files(tmp_path, "*.key")
        side = Sidecar.load(key_file)
        assert side is not None and side.dirty and side.upload is None
        assert len((await recover_in(tmp_path, tstore)).kept) == 1, "kept again, never lost"

        # Given up by the killed daemon and not seen aborted: listed in the journal.
        orphan = await aio.run(store.start_multipart, "orphan")
        await aio.run(orphan.upload_part, 1, b"x")
        patch(tmp_path / ABORTS, 0, json.dumps({orphan.upload_id: "orphan"}).encode())
        done = await recover_in(tmp_path, tstore)
        assert done.aborted == 1 and ABORTS not in names(tmp_path)
        assert await aio.run(store.pending_uploads) == []


async def test_abandoned_streams_are_journaled_until_aborted(tmp_path: Path) -> None:
    async with memory() as (aio, store, tstore):
        store.fail_next("abort", times=-1)  # the server refuses aborts for now
        async with trio.open_nursery() as nursery:
            wb = WriteBack(tmp_path, nursery, WriteBudget(64 * MiB))
            staged = Staged(wb, "k", new=True, store=tstore, metadata=lambda: META, dirty=True)
            await staged.write(0, data_of(20 * MiB, 5))
            await staged.write(0, b"rewrite the start")  # not front to back: given up
            side = Sidecar.load(staged.key_path)
            assert side is not None and side.upload is None, "record cleared before the write"
            with trio.fail_after(10):
                while not wb.failed_aborts:  # noqa: ASYNC110 (the abort runs on the loop)
                    await trio.sleep(0.005)
            assert len(wb.failed_aborts) == 1
            listed = json.loads((tmp_path / ABORTS).read_bytes())
            assert list(listed.values()) == ["k"]
            store.clear_faults()
            await wb.retry_aborts()
            assert ABORTS not in names(tmp_path)
            staged.discard()
        assert await aio.run(store.pending_uploads) == []
    assert names(tmp_path) == []
