"""Writing: open for writing, create, write, close, and attribute changes (``setattr``).

Writes go to the inode's staging file (:mod:`blobfs.fs.staging`); the object is replaced
when the file is closed.  A change of mode, owner or mtime alone is a server-side copy of
the object onto itself with the new metadata (a directory's: a new marker); made while the
file is being written, it goes up with the data instead.
"""

from __future__ import annotations

import os
import time

from blobfs.errors import BadHandle, IsADirectory, Stale, from_storage
from blobfs.fs.attributes import Attributes, touch
from blobfs.fs.handles import FileHandle, new_readahead
from blobfs.fs.inodes import ROOT_INODE, Kind, Node
from blobfs.fs.listings import Listings
from blobfs.fs.lookup import Lookup
from blobfs.fs.metadata import node_metadata
from blobfs.fs.names import check_name, child_key
from blobfs.fs.staging import Staging
from blobfs.fs.state import FsState

#: Open flags that mean the file will be written.
WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_TRUNC | os.O_APPEND


class Writer:
    """Handles on staging files, the writes through them, and ``setattr``."""

    def __init__(
        self,
        state: FsState,
        attributes: Attributes,
        lookup: Lookup,
        listings: Listings,
        staging: Staging,
    ) -> None:
        self.state = state
        self.attributes = attributes
        self.lookup = lookup
        self.listings = listings
        self.staging = staging

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
                touch(node)
        elif staged is not None and flags & os.O_TRUNC:
            await staged.truncate(0)
            node.size = 0
            touch(node)
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
        await self.lookup.check_absent(parent, name)
        parent = state.inodes.directory(parent_ino)
        key = child_key(parent.key, name, directory=False)
        node = state.inodes.remember(parent, name, Kind.FILE, key)
        node.mode = options.file_mode if options.file_mode is not None else mode & 0o7777
        node.uid, node.gid = options.uid, options.gid
        node.size, node.etag, node.symlink = 0, None, False
        node.metadata_loaded = True
        touch(node)
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
        touch(node)
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
        """Change mode, owner, size or mtime (atime is not stored)."""
        state = self.state
        node = state.inodes.get(ino)
        if (mode, uid, gid, size, mtime_ns) == (None, None, None, None, None):
            return node  # atime only: not stored, nothing to refuse
        state.check_writable()
        if node.is_dir and size is not None:
            raise IsADirectory(node.key)
        if not node.is_dir and not node.metadata_loaded and node.ino not in state.staged:
            # Known from a listing only: what is not changed here must be the object's own.
            await self.lookup.refresh(node)
        if mode is not None:
            node.mode = mode & 0o7777
        if uid is not None:
            node.uid = uid
        if gid is not None:
            node.gid = gid
        if mtime_ns is not None:
            node.mtime_ns = mtime_ns
        node.ctime_ns = time.time_ns()
        if node.is_dir:
            if node.ino != ROOT_INODE:
                with from_storage():
                    await state.store.put(node.key, b"", metadata=node_metadata(node))
                node.metadata_loaded = True
            return node
        staged = state.staged.get(ino)
        if size is not None:
            if staged is None:
                if node.attr_expires <= state.clock() or node.etag is None:
                    await self.lookup.refresh(node)
                staged = self.staging.stage(node, keep_content=True)
            with from_storage(missing=Stale):
                await staged.truncate(size)
            node.size = size
            if mtime_ns is None:
                touch(node)
            if staged.handles <= 0:
                await self.staging.finish_or_raise(node, staged)
            return node
        if staged is not None and staged.dirty:
            if mtime_ns is not None:
                staged.mtime_explicit = True
            return node  # the new metadata goes up with the data at close
        # Metadata only: a server-side copy onto itself with the metadata replaced.
        with from_storage():
            await state.store.copy(node.key, node.key, metadata=node_metadata(node))
            # The ETag a copy returns is not always the one listings report (SeaweedFS):
            # take the stored version's own, so a listing does not look like a change.
            info = await state.store.head(node.key)
        node.etag = info.etag
        node.metadata_loaded = True
        node.attr_expires = state.clock() + state.options.attr_ttl
        self.attributes.remember(node)
        if staged is not None:
            # Not dirty: its content is the object's, now under a new ETag; fill it all now
            # so it never needs the old version again.
            with from_storage(missing=Stale):
                await staged.fill_all()
        self.listings.put(node)
        return node
