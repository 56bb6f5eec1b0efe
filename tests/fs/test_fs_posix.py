"""Extended attributes, special files, the three times and key lengths, on the core over the
in-memory store (the same behaviours through the kernel, on SeaweedFS and Azurite, are in
``tests/mount/test_mount_posix.py``)."""

from __future__ import annotations

import os
import stat
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest

from blobfs import errors
from blobfs.fs.inodes import ROOT_INODE, Node
from blobfs.fs.metadata import (
    decode_xattrs,
    encode_xattrs,
    format_time,
    parse_time,
)
from blobfs.fs.names import KEY_MAX
from sdk.providers.base import MIN_PART_SIZE, CopySettings
from tests.fs.env import Env, body, create_file, head, make_env

#: What s3fs-fuse stores for {"user.a": "value", "user.b": ""} (its build_xattrs: names in
#: order, base64 values, the JSON URL-encoded keeping unreserved characters and "/").
S3FS_XATTR = "%7B%22user.a%22%3A%22dmFsdWU%3D%22%2C%22user.b%22%3A%22%22%7D"


@asynccontextmanager
async def recorded(env: Env) -> AsyncIterator[list[tuple[str, str]]]:
    """The (operation, key) of every store request made inside the block."""
    ops: list[tuple[str, str]] = []

    async def hook(op: str, key: str) -> None:
        ops.append((op, key))

    env.store.hook = hook
    try:
        yield ops
    finally:
        env.store.hook = None


async def fresh(env: Env, path: str) -> Node:
    """``path`` as a new mount sees it: every node forgotten, then looked up by name."""
    env.clock.advance(60)
    env.forget_all()
    return await env.path(path)


# -- the codec ---------------------------------------------------------------------------------


def test_xattr_value_is_what_s3fs_writes_and_reads() -> None:
    attrs = {b"user.a": b"value", b"user.b": b""}
    assert encode_xattrs(attrs) == S3FS_XATTR
    assert decode_xattrs(S3FS_XATTR) == attrs
    assert encode_xattrs({}) is None and decode_xattrs(None) == {}
    assert encode_xattrs({b"user.a": b"value"}).isascii()  # type: ignore[union-attr]
    # Binary values, UTF-8 and odd bytes in names, a quote (JSON-escaped): all round-trip.
    odd = {
        b"user.bin": bytes(range(256)),
        "user.ünï".encode(): b"\xff\x00",
        b'user."q\\': b"x",
        b"user.\x01": b"y",
    }
    assert decode_xattrs(encode_xattrs(odd)) == odd
    # What s3fs cannot write as JSON (a raw control character) is read pair by pair.
    raw = '{"user.ok":"b2s=","user.\x01bad":"YQ==","broken"}'
    assert decode_xattrs(raw.replace("{", "%7B")) == {b"user.ok": b"ok", b"user.\x01bad": b"a"}
    assert decode_xattrs("not json") == {}


