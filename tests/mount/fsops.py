"""A model of file-system operations, for property tests that compare a mount with a local
directory.

An :class:`Op` is one system call (or one open/write/close) on a path relative to a root
directory.  :func:`apply` runs it under any root and returns its outcome (``None`` or the
errno), so the same operation can be applied to a mount and to a local reference directory
and the outcomes compared.  :func:`ops` is the hypothesis strategy of operation lists over a
small name alphabet, so that names collide (a write to a name that was just made a
directory, a rename onto an existing file, a rmdir of a non-empty directory …).
:func:`snapshot` describes a tree by names, kinds, bytes, permission bits, extended
attributes and the times operations set.
"""

from __future__ import annotations

import ctypes
import errno
import hashlib
import os
import random
import stat
from dataclasses import dataclass
from pathlib import Path

from hypothesis import strategies as st

MiB = 1024 * 1024
#: Paths of the alphabet: three top-level names, two below each, one below those.
NAMES = ("a", "b", "c")
PATHS = (
    *NAMES,
    *(f"{x}/{y}" for x in NAMES for y in ("a", "b")),
    *(f"{x}/{y}/a" for x in NAMES for y in ("a", "b")),
)
#: Offsets and sizes: edges of a 4 KiB page, a few tens of KiB, and one past the single-PUT
#: limit (8 MiB), so a file sometimes goes up as a multipart upload.
OFFSETS = (0, 1, 4095, 4096, 10_000, 70_000, 8 * MiB + 1)
SIZES = (0, 1, 100, 4096, 5000, 70_000)
FILE_MODES = (0o600, 0o640, 0o644, 0o755)
DIR_MODES = (0o700, 0o750, 0o755)
#: Fixed modification times (well in the past, so that they tell themselves apart from the
#: times writes set).
TIMES = (1_500_000_000, 1_600_000_000)
#: Symlink targets, relative to the link's directory; "nowhere" dangles.
TARGETS = ("a", "b", "a/b", "nowhere")
#: Extended attribute names; their values come from the operation's seed.
XATTRS = ("user.a", "user.b")
RENAME_NOREPLACE = 1
_AT_FDCWD = -100
_UTIME_OMIT = (1 << 30) - 2


@dataclass(frozen=True)
class Op:
    """One operation.  ``kind`` names it; the other fields are its arguments."""

    kind: str
    path: str
    other: str = ""
    offset: int = 0
    size: int = 0
    mode: int = 0
    seed: int = 0

    def __repr__(self) -> str:
        args = [repr(self.path)]
        if self.other:
            args.append(repr(self.other))
        if self.kind in ("write",):
            args.append(f"offset={self.offset}")
        if self.kind in ("write", "overwrite", "append", "truncate"):
            args.append(f"size={self.size}")
        if self.kind in ("mkdir", "chmod", "mkfifo"):
            args.append(f"mode={self.mode:#o}")
        if self.kind in ("utime", "touch_a", "touch_m"):
            args.append(f"t={self.offset}")
        if self.kind == "setxattr":
            args.append(f"size={self.size}")
        return f"{self.kind}({', '.join(args)})"


def data_for(op: Op) -> bytes:
    return random.Random(op.seed).randbytes(op.size)


def _renameat2(src: Path, dst: Path, flags: int) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.renameat2(_AT_FDCWD, bytes(src), _AT_FDCWD, bytes(dst), flags) != 0:
        code = ctypes.get_errno()
        raise OSError(code, os.strerror(code), str(src))


class _Timespec(ctypes.Structure):
    _fields_ = [("tv_sec", ctypes.c_long), ("tv_nsec", ctypes.c_long)]


def _utimensat(path: Path, atime: int | None, mtime: int | None) -> None:
    """utimensat(2), ``None`` being UTIME_OMIT (what ``touch -a`` and ``touch -m`` do)."""
    times = (_Timespec * 2)(
        *(_Timespec(0, _UTIME_OMIT) if t is None else _Timespec(t, 0) for t in (atime, mtime))
    )
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.utimensat(_AT_FDCWD, bytes(path), times, 0) != 0:
        code = ctypes.get_errno()
        raise OSError(code, os.strerror(code), str(path))


