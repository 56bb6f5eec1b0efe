"""The write path on real mounts through /dev/fuse, on SeaweedFS (S3) and Azurite (Azure).

Ordinary programs write to the mount (shell redirection, cp -r, rsync -a, tar x, SQLite,
mv, rm, mkdir) and the result is compared with a local reference tree, byte for byte and
in the metadata the mount keeps (mode, mtime, symlink targets).  Each behaviour is one test
body that runs on both providers.
"""

from __future__ import annotations

import errno
import filecmp
import os
import random
import shutil
import signal
import sqlite3
import stat
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from blobfs.fs.metadata import parse_time
from blobfs.mount import mountpoint
from blobfs.write import writeback
from blobfs.write.sidecar import Sidecar
from sdk.errors import ResourceNotFound
from tests.mount.world import World, new_world, objects, unmount_all

pytestmark = pytest.mark.mount

MiB = 1024 * 1024
FAST = "attr_ttl=1,entry_ttl=1,dir_ttl=1,negative_ttl=1,memory=64M,readahead=8M"

if not os.path.exists("/dev/fuse") or os.geteuid() != 0:
    pytest.skip("needs /dev/fuse and root", allow_module_level=True)


@pytest.fixture(scope="module", params=["s3", "azure"])
def world(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[World]:
    w = new_world(request, tmp_path_factory, "mntw")
    w.put_many({"existing.txt": b"0123456789"})
    yield w
    unmount_all(w)


@pytest.fixture(scope="module")
def mnt(world: World) -> Iterator[Path]:
    where = world.mount(f"blob:{world.bucket}", world.tmp / "mnt")
    yield where
    world.umount(where)


def run(cmd: list[str] | str, **kw: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        cmd, shell=isinstance(cmd, str), capture_output=True, text=True, check=True, **kw
    )


def make_tree(root: Path, seed: int, files: int = 30) -> None:
    """A small tree with nested and empty directories, symlinks, odd sizes and modes."""
    rng = random.Random(seed)
    (root / "empty" / "deeper").mkdir(parents=True)
    for i in range(files):
        d = root / f"d{i % 4}" / ("sub" if i % 3 else "")
        d.mkdir(parents=True, exist_ok=True)
        size = rng.choice([0, 1, 100, 4096, 70_000, 300_000])
        path = d / f"file{i}.bin"
        path.write_bytes(rng.randbytes(size))
        path.chmod(rng.choice([0o644, 0o600, 0o755]))
        os.utime(path, (1_600_000_000 + i * 1000, 1_600_000_000 + i * 1000))
    (root / "link-to-file").symlink_to("d0/file0.bin")
    (root / "d1" / "link-to-dir").symlink_to("../d2")
    (root / "dangling").symlink_to("nowhere/at/all")


def assert_same_tree(a: Path, b: Path) -> None:
    def walk(root: Path) -> dict[str, tuple[str, Any]]:
        out: dict[str, tuple[str, Any]] = {}
        for dirpath, dirnames, filenames in os.walk(root):
            for name in dirnames + filenames:
                p = Path(dirpath) / name
                rel = str(p.relative_to(root))
                st = os.lstat(p)
                if stat.S_ISLNK(st.st_mode):
                    out[rel] = ("link", os.readlink(p))
                elif stat.S_ISDIR(st.st_mode):
                    out[rel] = ("dir", None)
                else:
                    out[rel] = ("file", (st.st_size, st.st_mode & 0o777, int(st.st_mtime)))
        return out

    wa, wb = walk(a), walk(b)
    assert wa == wb
    for rel, (kind, _) in wa.items():
        if kind == "file":
            assert filecmp.cmp(a / rel, b / rel, shallow=False), rel


# -- files ------------------------------------------------------------------------------------


def test_shell_redirection_append_and_python_io(world: World, mnt: Path) -> None:
    run(f"echo hello > {mnt}/echo.txt")
    assert (mnt / "echo.txt").read_bytes() == b"hello\n"
    run(f"echo world >> {mnt}/echo.txt")
    assert (mnt / "echo.txt").read_bytes() == b"hello\nworld\n"
    info = objects(world, "echo.txt")["echo.txt"]
    assert info.size == 12 and int(info.metadata["mode"]) & 0o170000 == stat.S_IFREG
    # partial overwrite of an existing object, and truncate
    with open(mnt / "existing.txt", "r+b") as f:
        f.seek(3)
        f.write(b"abc")
    assert (mnt / "existing.txt").read_bytes() == b"012abc6789"
    os.truncate(mnt / "existing.txt", 4)
    assert (mnt / "existing.txt").read_bytes() == b"012a"
    # a large file, written sequentially, goes up as a multipart upload
    data = random.Random(1).randbytes(20 * MiB + 5)
    with open(mnt / "big.bin", "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
        assert objects(world, "big.bin")["big.bin"].size == len(data), "fsync did not store"
    assert (mnt / "big.bin").read_bytes() == data
    os.unlink(mnt / "big.bin")
    assert not (mnt / "big.bin").exists()
    assert "big.bin" not in objects(world, "big")


def test_chmod_utime_persist_across_remount(world: World, mnt: Path) -> None:
    path = mnt / "meta.txt"
    path.write_bytes(b"m")
    path.chmod(0o600)
    os.utime(path, (1_500_000_000, 1_500_000_000))
    info = objects(world, "meta.txt")["meta.txt"]
    assert int(info.metadata["mode"]) == stat.S_IFREG | 0o600
    assert info.metadata["mtime"] == "1500000000"
    other = world.mount(f"blob:{world.bucket}", world.tmp / "again")
    try:
        st = os.stat(other / "meta.txt")
        assert (st.st_mode & 0o777, int(st.st_mtime)) == (0o600, 1_500_000_000)
    finally:
        world.umount(other)


def test_cp_r_rsync_twice_and_tar_match_a_local_tree(world: World, mnt: Path) -> None:
    ref = world.tmp / "ref"
    make_tree(ref, 5)
    run(["cp", "-a", str(ref), str(mnt / "cp")])
    assert_same_tree(ref, mnt / "cp")

    run(["rsync", "-a", f"{ref}/", f"{mnt}/rsync/"])
    assert_same_tree(ref, mnt / "rsync")
    time.sleep(1.1)  # past the TTLs: the second run sees what is in the bucket
    second = run(["rsync", "-a", "--itemize-changes", f"{ref}/", f"{mnt}/rsync/"])
    assert second.stdout.strip() == "", "second rsync transferred:\n" + second.stdout

    archive = world.tmp / "tree.tar"
    run(["tar", "cf", str(archive), "-C", str(ref), "."])
    (mnt / "tar").mkdir()
    run(["tar", "xf", str(archive), "-C", str(mnt / "tar")])
    assert_same_tree(ref, mnt / "tar")

    # and what a fresh mount sees of it (symlinks from metadata, empty dirs from markers)
    other = world.mount(f"blob:{world.bucket}", world.tmp / "fresh")
    try:
        for rel in ("link-to-file", "d1/link-to-dir", "dangling"):
            assert os.readlink(other / "tar" / rel) == os.readlink(ref / rel)
        assert os.listdir(other / "tar" / "empty") == ["deeper"]
        assert (other / "tar" / "d0" / "file0.bin").read_bytes() == (
            ref / "d0" / "file0.bin"
        ).read_bytes()
    finally:
        world.umount(other)


def test_sqlite_database(mnt: Path) -> None:
    db = mnt / "db.sqlite3"
    con = sqlite3.connect(db)
    con.execute("create table t (k integer primary key, v text)")
    with con:
        con.executemany("insert into t (v) values (?)", [(f"row {i}" * 20,) for i in range(2000)])
    with con:
        con.execute("update t set v = 'changed' where k % 7 = 0")
    con.close()
    con = sqlite3.connect(db)
    assert con.execute("select count(*), sum(v = 'changed') from t").fetchone() == (2000, 285)
    assert con.execute("pragma integrity_check").fetchone() == ("ok",)
    con.close()


# -- the namespace -----------------------------------------------------------------------------


def test_rename_files_and_directories(world: World, mnt: Path) -> None:
    base = mnt / "ren"
    (base / "dir" / "sub").mkdir(parents=True)
    (base / "dir" / "sub" / "f").write_bytes(b"f")
    (base / "dir" / "g").write_bytes(b"g")
    (base / "a").write_bytes(b"A")
    (base / "b").write_bytes(b"B")
    os.rename(base / "a", base / "b")  # over an existing file
    assert (base / "b").read_bytes() == b"A" and not (base / "a").exists()
    os.rename(base / "dir", base / "moved")
    assert sorted(os.listdir(base)) == ["b", "moved"]
    assert (base / "moved" / "sub" / "f").read_bytes() == b"f"
    files = sorted(k for k in objects(world, "ren/") if not k.endswith("/"))
    assert files == ["ren/b", "ren/moved/g", "ren/moved/sub/f"]
    # an editor's save: write a temp file, rename it over the original
    (base / ".b.swp").write_bytes(b"edited")
    os.replace(base / ".b.swp", base / "b")
    assert (base / "b").read_bytes() == b"edited"


def test_rename_large_file_and_directory_copy_in_parts(world: World) -> None:
    """With a small copy threshold, renames of files over it go through server-side copies
    in parts; bytes, metadata and modes survive, and chmod (a copy onto itself) too."""
    where = world.mount(
        f"blob:{world.bucket}",
        world.tmp / "mnt-parts",
        f"{FAST},copy_threshold=5M,copy_part_size=5M",
    )
    try:
        base = where / "parts"
        (base / "dir" / "sub").mkdir(parents=True)
        big = random.Random(5).randbytes(11 * MiB + 3)  # three parts of 5 MiB
        (base / "big").write_bytes(big)
        (base / "big").chmod(0o640)
        (base / "dir" / "sub" / "big2").write_bytes(big[::-1])
        (base / "dir" / "small").write_bytes(b"small")
        os.rename(base / "big", base / "big-moved")
        os.rename(base / "dir", base / "dir-moved")
        assert sorted(os.listdir(base)) == ["big-moved", "dir-moved"]
        assert (base / "big-moved").read_bytes() == big
        assert (base / "dir-moved" / "sub" / "big2").read_bytes() == big[::-1]
        assert stat.S_IMODE(os.stat(base / "big-moved").st_mode) == 0o640
        (base / "big-moved").chmod(0o600)
        info = objects(world, "parts/")
        assert sorted(k for k in info if not k.endswith("/")) == [
            "parts/big-moved",
            "parts/dir-moved/small",
            "parts/dir-moved/sub/big2",
        ]
        assert int(info["parts/big-moved"].metadata["mode"]) & 0o777 == 0o600
        assert info["parts/big-moved"].size == len(big)
        if world.kind == "s3":  # S3's ETag of an object assembled from 3 parts
            assert info["parts/big-moved"].etag.endswith("-3")
            assert info["parts/dir-moved/sub/big2"].etag.endswith("-3")
    finally:
        world.umount(where)


def test_interrupted_directory_rename_is_finished_by_mv_again(world: World, mnt: Path) -> None:
    """The states a daemon that died mid-rename leaves behind -- made here with the sdk --
    are finished by running the same ``mv -T`` again; onto an unrelated directory it is
    ENOTEMPTY."""
    for phase in ("copying", "deleting"):
        base = mnt / f"int-{phase}"
        (base / "old" / "sub").mkdir(parents=True)
        files = {"a": b"alpha", "sub/b": b"bravo", "sub/c": b"charlie" * 999, "d": b""}
        for rel, data in files.items():
            (base / "old" / rel).write_bytes(data)
        prefix = f"int-{phase}/"

        async def interrupt(store: Any, phase: str = phase, prefix: str = prefix) -> None:
            await store.put(f"{prefix}new/", b"")  # SeaweedFS cannot copy a `dir/` key
            copied = ["a", "sub/b"] if phase == "copying" else ["a", "sub/b", "sub/c", "d"]
            for rel in copied:
                await store.copy(f"{prefix}old/{rel}", f"{prefix}new/{rel}")
            if phase == "deleting":
                await store.delete(f"{prefix}old/a")
                await store.delete(f"{prefix}old/sub/b")

        world.sdk(interrupt)
        time.sleep(1.5)  # the mount's listings (dir_ttl=1) show both trees now
        assert sorted(os.listdir(base)) == ["new", "old"]
        (base / "unrelated").mkdir()
        (base / "unrelated" / "x").write_bytes(b"x")
        with pytest.raises(OSError) as info:
            os.rename(base / "old", base / "unrelated")
        assert info.value.errno == errno.ENOTEMPTY
        run(["mv", "-T", str(base / "old"), str(base / "new")])
        assert sorted(os.listdir(base)) == ["new", "unrelated"]
        for rel, data in files.items():
            assert (base / "new" / rel).read_bytes() == data, (phase, rel)
        keys = sorted(k for k in objects(world, prefix) if not k.endswith("/"))
        assert keys == sorted([f"{prefix}new/{rel}" for rel in files] + [f"{prefix}unrelated/x"])
    # Onto an empty directory: replaces it, as POSIX says.
    base = mnt / "int-empty"
    (base / "src" / "s").mkdir(parents=True)
    (base / "src" / "s" / "f").write_bytes(b"f")
    (base / "empty").mkdir()
    os.rename(base / "src", base / "empty")
    assert os.listdir(base) == ["empty"]
    assert (base / "empty" / "s" / "f").read_bytes() == b"f"


def test_errno_cases(mnt: Path) -> None:
    base = mnt / "errs"
    base.mkdir()
    (base / "file").write_bytes(b"x")
    (base / "full").mkdir()
    (base / "full" / "inner").write_bytes(b"y")

    def fails(code: int, fn: Any, *args: Any) -> None:
        with pytest.raises(OSError) as info:
            fn(*args)
        assert info.value.errno == code, (fn, args, info.value)

    fails(errno.EEXIST, os.mkdir, base / "file")
    fails(errno.EEXIST, os.mkdir, base / "full")
    fails(errno.ENOTEMPTY, os.rmdir, base / "full")
    fails(errno.ENOTDIR, os.rmdir, base / "file")
    fails(errno.EISDIR, os.unlink, base / "full")
    fails(errno.ENOTDIR, open, base / "file" / "x", "w")
    fails(errno.EISDIR, open, base / "full", "w")
    fails(errno.ENAMETOOLONG, open, base / ("n" * 256), "w")
    fails(errno.ENOENT, os.unlink, base / "nothing")
    fails(errno.EISDIR, os.rename, base / "file", base / "full")
    fails(errno.ENOTDIR, os.rename, base / "full", base / "file")
    fails(errno.EOPNOTSUPP, os.link, base / "file", base / "hard")
    fails(errno.EEXIST, os.open, base / "file", os.O_CREAT | os.O_EXCL | os.O_WRONLY)


def test_ro_mount_refuses_every_change(world: World) -> None:
    where = world.mount(f"blob:{world.bucket}", world.tmp / "ro", FAST + ",ro")
    try:
        assert (where / "existing.txt").exists()
        for fn, args in [
            (open, (where / "new", "w")),
            (open, (where / "existing.txt", "a")),
            (os.mkdir, (where / "d",)),
            (os.unlink, (where / "existing.txt",)),
            (os.rename, (where / "existing.txt", where / "x")),
            (os.chmod, (where / "existing.txt", 0o600)),
            (os.truncate, (where / "existing.txt", 0)),
            (os.symlink, ("t", where / "s")),
            (os.mkfifo, (where / "fifo",)),
            (os.mknod, (where / "dev", stat.S_IFCHR | 0o600, os.makedev(1, 3))),
            (os.setxattr, (where / "existing.txt", "user.a", b"1")),
            (os.removexattr, (where / "existing.txt", "user.a")),
            (os.utime, (where / "existing.txt", (1, 1))),
            (os.utime, (where / "existing.txt", None)),
        ]:
            with pytest.raises(OSError) as info:
                fn(*args)
            assert info.value.errno == errno.EROFS, (fn, args)
    finally:
        world.umount(where)


def test_umount_waits_for_uploads(world: World) -> None:
    where = world.mount(f"blob:{world.bucket}", world.tmp / "drain")
    data = random.Random(9).randbytes(12 * MiB)
    fd = os.open(where / "pending.bin", os.O_WRONLY | os.O_CREAT, 0o644)
    os.write(fd, data)
    os.close(fd)
    world.umount(where)
    info = objects(world, "pending.bin")["pending.bin"]
    assert info.size == len(data)
    shutil.rmtree(world.tmp / "drain", ignore_errors=True)


# -- streaming and crash recovery ---------------------------------------------------------------


def parts_in_progress(world: World, key: str) -> int:
    """Parts the server holds for an upload of ``key`` that is not complete yet (asked of
    the provider itself: S3 ListMultipartUploads/ListParts, Azure's uncommitted blocks)."""

    async def s3(store: Any) -> int:
        r = await store.client.call("list", "list_multipart_uploads", Bucket=store.bucket_name)
        count = 0
        for upload in r.get("Uploads", []):
            if upload["Key"] == key:
                parts = await store.client.call(
                    "parts",
                    "list_parts",
                    Bucket=store.bucket_name,
                    Key=key,
                    UploadId=upload["UploadId"],
                )
                count += len(parts.get("Parts", []))
        return count

    async def azure(store: Any) -> int:
        from azure.core.exceptions import ResourceNotFoundError

        try:
            _, uncommitted = await store._blob(key).get_block_list("uncommitted")
        except ResourceNotFoundError:
            return 0
        return len(uncommitted)

    result: int = world.sdk(s3 if world.kind == "s3" else azure)
    return result


def read_object(world: World, key: str) -> bytes:
    async def fn(store: Any) -> bytes:
        info = await store.head(key)
        data: bytes = await store.read_range(key, 0, info.size) if info.size else b""
        return data

    result: bytes = world.sdk(fn)
    return result


def stored_parts(world: World, key: str) -> list[int]:
    """The parts the server holds of the upload a staging file of ``key`` records."""
    root = world.tmp / "cache" / "blobfs" / "staging"
    records = [
        side.upload
        for path in root.glob("*/*.key")
        if (side := Sidecar.load(path)) is not None and side.key == key and side.upload
    ]
    if not records:
        return []

    async def parts(store: Any) -> list[int]:
        upload = await store.resume_multipart(key, records[0].upload_id)
        try:
            return sorted(await upload.stored_parts())
        except ResourceNotFound:
            return []

    found: list[int] = world.sdk(parts)
    return found


def eventually(condition: Any, what: str, limit: float = 120) -> None:
    """Wait for ``condition()`` (an event in another process; the limit only turns a hang
    into a failure)."""
    deadline = time.monotonic() + limit
    while not condition():
        assert time.monotonic() < deadline, what
        time.sleep(0.2)


def test_large_sequential_write_uploads_parts_before_close(world: World, mnt: Path) -> None:
    data = random.Random(21).randbytes(40 * MiB + 1234)
    fd = os.open(mnt / "streamed.bin", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        for start in range(0, len(data), MiB):
            os.write(fd, data[start : start + MiB])
        # The file is still open and was never flushed: its parts are on the server
        # already, and the object is not visible yet.
        eventually(lambda: parts_in_progress(world, "streamed.bin") >= 3, "parts streamed")
        assert "streamed.bin" not in objects(world, "streamed.bin")
    finally:
        os.close(fd)
    assert read_object(world, "streamed.bin") == data
    assert parts_in_progress(world, "streamed.bin") == 0
    assert (mnt / "streamed.bin").stat().st_size == len(data)
    with open(mnt / "streamed.bin", "rb") as f:
        assert f.read() == data


def test_killed_daemon_data_is_uploaded_by_the_next_mount(world: World) -> None:
    base = random.Random(22).randbytes(20 * MiB)
    world.put_many({"crash/base.bin": base, "crash/conflict.bin": b"old"})
    where = world.mount(f"blob:{world.bucket}", world.tmp / "crash")
    new_data = random.Random(23).randbytes(12 * MiB + 7)
    fds = [
        os.open(where / "crash" / "new.bin", os.O_WRONLY | os.O_CREAT, 0o640),
        os.open(where / "crash" / "base.bin", os.O_RDWR),
        os.open(where / "crash" / "conflict.bin", os.O_WRONLY | os.O_TRUNC),
    ]
    os.write(fds[0], new_data)  # a new file, partly streamed already
    os.pwrite(fds[1], b"CHANGED", 1000)  # in place: most of the original never fetched
    os.write(fds[2], b"mine")
    # The stream's first part (8 MiB) is on the server in the upload its sidecar records.
    eventually(lambda: stored_parts(world, "crash/new.bin") == [1], "part 1 stored", 60)
    pid = mountpoint.read_pid(where)
    assert pid is not None
    os.kill(pid, signal.SIGKILL)
    eventually(lambda: not mountpoint._alive(pid), "daemon gone")
    for fd in fds:
        try:
            os.close(fd)
        except OSError:
            pass  # the connection is gone: nothing was (or could be) stored
    world.umount(where)
    assert "crash/new.bin" not in objects(world, "crash/")
    # meanwhile someone else replaces conflict.bin: that must win
    world.put_many({"crash/conflict.bin": b"newer, from elsewhere"})
    world.mount(f"blob:{world.bucket}", where)
    try:
        assert read_object(world, "crash/new.bin") == new_data
        assert read_object(world, "crash/base.bin") == base[:1000] + b"CHANGED" + base[1007:]
        assert read_object(world, "crash/conflict.bin") == b"newer, from elsewhere"
        assert (where / "crash" / "new.bin").stat().st_mode & 0o777 == 0o640
        # the conflicting data is kept, and the log says where
        # (Other mounts' spare staging files, emptied for reuse, are no leftovers.)
        root = world.tmp / "cache" / "blobfs" / "staging"
        staging = [p for source in root.iterdir() for p, _ in writeback.leftovers(source)]
        assert [p.read_bytes() for p in staging] == [b"mine"]
        log = (world.tmp / "crash.log").read_text()
        assert "crash/conflict.bin" in log and str(staging[0]) in log
        # new.bin's upload was taken up: only the tail after part 1 was sent again.
        assert f"({len(new_data) - 8 * MiB} bytes sent, {8 * MiB} held by its upload" in log
    finally:
        world.umount(where)
    for p in staging:
        p.unlink()
        p.with_suffix(".key").unlink()


def test_kernel_writeback_cache_keeps_the_durability_contract(world: World) -> None:
    """``-o writeback_cache`` (off by default): what close() returns for is in the bucket,
    appends and partial page writes included, with the right size and mtime."""
    where = world.mount(f"blob:{world.bucket}", world.tmp / "wbc", FAST + ",writeback_cache")
    try:
        data = bytearray(random.Random(31).randbytes(10 * MiB + 100))
        with open(where / "wbc.bin", "wb") as f:
            for start in range(0, len(data), 128 * 1024):
                f.write(data[start : start + 128 * 1024])
        assert read_object(world, "wbc.bin") == data
        with open(where / "wbc.bin", "r+b") as f:  # a write inside a page: read-modify-write
            f.seek(5000)
            f.write(b"patch")
        data[5000:5005] = b"patch"
        with open(where / "wbc.bin", "ab") as f:
            f.write(b"tail")
        data += b"tail"
        assert read_object(world, "wbc.bin") == data
        st = (where / "wbc.bin").stat()
        assert st.st_size == len(data) and abs(st.st_mtime - time.time()) < 60
        info = objects(world, "wbc.bin")["wbc.bin"]
        assert parse_time(info.metadata["mtime"]) // 10**9 == int(st.st_mtime)
    finally:
        world.umount(where)
