"""The file system core: names, attributes, listings and reads over a blob store.

This module knows nothing of pyfuse3 or the kernel: it takes inode numbers, names and
handles, returns :class:`~blobfs.inodes.Node` objects and bytes, and raises
:mod:`blobfs.errors`.  :mod:`blobfs.fuse_ops` adapts it to pyfuse3; tests drive it directly.

Consistency (see ``docs/SEMANTICS.md``):

* A file's attributes are trusted for ``attr_ttl`` seconds, then re-checked with a HEAD.
  A directory listing is reused for ``dir_ttl`` seconds, both for ``readdir`` and to answer
  lookups without a request.  A name found missing stays missing for ``negative_ttl``.
* An open file reads the version (key + ETag) it was opened on.  Reads that need data not
  yet cached are conditional on that ETag, so if the object is replaced or deleted they
  fail with :class:`~blobfs.errors.Stale` instead of mixing versions.  The next ``open``
  (after the attribute TTL) sees the new version.

Concurrency: the core runs on the one trio thread.  State (the inode table, handle tables,
listings) is changed only between awaits, so it needs no locks; the rule that keeps it
correct is that **after any await a method re-reads what it needs** (a node may have been
detached or refreshed meanwhile) and that :meth:`InodeTable.remember` is idempotent, so two
lookups of one name racing to the store end up with one inode.  The block cache has its own
protocol (:mod:`blobfs.block_cache`).

The write path (issue 6) plugs in at :class:`FileHandle` (a handle will own a write-back
staging file), at :meth:`Filesystem.open` / :meth:`Filesystem.create` and at the
namespace-changing methods, which for now refuse with :class:`~blobfs.errors.ReadOnly` or
:class:`~blobfs.errors.NotSupported`.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Sequence
from contextlib import aclosing
from dataclasses import dataclass, field

import trio

from sdk.errors import ResourceNotFound
from sdk.providers.base import ObjectInfo, PrefixInfo

from . import namespace
from .block_cache import Block, BlockCache
from .bridge import TrioStore
from .errors import (
    BadHandle,
    InvalidName,
    IsADirectory,
    NameTooLong,
    NotADirectory,
    NotFound,
    NotSupported,
    ReadOnly,
    from_storage,
)
from .inodes import ROOT_INODE, Entry, InodeTable, Kind, Listing, Node
from .options import MountOptions
from .readahead import ReadAhead

log = logging.getLogger(__name__)

_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_TRUNC | os.O_APPEND | os.O_CREAT

#: What ``statfs`` reports: a bucket has no real capacity, so report a large, fixed one
#: (1 PiB, 2^32 inodes) that keeps ``df`` and free-space checks in programs happy.
STATFS_BLOCK = 4096
STATFS_BLOCKS = (1 << 50) // STATFS_BLOCK
STATFS_FILES = 1 << 32
#: A directory with at least this many entries is re-listed, rather than HEADed name by
#: name, when lookups arrive after its listing expired.
RELIST_THRESHOLD = 256


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


@dataclass(eq=False)
class DirHandle:
    """An open directory: a snapshot of its entries, so ``readdir`` offsets stay valid."""

    fh: int
    node: Node
    entries: list[Entry] | None = None


@dataclass(frozen=True)
class StatFs:
    block_size: int
    blocks: int
    blocks_free: int
    files: int
    files_free: int
    name_max: int


@dataclass
class FsStats:
    heads: int = 0
    lists: int = 0
    skipped_names: int = 0
    extra: dict[str, int] = field(default_factory=dict)


class Filesystem:
    """The core.  Create it inside a nursery (the block cache prefetches in it)."""

    def __init__(
        self,
        store: TrioStore,
        cache: BlockCache,
        options: MountOptions,
        *,
        prefix: str = "",
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.store = store
        self.cache = cache
        self.options = options
        self.clock = clock
        self.inodes = InodeTable(
            namespace.root_key(prefix), clock=clock, negative_ttl=options.negative_ttl
        )
        self.mounted_ns = time.time_ns()
        self._files: dict[int, FileHandle] = {}
        self._dirs: dict[int, DirHandle] = {}
        self._next_fh = 1
        self._listing_loads: dict[int, trio.Event] = {}
        self.stats = FsStats()
        self._init_dir(self.inodes.root, None)

    # -- attributes --------------------------------------------------------------------------

    def _init_dir(self, node: Node, marker: ObjectInfo | None) -> None:
        node.mode = self.options.effective_dir_mode
        node.uid, node.gid = self.options.uid, self.options.gid
        node.size = 0
        mtime = self.mounted_ns
        if marker is not None:
            mtime = namespace.to_ns(marker.modified_at, mtime)
            self._apply_metadata(node, marker)
        node.mtime_ns = node.ctime_ns = mtime
        node.attr_expires = self.clock() + self.options.dir_ttl

    def _init_file(self, node: Node, size: int, mtime_ns: int, etag: str | None) -> None:
        """Attributes as a listing gives them (no user metadata)."""
        if node.metadata_loaded and node.etag == etag:
            # A HEAD already gave this version's metadata; a listing knows less.
            node.attr_expires = self.clock() + self.options.attr_ttl
            return
        node.size = size
        node.etag = etag
        node.mtime_ns = node.ctime_ns = mtime_ns or self.mounted_ns
        node.mode = self.options.effective_file_mode
        node.uid, node.gid = self.options.uid, self.options.gid
        node.metadata_loaded = False
        node.attr_expires = self.clock() + self.options.attr_ttl

    def _apply_head(self, node: Node, info: ObjectInfo) -> None:
        self._init_file(node, info.size, namespace.to_ns(info.modified_at, 0), info.etag)
        node.size, node.etag = info.size, info.etag
        self._apply_metadata(node, info)
        node.metadata_loaded = True

    def _apply_metadata(self, node: Node, info: ObjectInfo) -> None:
        meta = info.metadata
        if not meta:
            return
        opts = self.options
        explicit_mode = opts.dir_mode if node.is_dir else opts.file_mode
        mode = namespace.metadata_mode(meta)
        if mode is not None and explicit_mode is None:
            node.mode = mode
        uid, gid = namespace.metadata_owner(meta)
        if uid is not None and not opts.uid_forced:
            node.uid = uid
        if gid is not None and not opts.gid_forced:
            node.gid = gid
        mtime = namespace.metadata_mtime_ns(meta)
        if mtime is not None:
            node.mtime_ns = mtime

    # -- lookup --------------------------------------------------------------------------------

    def _dir(self, ino: int) -> Node:
        node = self.inodes.get(ino)
        if not node.is_dir:
            raise NotADirectory(node.key)
        return node

    @staticmethod
    def _check_name(name: str) -> None:
        if len(name.encode("utf-8", "surrogateescape")) > namespace.NAME_MAX:
            raise NameTooLong(name[:40] + "...")
        if "\0" in name or "/" in name:
            raise InvalidName(repr(name))

    async def lookup(self, parent_ino: int, name: str) -> Node:
        """The entry ``name`` in directory ``parent_ino``; counts one kernel reference."""
        parent = self._dir(parent_ino)
        if name == ".":
            node = parent
        elif name == "..":
            node = self.inodes.get(parent.parent)
        else:
            self._check_name(name)
            node = await self._resolve(parent, name)
        self.inodes.ref(node)
        return node

    async def _resolve(self, parent: Node, name: str) -> Node:
        now = self.clock()
        existing = self.inodes.child(parent.ino, name)
        if existing is not None and existing.attr_expires > now:
            return existing
        if existing is None and self.inodes.is_negative(parent.ino, name):
            raise NotFound(name)
        if not namespace.valid_name(name):
            raise NotFound(name)
        listing = parent.listing
        if listing is not None and (
            listing.expires > now or len(listing.entries) >= RELIST_THRESHOLD
        ):
            # A big directory whose listing expired: `ls -l` is stat-ing its entries one by
            # one, and one paged re-listing is far cheaper than a HEAD per name.
            listing = await self._listing(parent)
            entry = listing.entries.get(name)
            if entry is not None:
                return self._node_from_entry(parent, entry)
            return self._missing(parent, name, self.inodes.child(parent.ino, name))
        return await self._resolve_remote(parent, name)

    def _missing(self, parent: Node, name: str, existing: Node | None) -> Node:
        if existing is not None:
            self.inodes.detach(existing)
        self.inodes.set_negative(parent.ino, name)
        raise NotFound(name)

    async def _resolve_remote(self, parent: Node, name: str) -> Node:
        file_key = namespace.child_key(parent.key, name, directory=False)
        dir_key = namespace.child_key(parent.key, name, directory=True)
        head: ObjectInfo | None = None
        first: ObjectInfo | PrefixInfo | None = None

        async def do_head() -> None:
            nonlocal head
            self.stats.heads += 1
            try:
                with from_storage():
                    head = await self.store.head(file_key)
            except NotFound:
                head = None

        async def do_list() -> None:
            nonlocal first
            self.stats.lists += 1
            with from_storage():
                first = await self.store.first_entry(dir_key, delimiter="/")

        # Both questions at once: one round trip of latency for a lookup.
        async with trio.open_nursery() as nursery:
            nursery.start_soon(do_head)
            nursery.start_soon(do_list)

        existing = self.inodes.child(parent.ino, name)
        if first is not None:
            # The directory wins over a file of the same name.
            node = self.inodes.remember(parent, name, Kind.DIR, dir_key)
            marker = first if isinstance(first, ObjectInfo) and first.key == dir_key else None
            self._init_dir(node, marker)
            return node
        if head is not None:
            node = self.inodes.remember(parent, name, Kind.FILE, file_key)
            self._apply_head(node, head)
            return node
        return self._missing(parent, name, existing)

    def _node_from_entry(self, parent: Node, entry: Entry) -> Node:
        node = self.inodes.remember(parent, entry.name, entry.kind, entry.key)
        if entry.kind is Kind.DIR:
            if node.attr_expires <= self.clock():
                self._init_dir(node, None)
        else:
            self._init_file(node, entry.size, entry.mtime_ns, entry.etag)
        return node

    def forget(self, items: Sequence[tuple[int, int]]) -> None:
        for ino, count in items:
            self.inodes.forget(ino, count)

    async def getattr(self, ino: int) -> Node:
        node = self.inodes.get(ino)
        if node.kind is Kind.FILE and node.attr_expires <= self.clock():
            await self._refresh_file(node)
        return node

    async def _refresh_file(self, node: Node) -> None:
        self.stats.heads += 1
        try:
            with from_storage():
                info = await self.store.head(node.key)
        except NotFound:
            self.inodes.detach(node)
            raise
        self._apply_head(node, info)

    # -- directories ---------------------------------------------------------------------------

    async def opendir(self, ino: int) -> int:
        node = self._dir(ino)
        fh = self._new_fh()
        self._dirs[fh] = DirHandle(fh=fh, node=node)
        self.inodes.opened(node)
        return fh

    async def readdir(self, fh: int, start_id: int, emit: Callable[[str, Node, int], bool]) -> None:
        """Hand entries from position ``start_id`` to ``emit(name, node, next_id)``.

        ``emit`` returns False when the kernel's buffer is full.  Entries it accepted count
        one kernel reference each (readdirplus), except ``.`` and ``..``.
        """
        handle = self._dirs.get(fh)
        if handle is None:
            raise BadHandle(str(fh))
        if handle.entries is None or start_id == 0:
            handle.entries = list((await self._listing(handle.node)).entries.values())
        dir_node = handle.node
        if start_id == 0 and not emit(".", dir_node, 1):
            return
        if start_id <= 1 and not emit("..", self.inodes.get(dir_node.parent), 2):
            return
        for index in range(max(0, start_id - 2), len(handle.entries)):
            entry = handle.entries[index]
            node = self._node_from_entry(dir_node, entry)
            if emit(entry.name, node, index + 3):
                self.inodes.ref(node)
            else:
                self.inodes.drop_unreferenced(node)
                return

    async def releasedir(self, fh: int) -> None:
        handle = self._dirs.pop(fh, None)
        if handle is not None:
            self.inodes.closed(handle.node)

    async def _listing(self, node: Node) -> Listing:
        """The directory's listing, reloaded if expired; one load at a time per directory,
        so the lookups of an ``ls -l`` racing a reload all wait for that one reload."""
        while True:
            listing = node.listing
            if listing is not None and listing.expires > self.clock():
                return listing
            pending = self._listing_loads.get(node.ino)
            if pending is None:
                break
            await pending.wait()
            if node.listing is not None and node.listing is not listing:
                return node.listing  # just loaded for us, even if its TTL is already short
        done = trio.Event()
        self._listing_loads[node.ino] = done
        try:
            listing = await self._load_listing(node)
            node.listing = listing
            return listing
        finally:
            del self._listing_loads[node.ino]
            done.set()

    async def _load_listing(self, node: Node) -> Listing:
        prefix = node.key
        entries: dict[str, Entry] = {}
        self.stats.lists += 1
        with from_storage():
            async with aclosing(self.store.list_pages(prefix, delimiter="/")) as pages:
                async for page in pages:
                    for item in page:
                        self._add_entry(entries, prefix, item)
        return Listing(entries=entries, expires=self.clock() + self.options.dir_ttl)

    def _add_entry(
        self, entries: dict[str, Entry], prefix: str, item: ObjectInfo | PrefixInfo
    ) -> None:
        if not item.key.startswith(prefix):
            return
        rest = item.key[len(prefix) :]
        if isinstance(item, PrefixInfo) or rest.endswith("/"):
            name, kind = rest[:-1], Kind.DIR
        else:
            name, kind = rest, Kind.FILE
        if not rest:
            return  # this directory's own marker object
        if not namespace.valid_name(name):
            self.stats.skipped_names += 1
            log.debug("skipping key %r: not representable as a name", item.key)
            return
        prior = entries.get(name)
        if prior is not None and (prior.kind is Kind.DIR or kind is Kind.FILE):
            return  # the directory wins; a duplicate file changes nothing
        if kind is Kind.DIR:
            entries[name] = Entry(name=name, kind=kind, key=prefix + name + "/")
        else:
            assert isinstance(item, ObjectInfo)
            entries[name] = Entry(
                name=name,
                kind=kind,
                key=item.key,
                size=item.size,
                mtime_ns=namespace.to_ns(item.modified_at, 0),
                etag=item.etag,
            )

    # -- files ---------------------------------------------------------------------------------

    async def open(self, ino: int, flags: int) -> FileHandle:
        node = self.inodes.get(ino)
        if node.is_dir:
            raise IsADirectory(node.key)
        if flags & _WRITE_FLAGS:
            self._refuse_write()
        if node.attr_expires <= self.clock() or node.etag is None:
            await self._refresh_file(node)
        assert node.etag is not None
        fh = self._new_fh()
        handle = FileHandle(
            fh=fh,
            node=node,
            key=node.key,
            etag=node.etag,
            size=node.size,
            readahead=ReadAhead(self.cache.block_size, self._max_window()),
            keep_cache=node.cached_etag == node.etag,
        )
        node.cached_etag = node.etag
        self._files[fh] = handle
        self.inodes.opened(node)
        return handle

    def _max_window(self) -> int:
        # Never let one reader's read-ahead claim more than half the memory budget.
        budget = self.cache.memory_budget // 2
        return max(self.cache.block_size, min(self.options.readahead, budget))

    def _file(self, fh: int) -> FileHandle:
        handle = self._files.get(fh)
        if handle is None:
            raise BadHandle(str(fh))
        return handle

    async def read(self, fh: int, offset: int, size: int) -> bytes | memoryview:
        """Up to ``size`` bytes at ``offset``; a view into a cached block when the read
        falls inside one (no copy on the way to the kernel)."""
        handle = self._file(fh)
        if offset >= handle.size or size <= 0:
            return b""
        end = min(offset + size, handle.size)
        bs = self.cache.block_size
        first, last = offset // bs, (end - 1) // bs
        plan = handle.readahead.on_read(offset, size, handle.size)
        key, etag = handle.key, handle.etag
        blocks: list[Block] = []
        if not plan.sequential:
            for i in range(first, last + 1):
                cached = self.cache.cached(key, etag, i)
                if cached is None:
                    return await self.cache.read_direct(key, etag, offset, end - offset)
                blocks.append(cached)
        else:
            ahead = plan.prefetch[-1] if plan.prefetch else last
            self.cache.prefetch_range(key, etag, handle.size, first, max(last, ahead))
            for i in range(first, last + 1):
                blocks.append(await self.cache.get(key, etag, handle.size, i))
        start = offset - first * bs
        if len(blocks) == 1:
            return memoryview(blocks[0])[start : start + end - offset]
        return b"".join(blocks)[start : start + end - offset]

    async def flush(self, fh: int) -> None:
        self._file(fh)

    async def fsync(self, fh: int, datasync: bool) -> None:
        self._file(fh)

    async def release(self, fh: int) -> None:
        handle = self._files.pop(fh, None)
        if handle is not None:
            self.inodes.closed(handle.node)

    # -- the write path: refused until write-back lands (issue 6) -----------------------------

    def _refuse_write(self) -> None:
        if self.options.read_only:
            raise ReadOnly("read-only mount")
        raise NotSupported("writing is not supported yet")

    async def create(self, parent_ino: int, name: str, mode: int, flags: int) -> FileHandle:
        self._dir(parent_ino)
        self._check_name(name)
        self._refuse_write()
        raise AssertionError("unreachable")

    async def write(self, fh: int, offset: int, data: bytes) -> int:
        self._file(fh)
        self._refuse_write()
        raise AssertionError("unreachable")

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
        node = self.inodes.get(ino)
        if (mode, uid, gid, size, mtime_ns) == (None, None, None, None, None):
            return node  # atime only: not stored, nothing to refuse
        self._refuse_write()
        raise AssertionError("unreachable")

    async def mkdir(self, parent_ino: int, name: str, mode: int) -> Node:
        self._dir(parent_ino)
        self._check_name(name)
        self._refuse_write()
        raise AssertionError("unreachable")

    async def unlink(self, parent_ino: int, name: str) -> None:
        self._dir(parent_ino)
        self._refuse_write()

    async def rmdir(self, parent_ino: int, name: str) -> None:
        self._dir(parent_ino)
        self._refuse_write()

    async def rename(
        self, parent_ino: int, name: str, new_parent_ino: int, new_name: str, flags: int
    ) -> None:
        self._dir(parent_ino)
        self._dir(new_parent_ino)
        self._refuse_write()

    async def symlink(self, parent_ino: int, name: str, target: str) -> Node:
        self._dir(parent_ino)
        self._refuse_write()
        raise AssertionError("unreachable")

    async def link(self, ino: int, new_parent_ino: int, new_name: str) -> Node:
        if self.options.read_only:
            raise ReadOnly("read-only mount")
        raise NotSupported("hard links are not supported")

    # -- the file system as a whole ------------------------------------------------------------

    def statfs(self) -> StatFs:
        return StatFs(
            block_size=STATFS_BLOCK,
            blocks=STATFS_BLOCKS,
            blocks_free=STATFS_BLOCKS,
            files=STATFS_FILES,
            files_free=STATFS_FILES,
            name_max=namespace.NAME_MAX,
        )

    async def drain(self) -> None:
        """Wait until nothing is pending (called before the daemon exits).

        Reads leave nothing behind; the write path (issue 6) waits here for its uploads.
        """
        return None

    def _new_fh(self) -> int:
        fh = self._next_fh
        self._next_fh += 1
        return fh

    def open_handles(self) -> int:
        return len(self._files) + len(self._dirs)

    def check_consistency(self) -> None:
        """Assert the core's invariants (tests end with this)."""
        self.inodes.check_consistency()
        for handle in self._files.values():
            assert self.inodes.get(handle.node.ino) is handle.node, "open file lost its inode"
        for dh in self._dirs.values():
            assert self.inodes.get(dh.node.ino) is dh.node, "open dir lost its inode"
        assert self.inodes.get(ROOT_INODE).lookups >= 1


__all__ = ["DirHandle", "FileHandle", "Filesystem", "ResourceNotFound", "StatFs"]