def test_times_are_written_as_s3fs_writes_them() -> None:
    assert format_time(1_700_000_000 * 10**9) == "1700000000"
    assert format_time(1_700_000_000 * 10**9 + 123) == "1700000000.000000123"
    assert format_time(-(10**9) // 2) == "-1.500000000"  # a timespec: -1 s + 0.5 s
    for ns in (0, 1, 1_700_000_000 * 10**9 + 999_999_999, -(10**9) // 2, -3 * 10**9):
        assert parse_time(format_time(ns)) == ns
    assert parse_time("1600000000") == 1_600_000_000 * 10**9
    assert parse_time("1600000000.5") == 1_600_000_000 * 10**9 + 500_000_000
    assert parse_time("garbage") is None and parse_time(None) is None


# -- extended attributes -----------------------------------------------------------------------


@pytest.mark.trio
async def test_xattrs_round_trip_through_the_objects_metadata() -> None:
    async with make_env({"f": b"data", "d/": b""}) as env:
        f = await env.path("f")
        await env.fs.setxattr(f.ino, b"user.a", b"value")
        await env.fs.setxattr(f.ino, b"user.b", b"")
        stored = (await head(env, "f")).metadata
        assert stored["xattr"] == S3FS_XATTR
        assert int(stored["mode"]) == stat.S_IFREG | 0o644
        assert await env.fs.getxattr(f.ino, b"user.a") == b"value"
        assert sorted(await env.fs.listxattr(f.ino)) == [b"user.a", b"user.b"]
        d = await env.path("d")
        await env.fs.setxattr(d.ino, b"user.dir", b"yes")
        assert decode_xattrs((await head(env, "d/")).metadata["xattr"]) == {b"user.dir": b"yes"}

        f = await fresh(env, "f")
        assert await env.fs.getxattr(f.ino, b"user.b") == b""
        await env.fs.removexattr(f.ino, b"user.a")
        assert await env.fs.listxattr(f.ino) == [b"user.b"]
        with pytest.raises(errors.NoAttribute):
            await env.fs.getxattr(f.ino, b"user.a")
        with pytest.raises(errors.NoAttribute):
            await env.fs.removexattr(f.ino, b"user.a")
        await env.fs.removexattr(f.ino, b"user.b")
        assert "xattr" not in (await head(env, "f")).metadata
        d = await fresh(env, "d")
        assert await env.fs.getxattr(d.ino, b"user.dir") == b"yes"
        with pytest.raises(errors.NoAttribute):
            await env.fs.getxattr(ROOT_INODE, b"user.x")
        assert await env.fs.listxattr(ROOT_INODE) == []
        with pytest.raises(errors.NotSupported):
            await env.fs.setxattr(ROOT_INODE, b"user.x", b"1")


@pytest.mark.trio
async def test_large_attributes_are_not_remembered_beyond_their_node() -> None:
    async with make_env({"small": b"1", "large": b"2"}) as env:
        for name, size in (("small", 10), ("large", 600)):
            node = await env.path(name)
            await env.fs.setxattr(node.ino, b"user.a", b"v" * size)
        assert sorted(await env.listdir()) == ["large", "small"]
        env.forget_all()
        await env.listdir()  # new nodes, from the listing and what is remembered
        small, large = await env.path("small"), await env.path("large")
        assert small.metadata_loaded and not large.metadata_loaded
        async with recorded(env) as ops:
            assert await env.fs.getxattr(large.ino, b"user.a") == b"v" * 600
        assert [op for op, _ in ops] == ["head"]


@pytest.mark.trio
async def test_xattrs_written_by_s3fs_are_read_and_kept() -> None:
    meta = {"mode": str(stat.S_IFREG | 0o600), "xattr": S3FS_XATTR, "md5chksum": "abc=="}
    async with make_env() as env:
        await env.put("s3fs", b"x", metadata=meta)
        node = await env.path("s3fs")
        assert await env.fs.getxattr(node.ino, b"user.a") == b"value"
        await env.fs.setattr(node.ino, mode=0o640)
        stored = (await head(env, "s3fs")).metadata
        # A chmod keeps the attributes and what other tools stored.
        assert (stored["xattr"], stored["md5chksum"]) == (S3FS_XATTR, "abc==")


@pytest.mark.trio
async def test_security_and_system_attributes_are_not_kept_and_cost_no_request() -> None:
    hidden = encode_xattrs({b"system.posix_acl_access": b"acl", b"user.a": b"1"})
    async with make_env() as env:
        await env.put("f", b"x", metadata={"xattr": hidden or ""})
        node = await env.path("f")
        async with recorded(env) as ops:
            for name in (b"security.capability", b"security.selinux", b"system.posix_acl_access"):
                with pytest.raises(errors.NotSupported):
                    await env.fs.getxattr(node.ino, name)
                with pytest.raises(errors.NotSupported):
                    await env.fs.setxattr(node.ino, name, b"x")
                with pytest.raises(errors.NotSupported):
                    await env.fs.removexattr(node.ino, name)
        assert ops == []
        assert await env.fs.listxattr(node.ino) == [b"user.a"]
        await env.fs.setxattr(node.ino, b"user.b", b"2")
        # What s3fs stored there stays, unseen.
        stored = decode_xattrs((await head(env, "f")).metadata["xattr"])
        assert stored == {b"system.posix_acl_access": b"acl", b"user.a": b"1", b"user.b": b"2"}


@pytest.mark.trio
async def test_too_large_attributes_are_refused_and_change_nothing() -> None:
    async with make_env({"f": b"data"}) as env:
        node = await env.path("f")
        # The memory store has S3's 2 KiB of metadata.
        with pytest.raises(errors.TooBig):
            await env.fs.setxattr(node.ino, b"user.big", b"v" * 2000)
        await env.fs.setxattr(node.ino, b"user.one", b"v" * 800)
        before = (await head(env, "f")).metadata
        with pytest.raises(errors.NoSpace):
            await env.fs.setxattr(node.ino, b"user.two", b"v" * 800)
        assert (await head(env, "f")).metadata == before
        assert await env.fs.listxattr(node.ino) == [b"user.one"]
        # What fits beside the widest times and owner leaves room for any later change.
        await env.fs.setattr(node.ino, uid=2**32 - 1, gid=2**32 - 1, mtime_ns=-(10**18) + 1)


@pytest.mark.trio
async def test_setting_an_attribute_does_not_send_the_data_again() -> None:
    async with make_env({"big": b"z" * (3 * 1024 * 1024)}) as env:
        node = await env.path("big")
        etag_before = node.etag
        async with recorded(env) as ops:
            await env.fs.setxattr(node.ino, b"user.a", b"1")
        assert [op for op, _ in ops] == ["copy", "head"]
        info = await head(env, "big")
        assert info.size == 3 * 1024 * 1024 and node.etag == info.etag
        assert etag_before is not None
        # Over the copy threshold (S3's 5 GiB; lowered here) the copy is made of parts,
        # each copied server-side: still no data sent.
        env.store.copy_settings = CopySettings(threshold=MIN_PART_SIZE, part_size=MIN_PART_SIZE)
        await env.put("huge", b"h" * (3 * MIN_PART_SIZE))
        huge = await env.path("huge")
        async with recorded(env) as ops:
            await env.fs.setxattr(huge.ino, b"user.a", b"2")
        assert {op for op, _ in ops} == {
            "head",
            "copy",
            "start_multipart",
            "copy_part",
            "complete",
        }
        info = await head(env, "huge")
        assert info.etag.endswith("-3") and decode_xattrs(info.metadata["xattr"]) == {
            b"user.a": b"2"
        }
        assert await body(env, "huge") == b"h" * (3 * MIN_PART_SIZE)


@pytest.mark.trio
async def test_attributes_of_a_file_being_written_go_up_with_its_data() -> None:
    async with make_env() as env:
        handle = await env.fs.create(ROOT_INODE, "w", 0o644, os.O_WRONLY)
        env.fs.inodes.ref(handle.node)
        await env.fs.write(handle.fh, 0, b"abc")
        async with recorded(env) as ops:
            await env.fs.setxattr(handle.node.ino, b"user.a", b"1")
        assert ops == []
        assert await env.fs.getxattr(handle.node.ino, b"user.a") == b"1"
        await env.fs.flush(handle.fh)
        await env.fs.release(handle.fh)
        assert decode_xattrs((await head(env, "w")).metadata["xattr"]) == {b"user.a": b"1"}


# -- special files -----------------------------------------------------------------------------


@pytest.mark.trio
async def test_fifos_sockets_and_devices_are_empty_objects_with_their_type() -> None:
    kinds = {"fifo": stat.S_IFIFO, "sock": stat.S_IFSOCK, "chr": stat.S_IFCHR, "blk": stat.S_IFBLK}
    async with make_env({"d/": b""}) as env:
        for name, kind in kinds.items():
            rdev = os.makedev(8, 1) if kind in (stat.S_IFCHR, stat.S_IFBLK) else 0
            node = await env.fs.mknod(ROOT_INODE, name, kind, 0o640, rdev)
            env.fs.inodes.ref(node)
            info = await head(env, name)
            assert info.size == 0 and int(info.metadata["mode"]) == kind | 0o640
            assert info.metadata.get("rdev") == (str(rdev) if rdev else None)
        with pytest.raises(errors.InvalidName):
            await env.fs.mknod(ROOT_INODE, "dir", stat.S_IFDIR, 0o755, 0)
        with pytest.raises(errors.Exists):
            await env.fs.mknod(ROOT_INODE, "fifo", stat.S_IFIFO, 0o644, 0)
        assert sorted(await env.listdir()) == ["blk", "chr", "d", "fifo", "sock"]
        # A new mount sees the types; s3fs's device nodes (no rdev) are device 0.
        await env.put("s3fs-chr", b"", metadata={"mode": str(stat.S_IFCHR | 0o600)})
        for name, kind in kinds.items():
            node = await fresh(env, name)
            assert (node.ftype, node.mode) == (kind, 0o640)
            assert node.rdev == (os.makedev(8, 1) if name in ("chr", "blk") else 0)
        s3fs = await env.path("s3fs-chr")  # from the listing: a file until its first HEAD
        env.clock.advance(2)
        await env.fs.getattr(s3fs.ino)
        assert (s3fs.ftype, s3fs.rdev) == (stat.S_IFCHR, 0)
        # They rename, chmod and unlink as files do, keeping their type.
        await env.fs.rename(ROOT_INODE, "fifo", (await env.path("d")).ino, "moved", 0)
        moved = await env.path("d/moved")
        await env.fs.setattr(moved.ino, mode=0o600)
        assert int((await head(env, "d/moved")).metadata["mode"]) == stat.S_IFIFO | 0o600
        await env.fs.unlink(ROOT_INODE, "sock")
        assert "sock" not in env.store.keys()


# -- times -------------------------------------------------------------------------------------


@pytest.mark.trio
async def test_entries_made_and_removed_move_the_directorys_times() -> None:
    async with make_env({"d/": b"", "d/old": b"x", "d/sub/": b""}) as env:
        d = await env.path("d")
        await env.path("d/old")
        steps = {
            "create": lambda: create_file(env, "new", b"", parent=d.ino),
            "mkdir": lambda: env.fs.mkdir(d.ino, "m", 0o755),
            "symlink": lambda: env.fs.symlink(d.ino, "s", "old"),
            "mknod": lambda: env.fs.mknod(d.ino, "p", stat.S_IFIFO, 0o644, 0),
            "unlink": lambda: env.fs.unlink(d.ino, "old"),
            "rmdir": lambda: env.fs.rmdir(d.ino, "sub"),
            "rename out": lambda: env.fs.rename(d.ino, "new", ROOT_INODE, "out", 0),
            "rename in": lambda: env.fs.rename(ROOT_INODE, "out", d.ino, "back", 0),
        }
        for what, step in steps.items():
            before = (d.atime_ns, d.mtime_ns, d.ctime_ns)
            node = await step()
            if isinstance(node, Node):
                env.fs.inodes.ref(node)
            assert d.mtime_ns > before[1] and d.ctime_ns > before[2], what
            assert d.atime_ns == before[0], what
        # Kept when the kernel forgets the directory (in memory, by key).
        times = (d.mtime_ns, d.ctime_ns)
        d = await fresh(env, "d")
        assert (d.mtime_ns, d.ctime_ns) == times


@pytest.mark.trio
async def test_reads_move_atime_by_relatime_and_store_nothing() -> None:
    async with make_env() as env:
        node = await create_file(env, "f", b"hello")
        await env.fs.setattr(node.ino, atime_ns=10**18, mtime_ns=10**18)  # both in 2001
        assert parse_time((await head(env, "f")).metadata["atime"]) == 10**18
        handle = await env.fs.open(node.ino, os.O_RDONLY)
        async with recorded(env) as ops:
            await env.fs.read(handle.fh, 0, 5)
            first = node.atime_ns
            assert first > time.time_ns() - 10 * 10**9  # atime <= mtime: moved
            await env.fs.read(handle.fh, 0, 5)
            assert node.atime_ns == first  # now later than mtime and ctime: kept
        await env.fs.release(handle.fh)
        assert [op for op, _ in ops] == ["read_range"]  # the data, and nothing stored
        assert parse_time((await head(env, "f")).metadata["atime"]) == 10**18  # not stored
        # A later HEAD of the same version keeps what reads gave it.
        env.clock.advance(5)
        await env.fs.getattr(node.ino)
        assert node.atime_ns == first
        # O_NOATIME leaves it alone.
        await env.fs.setattr(node.ino, atime_ns=10**18)
        handle = await env.fs.open(node.ino, os.O_RDONLY | os.O_NOATIME)
        await env.fs.read(handle.fh, 0, 5)
        await env.fs.release(handle.fh)
        assert node.atime_ns == 10**18


@pytest.mark.trio
async def test_times_of_files_follow_posix_and_persist() -> None:
    async with make_env() as env:
        node = await create_file(env, "f", b"hello")
        assert node.atime_ns == node.mtime_ns == node.ctime_ns or node.mtime_ns >= node.atime_ns
        old = 10**18
        await env.fs.setattr(node.ino, atime_ns=old, mtime_ns=old)
        ctime = node.ctime_ns
        assert ctime > old
        await env.fs.setattr(node.ino, mode=0o600)  # chmod: ctime only
        assert (node.atime_ns, node.mtime_ns) == (old, old) and node.ctime_ns > ctime
        ctime = node.ctime_ns
        await env.fs.setxattr(node.ino, b"user.a", b"1")  # xattr: ctime only
        assert (node.atime_ns, node.mtime_ns) == (old, old) and node.ctime_ns > ctime
        await env.fs.setattr(node.ino, size=2)  # truncate: mtime and ctime
        assert node.atime_ns == old and node.mtime_ns == node.ctime_ns > ctime
        await env.fs.rename(ROOT_INODE, "f", ROOT_INODE, "g", 0)  # rename: ctime
        assert node.ctime_ns > node.mtime_ns
        times = (node.atime_ns, node.mtime_ns, node.ctime_ns)
        env.clock.advance(5)
        await env.fs.getattr(node.ino)  # a HEAD of the same version keeps what it got here
        assert (node.atime_ns, node.mtime_ns, node.ctime_ns) == times
        again = await fresh(env, "g")
        # The copy kept the stored times; the rename's ctime lived in memory.
        assert (again.atime_ns, again.mtime_ns) == times[:2]
        assert again.ctime_ns == times[1]


# -- names the store cannot hold ---------------------------------------------------------------


@pytest.mark.trio
async def test_keys_over_1024_bytes_are_enametoolong_and_nothing_is_made() -> None:
    deep = "/".join(["d" * 200] * 5)  # a 1004-byte key prefix
    async with make_env({f"{deep}/f": b"x", "short/x": b"y"}) as env:
        d = await env.path(deep)
        keys = env.store.keys()
        for call in (
            lambda: env.fs.create(d.ino, "n" * 30, 0o644, os.O_WRONLY),
            lambda: env.fs.mkdir(d.ino, "n" * 19, 0o755),  # "…/nnn/" is 1025 bytes
            lambda: env.fs.symlink(d.ino, "n" * 30, "target"),
            lambda: env.fs.mknod(d.ino, "n" * 30, stat.S_IFIFO, 0o644, 0),
            lambda: env.fs.rename(d.ino, "f", d.ino, "n" * 30, 0),
            # A directory whose deepest key would be too long under its new name.
            lambda: env.fs.rename(ROOT_INODE, "short", d.ino, "s" * 18, 0),
        ):
            with pytest.raises(errors.NameTooLong):
                await call()
            assert env.store.keys() == keys
        # At the limit it works; a lookup of a longer name answers without a request.
        env.fs.inodes.ref(await env.fs.mkdir(d.ino, "n" * 18, 0o755))
        assert len(f"{deep}/{'n' * 18}/".encode()) == KEY_MAX
        async with recorded(env) as ops:
            with pytest.raises(errors.NotFound):
                await env.fs.lookup(d.ino, "z" * 30)
        assert ops == []
