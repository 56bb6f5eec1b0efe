"""Reading files: open a version, read it through the block cache; read symbolic links.

An open file reads the version (key + ETag) it was opened on.  Reads that need data not yet
cached are conditional on that ETag, so if the object is replaced or deleted they fail with
:class:`~blobfs.errors.Stale` instead of mixing versions.  The next ``open`` (after the
attribute TTL) sees the new version.  A file being written is read from its staging file.
"""

from __future__ import annotations

from blobfs.cache.blocks import Block
from blobfs.errors import InvalidName, Stale, from_storage
from blobfs.fs.handles import FileHandle, new_readahead
from blobfs.fs.inodes import Node
from blobfs.fs.lookup import Lookup
from blobfs.fs.state import FsState


class Reader:
    """Opens files for reading and serves their reads."""

    def __init__(self, state: FsState, lookup: Lookup) -> None:
        self.state = state
        self.lookup = lookup

    async def open(self, node: Node) -> FileHandle:
        """A handle on the file's current version (re-checked once its TTL ran out)."""
        state = self.state
        if node.attr_expires <= state.clock() or node.etag is None:
            await self.lookup.refresh(node)
        assert node.etag is not None
        fh = state.handles.new_fh()
        handle = FileHandle(
            fh=fh,
            node=node,
            key=node.key,
            etag=node.etag,
            size=node.size,
            readahead=new_readahead(state.cache, state.options),
            keep_cache=node.cached_etag == node.etag,
        )
        node.cached_etag = node.etag
        state.stats.read_opens += 1
        state.stats.kernel_reuses += handle.keep_cache
        state.handles.files[fh] = handle
        state.inodes.opened(node)
        return handle

    async def read(self, fh: int, offset: int, size: int) -> bytes | memoryview:
        """Up to ``size`` bytes at ``offset``; a view into a cached block when the read
        falls inside one (no copy on the way to the kernel)."""
        handle = self.state.handles.file(fh)
        if handle.staged is not None:
            with from_storage(missing=Stale):
                return await handle.staged.read(offset, size)
        if offset >= handle.size or size <= 0:
            return b""
        cache = self.state.cache
        end = min(offset + size, handle.size)
        bs = cache.block_size
        first, last = offset // bs, (end - 1) // bs
        plan = handle.readahead.on_read(offset, size, handle.size)
        key, etag = handle.key, handle.etag
        blocks: list[Block] = []
        if not plan.sequential:
            for i in range(first, last + 1):
                cached = cache.cached(key, etag, i)
                if cached is None:
                    return await cache.read_direct(key, etag, offset, end - offset)
                blocks.append(cached)
        else:
            ahead = plan.prefetch[-1] if plan.prefetch else last
            if first != last or ahead > last:
                # Several blocks: claimed together so they come in one GET, in a task.  A
                # single block with nothing to read ahead (a small file, a file's last
                # block) is fetched below in this task: no task to start and wake up.
                cache.prefetch_range(key, etag, handle.size, first, max(last, ahead))
            for i in range(first, last + 1):
                blocks.append(await cache.get(key, etag, handle.size, i))
        start = offset - first * bs
        if len(blocks) == 1:
            return memoryview(blocks[0])[start : start + end - offset]
        return b"".join(blocks)[start : start + end - offset]

    async def readlink(self, ino: int) -> bytes:
        """The target of the symbolic link ``ino`` (the object's content)."""
        node = self.state.inodes.get(ino)
        if node.is_dir or not node.symlink:
            raise InvalidName(f"{node.key} is not a symbolic link")
        with from_storage():
            return await self.state.store.read_all(node.key)
