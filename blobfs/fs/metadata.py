"""The s3fs-compatible object metadata: what it says about a node, and what to store.

s3fs-fuse keeps a file's attributes in the object's user metadata (S3 ``x-amz-meta-*``,
Azure blob metadata), and so does blobfs, so that a bucket written by one reads the same
through the other:

* ``mode`` -- the full ``st_mode`` in decimal, so it carries the file type too: a regular
  file, a symbolic link (whose target is the object's body), a FIFO, a socket, a character
  or block device (zero-length objects);
* ``uid``, ``gid``;
* ``mtime``, ``ctime``, ``atime`` -- seconds since the epoch, with the nanoseconds after a
  dot when there are any (``1700000000.000000123``; s3fs writes nine digits, older versions
  whole seconds, and a fraction is read as a decimal);
* ``xattr`` -- the extended attributes, as s3fs's ``build_xattrs`` writes them: a JSON object
  of names to base64 values, URL-encoded with s3fs's ``urlEncodePath`` (unreserved
  characters and ``/`` as they are, every other byte ``%XX``).
  ``{"user.a":"dmFsdWU="}`` (``user.a`` = ``value``) is stored as
  ``%7B%22user.a%22%3A%22dmFsdWU%3D%22%7D``;
* ``rdev`` -- a device node's number, blobfs's own: s3fs keeps none, and its device nodes
  read as ``rdev`` 0.

Every name is an identifier and every value ASCII, so the same metadata is valid Azure blob
metadata as it is (Azure wants C# identifiers and ASCII values) and both providers hold the
same strings.  Metadata other tools wrote under other names is kept through every change
blobfs makes (:attr:`Stored.extra`).

This module is the codec only; which values win over the mount's options is
:mod:`blobfs.fs.attributes`'s.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import stat
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from urllib.parse import quote_from_bytes, unquote_to_bytes

from blobfs.fs.inodes import Node

log = logging.getLogger(__name__)

NS = 1_000_000_000
#: The names this codec reads and writes; anything else an object carries is kept as is.
KNOWN_NAMES = frozenset({"mode", "uid", "gid", "mtime", "ctime", "atime", "xattr", "rdev"})
#: The names that only say when something happened: an upload that started earlier stores
#: older values of these and needs no second request for them alone.
TIME_NAMES = frozenset({"mtime", "ctime", "atime"})
#: File types a file (non-directory) object may have.
FILE_TYPES = frozenset(
    {stat.S_IFREG, stat.S_IFLNK, stat.S_IFIFO, stat.S_IFSOCK, stat.S_IFCHR, stat.S_IFBLK}
)
#: What s3fs's ``urlEncodePath`` leaves as it is besides letters and digits.
_URL_SAFE = "-_.~/"


def to_ns(when: datetime | None, default_ns: int) -> int:
    """A store's modification time in nanoseconds (``default_ns`` when it gave none)."""
    if when is None:
        return default_ns
    return int(when.timestamp() * NS)


def format_time(ns: int) -> str:
    """A time as s3fs writes it: ``seconds`` or ``seconds.nnnnnnnnn`` (a timespec)."""
    sec, nsec = divmod(ns, NS)
    return str(sec) if nsec == 0 else f"{sec}.{nsec:09d}"


def parse_time(raw: str | None) -> int | None:
    """A time in nanoseconds from ``seconds[.fraction]``; ``None`` if absent or unparsable."""
    if raw is None:
        return None
    sec, _, frac = raw.strip().partition(".")
    try:
        whole = int(sec)
        nsec = int((frac + "000000000")[:9]) if frac else 0
    except ValueError:
        log.debug("ignoring unparsable time metadata %r", raw)
        return None
    return whole * NS + nsec


def _int(meta: Mapping[str, str], name: str) -> int | None:
    raw = meta.get(name)
    if raw is None:
        return None
    try:
        return int(raw.strip())
    except ValueError:
        log.debug("ignoring unparsable %s metadata %r", name, raw)
        return None


@dataclass(frozen=True, slots=True)
class Stored:
    """What an object's metadata says; ``None`` where it says nothing."""

    #: The file type bits of ``mode`` (``S_IFREG``...), ``None`` when ``mode`` has none.
    ftype: int | None = None
    #: The permission bits of ``mode`` (with setuid, setgid and sticky).
    perm: int | None = None
    uid: int | None = None
    gid: int | None = None
    atime_ns: int | None = None
    mtime_ns: int | None = None
    ctime_ns: int | None = None
    rdev: int = 0
    #: The ``xattr`` value as stored (decoded on demand by :func:`decode_xattrs`).
    xattr: str | None = None
    #: Metadata under names this codec does not know, kept through changes.
    extra: tuple[tuple[str, str], ...] = ()


def decode(meta: Mapping[str, str]) -> Stored:
    """What ``meta`` (an object's user metadata, lower-case names) says."""
    if not meta:
        return Stored()
    mode = _int(meta, "mode")
    ftype = (stat.S_IFMT(mode) or None) if mode is not None else None
    extra = tuple(sorted((k, v) for k, v in meta.items() if k not in KNOWN_NAMES))
    return Stored(
        ftype=ftype,
        perm=None if mode is None else stat.S_IMODE(mode),
        uid=_int(meta, "uid"),
        gid=_int(meta, "gid"),
        atime_ns=parse_time(meta.get("atime")),
        mtime_ns=parse_time(meta.get("mtime")),
        ctime_ns=parse_time(meta.get("ctime")),
        rdev=_int(meta, "rdev") or 0,
        xattr=meta.get("xattr") or None,
        extra=extra,
    )


