"""What an operator asks of a running mount, in the core: storing pending changes
(``Filesystem.sync``), forgetting cached state (``Filesystem.invalidate``), the scopes they
take, and the counters ``blobfs status`` reads.  Fast, on the in-memory store; the same
behaviours on real mounts are in ``tests/mount/test_mount_control.py``."""

from __future__ import annotations

import os
from collections.abc import Sequence

import pytest

from blobfs import errors
from blobfs.fs.inodes import ROOT_INODE
from blobfs.fs.scope import Scope
from blobfs.fs.sync import SyncReport
from tests.fs.env import body, create_file, make_env, write_all


def test_scope_names_files_and_directories_below_the_root() -> None:
    scope = Scope.of("pre/", ["a/b", "/c/", "a/b"])
    assert scope.paths == ("a/b", "c")
    assert scope.holds("pre/a/b") and scope.holds("pre/a/b/") and scope.holds("pre/a/b/x/y")
    assert not scope.holds("pre/a/bc") and not scope.holds("pre/a/") and not scope.holds("a/b")
    assert scope.parent_keys() == ["pre/a/", "pre/"]
    assert Scope.of("pre/", ["a", ""]).everything
    assert Scope.of("", []).holds("anything")
    for bad in ("../etc", "a/./b", "x\0y"):
        with pytest.raises(errors.InvalidName):
            Scope.of("", [bad])


@pytest.mark.trio
async def test_sync_stores_open_files_in_scope_only() -> None:
    async with make_env() as env:
        fs = env.fs
        a = await fs.mkdir(ROOT_INODE, "a", 0o755)
        fs.inodes.ref(a)
        x = await fs.create(a.ino, "x", 0o644, os.O_WRONLY)
        y = await fs.create(ROOT_INODE, "y", 0o644, os.O_WRONLY)
        for h in (x, y):
            fs.inodes.ref(h.node)
        await write_all(env, x, b"x" * 1000)
        await write_all(env, y, b"y" * 2000)
        assert sorted(n.key for n, _ in fs.unsaved()) == ["a/x", "y"]

        report = SyncReport()
        await fs.sync(fs.scope(["a"]), report)
        assert report.ok and report.stored == ["a/x"] and not report.pending
        assert await body(env, "a/x") == b"x" * 1000
        assert "y" not in env.store.keys()
        assert [n.key for n, _ in fs.unsaved()] == ["y"]

        # A failure is reported with the key, and the data stays staged.
        env.store.go_offline()
        report = SyncReport()
        await fs.sync(fs.scope(), report)
        env.store.go_online()
        assert not report.ok and list(report.failed) == ["y"]
        failures = list(fs.writeback.failures.recent)
        assert failures[-1].key == "y" and "next close" in failures[-1].retry
        report = SyncReport()
        await fs.sync(fs.scope(), report)
        assert report.ok and report.stored == ["y"]
        assert fs.unsaved() == []
        for h in (x, y):
            await fs.release(h.fh)


@pytest.mark.trio
async def test_sync_reports_a_file_kept_after_a_failed_last_close() -> None:
    async with make_env() as env:
        fs = env.fs
        handle = await fs.create(ROOT_INODE, "lost", 0o644, os.O_WRONLY)
        fs.inodes.ref(handle.node)
        await fs.write(handle.fh, 0, b"precious")
        env.store.go_offline()
        await fs.release(handle.fh)
        env.store.go_online()
        report = SyncReport()
        await fs.sync(fs.scope(), report)
        assert not report.ok and [k.key for k in report.kept] == ["lost"]
        assert report.kept[0].path.read_bytes() == b"precious"


class RecordingKernel:
    """The kernel port, recording what the core asks it to forget."""

    def __init__(self) -> None:
        self.inodes: list[int] = []
        self.entries: list[tuple[int, str]] = []

    async def forget(self, inodes: Sequence[int], entries: Sequence[tuple[int, str]]) -> int:
        self.inodes += inodes
        self.entries += entries
        return len(inodes) + len(entries)


@pytest.mark.trio
async def test_invalidate_shows_remote_changes_under_the_scope_only() -> None:
    objects = {"d/f": b"one", "d/gone": b"g", "other/o": b"o"}
    # The fake clock stands still: no TTL runs out in this test.
    async with make_env(objects) as env:
        fs = env.fs
        kernel = RecordingKernel()
        fs.attach_kernel(kernel)
        f = await env.path("d/f")
        o = await env.path("other/o")
        assert await env.read_all(f) == b"one"
        assert sorted(await env.listdir((await env.path("d")).ino)) == ["f", "gone"]
        with pytest.raises(errors.NotFound):
            await env.path("d/new")
        await env.put("d/f", b"two!")
        await env.put("d/new", b"n")
        await env.put("other/o", b"changed")
        await env.delete("d/gone")
        assert (await fs.getattr(f.ino)).size == 3  # the TTLs hide the change

        done = await fs.invalidate(fs.scope(["d"]))
        assert done.nodes >= 2 and done.listings >= 1 and done.blocks >= 1
        assert (ROOT_INODE, "d") in kernel.entries and (f.parent, "f") in kernel.entries
        assert f.ino in kernel.inodes and o.ino not in kernel.inodes
        assert (await fs.getattr(f.ino)).size == 4
        assert await env.read_all(f) == b"two!"
        assert sorted(await env.listdir((await env.path("d")).ino)) == ["f", "new"]
        assert (await env.path("d/new")).size == 1
        assert (await fs.getattr(o.ino)).size == 1  # outside the scope: still the old view


@pytest.mark.trio
async def test_requests_are_counted_by_kind_and_outcome() -> None:
    async with make_env({"here": b"x" * 100}) as env:
        fs = env.fs
        await create_file(env, "new", b"y" * 300)
        here = await env.path("here")
        await env.read_all(here)
        with pytest.raises(errors.NotFound):
            await env.path("missing")
        kinds = fs.store.requests.snapshot()
        assert kinds["put"].outcomes["ok"] == 1 and kinds["put"].bytes_out == 300
        assert kinds["get"].outcomes["ok"] >= 1 and kinds["get"].bytes_in >= 100
        assert kinds["head"].outcomes["not_found"] >= 1
        assert sum(kinds["head"].buckets) == kinds["head"].count
        # A missing name is an answer, not a failure.
        assert fs.store.requests.failures.total == 0
        env.clock.advance(10)  # the attributes are old: a getattr asks with a HEAD
        env.store.go_offline()
        with pytest.raises(errors.StorageFailure):
            await fs.getattr(here.ino)
        env.store.go_online()
        assert fs.store.requests.snapshot()["head"].outcomes["error"] == 1
        failure = fs.store.requests.failures.recent[-1]
        assert failure.key == "here" and failure.what.startswith("head failed")
