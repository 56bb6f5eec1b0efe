"""The file system core against the in-memory store, without the kernel.

Each test builds a :class:`Filesystem` over a MemoryStore (through the real trio/asyncio
bridge), drives it the way the FUSE adapter would, and ends with a consistency check of the
inode table.  Time is a fake clock the tests move, so TTL behaviour is exact.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import pytest
import trio

from blobfs import errors
from blobfs.fs.inodes import ROOT_INODE, Kind, Node
from tests.fs.env import BLOCK, make_env, payload

# -- lookup, getattr, readdir ---------------------------------------------------------------


@pytest.mark.trio
async def test_lookup_files_and_directories() -> None:
    objs = {"a.txt": b"hello", "dir/b.txt": b"world!", "empty/": b"", "dir/sub/c": b"c"}
    async with make_env(objs) as env:
        a = await env.path("a.txt")
        assert (a.kind, a.size, a.mode, a.uid) == (Kind.FILE, 5, 0o644, 1000)
        d = await env.path("dir")
        assert d.kind is Kind.DIR and d.mode == 0o755
        assert (await env.path("dir/b.txt")).size == 6
        assert (await env.path("empty")).kind is Kind.DIR  # marker object only
        assert (await env.path("dir/sub/c")).size == 1
        with pytest.raises(errors.NotFound):
            await env.path("missing")
        with pytest.raises(errors.NotADirectory):
            await env.fs.lookup(a.ino, "x")
        assert (await env.fs.lookup(d.ino, "..")).ino == ROOT_INODE
        assert (await env.fs.lookup(d.ino, ".")).ino == d.ino
        assert await env.listdir() == ["a.txt", "dir", "empty"]
        assert await env.listdir(d.ino) == ["b.txt", "sub"]


@pytest.mark.trio
async def test_a_lookup_the_store_cannot_answer_fails_with_one_error() -> None:
    """The HEAD and the LIST of a lookup run at once; when they fail (one, or both alike
    with no server), the lookup raises the core error itself, not a group of them."""
    async with make_env({"a.txt": b"a"}) as env:
        env.store.go_offline(PermissionError("denied"))
        with pytest.raises(errors.StorageFailure):
            await env.path("a.txt")
        env.store.go_online()
        env.store.fail_next("list")
        with pytest.raises(errors.StorageFailure):
            await env.path("a.txt")


@pytest.mark.trio
async def test_readdir_in_small_batches_lists_everything_once() -> None:
    objs = {f"big/f{i:05d}": b"x" * (i % 7) for i in range(2500)}
    objs.update({f"big/d{i:03d}/x": b"" for i in range(30)})
    async with make_env(objs) as env:
        big = await env.path("big")
        names = await env.listdir(big.ino, batch=97)
        assert len(names) == len(set(names)) == 2530
        expected = [f"f{i:05d}" for i in range(2500)] + [f"d{i:03d}" for i in range(30)]
        assert sorted(names) == sorted(expected)
        # Listing is paged through the store, never one HEAD per entry.
        assert env.fs.stats.heads <= 2
        # Attributes came with the listing.
        node = env.fs.inodes.child(big.ino, "f00006")
        assert node is not None and node.size == 6 and node.lookups == 1


@pytest.mark.trio
async def test_inode_numbers_stable_and_forget_drops_nodes() -> None:
    async with make_env({"d/f": b"1", "g": b"2"}) as env:
        f = await env.path("d/f")
        ino = f.ino
        await env.fs.lookup(f.parent, "f")  # second reference
        assert f.lookups == 2
        env.fs.forget([(ino, 1)])
        assert env.fs.inodes.get(ino) is f
        env.fs.forget([(ino, 1)])
        with pytest.raises(errors.NotFound):
            env.fs.inodes.get(ino)
        env.fs.check_consistency()
        env.clock.advance(10)
        again = await env.path("d/f")
        assert again.ino == ino  # same number for the same key while mounted
        assert (await env.path("g")).ino != ino


@pytest.mark.trio
async def test_readdir_refs_only_accepted_entries() -> None:
    async with make_env({f"f{i}": b"" for i in range(5)}) as env:
        fh = await env.fs.opendir(ROOT_INODE)
        got: list[str] = []

        def emit(name: str, node: Node, next_id: int) -> bool:
            if len(got) == 4:  # ., .., f0, f1 accepted; f2 refused
                return False
            got.append(name)
            return True

        await env.fs.readdir(fh, 0, emit)
        await env.fs.releasedir(fh)
        assert got == [".", "..", "f0", "f1"]
        assert env.fs.inodes.child(ROOT_INODE, "f2") is None
        assert env.fs.inodes.get(ROOT_INODE).lookups == 1  # dots are not counted


# -- reads --------------------------------------------------------------------------------------


@pytest.mark.trio
@pytest.mark.parametrize(
    "size", [0, 1, 4095, BLOCK - 1, BLOCK, BLOCK + 1, 3 * BLOCK + BLOCK // 2, 20 * BLOCK + 7]
)
async def test_read_whole_file(size: int) -> None:
    data = payload(size, seed=size)
    async with make_env({"f": data}) as env:
        node = await env.path("f")
        assert node.size == size
        assert await env.read_all(node) == data
        assert await env.read_all(node, chunk=BLOCK + 3) == data


@pytest.mark.trio
async def test_random_reads_match_the_object() -> None:
    import random

    size = 10 * BLOCK + 123
    data = payload(size, seed=7)
    rng = random.Random(1)
    async with make_env({"f": data}) as env:
        node = await env.path("f")
        h = await env.fs.open(node.ino, os.O_RDONLY)
        for _ in range(200):
            off = rng.randrange(0, size + 10)
            n = rng.choice([1, 100, 4096, BLOCK, 2 * BLOCK + 5])
            assert await env.fs.read(h.fh, off, n) == data[off : off + n]
        await env.fs.release(h.fh)


@pytest.mark.trio
async def test_replaced_object_under_open_handle_is_stale() -> None:
    # Larger than the read-ahead window, so the end is not prefetched by the first read.
    old = payload(32 * BLOCK, seed=1)
    new = payload(32 * BLOCK, seed=2)
    async with make_env({"f": old}) as env:
        node = await env.path("f")
        h = await env.fs.open(node.ino, os.O_RDONLY)
        assert await env.fs.read(h.fh, 0, 100) == old[:100]
        await env.put("f", new)
        # Cached data of the old version is still served...
        assert await env.fs.read(h.fh, 100, 100) == old[100:200]
        # ...but data that must be fetched is refused rather than mixed.
        with pytest.raises(errors.Stale):
            await env.fs.read(h.fh, 30 * BLOCK, 100)
        await env.fs.release(h.fh)
        # A new open after the attribute TTL reads the new version.
        env.clock.advance(1.5)
        assert await env.read_all(node) == new


@pytest.mark.trio
async def test_deleted_object_under_open_handle_is_stale() -> None:
    async with make_env({"f": payload(4 * BLOCK)}) as env:
        node = await env.path("f")
        h = await env.fs.open(node.ino, os.O_RDONLY)
        await env.delete("f")
        with pytest.raises(errors.Stale):
            await env.fs.read(h.fh, 3 * BLOCK, 10)
        await env.fs.release(h.fh)
        env.clock.advance(1.5)
        with pytest.raises(errors.NotFound):
            await env.fs.getattr(node.ino)


@pytest.mark.trio
async def test_read_only_mount_refuses_writing() -> None:
    async with make_env({"f": b"x"}) as env:
        with pytest.raises(errors.IsADirectory):
            await env.fs.open(ROOT_INODE, os.O_RDONLY)
    async with make_env({"f": b"x", "d/": b""}, read_only=True) as env:
        node = await env.path("f")
        for call in (
            env.fs.open(node.ino, os.O_RDWR),
            env.fs.open(node.ino, os.O_WRONLY | os.O_TRUNC),
            env.fs.create(ROOT_INODE, "new", 0o644, os.O_WRONLY),
            env.fs.mkdir(ROOT_INODE, "e", 0o755),
            env.fs.unlink(ROOT_INODE, "f"),
            env.fs.rmdir(ROOT_INODE, "d"),
            env.fs.rename(ROOT_INODE, "f", ROOT_INODE, "g", 0),
            env.fs.symlink(ROOT_INODE, "s", "f"),
            env.fs.link(node.ino, ROOT_INODE, "h"),
            env.fs.setattr(node.ino, size=0),
            env.fs.setattr(node.ino, mode=0o600),
            env.fs.setattr(node.ino, atime_ns=0),
            env.fs.mknod(ROOT_INODE, "fifo", 0o010000, 0o644, 0),
            env.fs.setxattr(node.ino, b"user.a", b"1"),
            env.fs.removexattr(node.ino, b"user.a"),
        ):
            with pytest.raises(errors.ReadOnly):
                await call


# -- odd keys -----------------------------------------------------------------------------------


ODD_KEYS = {
    "ok": b"1",
    "a//b": b"empty component",
    "/leading": b"leading slash",
    "c/./d": b"dot",
    "c/../e": b"dotdot",
    "c/fine": b"fine",
    "x" * 256: b"too long",
    "y" * 255: b"just fits",
    "both": b"file hidden by the directory",
    "both/inner": b"inner",
    "nul\0name": b"nul",
}


@pytest.mark.trio
async def test_odd_keys_are_skipped_or_resolved() -> None:
    async with make_env(ODD_KEYS) as env:
        names = await env.listdir()
        assert names == ["a", "both", "c", "ok", "y" * 255]
        assert env.fs.stats.skipped_names >= 2  # "" (from /leading) and "x"*256, "nul\0name"
        assert await env.listdir((await env.path("a")).ino) == []  # only "a//b": skipped
        assert await env.listdir((await env.path("c")).ino) == ["fine"]
        both = await env.path("both")
        assert both.kind is Kind.DIR
        assert await env.listdir(both.ino) == ["inner"]
        with pytest.raises(errors.NameTooLong):
            await env.fs.lookup(ROOT_INODE, "x" * 256)
        with pytest.raises(errors.InvalidName):
            await env.fs.lookup(ROOT_INODE, "nul\0name")
        assert await env.read_all(await env.path("y" * 255)) == b"just fits"


@pytest.mark.trio
async def test_directory_wins_on_lookup_without_listing() -> None:
    async with make_env({"both": b"file", "both/inner": b"x"}) as env:
        node = await env.path("both")  # resolved by HEAD + LIST, no listing cached
        assert node.kind is Kind.DIR


# -- caches and TTLs ----------------------------------------------------------------------------


@pytest.mark.trio
async def test_remote_changes_visible_after_ttls() -> None:
    async with make_env({"f": b"one"}) as env:
        assert await env.listdir() == ["f"]
        await env.put("g", b"new file")
        await env.put("f", b"changed!")
        # Within dir_ttl the cached listing answers.
        assert await env.listdir() == ["f"]
        with pytest.raises(errors.NotFound):
            await env.path("g")
        env.clock.advance(5.5)
        assert await env.listdir() == ["f", "g"]
        f = await env.path("f")
        assert f.size == 8
        assert await env.read_all(f) == b"changed!"


@pytest.mark.trio
async def test_negative_lookup_cache() -> None:
    async with make_env({}) as env:
        with pytest.raises(errors.NotFound):
            await env.path("later")
        lists = env.fs.stats.lists
        await env.put("later", b"now")
        with pytest.raises(errors.NotFound):
            await env.path("later")
        assert env.fs.stats.lists == lists  # answered from the negative cache
        env.clock.advance(1.5)
        assert (await env.path("later")).size == 3


@pytest.mark.trio
async def test_attributes_refreshed_after_attr_ttl() -> None:
    async with make_env({"f": b"abc"}) as env:
        f = await env.path("f")
        await env.put("f", b"abcdef")
        assert (await env.fs.getattr(f.ino)).size == 3
        env.clock.advance(1.5)
        assert (await env.fs.getattr(f.ino)).size == 6


@pytest.mark.trio
async def test_s3fs_metadata_is_read_on_lookup() -> None:
    async with make_env({}) as env:
        meta = {"mode": str(0o100600), "uid": "1234", "gid": "5678", "mtime": "1600000000"}
        await env.put("meta", b"data", metadata=meta)
        node = await env.path("meta")
        assert (node.mode, node.uid, node.gid) == (0o600, 1234, 5678)
        assert node.mtime_ns == 1600000000 * 10**9
    async with make_env({}, uid=42, uid_forced=True, file_mode=0o640) as env:
        await env.put("meta", b"data", metadata={"mode": "33188", "uid": "1234", "gid": "7"})
        node = await env.path("meta")
        assert (node.mode, node.uid, node.gid) == (0o640, 42, 7)


@pytest.mark.trio
async def test_prefix_mount() -> None:
    objs = {"pre/a": b"A", "pre/sub/b": b"B", "other/c": b"C", "prefix-sibling": b"D"}
    async with make_env(objs, prefix="pre") as env:
        assert await env.listdir() == ["a", "sub"]
        assert await env.read_all(await env.path("sub/b")) == b"B"
        with pytest.raises(errors.NotFound):
            await env.path("other")


@pytest.mark.trio
async def test_statfs() -> None:
    async with make_env({"f": b""}) as env:
        s = env.fs.statfs()
        assert s.blocks_free > 0 and s.name_max == 255


@pytest.mark.trio
async def test_file_replaced_by_directory_gets_new_inode() -> None:
    async with make_env({"x": b"file"}) as env:
        f = await env.path("x")
        assert f.kind is Kind.FILE
        await env.delete("x")
        await env.put("x/y", b"now a dir")
        env.clock.advance(10)
        d = await env.path("x")
        assert d.kind is Kind.DIR and d.ino != f.ino
        # The old inode lives on while the kernel holds it, detached from the name.
        assert env.fs.inodes.get(f.ino) is f
        env.fs.check_consistency()


_: Callable[..., Any] = make_env


@pytest.mark.trio
@pytest.mark.parametrize("count", [300, 20])
async def test_listed_directory_relisted_once_not_headed_per_name(count: int) -> None:
    objs = {f"big/f{i:04d}": b"x" for i in range(count)}
    async with make_env(objs) as env:
        big = await env.path("big")
        assert len(await env.listdir(big.ino)) == count
        env.clock.advance(10)  # listing, attributes and entries all expired
        heads, lists = env.fs.stats.heads, env.fs.stats.lists

        async def stat_all() -> None:
            async with trio.open_nursery() as nursery:
                for i in range(count):
                    nursery.start_soon(env.fs.lookup, big.ino, f"f{i:04d}")

        await stat_all()
        assert env.fs.stats.heads == heads
        assert env.fs.stats.lists == lists + 1  # one shared re-listing
        with pytest.raises(errors.NotFound):
            await env.fs.lookup(big.ino, "absent")


@pytest.mark.trio
async def test_lookups_racing_a_relisting_share_its_outcome() -> None:
    objs = {f"d/f{i}": b"x" for i in range(8)}
    async with make_env(objs) as env:
        d = await env.path("d")
        assert len(await env.listdir(d.ino)) == 8
        env.clock.advance(10)  # the listing expired
        lists = env.fs.stats.lists
        env.store.fail_next("list")
        failed: list[int] = []

        async def look(i: int) -> None:
            try:
                await env.fs.lookup(d.ino, f"f{i}")
            except errors.StorageFailure:
                failed.append(i)

        async with trio.open_nursery() as nursery:
            for i in range(8):
                nursery.start_soon(look, i)
        # One LIST failed, and every lookup waiting for it got its error ...
        assert env.fs.stats.lists == lists + 1
        assert sorted(failed) == list(range(8))
        # ... which was not kept: the next lookup lists again.
        assert (await env.fs.lookup(d.ino, "f3")).size == 1
        assert env.fs.stats.lists == lists + 2


@pytest.mark.trio
async def test_listing_outlives_the_kernel_forgetting_its_directory() -> None:
    """drop_caches makes the kernel forget inodes; reading a listed tree back afterwards
    must not cost a HEAD and a LIST per file."""
    objs = {f"d/f{i:02d}": b"x" for i in range(30)}
    async with make_env(objs) as env:
        d = await env.path("d")
        assert len(await env.listdir(d.ino)) == 30
        env.forget_all()
        assert env.fs.inodes.child(ROOT_INODE, "d") is None
        d = await env.path("d")  # the root was never listed: HEAD + LIST for "d"
        heads, lists = env.fs.stats.heads, env.fs.stats.lists
        for i in range(30):
            await env.fs.lookup(d.ino, f"f{i:02d}")
        assert (env.fs.stats.heads, env.fs.stats.lists) == (heads, lists), "from the listing"


@pytest.mark.trio
async def test_concurrent_attribute_checks_share_one_head() -> None:
    async with make_env({"f": b"one"}) as env:
        f = await env.path("f")
        fs = env.fs
        await env.put("f", b"changed")
        env.clock.advance(2)  # past attr_ttl
        heads = fs.stats.heads
        seen: list[int] = []

        async def getattr() -> None:
            seen.append((await fs.getattr(f.ino)).size)

        async with trio.open_nursery() as nursery:
            for _ in range(8):
                nursery.start_soon(getattr)
        # Eight readers asked at once; the store was asked once, and all saw its answer.
        assert fs.stats.heads == heads + 1
        assert seen == [7] * 8

        await env.delete("f")
        env.clock.advance(2)
        failures: list[type[BaseException]] = []

        async def gone() -> None:
            with pytest.raises(errors.NotFound) as caught:
                await fs.getattr(f.ino)
            failures.append(caught.type)

        heads = fs.stats.heads
        async with trio.open_nursery() as nursery:
            for _ in range(4):
                nursery.start_soon(gone)
        assert fs.stats.heads == heads + 1
        assert failures == [errors.NotFound] * 4
