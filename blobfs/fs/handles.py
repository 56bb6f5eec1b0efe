"""Open files and directories: the handles the kernel holds, by number.

A handle number (``fh``) is never reused while the mount lives.  A handle keeps its node
open (:meth:`InodeTable.opened`), so the node outlives the kernel's lookups of it; whoever
removes a handle from the table closes the node.
"""

from __future__ import annotations

from dataclasses import dataclass

from blobfs.cache.blocks import BlockCache
from blobfs.cache.readahead import ReadAhead
from blobfs.errors import BadHandle
from blobfs.fs.inodes import Entry, InodeTable, Node
from blobfs.options import MountOptions
from blobfs.write.staging import Staged


@dataclass(eq=False)
class FileHandle:
    """An open file: one version of one object, plus its read-ahead state."""

    fh: int
    node: Node
    key: str
    etag: str
    size: int
    readahead: ReadAhead
    #: Whether the kernel may keep page-cache data from an earlier open of this version.
    keep_cache: bool = False
    #: A sequential reader's blocks before this one are dropped from memory.
    dropped_behind: int = 0
    #: The inode's staging file while it is open for writing (reads go there too).
    staged: Staged | None = None
    writable: bool = False
    #: Opened ``O_NOATIME``: its reads leave the file's atime alone.
    noatime: bool = False


@dataclass(eq=False)
class DirHandle:
    """An open directory: a snapshot of its entries, so ``readdir`` offsets stay valid."""

    fh: int
    node: Node
    entries: list[Entry] | None = None


def new_readahead(cache: BlockCache, options: MountOptions) -> ReadAhead:
    """The read-ahead state of a new file handle."""
    # Never let one reader's read-ahead claim more than half the memory budget.
    budget = cache.memory_budget // 2
    window = max(cache.block_size, min(options.readahead, budget))
    return ReadAhead(cache.block_size, window)


class Handles:
    """The open file and directory handles."""

    def __init__(self) -> None:
        self.files: dict[int, FileHandle] = {}
        self.dirs: dict[int, DirHandle] = {}
        self._next_fh = 1

    def new_fh(self) -> int:
        """A handle number not used before."""
        fh = self._next_fh
        self._next_fh += 1
        return fh

    def file(self, fh: int) -> FileHandle:
        """The open file ``fh`` (:class:`BadHandle` if there is none)."""
        handle = self.files.get(fh)
        if handle is None:
            raise BadHandle(str(fh))
        return handle

    def __len__(self) -> int:
        return len(self.files) + len(self.dirs)

    def check_consistency(self, inodes: InodeTable) -> None:
        """Assert that every open handle's node is still in the inode table."""
        for handle in self.files.values():
            assert inodes.get(handle.node.ino) is handle.node, "open file lost its inode"
        for dh in self.dirs.values():
            assert inodes.get(dh.node.ino) is dh.node, "open dir lost its inode"