def _write(path: Path, flags: int, offset: int | None, data: bytes, mode: int = 0o644) -> None:
    # O_NONBLOCK: opening a FIFO for writing must fail (ENXIO) rather than wait for a reader.
    fd = os.open(path, flags | os.O_WRONLY | os.O_NONBLOCK, mode)
    try:
        if offset is None:  # O_APPEND: the kernel picks the offset
            os.write(fd, data)
        else:
            os.pwrite(fd, data, offset)
    finally:
        os.close(fd)  # its error (a failed upload) is the outcome of the operation


def apply(root: Path, op: Op) -> int | None:
    """Run ``op`` under ``root``; None on success, else the errno it failed with."""
    path = root / op.path
    other = root / op.other
    try:
        match op.kind:
            case "write":
                _write(path, os.O_CREAT, op.offset, data_for(op))
            case "overwrite":
                _write(path, os.O_CREAT | os.O_TRUNC, 0, data_for(op))
            case "append":
                _write(path, os.O_APPEND, None, data_for(op))
            case "truncate":
                os.truncate(path, op.size)
            case "mkdir":
                os.mkdir(path, op.mode)
            case "rmdir":
                os.rmdir(path)
            case "unlink":
                os.unlink(path)
            case "rename":
                os.rename(path, other)
            case "rename_noreplace":
                _renameat2(path, other, RENAME_NOREPLACE)
            case "chmod":
                os.chmod(path, op.mode)
            case "utime":
                os.utime(path, (op.offset, op.offset))
            case "touch_a":
                _utimensat(path, op.offset, None)
            case "touch_m":
                _utimensat(path, None, op.offset)
            case "symlink":
                os.symlink(op.other, path)
            case "mkfifo":
                os.mkfifo(path, op.mode)
            case "setxattr":
                os.setxattr(path, op.other, data_for(op), follow_symlinks=False)
            case "removexattr":
                os.removexattr(path, op.other, follow_symlinks=False)
            case _:
                raise ValueError(f"unknown operation {op.kind!r}")
    except OSError as e:
        return e.errno
    return None


def describe(code: int | None) -> str:
    return "ok" if code is None else errno.errorcode.get(code, str(code))


# -- the strategy ------------------------------------------------------------------------------

_path = st.sampled_from(PATHS)
_seed = st.integers(0, 2**16)


_rename = st.builds(
    Op, kind=st.sampled_from(["rename", "rename_noreplace"]), path=_path, other=_path
)


def _op() -> st.SearchStrategy[Op]:
    return st.one_of(
        st.builds(
            Op,
            kind=st.just("write"),
            path=_path,
            offset=st.sampled_from(OFFSETS),
            size=st.sampled_from(SIZES),
            seed=_seed,
        ),
        st.builds(
            Op, kind=st.just("overwrite"), path=_path, size=st.sampled_from(SIZES), seed=_seed
        ),
        st.builds(Op, kind=st.just("append"), path=_path, size=st.sampled_from(SIZES), seed=_seed),
        st.builds(Op, kind=st.just("truncate"), path=_path, size=st.sampled_from(OFFSETS)),
        st.builds(Op, kind=st.just("mkdir"), path=_path, mode=st.sampled_from(DIR_MODES)),
        st.builds(Op, kind=st.just("rmdir"), path=_path),
        st.builds(Op, kind=st.just("unlink"), path=_path),
        # Thrice: a rename needs an existing source, so most draws fail.
        *[_rename] * 3,
        st.builds(
            Op, kind=st.just("chmod"), path=_path, mode=st.sampled_from(FILE_MODES + DIR_MODES)
        ),
        st.builds(Op, kind=st.just("utime"), path=_path, offset=st.sampled_from(TIMES)),
        st.builds(
            Op,
            kind=st.sampled_from(["touch_a", "touch_m"]),
            path=_path,
            offset=st.sampled_from(TIMES),
        ),
        st.builds(Op, kind=st.just("symlink"), path=_path, other=st.sampled_from(TARGETS)),
        st.builds(Op, kind=st.just("mkfifo"), path=_path, mode=st.sampled_from(FILE_MODES)),
        # Twice: attributes are set on what exists, often enough to be removed again.
        *[
            st.builds(
                Op,
                kind=st.just("setxattr"),
                path=_path,
                other=st.sampled_from(XATTRS),
                size=st.sampled_from((0, 1, 100)),
                seed=_seed,
            )
        ]
        * 2,
        # Mostly where SETUP set attributes, so that some removals find one.
        st.builds(
            Op,
            kind=st.just("removexattr"),
            path=st.sampled_from(("c", "a/b", "a") * 3 + PATHS),
            other=st.sampled_from(XATTRS),
        ),
    )


