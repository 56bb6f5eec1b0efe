"""The state the file system's parts share, and the rule that keeps it consistent.

:class:`FsState` is the one object the collaborating classes of :mod:`blobfs.fs` hold in
common: the store, the block cache with its background fills, the kernel's page cache, the
mount's options and clock, the inode table, the open handles, the staging file of every
inode being written, the times directories got here, and the request counters.  Each part
owns its own caches besides (listings, known metadata); this is what they all see.

Concurrency: the file system runs on the one trio thread.  State (the inode table, handle
tables, staging map, listings) is changed only between awaits, so it needs no locks; the
rule that keeps it correct is that **after any await a method re-reads what it needs** (a
node may have been detached or refreshed meanwhile) and that :meth:`InodeTable.remember` is
idempotent, so two lookups of one name racing to the store end up with one inode.  The
block cache has its own protocol (:mod:`blobfs.cache.blocks`).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from blobfs.bridge.store import TrioStore
from blobfs.cache.blocks import BlockCache
from blobfs.cache.fill import Fills
from blobfs.cache.pagecache import PageCache
from blobfs.errors import ReadOnly
from blobfs.fs.handles import Handles
from blobfs.fs.inodes import InodeTable
from blobfs.fs.names import root_key
from blobfs.fs.times import DirectoryTimes
from blobfs.options import MountOptions
from blobfs.write.staging import Staged
from blobfs.write.writeback import WriteBack


@dataclass
class FsStats:
    """Requests the file system made for names and attributes (the daemon reports them)."""

    heads: int = 0
    lists: int = 0
    skipped_names: int = 0
    #: Files opened for reading, and those whose kernel page cache was kept (``keep_cache``:
    #: the same version as the last open, so the kernel reuses what it cached).
    read_opens: int = 0
    kernel_reuses: int = 0
    extra: dict[str, int] = field(default_factory=dict)


class FsState:
    """What every part of the file system reads and changes (see the module docstring)."""

    def __init__(
        self,
        store: TrioStore,
        cache: BlockCache,
        options: MountOptions,
        writeback: WriteBack,
        *,
        prefix: str,
        clock: Callable[[], float],
    ) -> None:
        self.store = store
        self.cache = cache
        self.options = options
        self.clock = clock
        self.inodes = InodeTable(root_key(prefix), clock=clock, negative_ttl=options.negative_ttl)
        #: The mount's start: the time of directories that have no marker to give one.
        self.mounted_ns = time.time_ns()
        self.handles = Handles()
        #: Inode -> its staging file, while open for writing (or being truncated).
        self.staged: dict[int, Staged] = {}
        self.writeback = writeback
        #: The kernel's page cache, where random readers' blocks are pushed (once the FUSE
        #: adapter attaches the kernel call).
        self.pages = PageCache(cache.nursery)
        #: Whole versions fetched in the background for random readers of slow stores.
        self.fills = Fills(cache, max_fetches=cache.max_fetches, disk_capacity=cache.disk_capacity)
        #: Directories' times from entries made and removed here (memory only).
        self.dir_times = DirectoryTimes()
        self.stats = FsStats()

    def check_writable(self) -> None:
        """Refuse a change on a read-only mount (:class:`ReadOnly`)."""
        if self.options.read_only:
            raise ReadOnly("read-only mount")
