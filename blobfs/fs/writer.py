"""Writing: open for writing, create, write, close, and attribute changes (``setattr``).

Writes go to the inode's staging file (:mod:`blobfs.fs.staging`); the object is replaced
when the file is closed.  A change of mode, owner or times alone is stored by
:mod:`blobfs.fs.metadata_writes` (a server-side copy of the object onto itself; a
directory's new marker); made while the file is being written, it goes up with the data
instead.  Which times each call moves is :mod:`blobfs.fs.times`'s rule.
"""

from __future__ import annotations

import os
import stat
import time

from blobfs.errors import BadHandle, IsADirectory, Stale, StorageFailure, from_storage
from blobfs.fs.handles import FileHandle, new_readahead
from blobfs.fs.inodes import ROOT_INODE, Kind, Node
from blobfs.fs.listings import Listings
from blobfs.fs.lookup import Lookup
from blobfs.fs.metadata_writes import MetadataWrites
from blobfs.fs.names import check_key, check_name, child_key
from blobfs.fs.staging import Staging
from blobfs.fs.state import FsState
from blobfs.fs.times import changed, created, modified

#: Open flags that mean the file will be written.
WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_TRUNC | os.O_APPEND


class Writer:
    """Handles on staging files, the writes through them, and ``setattr``."""

    def __init__(
        self,
        state: FsState,
        lookup: Lookup,
        listings: Listings,
        staging: Staging,
        metadata: MetadataWrites,
    ) -> None:
        self.state = state
        self.lookup = lookup
        self.listings = listings
        self.staging = staging
        self.metadata = metadata

    async def open(self, node: Node, flags: int) -> FileHandle | None:
        """A handle on the file's staging file -- made now if ``flags`` write -- or
        ``None`` when it has none and is opened for reading only."""
        state = self.state
        writing = bool(flags & WRITE_FLAGS)
        if writing:
            state.check_writable()
        staged = state.staged.get(node.ino)
        if staged is None and writing:
            truncate = bool(flags & os.O_TRUNC)
            if not truncate and (node.attr_expires <= state.clock() or node.etag is None):
                await self.lookup.refresh(node)
            elif not node.metadata_loaded:
                # Known from a listing only: learn the object's mode/uid/gid first, or the
                # upload would store the mount's defaults over them.
                await self.lookup.refresh(node)
            staged = self.staging.stage(node, keep_content=not truncate, dirty=truncate)
            if truncate:
                node.size = 0
                modified(node)
        elif staged is not None and flags & os.O_TRUNC:
            await staged.truncate(0)
            node.size = 0
            modified(node)
        if staged is None:
            return None
        staged.handles += 1
        fh = state.handles.new_fh()
        handle = FileHandle(
            fh=fh,
            node=node,
            key=node.key,
            etag=node.etag or "",
            size=node.size,
            readahead=new_readahead(state.cache, state.options),
            staged=staged,
            writable=writing,
        )
        node.cached_etag = None
        state.handles.files[fh] = handle
        state.inodes.opened(node)
        return handle

    async def create(self, parent_ino: int, name: str, mode: int, flags: int) -> FileHandle:
        """Create the file ``name`` (which must not exist) and open it for writing."""
        state = self.state
        options = state.options
        parent = state.inodes.directory(parent_ino)
        check_name(name)
        state.check_writable()
        check_key(child_key(parent.key, name, directory=False))
        await self.lookup.check_absent(parent, name)
        parent = state.inodes.directory(parent_ino)
        key = child_key(parent.key, name, directory=False)
        node = state.inodes.remember(parent, name, Kind.FILE, key)
        node.mode = options.file_mode if options.file_mode is not None else mode & 0o7777
        node.uid, node.gid = options.uid, options.gid
        node.size, node.etag, node.ftype, node.rdev = 0, None, stat.S_IFREG, 0
        node.xattr, node.extra_metadata = None, ()
        node.metadata_loaded = True
        created(node, time.time_ns())
        state.dir_times.entries_changed(parent)
        staged = self.staging.stage(node, keep_content=False, dirty=True)
        staged.handles = 1
        fh = state.handles.new_fh()
        handle = FileHandle(
            fh=fh,
            node=node,
            key=key,
            etag="",
            size=0,
            readahead=new_readahead(state.cache, options),
            staged=staged,
            writable=True,
        )
        state.handles.files[fh] = handle
        state.inodes.opened(node)
        self.listings.put(node)
        return handle

    async def write(self, fh: int, offset: int, data: bytes) -> int:
        """Write ``data`` at ``offset`` into the file's staging file."""
        handle = self.state.handles.file(fh)
        staged = handle.staged
        if staged is None or not handle.writable:
            raise BadHandle(f"{fh} is not open for writing")
        with from_storage(missing=Stale):
            written = await staged.write(offset, data)
        node = handle.node
        node.size = staged.size
        modified(node)
        return written

    async def flush(self, fh: int) -> None:
        """``close()`` of a descriptor: a dirty file is uploaded now, and its error is the
        error of ``close()``."""
        handle = self.state.handles.file(fh)
        if handle.staged is not None and handle.staged.dirty and not handle.staged.unlinked:
            await self.staging.upload(handle.node, handle.staged)

    async def release(self, fh: int) -> None:
        """The last close of a handle; the last handle of a staging file finishes it."""
        handle = self.state.handles.files.pop(fh, None)
        if handle is None:
            return
        node, staged = handle.node, handle.staged
        try:
            if staged is not None:
                staged.handles -= 1
                if staged.handles <= 0:
                    await self.staging.finish(node, staged)
        finally:
            self.state.inodes.closed(node)

    async def setattr(
        self,
        ino: int,
        *,
        mode: int | None = None,
        uid: int | None = None,
        gid: int | None = None,
        size: int | None = None,
        mtime_ns: int | None = None,
        atime_ns: int | None = None,
        fh: int | None = None,
    ) -> Node:
        """Change mode, owner, size or times; every change moves ctime."""
        state = self.state
        node = state.inodes.get(ino)
        if (mode, uid, gid, size, mtime_ns, atime_ns) == (None, None, None, None, None, None):
            # What the kernel sends for chown(-1, -1) or utime with both times omitted:
            # nothing but ctime changes (in memory, as there is nothing else to store).
            if not state.options.read_only:
                changed(node)
            return node
        state.check_writable()
        if node.is_dir and size is not None:
            raise IsADirectory(node.key)
        # What is not changed here must be the object's own, not a listing's defaults; and
        # a truncate stages the current version.  Both are looked up before anything
        # changes, so the answer cannot undo the change.
        if node.is_dir:
            if not node.metadata_loaded and node.ino != ROOT_INODE:
                await self.lookup.load_dir_metadata(node)
                if not node.metadata_loaded:
                    # A new marker now would drop what the one there holds.
                    raise StorageFailure(f"cannot read the metadata of {node.key!r}")
        elif node.ino not in state.staged and (
            not node.metadata_loaded
            or (size is not None and (node.attr_expires <= state.clock() or node.etag is None))
        ):
            await self.lookup.refresh(node)
        if mode is not None:
            node.mode = mode & 0o7777
        if uid is not None:
            node.uid = uid
        if gid is not None:
            node.gid = gid
        if mtime_ns is not None:
            node.mtime_ns = mtime_ns
        if atime_ns is not None:
            node.atime_ns = atime_ns
        changed(node)
        staged = state.staged.get(ino)
        if size is not None and not node.is_dir:
            if staged is None:
                staged = self.staging.stage(node, keep_content=True)
            with from_storage(missing=Stale):
                await staged.truncate(size)
            node.size = size
            if mtime_ns is None:
                modified(node)
            if staged.handles <= 0:
                await self.staging.finish_or_raise(node, staged)
            return node
        await self.metadata.store(node, times_set=mtime_ns is not None or atime_ns is not None)
        return node
