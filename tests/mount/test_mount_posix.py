"""POSIX completeness on real mounts (SeaweedFS and Azurite): extended attributes, special
files, the three times, names the store cannot hold, fallocate.

Extended attributes are checked against s3fs-fuse's own encoding, re-stated here from its
source (``build_xattrs``/``parse_xattrs`` in ``string_util.cpp``, ``urlEncodePath``):
metadata built the way s3fs writes it is read through the mount, and what the mount writes
is decoded the way s3fs reads it.  The times are checked against the same operations on a
local directory (ext4 or tmpfs, ``relatime``), operation by operation.
"""

from __future__ import annotations

import base64
import ctypes
import errno
import itertools
import os
import socket
import stat
import struct
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest

from blobfs.mount import mountpoint
from tests.mount.world import FAST, MiB, World, new_world, objects, payload, unmount_all

pytestmark = pytest.mark.mount

T = TypeVar("T")

if not os.path.exists("/dev/fuse") or os.geteuid() != 0:
    pytest.skip("needs /dev/fuse and root", allow_module_level=True)

#: Sizes of an attribute value that cannot fit in one object's metadata (S3 2 KiB, Azure
#: 8 KiB), and of two that fit one at a time but not together.
TOO_BIG = {"s3": 2000, "azure": 7000}
HALF = {"s3": 800, "azure": 3500}
#: A valid POSIX access ACL in its xattr form (version 2; user::rw-, group::r--, other::r--).
ACL = struct.pack("<I", 2) + b"".join(
    struct.pack("<HHI", tag, perm, 0xFFFFFFFF) for tag, perm in ((1, 6), (4, 4), (0x20, 4))
)


