"""Open directories: ``opendir``, ``readdir`` (readdirplus) and ``releasedir``.

A handle snapshots its directory's entries when reading starts (offset 0), so the offsets
the kernel hands back stay valid while the listing changes.
"""

from __future__ import annotations

from collections.abc import Callable

from blobfs.errors import BadHandle
from blobfs.fs.handles import DirHandle
from blobfs.fs.inodes import Node
from blobfs.fs.listings import Listings
from blobfs.fs.lookup import Lookup
from blobfs.fs.state import FsState


class Directories:
    """Directory handles and the entries they hand out."""

    def __init__(self, state: FsState, listings: Listings, lookup: Lookup) -> None:
        self.state = state
        self.listings = listings
        self.lookup = lookup

    async def opendir(self, ino: int) -> int:
        """Open directory ``ino``; returns the handle number."""
        state = self.state
        node = state.inodes.directory(ino)
        fh = state.handles.new_fh()
        state.handles.dirs[fh] = DirHandle(fh=fh, node=node)
        state.inodes.opened(node)
        return fh

    async def readdir(self, fh: int, start_id: int, emit: Callable[[str, Node, int], bool]) -> None:
        """Hand entries from position ``start_id`` to ``emit(name, node, next_id)``.

        ``emit`` returns False when the kernel's buffer is full.  Entries it accepted count
        one kernel reference each (readdirplus), except ``.`` and ``..``.
        """
        inodes = self.state.inodes
        handle = self.state.handles.dirs.get(fh)
        if handle is None:
            raise BadHandle(str(fh))
        if handle.entries is None or start_id == 0:
            handle.entries = list((await self.listings.get(handle.node)).entries.values())
        dir_node = handle.node
        if start_id == 0 and not emit(".", dir_node, 1):
            return
        if start_id <= 1 and not emit("..", inodes.get(dir_node.parent), 2):
            return
        for index in range(max(0, start_id - 2), len(handle.entries)):
            entry = handle.entries[index]
            node = self.lookup.node_from_entry(dir_node, entry)
            if emit(entry.name, node, index + 3):
                inodes.ref(node)
            else:
                inodes.drop_unreferenced(node)
                return

    async def releasedir(self, fh: int) -> None:
        """Close directory handle ``fh``."""
        handle = self.state.handles.dirs.pop(fh, None)
        if handle is not None:
            self.state.inodes.closed(handle.node)
