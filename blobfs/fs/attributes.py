"""Node attributes as the store gives them: from a listing entry, a HEAD, or a marker.

A listing gives a file's size, time and ETag; only a HEAD (or this mount's own upload)
gives its s3fs metadata -- mode, owner, times, file type (a symbolic link, FIFO, socket or
device node), device number, extended attributes -- and then ``Node.metadata_loaded`` is
set.  A node known from a listing only shows the mount's default mode and owner, its
object's modification time as all three times, and is a regular file.  The metadata of
versions seen here is kept by (key, ETag) beyond the life of their nodes, so a node made
again from a listing after the kernel forgot the first one still knows it.  Metadata the
mount's options fix (``file_mode``, ``uid``...) wins over what an object says.

Nothing here makes a request; the callers do, and hand over what they got.
"""

from __future__ import annotations

import stat
from collections import OrderedDict
from typing import NamedTuple

from blobfs.fs.inodes import Node
from blobfs.fs.metadata import FILE_TYPES, decode, to_ns
from blobfs.fs.state import FsState
from sdk.providers.base import ObjectInfo

#: Versions whose metadata is remembered beyond the life of their nodes (~250 bytes each).
KNOWN_METADATA = 65536
#: Versions carrying more extended attributes and foreign metadata than this (bytes, as
#: stored) are not remembered -- a node made again asks with a HEAD -- so the memo stays
#: within ~60 MiB however large those are (up to 8 KiB each on Azure).
KNOWN_EXTRA_MAX = 512


class _Known(NamedTuple):
    """What a version's metadata gave its node."""

    mode: int
    uid: int
    gid: int
    atime_ns: int
    mtime_ns: int
    ctime_ns: int
    ftype: int
    rdev: int
    xattr: str | None
    extra: tuple[tuple[str, str], ...]


