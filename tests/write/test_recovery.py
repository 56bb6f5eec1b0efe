"""Crash recovery of staged writes (:mod:`blobfs.write.recovery`) against the in-memory store.

A "crash" here is a staging file whose handle is closed without an upload (what a killed
daemon leaves: the data, the sidecar, no lock).  The real-mount test with ``kill -9`` is
``tests/mount/test_mount_write.py::test_killed_daemon_data_is_uploaded_by_the_next_mount``.
"""

from __future__ import annotations

import os

import pytest
import trio

from blobfs.fs.handles import FileHandle
from blobfs.fs.inodes import ROOT_INODE
from blobfs.write.budget import WriteBudget
from blobfs.write.recovery import recover
from blobfs.write.writeback import WriteBack, leftovers
from tests.fs.env import Env, body, data_of, head, make_env, staged_data, write_all

MiB = 1024 * 1024


async def crash(env: Env, handle: FileHandle) -> None:
    """Forget a handle as a killed daemon would: no upload, the staging file stays (and
    no descriptor of it stays open: a streaming upload's own ends with its abort)."""
    staged = handle.staged
    assert staged is not None
    staged.keep()
    del env.fs.state.staged[handle.node.ino]
    del env.fs.state.handles.files[handle.fh]
    env.fs.inodes.closed(handle.node)
    await env.fs.writeback.settle()


async def recover_now(env: Env) -> tuple[list[str], list[str], int]:
    async with trio.open_nursery() as nursery:
        wb = WriteBack(env.fs.staging_dir, nursery, WriteBudget(16 * MiB))
        done = await recover(env.fs.staging_dir, env.fs.store, wb)
    return done.uploaded, sorted(key for _, key, _ in done.kept), done.removed


def staged_files(env: Env) -> list[str]:
    return sorted(name.rsplit(".", 1)[1] for name in staged_data(env))


@pytest.mark.trio
async def test_new_and_modified_files_are_uploaded_when_unchanged_remotely() -> None:
    original = data_of(20 * MiB, 1)
    async with make_env({"old": original}) as env:
        new = await env.fs.create(ROOT_INODE, "new", 0o600, os.O_WRONLY | os.O_CREAT)
        env.fs.inodes.ref(new.node)
        new_data = data_of(12 * MiB + 5, 2)  # streamed in part: a multipart upload is open
        await write_all(env, new, new_data)
        node = await env.path("old")
        old = await env.fs.open(node.ino, os.O_RDWR)
        await env.fs.write(old.fh, 1000, b"CHANGED")  # the rest of the original not fetched
        await crash(env, new)
        await crash(env, old)
        uploaded, kept, removed = await recover_now(env)
        assert sorted(uploaded) == ["new", "old"] and kept == [] and removed == 0
        assert await body(env, "new") == new_data
        assert await body(env, "old") == original[:1000] + b"CHANGED" + original[1007:]
        assert int((await head(env, "new")).metadata["mode"]) & 0o777 == 0o600
        assert staged_files(env) == []


@pytest.mark.trio
async def test_changed_remote_objects_are_never_overwritten() -> None:
    async with make_env({"a": b"base a", "b": b"base b"}) as env:
        handles = []
        for name in ("a", "b"):
            node = await env.path(name)
            h = await env.fs.open(node.ino, os.O_WRONLY | os.O_TRUNC)
            await env.fs.write(h.fh, 0, b"mine " + name.encode())
            handles.append(h)
        created = await env.fs.create(ROOT_INODE, "c", 0o644, os.O_WRONLY | os.O_CREAT)
        env.fs.inodes.ref(created.node)
        await env.fs.write(created.fh, 0, b"mine c")
        for h in [*handles, created]:
            await crash(env, h)
        # meanwhile, elsewhere: a replaced, b deleted, c created
        await env.put("a", b"newer a")
        await env.delete("b")
        await env.put("c", b"newer c")
        uploaded, kept, removed = await recover_now(env)
        assert (uploaded, kept, removed) == ([], ["a", "b", "c"], 0)
        assert await body(env, "a") == b"newer a" and await body(env, "c") == b"newer c"
        assert "b" not in env.store.keys()
        assert staged_files(env) == ["data", "data", "data", "key", "key", "key"]
        # the next mount reports them again (still kept), never drops them
        assert (await recover_now(env))[1] == ["a", "b", "c"]


@pytest.mark.trio
async def test_clean_leftovers_are_removed_and_live_files_skipped() -> None:
    async with make_env({"f": b"content"}) as env:
        node = await env.path("f")
        clean = await env.fs.open(node.ino, os.O_RDWR)
        assert await env.fs.read(clean.fh, 0, 3) == b"con"
        await crash(env, clean)
        live = await env.fs.create(ROOT_INODE, "live", 0o644, os.O_WRONLY | os.O_CREAT)
        env.fs.inodes.ref(live.node)
        await env.fs.write(live.fh, 0, b"still being written")
        uploaded, kept, removed = await recover_now(env)
        assert (uploaded, kept, removed) == ([], [], 1)
        assert "live" not in env.store.keys(), "another daemon's open file was uploaded"
        await env.fs.flush(live.fh)
        await env.fs.release(live.fh)
        assert await body(env, "live") == b"still being written"
        assert staged_files(env) == []


@pytest.mark.trio
async def test_failed_recovery_upload_keeps_the_data() -> None:
    async with make_env() as env:
        h = await env.fs.create(ROOT_INODE, "f", 0o644, os.O_WRONLY | os.O_CREAT)
        env.fs.inodes.ref(h.node)
        await env.fs.write(h.fh, 0, b"precious")
        await crash(env, h)
        env.store.fail_next("put", times=-1)
        assert (await recover_now(env))[1] == ["f"]
        env.store.clear_faults()
        assert (await recover_now(env))[0] == ["f"]
        assert await body(env, "f") == b"precious"


@pytest.mark.trio
async def test_spare_staging_files_are_skipped_while_live_and_deleted_after_a_crash() -> None:
    async with make_env() as env:
        for name in ("a", "b"):
            h = await env.fs.create(ROOT_INODE, name, 0o644, os.O_WRONLY | os.O_CREAT)
            env.fs.inodes.ref(h.node)
            await env.fs.write(h.fh, 0, b"stored " + name.encode())
            await env.fs.flush(h.fh)
            await env.fs.release(h.fh)
        wb = env.fs.writeback
        [spare] = wb.spares
        assert leftovers(env.fs.staging_dir) == []
        assert await recover_now(env) == ([], [], 0), "a live daemon's spare was touched"
        # Killed right after the spare's sidecar was cleared and before its data file was
        # emptied: the old bytes are still there, and still nothing is uploaded.
        os.pwrite(spare.fd, b"stored b, not to be stored again", 0)
        for fd in (spare.fd, spare.side_fd):
            os.close(fd)
        wb.spares.clear()
        assert leftovers(env.fs.staging_dir) == []
        stored = {key: await body(env, key) for key in env.store.keys()}
        assert await recover_now(env) == ([], [], 1)
        assert list(env.fs.staging_dir.iterdir()) == []
        assert {key: await body(env, key) for key in env.store.keys()} == stored
