"""The file system over a blob store, as the FUSE adapter and the tests call it.

:class:`Filesystem` takes inode numbers, names and handles, returns
:class:`~blobfs.fs.inodes.Node` objects and bytes, and raises :mod:`blobfs.errors`; it knows
nothing of pyfuse3 or the kernel (:mod:`blobfs.fuse.operations` adapts it; tests drive it
directly).  It is a facade: each request goes to the part that owns it, and the parts share
one :class:`~blobfs.fs.state.FsState` (whose docstring holds the concurrency rule):

* :mod:`~blobfs.fs.lookup` -- names to nodes, attribute TTLs, negative entries;
  :mod:`~blobfs.fs.attributes` fills attributes in, :mod:`~blobfs.fs.listings` caches
  directory listings, :mod:`~blobfs.fs.directories` serves ``readdir``;
* :mod:`~blobfs.fs.reader` -- opening a version and reading it through the block cache;
* :mod:`~blobfs.fs.writer` and :mod:`~blobfs.fs.staging` -- writes, staging files, uploads,
  ``setattr``; :mod:`~blobfs.fs.metadata_writes` stores metadata changes alone;
* :mod:`~blobfs.fs.xattrs` -- extended attributes;
* :mod:`~blobfs.fs.changes` and :mod:`~blobfs.fs.rename` -- namespace changes;
* :mod:`~blobfs.fs.times` -- the rules of atime, mtime and ctime;
* :mod:`~blobfs.fs.sync` and :mod:`~blobfs.fs.invalidation` -- what an operator asks of a
  running mount (``blobfs flush``, ``blobfs invalidate``), over a :mod:`~blobfs.fs.scope`.

Consistency is described in ``docs/SEMANTICS.md``.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from blobfs.bridge.store import TrioStore
from blobfs.cache.blocks import BlockCache
from blobfs.cache.fill import Fills
from blobfs.cache.pagecache import PageCache
from blobfs.errors import IsADirectory
from blobfs.fs.attributes import Attributes
from blobfs.fs.changes import Changes
from blobfs.fs.directories import Directories
from blobfs.fs.handles import FileHandle
from blobfs.fs.inodes import ROOT_INODE, InodeTable, Node
from blobfs.fs.invalidation import Invalidated, Invalidator, KernelCache
from blobfs.fs.listings import Listings
from blobfs.fs.lookup import Lookup
from blobfs.fs.metadata_writes import MetadataWrites
from blobfs.fs.names import NAME_MAX
from blobfs.fs.reader import Reader
from blobfs.fs.rename import Renamer
from blobfs.fs.scope import Scope
from blobfs.fs.staging import Staging
from blobfs.fs.state import FsState, FsStats
from blobfs.fs.sync import Syncer, SyncReport
from blobfs.fs.times import accessed
from blobfs.fs.writer import Writer
from blobfs.fs.xattrs import Xattrs
from blobfs.options import MountOptions
from blobfs.write.budget import WriteBudget
from blobfs.write.staging import Staged
from blobfs.write.writeback import WriteBack

#: What ``statfs`` reports: a bucket has no real capacity, so report a large, fixed one
#: (1 PiB, 2^32 inodes) that keeps ``df`` and free-space checks in programs happy.
STATFS_BLOCK = 4096
STATFS_BLOCKS = (1 << 50) // STATFS_BLOCK
STATFS_FILES = 1 << 32


@dataclass(frozen=True)
class StatFs:
    """What ``statfs`` reports."""

    block_size: int
    blocks: int
    blocks_free: int
    files: int
    files_free: int
    name_max: int


class Filesystem:
    """The file system.  Create it inside a nursery (the block cache prefetches in it)."""

    def __init__(
        self,
        store: TrioStore,
        cache: BlockCache,
        options: MountOptions,
        *,
        prefix: str = "",
        clock: Callable[[], float] = time.monotonic,
        staging_dir: Path | None = None,
        writeback: WriteBack | None = None,
    ) -> None:
        """``writeback`` is the mount's write-back (staging dir, budget, background
        nursery); without one, one in ``staging_dir`` (which the caller owns and removes)
        that runs its streams in the block cache's nursery, with
        :attr:`MountOptions.write_memory`."""
        if writeback is None:
            if staging_dir is None:
                raise TypeError("Filesystem needs a writeback or a staging_dir")
            writeback = WriteBack(staging_dir, cache.nursery, WriteBudget(options.write_memory))
        self.state = state = FsState(store, cache, options, writeback, prefix=prefix, clock=clock)
        attributes = Attributes(state)
        listings = Listings(state)
        staging = Staging(state, attributes, listings)
        self._lookup = lookup = Lookup(state, attributes, listings)
        self._directories = Directories(state, listings, lookup)
        self._reader = Reader(state, lookup)
        self._staging = staging
        metadata = MetadataWrites(state, attributes, listings)
        self._writer = Writer(state, lookup, listings, staging, metadata)
        self._xattrs = Xattrs(state, lookup, metadata)
        self._changes = Changes(state, attributes, lookup, listings, staging)
        self._renamer = Renamer(state, lookup, listings, staging)
        self._syncer = Syncer(state, staging)
        self._invalidator = Invalidator(state, listings)
        lookup.init_dir(state.inodes.root, None)

    # -- what the adapter, the daemon and the tests read ---------------------------------------

    @property
    def store(self) -> TrioStore:
        return self.state.store

    @property
    def cache(self) -> BlockCache:
        return self.state.cache

    @property
    def pages(self) -> PageCache:
        """The kernel's page cache (the FUSE adapter attaches the call that fills it)."""
        return self.state.pages

    @property
    def fills(self) -> Fills:
        """The whole-object fills of random readers of slow stores."""
        return self.state.fills

    @property
    def options(self) -> MountOptions:
        return self.state.options

    @property
    def clock(self) -> Callable[[], float]:
        return self.state.clock

    @property
    def inodes(self) -> InodeTable:
        return self.state.inodes

    @property
    def writeback(self) -> WriteBack:
        return self.state.writeback

    @property
    def staging_dir(self) -> Path:
        """Where staging files are kept."""
        return self.state.writeback.directory

    @property
    def stats(self) -> FsStats:
        return self.state.stats

    @property
    def mounted_ns(self) -> int:
        return self.state.mounted_ns

    # -- names and attributes ------------------------------------------------------------------

    async def lookup(self, parent_ino: int, name: str) -> Node:
        """The entry ``name`` in directory ``parent_ino``; counts one kernel reference."""
        return await self._lookup.lookup(parent_ino, name)

    def forget(self, items: Sequence[tuple[int, int]]) -> None:
        """The kernel dropped references: ``(inode, count)`` pairs."""
        self._lookup.forget(items)

    async def getattr(self, ino: int) -> Node:
        """The node of ``ino`` with current attributes."""
        return await self._lookup.getattr(ino)

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
        """Change mode, owner, size or times."""
        node = await self._writer.setattr(
            ino, mode=mode, uid=uid, gid=gid, size=size, mtime_ns=mtime_ns, atime_ns=atime_ns, fh=fh
        )
        await self.state.pages.settle(ino)  # before the kernel truncates its cache
        return node

    # -- directories ---------------------------------------------------------------------------

    async def opendir(self, ino: int) -> int:
        """Open directory ``ino``; returns the handle number."""
        return await self._directories.opendir(ino)

    async def readdir(self, fh: int, start_id: int, emit: Callable[[str, Node, int], bool]) -> None:
        """Hand entries from position ``start_id`` to ``emit(name, node, next_id)``; see
        :meth:`Directories.readdir <blobfs.fs.directories.Directories.readdir>`.  Reading
        from the start is an access of the directory (its atime, by ``relatime``)."""
        await self._directories.readdir(fh, start_id, emit)
        if start_id == 0:
            handle = self.state.handles.dirs.get(fh)
            if handle is not None:
                self.state.dir_times.accessed(handle.node)

    async def releasedir(self, fh: int) -> None:
        """Close directory handle ``fh``."""
        await self._directories.releasedir(fh)

    # -- files ---------------------------------------------------------------------------------

    async def open(self, ino: int, flags: int) -> FileHandle:
        """Open file ``ino``: on its staging file if it is being written or ``flags`` write,
        else on its current version."""
        node = self.state.inodes.get(ino)
        if node.is_dir:
            raise IsADirectory(node.key)
        handle = await self._writer.open(node, flags)
        if handle is None:
            handle = await self._reader.open(node)
        handle.noatime = bool(flags & os.O_NOATIME)
        # No push of what the kernel must now forget may land after the reply.
        await self.state.pages.settle(ino)
        return handle

    async def read(self, fh: int, offset: int, size: int) -> bytes | memoryview:
        """Up to ``size`` bytes at ``offset`` (a view into a cached block when it can).
        A read moves the file's atime by the ``relatime`` rule (unless opened
        ``O_NOATIME``), in memory only."""
        handle = self.state.handles.file(fh)
        data = await self._reader.read(fh, offset, size)
        if not handle.noatime:
            accessed(handle.node)
        return data

    async def write(self, fh: int, offset: int, data: bytes) -> int:
        """Write ``data`` at ``offset``; returns the bytes written."""
        return await self._writer.write(fh, offset, data)

    async def flush(self, fh: int) -> None:
        """``close()`` of a descriptor: a dirty file is uploaded now, and its error is the
        error of ``close()``."""
        await self._writer.flush(fh)

    async def fsync(self, fh: int, datasync: bool) -> None:
        """As :meth:`flush`: a dirty file is uploaded."""
        await self._writer.flush(fh)

    async def release(self, fh: int) -> None:
        """The kernel closed handle ``fh``."""
        await self._writer.release(fh)

    async def create(self, parent_ino: int, name: str, mode: int, flags: int) -> FileHandle:
        """Create the file ``name`` and open it for writing."""
        return await self._writer.create(parent_ino, name, mode, flags)

    # -- namespace changes ---------------------------------------------------------------------

    async def mkdir(self, parent_ino: int, name: str, mode: int) -> Node:
        """Make the directory ``name`` in ``parent_ino``."""
        return await self._changes.mkdir(parent_ino, name, mode)

    async def unlink(self, parent_ino: int, name: str) -> None:
        """Delete the file ``name`` in ``parent_ino``."""
        await self._changes.unlink(parent_ino, name)

    async def rmdir(self, parent_ino: int, name: str) -> None:
        """Delete the empty directory ``name`` in ``parent_ino``."""
        await self._changes.rmdir(parent_ino, name)

    async def rename(
        self, parent_ino: int, name: str, new_parent_ino: int, new_name: str, flags: int
    ) -> None:
        """Move ``name`` to ``new_name`` in ``new_parent_ino`` (``flags``: renameat2's)."""
        await self._renamer.rename(parent_ino, name, new_parent_ino, new_name, flags)

    async def symlink(self, parent_ino: int, name: str, target: str) -> Node:
        """Make the symbolic link ``name`` to ``target``."""
        return await self._changes.symlink(parent_ino, name, target)

    async def readlink(self, ino: int) -> bytes:
        """The target of the symbolic link ``ino`` (an access: its atime moves)."""
        target = await self._reader.readlink(ino)
        node = self.state.inodes.find(ino)
        if node is not None:
            accessed(node)
        return target

    async def mknod(self, parent_ino: int, name: str, kind: int, mode: int, rdev: int) -> Node:
        """Make the FIFO, socket or device node ``name`` (``kind``: its ``S_IFMT`` bits)."""
        return await self._changes.mknod(parent_ino, name, kind, mode, rdev)

    async def link(self, ino: int, new_parent_ino: int, new_name: str) -> Node:
        """Hard links are not supported."""
        return await self._changes.link(ino, new_parent_ino, new_name)

    # -- extended attributes -------------------------------------------------------------------

    async def getxattr(self, ino: int, name: bytes) -> bytes:
        """The value of the extended attribute ``name`` (:class:`~blobfs.errors.NoAttribute`
        if there is none)."""
        return await self._xattrs.get(ino, name)

    async def listxattr(self, ino: int) -> list[bytes]:
        """The names of the node's extended attributes."""
        return await self._xattrs.names(ino)

    async def setxattr(self, ino: int, name: bytes, value: bytes) -> None:
        """Set the extended attribute ``name`` and store it."""
        await self._xattrs.set(ino, name, value)

    async def removexattr(self, ino: int, name: bytes) -> None:
        """Remove the extended attribute ``name``."""
        await self._xattrs.remove(ino, name)

    # -- the file system as a whole ------------------------------------------------------------

    def statfs(self) -> StatFs:
        """Fixed, large capacity figures (see :data:`STATFS_BLOCKS`)."""
        return StatFs(
            block_size=STATFS_BLOCK,
            blocks=STATFS_BLOCKS,
            blocks_free=STATFS_BLOCKS,
            files=STATFS_FILES,
            files_free=STATFS_FILES,
            name_max=NAME_MAX,
        )

    async def drain(self) -> None:
        """Upload whatever is still dirty (called before the daemon exits)."""
        await self._staging.drain()

    # -- what an operator asks of a running mount ----------------------------------------------

    def scope(self, paths: list[str] | tuple[str, ...] = ()) -> Scope:
        """The part of the mount ``paths`` (relative to its root) name; none: all of it."""
        return Scope.of(self.state.inodes.root.key, paths)

    def unsaved(self, scope: Scope | None = None) -> list[tuple[Node, Staged]]:
        """The files whose data is not stored yet."""
        return self._syncer.unsaved(scope)

    async def sync(self, scope: Scope, report: SyncReport) -> None:
        """Store every change made in ``scope`` before the call (see :mod:`blobfs.fs.sync`);
        ``report`` fills in as it goes."""
        await self._syncer.sync(scope, report)

    async def invalidate(self, scope: Scope) -> Invalidated:
        """Forget what the mount and the kernel cache about ``scope``."""
        return await self._invalidator.invalidate(scope)

    def attach_kernel(self, kernel: KernelCache) -> None:
        """The kernel's caches, to invalidate (the FUSE layer attaches them once mounted)."""
        self._invalidator.kernel = kernel

    def open_handles(self) -> int:
        """How many file and directory handles are open."""
        return len(self.state.handles)

    def check_consistency(self) -> None:
        """Assert the file system's invariants (tests end with this)."""
        self.state.inodes.check_consistency()
        self.state.handles.check_consistency(self.state.inodes)
        assert self.state.inodes.get(ROOT_INODE).lookups >= 1
