"""Settings and small helpers every part of a transfer shares.

Sizes and limits, the ``file:`` / blob URL helpers, the ``mtime`` metadata format and the
``update`` rule that compares a source with its copy.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime
from pathlib import Path

from yarl import URL

from sdk.progress import (
    AbstractRecursiveFileProgress,
    StorageProgressComplete,
    StorageProgressEnterDir,
    StorageProgressFail,
    StorageProgressLeaveDir,
    StorageProgressStart,
    StorageProgressStep,
)
from sdk.providers.base import BlobStore, ObjectInfo
from sdk.types import Bucket

#: Turns a blob URI into its bucket, an open store on it, and the key inside it.
Resolver = Callable[[URL], Awaitable[tuple[Bucket, BlobStore, str]]]

#: Size of multipart parts and ranged reads, and of local reads for uploads.
PART_SIZE = 8 * 1024 * 1024
#: Parts of one file in flight at once...
PART_CONCURRENCY = 8
#: ... and of each of a tree's large files, which move several at a time.
TREE_PART_CONCURRENCY = 4
#: S3 allows 10,000 parts; stay below with some margin by growing the part size.
_MAX_PARTS = 9_000
#: Files of a tree transferred at once (each holds one open local file).
MAX_OPEN_FILES = 10
#: Of those, how many may be multipart at once: bounds a tree's memory to roughly
#: ``LARGE_FILES_AT_ONCE * (TREE_PART_CONCURRENCY + 1) * PART_SIZE`` plus one part per
#: small file.
LARGE_FILES_AT_ONCE = 2
#: Directories listed at once while walking a tree.
WALKERS = 4
#: Modification times closer than this are "the same time" when sizes match; covers file
#: systems with coarse timestamps (FAT: 2 s) and stores that truncate to whole seconds.
TIME_THRESHOLD = 2.0
#: Object metadata entry holding the source file's modification time.
MTIME_KEY = "mtime"

TMP_SUFFIX = ".blobfs-tmp"
PART_SUFFIX = ".blobfs-part"


def check_continue_supported(src: URL, dst: URL) -> None:
    """Raise :class:`ValueError` unless ``continue_`` is possible from ``src`` to ``dst``.

    Only downloads can continue: a blob cannot be appended to.
    """
    if src.scheme == "file" and dst.scheme != "file":
        raise ValueError("continuation is not supported when uploading (blobs cannot be appended)")


def display(url: URL) -> str:
    """``url`` as messages show it: a path for local files."""
    return url.path if url.scheme == "file" else url.human_repr()


def local_path(url: URL) -> Path:
    """The path of a local ``file:`` URL."""
    if url.scheme != "file":
        raise ValueError(f"not a local file URL: {url}")
    if url.host not in (None, "", "localhost"):
        raise ValueError(f"file URLs of other hosts are not supported: {url}")
    return Path(url.path)


def join_url(url: URL, name: str) -> URL:
    """``url`` with ``name`` appended as one more path component."""
    path = url.path.rstrip("/") + "/" + name
    return URL.build(scheme=url.scheme, host=url.host or "", path=path)


def dir_prefix(key: str) -> str:
    """The key prefix of a "directory": ``""`` for the bucket root, else ``key/``."""
    key = key.rstrip("/")
    return key + "/" if key else ""


def format_mtime(ns: int) -> str:
    """The ``mtime`` metadata value: seconds with nanoseconds, as s3fs and rclone write it."""
    sec, frac = divmod(ns, 1_000_000_000)
    return f"{sec}.{frac:09d}"


def _parse_mtime_ns(raw: str) -> int | None:
    sec, _, frac = raw.strip().partition(".")
    if not sec.lstrip("-").isdigit() or (frac and not frac.isdigit()):
        return None
    return int(sec) * 1_000_000_000 + int((frac + "000000000")[:9] or 0)


def remote_mtime_ns(info: ObjectInfo) -> int | None:
    """When the object's content was last modified, by the source's clock if we know it."""
    raw = info.metadata.get(MTIME_KEY)
    if raw is not None:
        ns = _parse_mtime_ns(raw)
        if ns is not None:
            return ns
    return _datetime_ns(info.modified_at)


def _datetime_ns(when: datetime | None) -> int | None:
    return None if when is None else int(when.timestamp() * 1_000_000) * 1000


def up_to_date(src_ns: int | None, src_size: int, dst_ns: int | None, dst_size: int) -> bool:
    """``update``: whether the destination can stay as it is."""
    if src_ns is None or dst_ns is None:
        return False
    diff = (dst_ns - src_ns) / 1e9
    if diff >= TIME_THRESHOLD:  # destination clearly newer
        return True
    # Within the slack the times cannot tell the copies apart; the sizes can.
    return diff > -TIME_THRESHOLD and dst_size == src_size


def part_size_for(size: int) -> int:
    """:data:`PART_SIZE`, grown in whole MiB where a file would need too many parts."""
    needed = -(-size // _MAX_PARTS)
    mib = 1024 * 1024
    return max(PART_SIZE, -(-needed // mib) * mib)


class _NoProgress(AbstractRecursiveFileProgress):
    """Progress events for a caller that passed none."""

    def start(self, data: StorageProgressStart) -> None:
        pass

    def complete(self, data: StorageProgressComplete) -> None:
        pass

    def step(self, data: StorageProgressStep) -> None:
        pass

    def enter(self, data: StorageProgressEnterDir) -> None:
        pass

    def leave(self, data: StorageProgressLeaveDir) -> None:
        pass

    def fail(self, data: StorageProgressFail) -> None:
        pass


NO_PROGRESS = _NoProgress()