#: Where every sequence starts, so that most operations find something to act on.
SETUP = (
    Op("mkdir", "a", mode=0o755),
    Op("mkdir", "a/a", mode=0o755),
    Op("mkdir", "b", mode=0o750),
    Op("mkdir", "b/b", mode=0o755),
    Op("write", "c", size=100, seed=1),
    Op("write", "a/b", size=5000, seed=2),
    Op("write", "b/a", size=70_000, seed=3),
    Op("write", "a/a/a", size=1, seed=4),
    *(Op("setxattr", path, name, size=10, seed=5) for path in ("c", "a/b", "a") for name in XATTRS),
    Op("mkfifo", "b/b/a", mode=0o640),
)


def ops(min_size: int = 15, max_size: int = 40) -> st.SearchStrategy[list[Op]]:
    """Operation lists: :data:`SETUP`, then random operations."""
    return st.lists(_op(), min_size=min_size, max_size=max_size).map(lambda ops: [*SETUP, *ops])


# -- comparing trees ---------------------------------------------------------------------------

Entry = tuple[str, str | int, tuple[int | None, int | None]]


def _xattrs(path: Path) -> str:
    names = sorted(n for n in os.listxattr(path, follow_symlinks=False) if n.startswith("user."))
    digests = (hashlib.sha256(os.getxattr(path, n, follow_symlinks=False)) for n in names)
    return " ".join(f"{n}={d.hexdigest()[:8]}" for n, d in zip(names, digests, strict=True))


def _digest(path: Path) -> str:
    # O_NOATIME: reading the tree to compare it must not move the times it compares.
    fd = os.open(path, os.O_RDONLY | os.O_NOATIME)
    try:
        with os.fdopen(fd, "rb", closefd=False) as f:
            return hashlib.sha256(f.read()).hexdigest()[:16]
    finally:
        os.close(fd)


def snapshot(root: Path, *, dir_modes: bool = True) -> dict[str, Entry]:
    """relative path -> (kind, content, (atime, mtime)) of everything under ``root``.

    kind is ``file``/``dir``/``link``/``fifo``; content is the size, SHA-256, permission
    bits and ``user.*`` extended attributes of a file, the target of a link, the permission
    bits of a FIFO, or the permission bits and extended attributes of a directory.  atime
    and mtime are given for files whose times a test set (a time from :data:`TIMES`), since
    the times writes set differ between two trees; a directory's are not compared (a local
    directory's change with its entries; a mount keeps those in memory only, as
    docs/SEMANTICS.md says).  With ``dir_modes=False`` directories' permission bits and
    extended attributes are left out too (SeaweedFS keeps no metadata on ``dir/`` markers).
    """
    out: dict[str, Entry] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in sorted(dirnames + filenames):
            p = Path(dirpath) / name
            rel = str(p.relative_to(root))
            st_ = os.lstat(p)
            times = tuple(int(t) if int(t) in TIMES else None for t in (st_.st_atime, st_.st_mtime))
            mode = oct(stat.S_IMODE(st_.st_mode))
            if stat.S_ISLNK(st_.st_mode):
                out[rel] = ("link", os.readlink(p), (None, None))
            elif stat.S_ISDIR(st_.st_mode):
                out[rel] = ("dir", f"{mode} {_xattrs(p)}" if dir_modes else "", (None, None))
            elif stat.S_ISFIFO(st_.st_mode):
                out[rel] = ("fifo", mode, times)
            else:
                out[rel] = ("file", f"{st_.st_size} {_digest(p)} {mode} {_xattrs(p)}", times)
    return out


def diff(expected: dict[str, Entry], actual: dict[str, Entry]) -> list[str]:
    """Human-readable differences between two snapshots (empty if they are the same)."""
    lines = []
    for rel in sorted(set(expected) | set(actual)):
        a, b = expected.get(rel), actual.get(rel)
        if a != b:
            lines.append(f"  {rel}: local {a}, mount {b}")
    return lines


__all__ = ["MiB", "Op", "apply", "describe", "diff", "ops", "snapshot"]
