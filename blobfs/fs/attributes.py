"""Node attributes as the store gives them: from a listing entry, a HEAD, or a marker.

A listing gives a file's size, time and ETag; only a HEAD (or this mount's own upload)
gives its s3fs metadata -- mode, owner, exact mtime, whether it is a symbolic link -- and
then ``Node.metadata_loaded`` is set.  A node known from a listing only shows the mount's
default mode and owner.  The metadata of versions seen here is kept by (key, ETag) beyond
the life of their nodes, so a node made again from a listing after the kernel forgot the
first one still knows it.  Metadata the mount's options fix (``file_mode``, ``uid``...)
wins over what an object says.

Nothing here makes a request; the callers do, and hand over what they got.
"""

from __future__ import annotations

import time
from collections import OrderedDict

from blobfs.fs.inodes import Node
from blobfs.fs.metadata import (
    metadata_is_symlink,
    metadata_mode,
    metadata_mtime_ns,
    metadata_owner,
    to_ns,
)
from blobfs.fs.state import FsState
from sdk.providers.base import ObjectInfo

#: Versions whose metadata is remembered beyond the life of their nodes (~100 bytes each).
KNOWN_METADATA = 65536


def touch(node: Node, mtime_ns: int | None = None) -> None:
    """Set the node's mtime and ctime (to now unless given)."""
    node.mtime_ns = node.ctime_ns = mtime_ns if mtime_ns is not None else time.time_ns()


class Attributes:
    """Fills nodes' attributes in and remembers the metadata of versions seen."""

    def __init__(self, state: FsState) -> None:
        self.state = state
        #: (key, ETag) -> (mode, uid, gid, mtime_ns, symlink) of versions HEADed or stored
        #: here, most recent last (see :meth:`remember`).
        self._known: OrderedDict[tuple[str, str], tuple[int, int, int, int, bool]] = OrderedDict()

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
        mtime = state.mounted_ns
        if marker is not None:
            mtime = to_ns(marker.modified_at, mtime)
            self.apply_metadata(node, marker)
        node.mtime_ns = node.ctime_ns = mtime
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
            node.mode, node.uid, node.gid, node.mtime_ns, node.symlink = known
            node.ctime_ns = node.mtime_ns
            node.metadata_loaded = True
            node.attr_expires = state.clock() + options.attr_ttl
            return
        node.size = size
        node.etag = etag
        node.mtime_ns = node.ctime_ns = mtime_ns or state.mounted_ns
        node.mode = options.effective_file_mode
        node.uid, node.gid = options.uid, options.gid
        node.symlink = False
        node.metadata_loaded = False
        node.attr_expires = state.clock() + options.attr_ttl

    def apply_head(self, node: Node, info: ObjectInfo) -> None:
        """A file's attributes from a HEAD of its object: final, and remembered."""
        self.init_file(node, info.size, to_ns(info.modified_at, 0), info.etag)
        node.size, node.etag = info.size, info.etag
        self.apply_metadata(node, info)
        node.metadata_loaded = True
        self.remember(node)

    def remember(self, node: Node) -> None:
        """Keep what this version of the object says (mode, owner, mtime, symlink), so a
        node made again from a listing after the kernel forgot this one knows it too."""
        if node.etag is None or not node.metadata_loaded:
            return
        memo = self._known
        memo[(node.key, node.etag)] = (node.mode, node.uid, node.gid, node.mtime_ns, node.symlink)
        memo.move_to_end((node.key, node.etag))
        while len(memo) > KNOWN_METADATA:
            memo.popitem(last=False)

    def apply_metadata(self, node: Node, info: ObjectInfo) -> None:
        """What the object's s3fs metadata says, where the mount's options do not fix it."""
        meta = info.metadata
        if not meta:
            return
        opts = self.state.options
        explicit_mode = opts.dir_mode if node.is_dir else opts.file_mode
        mode = metadata_mode(meta)
        if mode is not None and explicit_mode is None:
            node.mode = mode
        uid, gid = metadata_owner(meta)
        if uid is not None and not opts.uid_forced:
            node.uid = uid
        if gid is not None and not opts.gid_forced:
            node.gid = gid
        mtime = metadata_mtime_ns(meta)
        if mtime is not None:
            node.mtime_ns = mtime
        if not node.is_dir:
            node.symlink = metadata_is_symlink(meta)
