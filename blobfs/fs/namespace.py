"""How store keys become names, and object metadata becomes attributes.

The rules (also in ``docs/SEMANTICS.md``, whose examples are tested):

* Keys split at ``/``.  An object ``a/b`` is file ``b`` in directory ``a``; a common prefix
  ``a/`` or a marker object ``a/`` (any size) is directory ``a``.
* A name must be a valid file name: not empty, not ``.`` or ``..``, no NUL, at most
  :data:`NAME_MAX` bytes of UTF-8.  Keys with a component that is not (``a//b``, ``a/./b``,
  ``/lead``, a 300-byte component) are **skipped**: they do not appear in listings and
  cannot be looked up, and listing the rest of the directory is unaffected.
* A file and a directory of the same name (keys ``x`` and ``x/...``): **the directory
  wins**; the object ``x`` is hidden while the directory exists.
* s3fs-compatible metadata (``mode``, ``uid``, ``gid``, ``mtime``; S3 ``x-amz-meta-*``,
  Azure blob metadata) is read when an object is looked up with a HEAD: the permission
  bits of ``mode`` (decimal, as s3fs writes it), the owner, and the time in seconds.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import datetime

log = logging.getLogger(__name__)

NAME_MAX = 255


def valid_name(name: str) -> bool:
    """Whether ``name`` can be a directory entry."""
    if not name or name in (".", "..") or "\0" in name or "/" in name:
        return False
    try:
        return len(name.encode("utf-8")) <= NAME_MAX
    except UnicodeEncodeError:
        return False


def name_from_kernel(raw: bytes) -> str | None:
    """A kernel name as str, or ``None`` if it is not UTF-8 (no key can have it)."""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return None


def child_key(parent_key: str, name: str, *, directory: bool) -> str:
    return f"{parent_key}{name}/" if directory else f"{parent_key}{name}"


def root_key(prefix: str) -> str:
    """The key prefix of a mount's root: ``""`` or ``"some/prefix/"``."""
    prefix = prefix.lstrip("/")
    if prefix and not prefix.endswith("/"):
        prefix += "/"
    return prefix


def to_ns(when: datetime | None, default_ns: int) -> int:
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