@pytest.fixture(scope="module", params=["s3", "azure"])
def world(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[World]:
    w = new_world(request, tmp_path_factory, "posix")
    yield w
    unmount_all(w)


@pytest.fixture(scope="module")
def mnt(world: World) -> Iterator[Path]:
    where = world.mount(f"blob:{world.bucket}", world.tmp / "mnt")
    yield where
    world.umount(where)


def fails(code: int, fn: Callable[..., Any], *args: Any, **kw: Any) -> None:
    with pytest.raises(OSError) as info:
        fn(*args, **kw)
    assert info.value.errno == code, (fn, args, info.value)


def until(fn: Callable[[], T], done: Callable[[T], bool], timeout: float = 10) -> T:
    """``fn()`` once ``done`` says its result is what the TTLs will make it."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            result = fn()
            if done(result):
                return result
        except FileNotFoundError:
            pass
        assert time.monotonic() < deadline, "not within the mount's TTLs"
        time.sleep(0.05)


def appears(path: Path) -> os.stat_result:
    """``stat`` of a key written behind the mount's back, once the cached listing that
    does not hold it has expired (``dir_ttl``)."""
    return until(lambda: os.stat(path), lambda st: True)


# -- s3fs's xattr encoding, as its source writes and reads it ----------------------------------


def s3fs_url_encode_path(raw: bytes) -> str:
    """s3fs's ``urlEncodePath``: letters, digits and ``.-_~/`` kept, other bytes ``%XX``."""
    keep = b".-_~/"
    return "".join(
        chr(c) if chr(c).isascii() and (chr(c).isalnum() or c in keep) else f"%{c:02X}" for c in raw
    )


def s3fs_build_xattrs(attrs: dict[bytes, bytes]) -> str:
    """s3fs's ``build_xattrs``: ``{"name":"base64",...}`` in name order, URL-encoded."""
    body = b",".join(
        b'"' + name + b'":"' + base64.b64encode(attrs[name]) + b'"' for name in sorted(attrs)
    )
    return s3fs_url_encode_path(b"{" + body + b"}")


def s3fs_parse_xattrs(value: str) -> dict[bytes, bytes]:
    """s3fs's ``parse_xattrs``: URL-decode, split the braces' content at commas, each pair at
    its last colon, quotes off, base64-decode."""
    raw = bytearray()
    i = 0
    while i < len(value):
        if value[i] == "%":
            raw.append(int(value[i + 1 : i + 3], 16))
            i += 3
        else:
            raw += value[i].encode()
            i += 1
    inner = bytes(raw)[raw.index(b"{") + 1 : raw.rindex(b"}")]
    out = {}
    for pair in inner.split(b","):
        name, _, b64 = pair.rpartition(b":")
        out[name.strip(b'"')] = base64.b64decode(b64.strip(b'"'))
    return out


# -- extended attributes -----------------------------------------------------------------------


def test_xattrs_round_trip_remount_and_s3fs_interop(world: World, mnt: Path) -> None:
    base = mnt / "xa"
    base.mkdir()
    f = base / "f"
    f.write_bytes(b"data")
    subprocess.run(["setfattr", "-n", "user.color", "-v", "blue", str(f)], check=True)
    os.setxattr(f, "user.bin", bytes(range(256)))
    os.setxattr(f, "user.empty", b"")
    os.setxattr(base, "user.dir", b"on a directory")
    dump = subprocess.run(["getfattr", "-d", str(f)], capture_output=True, check=True).stdout
    assert b'user.color="blue"' in dump
    assert sorted(os.listxattr(f)) == ["user.bin", "user.color", "user.empty"]
    # What is stored decodes as s3fs decodes it, and is what s3fs would have written.
    stored = objects(world, "xa/f")["xa/f"].metadata
    expected = {b"user.bin": bytes(range(256)), b"user.color": b"blue", b"user.empty": b""}
    assert s3fs_parse_xattrs(stored["xattr"]) == expected
    assert stored["xattr"] == s3fs_build_xattrs(expected)
    os.removexattr(f, "user.empty")
    # Set on a file open for writing before it is written (the copy that stores it gives
    # the object a new ETag on Azure: the data must not be read by the old one after).
    with open(f, "r+b") as fh:
        os.setxattr(fh.fileno(), "user.open", b"1")
        fh.seek(4)
        fh.write(b"+more")
    assert f.read_bytes() == b"data+more" and os.getxattr(f, "user.open") == b"1"
    os.removexattr(f, "user.open")
    fails(errno.ENODATA, os.getxattr, f, "user.empty")
    fails(errno.ENODATA, os.removexattr, f, "user.nothing")
    # XATTR_CREATE / XATTR_REPLACE
    fails(errno.EEXIST, os.setxattr, f, "user.color", b"x", os.XATTR_CREATE)
    fails(errno.ENODATA, os.setxattr, f, "user.new", b"x", os.XATTR_REPLACE)

    # An object s3fs wrote: its metadata built the way s3fs builds it.
    s3fs_meta = {
        "mode": str(stat.S_IFREG | 0o640),
        "uid": "1001",
        "gid": "1002",
        "mtime": "1600000000.123456789",
        "ctime": "1600000100",
        "atime": "1600000200.5",
        "xattr": s3fs_build_xattrs({b"user.origin": b"s3fs", b"user.mime_type": b"text/x"}),
    }
    world.put_many({"xa/from-s3fs": b"s3fs data"}, metadata=s3fs_meta)
    g = base / "from-s3fs"
    appears(g)
    # Found in a listing, which carries no metadata: asking for an attribute reads it all
    # (a HEAD), and stat shows it once the kernel's cached attributes expire (attr_ttl).
    assert os.getxattr(g, "user.origin") == b"s3fs"
    st = until(lambda: os.stat(g), lambda st: st.st_uid == 1001)
    assert (stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid) == (0o640, 1001, 1002)
    assert (st.st_mtime_ns, st.st_ctime_ns) == (1600000000123456789, 1600000100 * 10**9)
    assert st.st_atime_ns == 1600000200 * 10**9 + 500_000_000
    assert sorted(os.listxattr(g)) == ["user.mime_type", "user.origin"]

    # A new mount reads them all from the bucket.
    fresh = world.mount(f"blob:{world.bucket}", world.tmp / "fresh-xa")
    try:
        assert os.getxattr(fresh / "xa" / "f", "user.bin") == bytes(range(256))
        assert os.getxattr(fresh / "xa" / "from-s3fs", "user.mime_type") == b"text/x"
        if world.kind == "azure":  # SeaweedFS drops the metadata of `dir/` markers
            assert os.getxattr(fresh / "xa", "user.dir") == b"on a directory"
    finally:
        world.umount(fresh)


def test_xattr_errors_and_namespaces(world: World, mnt: Path) -> None:
    base = mnt / "xe"
    base.mkdir()
    f = base / "f"
    f.write_bytes(b"x")
    fails(errno.E2BIG, os.setxattr, f, "user.big", b"v" * TOO_BIG[world.kind])
    os.setxattr(f, "user.one", b"v" * HALF[world.kind])
    before = objects(world, "xe/f")["xe/f"].metadata
    fails(errno.ENOSPC, os.setxattr, f, "user.two", b"v" * HALF[world.kind])
    assert objects(world, "xe/f")["xe/f"].metadata == before
    assert os.listxattr(f) == ["user.one"]
    # Security labels, capabilities and ACLs are not kept, and the mount says so.
    fails(errno.EOPNOTSUPP, os.setxattr, f, "security.test", b"x")
    fails(errno.EOPNOTSUPP, os.setxattr, f, "system.posix_acl_access", ACL)
    fails(errno.EOPNOTSUPP, os.getxattr, f, "security.selinux")
    fails(errno.EOPNOTSUPP, os.getxattr, f, "security.capability")
    fails(errno.EOPNOTSUPP, os.getxattr, f, "system.posix_acl_access")
    proc = subprocess.run(["ls", "-l", str(base)], capture_output=True, text=True, check=True)
    assert proc.stdout.splitlines()[1].startswith("-rw-r--r-- ")  # no ACL "+"
    # The kernel keeps user attributes to files and directories.
    os.symlink("f", base / "link")
    fails(errno.EPERM, os.setxattr, base / "link", "user.a", b"1", 0, follow_symlinks=False)


def tcp_bytes(pid: int) -> dict[str, int]:
    """Bytes sent plus received so far on each TCP connection of process ``pid``, by its
    addresses (``ss``: the kernel's own counters, which the ``send``/``recv`` system calls
    the store clients use do not add to ``/proc/PID/io``)."""
    out: dict[str, int] = {}
    lines = subprocess.run(
        ["ss", "-tinpH"], capture_output=True, text=True, check=True
    ).stdout.splitlines()
    for head, detail in itertools.pairwise(lines):
        if f"pid={pid}," not in head:
            continue
        fields = dict(f.split(":", 1) for f in detail.split() if f.startswith("bytes_"))
        key = " ".join(head.split()[3:5])
        out[key] = int(fields.get("bytes_sent", 0)) + int(fields.get("bytes_received", 0))
    return out


def test_setting_an_attribute_on_a_large_file_sends_no_data(world: World, mnt: Path) -> None:
    size = 32 * MiB
    data = payload(size, 7)
    world.put_many({"xl/big": data})
    big = mnt / "xl" / "big"
    assert big.stat().st_size == size
    pid = mountpoint.read_pid(mnt)
    assert pid is not None

    def file_io() -> int:  # files and /dev/fuse
        fields = dict(line.split(": ") for line in Path(f"/proc/{pid}/io").read_text().splitlines())
        return int(fields["rchar"]) + int(fields["wchar"])

    before, io_before = tcp_bytes(pid), file_io()
    os.setxattr(big, "user.checksum", b"sha256:" + b"0" * 64)
    after, io_after = tcp_bytes(pid), file_io()
    assert before and after, "no connections to the store seen"
    sent = sum(n - before.get(conn, 0) for conn, n in after.items())
    # A few requests' headers: a HEAD and a copy (S3 CopyObject, Azure Copy Blob).
    assert 0 < sent < 64 * 1024, (before, after)
    assert io_after - io_before < 64 * 1024
    info = objects(world, "xl/big")["xl/big"]
    assert info.size == size and "xattr" in info.metadata
    with open(big, "rb") as fh:
        fh.seek(size - 4096)
        assert fh.read() == data[-4096:]


def test_noxattr_mount_has_none(world: World) -> None:
    where = world.mount(f"blob:{world.bucket}", world.tmp / "noxattr", FAST + ",noxattr")
    try:
        f = where / "noxattr-file"
        f.write_bytes(b"written without the kernel asking for security.capability")
        fails(errno.EOPNOTSUPP, os.setxattr, f, "user.a", b"1")
        fails(errno.EOPNOTSUPP, os.getxattr, f, "user.a")
        assert f.read_bytes().startswith(b"written")
    finally:
        world.umount(where)


# -- special files -----------------------------------------------------------------------------


def test_fifos_sockets_and_device_nodes(world: World, mnt: Path) -> None:
    base = mnt / "sp"
    base.mkdir()
    os.mkfifo(base / "fifo", 0o640)
    os.mknod(base / "chr", stat.S_IFCHR | 0o600, os.makedev(1, 3))
    os.mknod(base / "blk", stat.S_IFBLK | 0o600, os.makedev(7, 0))
    cwd = os.getcwd()
    os.chdir(base)  # a socket path is at most 108 bytes
    try:
        with socket.socket(socket.AF_UNIX) as sock:
            sock.bind("sock")
    finally:
        os.chdir(cwd)
    os.mknod(base / "plain", stat.S_IFREG | 0o644)
    kinds = {
        "fifo": stat.S_IFIFO,
        "chr": stat.S_IFCHR,
        "blk": stat.S_IFBLK,
        "sock": stat.S_IFSOCK,
        "plain": stat.S_IFREG,
    }

    def check(root: Path) -> None:
        for name, kind in kinds.items():
            st = os.lstat(root / name)
            assert stat.S_IFMT(st.st_mode) == kind and st.st_size == 0, name
        assert os.major(os.lstat(root / "chr").st_rdev) == 1
        assert os.minor(os.lstat(root / "chr").st_rdev) == 3
        assert os.lstat(root / "blk").st_rdev == os.makedev(7, 0)
        letters = {
            line.split()[-1]: line[0]
            for line in subprocess.run(
                ["ls", "-l", str(root)], capture_output=True, text=True, check=True
            ).stdout.splitlines()[1:]
        }
        assert letters == {"fifo": "p", "chr": "c", "blk": "b", "sock": "s", "plain": "-"}

    check(base)
    stored = objects(world, "sp/")
    assert int(stored["sp/fifo"].metadata["mode"]) == stat.S_IFIFO | 0o640
    assert stored["sp/chr"].metadata["rdev"] == str(os.makedev(1, 3))
    # A FIFO works as one: the kernel handles it, the mount only stores the node.
    fd = os.open(base / "fifo", os.O_RDWR)
    try:
        os.write(fd, b"through the pipe")
        assert os.read(fd, 100) == b"through the pipe"
    finally:
        os.close(fd)
    # Rename, chmod, chown and unlink work as on files, keeping the type.
    os.rename(base / "fifo", base / "fifo2")
    os.chmod(base / "fifo2", 0o600)
    os.chown(base / "fifo2", 1234, 1234)
    os.rename(base / "fifo2", base / "fifo")
    st = os.lstat(base / "fifo")
    assert (stat.S_IFMT(st.st_mode), stat.S_IMODE(st.st_mode), st.st_uid) == (
        stat.S_IFIFO,
        0o600,
        1234,
    )
    fresh = world.mount(f"blob:{world.bucket}", world.tmp / "fresh-sp")
    try:
        for name in kinds:  # looked up by name first (a listing carries no metadata)
            os.lstat(fresh / "sp" / name)
        check(fresh / "sp")
    finally:
        world.umount(fresh)
    for name in kinds:
        os.unlink(base / name)
    assert os.listdir(base) == []


# -- fallocate ---------------------------------------------------------------------------------


def test_fallocate(world: World, mnt: Path) -> None:
    path = mnt / "prealloc"
    fd = os.open(path, os.O_CREAT | os.O_RDWR, 0o644)
    try:
        os.write(fd, b"head")
        # The kernel has no fallocate to send (pyfuse3 has no handler): glibc's
        # posix_fallocate writes into each block instead, which works.
        os.posix_fallocate(fd, 0, 3 * MiB + 5)
        assert os.fstat(fd).st_size == 3 * MiB + 5
        # fallocate(2) itself, in any mode, is EOPNOTSUPP.
        libc = ctypes.CDLL(None, use_errno=True)
        for mode in (0, 1, 3):  # plain, KEEP_SIZE, PUNCH_HOLE|KEEP_SIZE
            assert libc.fallocate(fd, mode, ctypes.c_long(0), ctypes.c_long(MiB)) == -1
            assert ctypes.get_errno() == errno.EOPNOTSUPP
    finally:
        os.close(fd)
    data = path.read_bytes()
    assert data[:4] == b"head" and data[4:] == bytes(3 * MiB + 1)
    assert objects(world, "prealloc")["prealloc"].size == 3 * MiB + 5
    proc = subprocess.run(["fallocate", "-l", "1M", str(path)], capture_output=True, text=True)
    assert proc.returncode != 0 and "Operation not supported" in proc.stderr


# -- names the store cannot hold ---------------------------------------------------------------


def test_keys_over_1024_bytes_are_enametoolong(world: World, mnt: Path) -> None:
    deep = mnt / "long" / "/".join(["d" * 200] * 4)  # key "long/d…/d…/d…/d…/" is 809 bytes
    deep.mkdir(parents=True)
    (deep / "f").write_bytes(b"x")
    (mnt / "long" / "short").mkdir()
    (mnt / "long" / "short" / ("x" * 100)).write_bytes(b"y")
    keys = set(objects(world, "long/"))
    name = "n" * 220  # a valid name, whose key would be 1029 bytes
    fails(errno.ENAMETOOLONG, os.open, deep / name, os.O_CREAT | os.O_WRONLY)
    fails(errno.ENAMETOOLONG, os.mkdir, deep / name)
    fails(errno.ENAMETOOLONG, os.symlink, "target", deep / name)
    fails(errno.ENAMETOOLONG, os.mkfifo, deep / name)
    fails(errno.ENAMETOOLONG, os.rename, deep / "f", deep / name)
    # A directory whose files would get keys over the limit under the new name.
    fails(errno.ENAMETOOLONG, os.rename, mnt / "long" / "short", deep / ("s" * 150))
    fails(errno.ENAMETOOLONG, os.open, mnt / ("n" * 256), os.O_CREAT | os.O_WRONLY)
    assert set(objects(world, "long/")) == keys
    assert sorted(os.listdir(deep)) == ["f"]
    (deep / ("n" * 215)).write_bytes(b"at the limit")  # a 1,024-byte key
    assert len(f"long/{'/'.join(['d' * 200] * 4)}/{'n' * 215}".encode()) == 1024


# -- times -------------------------------------------------------------------------------------

#: A time well in the past, which a relatime read moves (atime not later than mtime).
PAST = 1_500_000_000
#: The clock file systems stamp times with (linux/time.h; Python does not name it).
CLOCK_REALTIME_COARSE = 5


def _utimensat(path: Path, atime: int | None, mtime: int | None) -> None:
    """utimensat(2) with ``None`` for UTIME_OMIT."""

    class Timespec(ctypes.Structure):
        _fields_ = [("tv_sec", ctypes.c_long), ("tv_nsec", ctypes.c_long)]

    omit = (1 << 30) - 2
    times = (Timespec * 2)(
        *(Timespec(0, omit) if t is None else Timespec(t, 0) for t in (atime, mtime))
    )
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.utimensat(-100, bytes(path), times, 0) != 0:
        raise OSError(ctypes.get_errno(), "utimensat", str(path))


def _read(path: Path) -> None:
    with open(path, "rb") as fh:
        fh.read()


#: name -> (preparation, operation): each runs in a fresh directory ``row`` holding a file
#: ``f`` (6 bytes), a directory ``e``, and whatever the preparation made; the operation
#: returns the file's path afterwards (``None`` if it is gone).  The file whose times are
#: watched is ``f``, or the one :data:`SUBJECT` names.
OPS: dict[str, tuple[Callable[[Path], None] | None, Callable[[Path], Path | None]]] = {
    "stat": (None, lambda r: (os.stat(r / "f"), r / "f")[1]),
    "read": (None, lambda r: (_read(r / "f"), r / "f")[1]),
    "read again": (lambda r: _read(r / "f"), lambda r: (_read(r / "f"), r / "f")[1]),
    "write": (None, lambda r: (_overwrite(r / "f"), r / "f")[1]),
    "append": (None, lambda r: (_append(r / "f"), r / "f")[1]),
    "truncate": (None, lambda r: (os.truncate(r / "f", 2), r / "f")[1]),
    "open O_TRUNC": (None, lambda r: (open(r / "f", "wb").close(), r / "f")[1]),
    "chmod": (None, lambda r: (os.chmod(r / "f", 0o600), r / "f")[1]),
    "chown": (None, lambda r: (os.chown(r / "f", 1234, 1234), r / "f")[1]),
    "chown -1 -1": (None, lambda r: (os.chown(r / "f", -1, -1), r / "f")[1]),
    "utime": (None, lambda r: (os.utime(r / "f", (PAST + 7, PAST + 7)), r / "f")[1]),
    "utime now": (None, lambda r: (os.utime(r / "f"), r / "f")[1]),
    "touch -a": (None, lambda r: (_utimensat(r / "f", PAST + 9, None), r / "f")[1]),
    "touch -m": (None, lambda r: (_utimensat(r / "f", None, PAST + 9), r / "f")[1]),
    "utime omit both": (None, lambda r: (_utimensat(r / "f", None, None), r / "f")[1]),
    "setxattr": (None, lambda r: (os.setxattr(r / "f", "user.a", b"1"), r / "f")[1]),
    "removexattr": (
        lambda r: os.setxattr(r / "f", "user.a", b"1"),
        lambda r: (os.removexattr(r / "f", "user.a"), r / "f")[1],
    ),
    "rename": (None, lambda r: (os.rename(r / "f", r / "g"), r / "g")[1]),
    "rename into e": (None, lambda r: (os.rename(r / "f", r / "e" / "f"), r / "e" / "f")[1]),
    "rename over": (
        lambda r: (r / "g").write_bytes(b"g"),
        lambda r: (os.rename(r / "f", r / "g"), r / "g")[1],
    ),
    "unlink": (None, lambda r: (os.unlink(r / "f"), None)[1]),
    "create": (None, lambda r: ((r / "new").write_bytes(b""), r / "f")[1]),
    "mkdir": (None, lambda r: (os.mkdir(r / "m"), r / "f")[1]),
    "rmdir": (lambda r: os.mkdir(r / "gone"), lambda r: (os.rmdir(r / "gone"), r / "f")[1]),
    "symlink": (None, lambda r: (os.symlink("f", r / "s"), r / "f")[1]),
    "mkfifo": (None, lambda r: (os.mkfifo(r / "p"), r / "f")[1]),
    "readlink": (
        lambda r: os.symlink("f", r / "s"),
        lambda r: (os.readlink(r / "s"), r / "s")[1],
    ),
    "readdir": (None, lambda r: (os.listdir(r), r / "f")[1]),
    "readdir of e": (None, lambda r: (os.listdir(r / "e"), r / "f")[1]),
}


SUBJECT = {"readlink": "s"}


def _overwrite(path: Path) -> None:
    with open(path, "r+b") as fh:
        fh.write(b"H")


def _append(path: Path) -> None:
    with open(path, "ab") as fh:
        fh.write(b"more")


def _times(path: Path | None) -> tuple[int, int, int] | None:
    if path is None:
        return None
    st = os.lstat(path)
    return st.st_atime_ns, st.st_mtime_ns, st.st_ctime_ns


def _changes(before: dict[str, Any], after: dict[str, Any]) -> set[str]:
    out = set()
    for what in before:
        if before[what] is None or after[what] is None:
            continue
        for i, letter in enumerate("amc"):
            if after[what][i] != before[what][i]:
                out.add(f"{what}.{letter}")
    return out


def test_times_each_operation_changes_match_a_local_directory(world: World, mnt: Path) -> None:
    local = world.tmp / "times-local"
    roots = {"local": local, "mount": mnt / "times"}
    for root in roots.values():
        root.mkdir()
        for i, (prep, _) in enumerate(OPS.values()):
            row = root / f"row{i}"
            row.mkdir()
            (row / "e").mkdir()
            (row / "f").write_bytes(b"hello\n")
            for path in (row / "f", row / "e", row):
                os.utime(path, (PAST, PAST))
            if prep is not None:
                prep(row)
    # Every time set above is now strictly older than any the operations can give.
    deadline = time.monotonic() + 5
    newest = max(
        os.stat(root / f"row{i}" / name).st_ctime_ns
        for root in roots.values()
        for i in range(len(OPS))
        for name in ("", "f", "e")
    )
    while time.clock_gettime_ns(CLOCK_REALTIME_COARSE) <= newest:
        assert time.monotonic() < deadline
        time.sleep(0.001)
    differ = []
    for i, (name, (_, op)) in enumerate(OPS.items()):
        changes = {}
        for where, root in roots.items():
            row = root / f"row{i}"
            subject = row / SUBJECT.get(name, "f")
            before = {"file": _times(subject), "dir": _times(row), "e": _times(row / "e")}
            path = op(row)
            after = {"file": _times(path), "dir": _times(row), "e": _times(row / "e")}
            changes[where] = _changes(before, after)
        if changes["local"] != changes["mount"]:
            differ.append(
                f"{name}: local {sorted(changes['local'])}, mount {sorted(changes['mount'])}"
            )
    assert not differ, "\n".join(differ)
