"""The s3fs-compatible object metadata: what it says about a node, and what to store.

s3fs keeps a file's attributes in the object's user metadata (S3 ``x-amz-meta-*``, Azure
blob metadata): ``mode`` (the full ``st_mode``, in decimal, so it also tells a symbolic
link from a file), ``uid``, ``gid`` and ``mtime`` (whole seconds).  It is read when an
object is looked up with a HEAD, and written with every upload, copy and directory marker.
This module is the codec only; which values win over the mount's options is
:mod:`blobfs.fs.attributes`'s.
"""

from __future__ import annotations

import logging
import stat
from collections.abc import Mapping
from datetime import datetime

from blobfs.fs.inodes import Node

log = logging.getLogger(__name__)


def to_ns(when: datetime | None, default_ns: int) -> int:
    """A store's modification time in nanoseconds (``default_ns`` when it gave none)."""
    if when is None:
        return default_ns
    return int(when.timestamp() * 1_000_000_000)


def _int(meta: Mapping[str, str], name: str) -> int | None:
    raw = meta.get(name)
    if raw is None:
        return None
    try:
        return int(raw.strip())
    except ValueError:
        log.debug("ignoring unparsable %s metadata %r", name, raw)
        return None


def metadata_mode(meta: Mapping[str, str]) -> int | None:
    """Permission bits from s3fs's ``mode`` (the full st_mode, in decimal)."""
    mode = _int(meta, "mode")
    return None if mode is None else mode & 0o7777


def metadata_owner(meta: Mapping[str, str]) -> tuple[int | None, int | None]:
    return _int(meta, "uid"), _int(meta, "gid")


def metadata_mtime_ns(meta: Mapping[str, str]) -> int | None:
    """``mtime`` in seconds (s3fs writes an integer; a fraction is accepted)."""
    raw = meta.get("mtime")
    if raw is None:
        return None
    try:
        return int(float(raw.strip()) * 1_000_000_000)
    except ValueError:
        log.debug("ignoring unparsable mtime metadata %r", raw)
        return None


def metadata_is_symlink(meta: Mapping[str, str]) -> bool:
    """Whether s3fs's ``mode`` says the object is a symbolic link."""
    mode = _int(meta, "mode")
    return mode is not None and (mode & 0o170000) == 0o120000


def s3fs_metadata(mode: int, uid: int, gid: int, mtime_ns: int) -> dict[str, str]:
    """The metadata s3fs writes: full ``st_mode``, owner, and whole-second ``mtime``."""
    return {
        "mode": str(mode),
        "uid": str(uid),
        "gid": str(gid),
        "mtime": str(mtime_ns // 1_000_000_000),
    }


def node_metadata(node: Node) -> dict[str, str]:
    """The metadata to store for ``node`` as its attributes are now."""
    if node.is_dir:
        kind = stat.S_IFDIR
    elif node.symlink:
        kind = stat.S_IFLNK
    else:
        kind = stat.S_IFREG
    return s3fs_metadata(kind | node.mode, node.uid, node.gid, node.mtime_ns)