class Attributes:
    """Fills nodes' attributes in and remembers the metadata of versions seen."""

    def __init__(self, state: FsState) -> None:
        self.state = state
        #: (key, ETag) -> what the metadata of versions HEADed or stored here gave their
        #: nodes, most recent last (see :meth:`remember`).
        self._known: OrderedDict[tuple[str, str], _Known] = OrderedDict()

    def init_dir(self, node: Node, marker: ObjectInfo | None) -> None:
        """A directory's attributes: the mount's defaults, or its marker's metadata."""
        state = self.state
        options = state.options
        if node.metadata_loaded:
            # The marker's metadata (or a change made here) is known; a listing knows less.
            node.attr_expires = state.clock() + options.dir_ttl
            return
        node.mode = options.effective_dir_mode
        node.uid, node.gid = options.uid, options.gid
        node.size = 0
        node.xattr, node.extra_metadata = None, ()
        mtime = state.mounted_ns if marker is None else to_ns(marker.modified_at, state.mounted_ns)
        node.atime_ns = node.mtime_ns = node.ctime_ns = mtime
        if marker is not None:
            self.apply_metadata(node, marker)
        state.dir_times.recall(node)
        node.attr_expires = state.clock() + options.dir_ttl

    def init_file(self, node: Node, size: int, mtime_ns: int, etag: str | None) -> None:
        """Attributes as a listing gives them (no user metadata)."""
        state = self.state
        options = state.options
        if node.ino in state.staged:
            return  # being written: the staging file is the truth
        if node.metadata_loaded and (node.etag == etag or etag is None):
            # A HEAD (or our own upload) already gave this version's metadata; a listing
            # knows less.  An entry without an ETag is one this mount made for a file that
            # was still being written when the listing was loaded: it says nothing new.
            node.attr_expires = state.clock() + options.attr_ttl
            return
        known = self._known.get((node.key, etag)) if etag is not None else None
        if known is not None and etag is not None:
            # This version's metadata is known from an earlier node of the same key (the
            # kernel forgot it, e.g. after a drop_caches): the same object, the same answer.
            self._known.move_to_end((node.key, etag))
            node.size, node.etag = size, etag
            node.mode, node.uid, node.gid = known.mode, known.uid, known.gid
            node.atime_ns, node.mtime_ns, node.ctime_ns = known[3:6]
            node.ftype, node.rdev, node.xattr, node.extra_metadata = known[6:]
            node.metadata_loaded = True
            node.attr_expires = state.clock() + options.attr_ttl
            return
        node.size = size
        node.etag = etag
        node.atime_ns = node.mtime_ns = node.ctime_ns = mtime_ns or state.mounted_ns
        node.mode = options.effective_file_mode
        node.uid, node.gid = options.uid, options.gid
        node.ftype, node.rdev, node.xattr, node.extra_metadata = stat.S_IFREG, 0, None, ()
        node.metadata_loaded = False
        node.attr_expires = state.clock() + options.attr_ttl

    def apply_head(self, node: Node, info: ObjectInfo) -> None:
        """A file's attributes from a HEAD of its object: final, and remembered.  The same
        version keeps the atime and ctime it got here and has not stored (a read, a rename:
        see :mod:`blobfs.fs.times`) where they are later than the stored ones."""
        same = node.metadata_loaded and node.etag == info.etag
        atime, ctime = (node.atime_ns, node.ctime_ns) if same else (0, 0)
        self.init_file(node, info.size, to_ns(info.modified_at, 0), info.etag)
        node.size, node.etag = info.size, info.etag
        self.apply_metadata(node, info)
        node.atime_ns = max(node.atime_ns, atime)
        node.ctime_ns = max(node.ctime_ns, ctime)
        node.metadata_loaded = True
        self.remember(node)

    def remember(self, node: Node) -> None:
        """Keep what this version of the object says (mode, owner, times, type, extended
        attributes), so a node made again from a listing after the kernel forgot this one
        knows it too."""
        if node.etag is None or not node.metadata_loaded:
            return
        memo = self._known
        extra = len(node.xattr or "") + sum(len(k) + len(v) for k, v in node.extra_metadata)
        if extra > KNOWN_EXTRA_MAX:
            memo.pop((node.key, node.etag), None)
            return
        memo[(node.key, node.etag)] = _Known(
            node.mode,
            node.uid,
            node.gid,
            node.atime_ns,
            node.mtime_ns,
            node.ctime_ns,
            node.ftype,
            node.rdev,
            node.xattr,
            node.extra_metadata,
        )
        memo.move_to_end((node.key, node.etag))
        while len(memo) > KNOWN_METADATA:
            memo.popitem(last=False)

    def apply_metadata(self, node: Node, info: ObjectInfo) -> None:
        """What the object's s3fs metadata says, where the mount's options do not fix it.
        Times it does not give are the object's modification time (as s3fs reads them)."""
        meta = info.metadata
        if not meta:
            return
        stored = decode(meta)
        opts = self.state.options
        explicit_mode = opts.dir_mode if node.is_dir else opts.file_mode
        if stored.perm is not None and explicit_mode is None:
            node.mode = stored.perm
        if stored.uid is not None and not opts.uid_forced:
            node.uid = stored.uid
        if stored.gid is not None and not opts.gid_forced:
            node.gid = stored.gid
        written = to_ns(info.modified_at, node.mtime_ns)
        node.mtime_ns = written if stored.mtime_ns is None else stored.mtime_ns
        node.ctime_ns = written if stored.ctime_ns is None else stored.ctime_ns
        node.atime_ns = written if stored.atime_ns is None else stored.atime_ns
        if not node.is_dir:
            ftype = stored.ftype if stored.ftype in FILE_TYPES else stat.S_IFREG
            node.ftype = ftype
            node.rdev = stored.rdev if ftype in (stat.S_IFCHR, stat.S_IFBLK) else 0
        node.xattr, node.extra_metadata = stored.xattr, stored.extra