def s3fs_metadata(
    mode: int,
    uid: int,
    gid: int,
    *,
    atime_ns: int,
    mtime_ns: int,
    ctime_ns: int,
    rdev: int = 0,
    xattr: str | None = None,
    extra: tuple[tuple[str, str], ...] = (),
) -> dict[str, str]:
    """The metadata to store: full ``st_mode``, owner, the three times, and where they apply
    the device number, the extended attributes and what other tools stored."""
    meta = dict(extra)
    meta.update(
        mode=str(mode),
        uid=str(uid),
        gid=str(gid),
        mtime=format_time(mtime_ns),
        ctime=format_time(ctime_ns),
        atime=format_time(atime_ns),
    )
    if rdev and stat.S_IFMT(mode) in (stat.S_IFCHR, stat.S_IFBLK):
        meta["rdev"] = str(rdev)
    if xattr:
        meta["xattr"] = xattr
    return meta


def node_metadata(node: Node) -> dict[str, str]:
    """The metadata to store for ``node`` as its attributes are now."""
    kind = stat.S_IFDIR if node.is_dir else node.ftype
    return s3fs_metadata(
        kind | node.mode,
        node.uid,
        node.gid,
        atime_ns=node.atime_ns,
        mtime_ns=node.mtime_ns,
        ctime_ns=node.ctime_ns,
        rdev=node.rdev,
        xattr=node.xattr,
        extra=node.extra_metadata,
    )


#: The largest values the fixed names can take: what the extended attributes must leave
#: room for, so that a later chmod, chown or time change always fits too.
WIDEST_FIXED = {
    "mode": str(0o177777),
    "uid": str(2**32 - 1),
    "gid": str(2**32 - 1),
    "mtime": "-9999999999.999999999",
    "ctime": "-9999999999.999999999",
    "atime": "-9999999999.999999999",
    "rdev": str(2**64 - 1),
}


# -- extended attributes -----------------------------------------------------------------------


def encode_xattrs(attrs: Mapping[bytes, bytes]) -> str | None:
    """The ``xattr`` value for ``attrs`` (``None`` when there are none), as s3fs writes it:
    names in byte order, values in base64 with padding, the JSON URL-encoded.

    s3fs puts names between quotes as they are; a name holding ``"``, ``\\`` or a control
    character is JSON-escaped here (s3fs skips such a pair when it reads it), and one holding
    ``,`` s3fs splits wrongly.  Names that ordinary programs use (``user.mime_type``,
    ``user.xdg.origin.url``...) hold none of these.
    """
    if not attrs:
        return None
    pairs = []
    for name in sorted(attrs):
        value = base64.b64encode(attrs[name])
        pairs.append(b'"' + _json_escape(name) + b'":"' + value + b'"')
    return quote_from_bytes(b"{" + b",".join(pairs) + b"}", safe=_URL_SAFE)


def decode_xattrs(value: str | None) -> dict[bytes, bytes]:
    """The extended attributes an ``xattr`` value holds (empty for ``None``).  What is not
    valid JSON is read as s3fs reads it, pair by pair, skipping the pairs it cannot read."""
    if not value:
        return {}
    raw = unquote_to_bytes(value)
    try:
        obj = json.loads(raw.decode("utf-8", "surrogateescape"))
    except ValueError:
        return _lenient(raw)
    if not isinstance(obj, dict):
        return _lenient(raw)
    out: dict[bytes, bytes] = {}
    for name, b64 in obj.items():
        try:
            key = name.encode("utf-8", "surrogateescape")
        except UnicodeEncodeError:
            continue
        decoded = _b64decode(b64.encode("ascii", "replace")) if isinstance(b64, str) else None
        if decoded is not None:
            out[key] = decoded
    return out


def _json_escape(name: bytes) -> bytes:
    out = bytearray()
    for byte in name:
        if byte in (0x22, 0x5C):  # " and \
            out += b"\\" + bytes([byte])
        elif byte < 0x20:
            out += b"\\u%04x" % byte
        else:
            out.append(byte)
    return bytes(out)


def _b64decode(data: bytes) -> bytes | None:
    try:
        return base64.b64decode(data + b"=" * (-len(data) % 4))
    except (binascii.Error, ValueError):
        return None


def _lenient(raw: bytes) -> dict[bytes, bytes]:
    """s3fs's ``parse_xattrs``: the text between the first ``{`` and the last ``}``, split at
    commas, each pair split at its last colon, quotes taken off both sides."""
    start, end = raw.find(b"{"), raw.rfind(b"}")
    if start < 0 or end <= start:
        log.debug("ignoring xattr metadata that is not a JSON object: %r", raw[:80])
        return {}
    out: dict[bytes, bytes] = {}
    for pair in raw[start + 1 : end].split(b","):
        name, colon, b64 = pair.rpartition(b":")
        name, b64 = name.strip().strip(b'"'), b64.strip().strip(b'"')
        if not colon or b'"' in name or b'"' in b64:
            continue
        decoded = _b64decode(b64)
        if decoded is not None:
            out[name] = decoded
    return out
