"""The file system core: names, attributes, listings and reads over a blob store.

This module knows nothing of pyfuse3 or the kernel: it takes inode numbers, names and
handles, returns :class:`~blobfs.fs.inodes.Node` objects and bytes, and raises
:mod:`blobfs.errors`.  :mod:`blobfs.fuse.operations` adapts it to pyfuse3; tests drive it directly.

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
protocol (:mod:`blobfs.cache.blocks`).

The write path (issue 6) plugs in at :class:`FileHandle` (a handle will own a write-back
staging file), at :meth:`Filesystem.open` / :meth:`Filesystem.create` and at the
namespace-changing methods, which for now refuse with :class:`~blobfs.errors.ReadOnly` or
:class:`~blobfs.errors.NotSupported`.
"""

from __future__ import annotations

import logging
import os
import re
import stat
import tempfile
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Sequence
from contextlib import aclosing
from dataclasses import dataclass, field
from pathlib import Path

import trio
from cachetools import LRUCache

from blobfs.bridge.store import TrioStore
from blobfs.cache.blocks import Block, BlockCache
from blobfs.cache.readahead import ReadAhead
from blobfs.errors import (
    BadHandle,
    Exists,
    FsError,
    InvalidName,
    IsADirectory,
    NameTooLong,
    NotADirectory,
    NotEmpty,
    NotFound,
    NotSupported,
    ReadOnly,
    Stale,
    StorageFailure,
    from_storage,
)
from blobfs.fs import namespace
from blobfs.fs.inodes import ROOT_INODE, Entry, InodeTable, Kind, Listing, Node
from blobfs.options import MountOptions
from blobfs.write.budget import WriteBudget
from blobfs.write.staging import Staged
from blobfs.write.writeback import WriteBack
from sdk.errors import ResourceNotFound
from sdk.providers.base import ObjectInfo, PrefixInfo

log = logging.getLogger(__name__)

_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_TRUNC | os.O_APPEND
#: renameat2 flags (linux/fs.h).
RENAME_NOREPLACE = 1
#: Server-side copies (and deletes) of one directory rename in flight at once.
RENAME_CONCURRENCY = 8
#: An S3 ETag that is the md5 of the content (a single PUT or copy), as opposed to a
#: multipart ``md5-N`` or an opaque Azure ETag.
_PLAIN_MD5 = re.compile(r"[0-9a-f]{32}")

#: What ``statfs`` reports: a bucket has no real capacity, so report a large, fixed one
#: (1 PiB, 2^32 inodes) that keeps ``df`` and free-space checks in programs happy.
STATFS_BLOCK = 4096
STATFS_BLOCKS = (1 << 50) // STATFS_BLOCK
STATFS_FILES = 1 << 32
#: Versions whose metadata the core remembers beyond the life of their nodes (~100 bytes
#: each).
KNOWN_METADATA = 65536
#: Listings kept by directory key beyond the life of their directory's inode (the kernel
#: forgets inodes under memory pressure or ``drop_caches``; the listing is still good).
RECENT_LISTINGS = 64


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
    #: The inode's staging file while it is open for writing (reads go there too).
    staged: Staged | None = None
    writable: bool = False


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
        staging_dir: Path | None = None,
        writeback: WriteBack | None = None,
    ) -> None:
        """``writeback`` is the mount's write-back (staging dir, budget, background
        nursery); by default one in ``staging_dir`` (else a temporary directory) that runs
        its streams in the block cache's nursery, with :attr:`MountOptions.write_memory`."""
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
        self._recent_listings: LRUCache[str, Listing] = LRUCache(maxsize=RECENT_LISTINGS)
        #: Inode -> its staging file, while open for writing (or being truncated).
        self._staged: dict[int, Staged] = {}
        if writeback is None:
            writeback = WriteBack(
                staging_dir or Path(tempfile.mkdtemp(prefix="blobfs-staging-")),
                cache.nursery,
                WriteBudget(options.write_memory),
            )
        self.writeback = writeback
        self.staging_dir = writeback.directory
        self.stats = FsStats()
        #: (key, ETag) -> (mode, uid, gid, mtime_ns, symlink) of versions HEADed or stored
        #: here, most recent last (see :meth:`_remember_metadata`).
        self._known_metadata: OrderedDict[tuple[str, str], tuple[int, int, int, int, bool]] = (
            OrderedDict()
        )
        self._init_dir(self.inodes.root, None)

    # -- attributes --------------------------------------------------------------------------

    def _init_dir(self, node: Node, marker: ObjectInfo | None) -> None:
        if node.listing is None:
            node.listing = self._recent_listings.get(node.key)
        if node.metadata_loaded:
            # The marker's metadata (or a change made here) is known; a listing knows less.
            node.attr_expires = self.clock() + self.options.dir_ttl
            return
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
        if node.ino in self._staged:
            return  # being written: the staging file is the truth
        if node.metadata_loaded and (node.etag == etag or etag is None):
            # A HEAD (or our own upload) already gave this version's metadata; a listing
            # knows less.  An entry without an ETag is one this mount made for a file that
            # was still being written when the listing was loaded: it says nothing new.
            node.attr_expires = self.clock() + self.options.attr_ttl
            return
        known = self._known_metadata.get((node.key, etag)) if etag is not None else None
        if known is not None and etag is not None:
            # This version's metadata is known from an earlier node of the same key (the
            # kernel forgot it, e.g. after a drop_caches): the same object, the same answer.
            self._known_metadata.move_to_end((node.key, etag))
            node.size, node.etag = size, etag
            node.mode, node.uid, node.gid, node.mtime_ns, node.symlink = known
            node.ctime_ns = node.mtime_ns
            node.metadata_loaded = True
            node.attr_expires = self.clock() + self.options.attr_ttl
            return
        node.size = size
        node.etag = etag
        node.mtime_ns = node.ctime_ns = mtime_ns or self.mounted_ns
        node.mode = self.options.effective_file_mode
        node.uid, node.gid = self.options.uid, self.options.gid
        node.symlink = False
        node.metadata_loaded = False
        node.attr_expires = self.clock() + self.options.attr_ttl

    def _apply_head(self, node: Node, info: ObjectInfo) -> None:
        self._init_file(node, info.size, namespace.to_ns(info.modified_at, 0), info.etag)
        node.size, node.etag = info.size, info.etag
        self._apply_metadata(node, info)
        node.metadata_loaded = True
        self._remember_metadata(node)

    def _remember_metadata(self, node: Node) -> None:
        """Keep what this version of the object says (mode, owner, mtime, symlink), so a
        node made again from a listing after the kernel forgot this one knows it too."""
        if node.etag is None or not node.metadata_loaded:
            return
        memo = self._known_metadata
        memo[(node.key, node.etag)] = (node.mode, node.uid, node.gid, node.mtime_ns, node.symlink)
        memo.move_to_end((node.key, node.etag))
        while len(memo) > KNOWN_METADATA:
            memo.popitem(last=False)

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
        if not node.is_dir:
            node.symlink = namespace.metadata_is_symlink(meta)

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
            if node.is_dir and not node.metadata_loaded:
                await self._load_dir_metadata(node)
        self.inodes.ref(node)
        return node

    async def _load_dir_metadata(self, node: Node) -> None:
        """Mode, owner and mtime of a directory from its marker's metadata (one HEAD per
        directory node; an implicit directory keeps the defaults)."""
        self.stats.heads += 1
        try:
            with from_storage():
                info = await self.store.head(node.key)
        except NotFound:
            node.metadata_loaded = True
            return
        except FsError as e:
            log.debug("cannot read the metadata of %r: %s", node.key, e)
            return
        if info.modified_at is not None:
            node.mtime_ns = node.ctime_ns = namespace.to_ns(info.modified_at, node.mtime_ns)
        self._apply_metadata(node, info)
        node.metadata_loaded = True

    async def _resolve(self, parent: Node, name: str) -> Node:
        now = self.clock()
        existing = self.inodes.child(parent.ino, name)
        if existing is not None and (existing.attr_expires > now or existing.ino in self._staged):
            return existing
        if existing is None and self.inodes.is_negative(parent.ino, name):
            raise NotFound(name)
        if not namespace.valid_name(name):
            raise NotFound(name)
        listing = parent.listing
        if listing is not None:
            # Once a directory has been listed, a lookup after the listing expired re-lists
            # it rather than HEAD + LIST the one name: as cheap for up to a page of entries,
            # and the lookups that follow (ls -l, find, reading back a tree) are answered
            # from it.  For a directory with very many entries, a stat storm's lookups each
            # cost two requests otherwise, while one paged re-listing serves them all.
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
        if (
            node.kind is Kind.FILE
            and node.attr_expires <= self.clock()
            and node.ino not in self._staged
        ):
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
            self._recent_listings[node.key] = listing
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
        # Files created here and not yet uploaded exist too.
        for ino, staged in self._staged.items():
            child = self._staged_node(ino)
            if child is not None and child.parent == node.ino and not staged.unlinked:
                if self.inodes.child(node.ino, child.name) is child:
                    entries[child.name] = Entry(
                        name=child.name, kind=Kind.FILE, key=child.key, size=child.size
                    )
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
        writing = bool(flags & _WRITE_FLAGS)
        if writing:
            self._check_writable()
        staged = self._staged.get(node.ino)
        if staged is None and writing:
            truncate = bool(flags & os.O_TRUNC)
            if not truncate and (node.attr_expires <= self.clock() or node.etag is None):
                await self._refresh_file(node)
            elif not node.metadata_loaded:
                # Known from a listing only: learn the object's mode/uid/gid first, or the
                # upload would store the mount's defaults over them.
                await self._refresh_file(node)
            staged = self._stage(node, keep_content=not truncate, dirty=truncate)
            if truncate:
                node.size = 0
                self._touch(node)
        elif staged is not None and flags & os.O_TRUNC:
            await staged.truncate(0)
            node.size = 0
            self._touch(node)
        if staged is not None:
            staged.handles += 1
            fh = self._new_fh()
            handle = FileHandle(
                fh=fh,
                node=node,
                key=node.key,
                etag=node.etag or "",
                size=node.size,
                readahead=ReadAhead(self.cache.block_size, self._max_window()),
                staged=staged,
                writable=writing,
            )
            node.cached_etag = None
            self._files[fh] = handle
            self.inodes.opened(node)
            return handle
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
        if handle.staged is not None:
            with from_storage(missing=Stale):
                return await handle.staged.read(offset, size)
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
            if first != last or ahead > last:
                # Several blocks: claimed together so they come in one GET, in a task.  A
                # single block with nothing to read ahead (a small file, a file's last
                # block) is fetched below in this task: no task to start and wake up.
                self.cache.prefetch_range(key, etag, handle.size, first, max(last, ahead))
            for i in range(first, last + 1):
                blocks.append(await self.cache.get(key, etag, handle.size, i))
        start = offset - first * bs
        if len(blocks) == 1:
            return memoryview(blocks[0])[start : start + end - offset]
        return b"".join(blocks)[start : start + end - offset]

    async def flush(self, fh: int) -> None:
        """``close()`` of a descriptor: a dirty file is uploaded now, and its error is the
        error of ``close()``."""
        handle = self._file(fh)
        if handle.staged is not None and handle.staged.dirty and not handle.staged.unlinked:
            await self._upload(handle.node, handle.staged)

    async def fsync(self, fh: int, datasync: bool) -> None:
        await self.flush(fh)

    async def release(self, fh: int) -> None:
        handle = self._files.pop(fh, None)
        if handle is None:
            return
        node, staged = handle.node, handle.staged
        try:
            if staged is not None:
                staged.handles -= 1
                if staged.handles <= 0:
                    await self._finish_staged(node, staged)
        finally:
            self.inodes.closed(node)

    async def _finish_staged(self, node: Node, staged: Staged) -> None:
        """The last handle is gone: upload if still dirty, then drop the staging file
        (kept on disk if the upload failed, so the data is not lost)."""
        if self._staged.get(node.ino) is staged:
            del self._staged[node.ino]
        if staged.dirty and not staged.unlinked:
            try:
                await self._upload(node, staged)
            except FsError as e:
                log.error(
                    "upload of %r failed after its last close (%s); data kept in %s",
                    node.key,
                    e,
                    staged.path,
                )
                staged.keep()
                node.attr_expires = 0
                return
        staged.discard()

    # -- the write path --------------------------------------------------------------------------

    def _check_writable(self) -> None:
        if self.options.read_only:
            raise ReadOnly("read-only mount")

    def _staged_node(self, ino: int) -> Node | None:
        try:
            return self.inodes.get(ino)
        except NotFound:
            return None

    def _stage(self, node: Node, *, keep_content: bool, dirty: bool = False) -> Staged:
        """A staging file for ``node``: empty, or backed lazily by its current object;
        ``dirty`` when it must be stored even if never written."""
        source_key, source_etag = node.key, node.etag

        async def fetch(offset: int, length: int) -> memoryview:
            with from_storage(missing=Stale):
                return await self.store.read_view(source_key, offset, length, etag=source_etag)

        def metadata() -> dict[str, str]:
            return self._metadata(node)

        keep = keep_content and node.size > 0
        staged = Staged(
            self.writeback,
            node.key,
            source_size=node.size if keep else 0,
            fetch=fetch if keep else None,
            # What a crash recovery checks before uploading (see blobfs.write.recovery).
            base_etag=node.etag,
            new=node.etag is None,
            store=self.store,
            metadata=metadata,
            dirty=dirty,
        )
        self._staged[node.ino] = staged
        return staged

    @staticmethod
    def _touch(node: Node, mtime_ns: int | None = None) -> None:
        node.mtime_ns = node.ctime_ns = mtime_ns if mtime_ns is not None else time.time_ns()

    def _metadata(self, node: Node) -> dict[str, str]:
        if node.is_dir:
            kind = stat.S_IFDIR
        elif node.symlink:
            kind = stat.S_IFLNK
        else:
            kind = stat.S_IFREG
        return namespace.s3fs_metadata(kind | node.mode, node.uid, node.gid, node.mtime_ns)

    async def _upload(self, node: Node, staged: Staged) -> None:
        key = node.key
        wanted = self._metadata(node)
        try:
            with from_storage(missing=Stale):
                etag = await staged.upload(self.store, key, wanted)
                stored = staged.stored_metadata
                changed = {name for name, value in wanted.items() if stored.get(name) != value}
                if changed - {"mtime"} or (changed and staged.mtime_explicit):
                    # A streamed upload carries the metadata of its start: a chmod, chown
                    # or utime made while it ran is applied now, by a copy onto itself.
                    await self.store.copy(key, key, metadata=wanted)
                    etag = (await self.store.head(key)).etag
                elif changed:
                    # Only the mtime the writes themselves moved: show what is stored.
                    node.mtime_ns = node.ctime_ns = int(stored["mtime"]) * 1_000_000_000
        except FsError:
            raise
        except OSError as e:  # the staging disk
            raise StorageFailure(f"staging file {staged.path}: {e}") from e
        node.etag = etag
        node.size = staged.size
        node.metadata_loaded = True
        node.attr_expires = self.clock() + self.options.attr_ttl
        self._remember_metadata(node)
        self._listing_put(node)

    def _listing_put(self, node: Node) -> None:
        parent = self._staged_node(node.parent)
        if parent is None or parent.listing is None:
            return
        if self.inodes.child(parent.ino, node.name) is not node:
            return
        parent.listing.entries[node.name] = Entry(
            name=node.name,
            kind=node.kind,
            key=node.key,
            size=node.size,
            mtime_ns=node.mtime_ns,
            etag=node.etag,
        )

    def _listing_drop(self, parent: Node, name: str) -> None:
        if parent.listing is not None:
            parent.listing.entries.pop(name, None)

    async def _find(self, parent: Node, name: str) -> Node | None:
        try:
            return await self._resolve(parent, name)
        except NotFound:
            return None

    async def _check_absent(self, parent: Node, name: str) -> None:
        node = await self._find(parent, name)
        if node is not None:
            self.inodes.drop_unreferenced(node)
            raise Exists(name)

    async def create(self, parent_ino: int, name: str, mode: int, flags: int) -> FileHandle:
        parent = self._dir(parent_ino)
        self._check_name(name)
        self._check_writable()
        await self._check_absent(parent, name)
        parent = self._dir(parent_ino)
        key = namespace.child_key(parent.key, name, directory=False)
        node = self.inodes.remember(parent, name, Kind.FILE, key)
        node.mode = self.options.file_mode if self.options.file_mode is not None else mode & 0o7777
        node.uid, node.gid = self.options.uid, self.options.gid
        node.size, node.etag, node.symlink = 0, None, False
        node.metadata_loaded = True
        self._touch(node)
        staged = self._stage(node, keep_content=False, dirty=True)
        staged.handles = 1
        fh = self._new_fh()
        handle = FileHandle(
            fh=fh,
            node=node,
            key=key,
            etag="",
            size=0,
            readahead=ReadAhead(self.cache.block_size, self._max_window()),
            staged=staged,
            writable=True,
        )
        self._files[fh] = handle
        self.inodes.opened(node)
        self._listing_put(node)
        return handle

    async def write(self, fh: int, offset: int, data: bytes) -> int:
        handle = self._file(fh)
        staged = handle.staged
        if staged is None or not handle.writable:
            raise BadHandle(f"{fh} is not open for writing")
        with from_storage(missing=Stale):
            written = await staged.write(offset, data)
        node = handle.node
        node.size = staged.size
        self._touch(node)
        return written

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
        self._check_writable()
        if node.is_dir and size is not None:
            raise IsADirectory(node.key)
        if not node.is_dir and not node.metadata_loaded and node.ino not in self._staged:
            # Known from a listing only: what is not changed here must be the object's own.
            await self._refresh_file(node)
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
                    await self.store.put(node.key, b"", metadata=self._metadata(node))
                node.metadata_loaded = True
            return node
        staged = self._staged.get(ino)
        if size is not None:
            if staged is None:
                if node.attr_expires <= self.clock() or node.etag is None:
                    await self._refresh_file(node)
                staged = self._stage(node, keep_content=True)
            with from_storage(missing=Stale):
                await staged.truncate(size)
            node.size = size
            if mtime_ns is None:
                self._touch(node)
            if staged.handles <= 0:
                await self._finish_staged_or_raise(node, staged)
            return node
        if staged is not None and staged.dirty:
            if mtime_ns is not None:
                staged.mtime_explicit = True
            return node  # the new metadata goes up with the data at close
        # Metadata only: a server-side copy onto itself with the metadata replaced.
        with from_storage():
            await self.store.copy(node.key, node.key, metadata=self._metadata(node))
            # The ETag a copy returns is not always the one listings report (SeaweedFS):
            # take the stored version's own, so a listing does not look like a change.
            info = await self.store.head(node.key)
        node.etag = info.etag
        node.metadata_loaded = True
        node.attr_expires = self.clock() + self.options.attr_ttl
        self._remember_metadata(node)
        if staged is not None:
            # Not dirty: its content is the object's, now under a new ETag; fill it all now
            # so it never needs the old version again.
            with from_storage(missing=Stale):
                await staged.fill_all()
        self._listing_put(node)
        return node

    async def _finish_staged_or_raise(self, node: Node, staged: Staged) -> None:
        """Upload a staging file that no handle holds (truncate of a closed file)."""
        try:
            await self._upload(node, staged)
        except FsError:
            if self._staged.get(node.ino) is staged:
                del self._staged[node.ino]
            staged.discard()
            node.attr_expires = 0
            raise
        if self._staged.get(node.ino) is staged:
            del self._staged[node.ino]
        staged.discard()

    async def mkdir(self, parent_ino: int, name: str, mode: int) -> Node:
        parent = self._dir(parent_ino)
        self._check_name(name)
        self._check_writable()
        await self._check_absent(parent, name)
        key = namespace.child_key(parent.key, name, directory=True)
        node_mode = self.options.dir_mode if self.options.dir_mode is not None else mode & 0o7777
        meta = namespace.s3fs_metadata(
            stat.S_IFDIR | node_mode, self.options.uid, self.options.gid, time.time_ns()
        )
        with from_storage():
            await self.store.put(key, b"", metadata=meta)
        parent = self._dir(parent_ino)
        node = self.inodes.remember(parent, name, Kind.DIR, key)
        self._init_dir(node, None)
        node.mode = node_mode
        self._touch(node)
        node.metadata_loaded = True
        node.listing = Listing(entries={}, expires=self.clock() + self.options.dir_ttl)
        self._recent_listings[key] = node.listing
        if parent.listing is not None:
            parent.listing.entries[name] = Entry(name=name, kind=Kind.DIR, key=key)
        return node

    async def unlink(self, parent_ino: int, name: str) -> None:
        parent = self._dir(parent_ino)
        self._check_writable()
        node = await self._resolve(parent, name)
        if node.is_dir:
            self.inodes.drop_unreferenced(node)
            raise IsADirectory(node.key)
        staged = self._staged.get(node.ino)
        if staged is not None:
            staged.unlinked = True
        with from_storage():
            await self.store.delete(node.key, missing_ok=True)
        self._listing_drop(parent, name)
        self.inodes.detach(node)
        self.inodes.set_negative(parent.ino, name)

    async def _is_empty(self, node: Node) -> bool:
        if self._has_staged_under(node.key):
            return False
        with from_storage():
            async with aclosing(self.store.list_pages(node.key, delimiter="/", page=2)) as pages:
                async for page in pages:
                    if any(item.key != node.key for item in page):
                        return False
        return True

    async def rmdir(self, parent_ino: int, name: str) -> None:
        parent = self._dir(parent_ino)
        self._check_writable()
        node = await self._resolve(parent, name)
        if not node.is_dir:
            self.inodes.drop_unreferenced(node)
            raise NotADirectory(node.key)
        if not await self._is_empty(node):
            self.inodes.drop_unreferenced(node)
            raise NotEmpty(node.key)
        with from_storage():
            await self.store.delete(node.key, missing_ok=True)
        self._forget_listings(node.key)
        self._listing_drop(parent, name)
        self.inodes.detach(node)
        self.inodes.set_negative(parent.ino, name)

    async def rename(
        self, parent_ino: int, name: str, new_parent_ino: int, new_name: str, flags: int
    ) -> None:
        self._dir(parent_ino)
        self._dir(new_parent_ino)
        self._check_writable()
        self._check_name(new_name)
        if flags & ~RENAME_NOREPLACE:
            raise NotSupported("only RENAME_NOREPLACE is supported")
        parent, new_parent = self._dir(parent_ino), self._dir(new_parent_ino)
        src = await self._resolve(parent, name)
        dst = await self._find(new_parent, new_name)
        try:
            await self._rename(parent, name, new_parent, new_name, flags, src, dst)
        except FsError:
            # A rename that failed half way may have created part of the target: what the
            # caches say about that name is no longer known to be true.
            self.inodes.clear_negative(new_parent.ino, new_name)
            new_parent.listing = None
            raise
        finally:
            self.inodes.drop_unreferenced(src)
            if dst is not None:
                self.inodes.drop_unreferenced(dst)

    async def _rename(
        self,
        parent: Node,
        name: str,
        new_parent: Node,
        new_name: str,
        flags: int,
        src: Node,
        dst: Node | None,
    ) -> None:
        if dst is src:
            return
        if dst is not None:
            if flags & RENAME_NOREPLACE:
                raise Exists(new_name)
            if src.is_dir and not dst.is_dir:
                raise NotADirectory(dst.key)
            if not src.is_dir and dst.is_dir:
                raise IsADirectory(dst.key)
            # A non-empty destination directory is checked by _rename_dir, which may
            # find it to be an interrupted rename of this same source.
        if src.is_dir:
            new_key = namespace.child_key(new_parent.key, new_name, directory=True)
            if new_key.startswith(src.key):
                raise InvalidName("cannot move a directory into itself")
            await self._rename_dir(src, new_key, dst)
        else:
            new_key = namespace.child_key(new_parent.key, new_name, directory=False)
            await self._rename_file(src, new_key, dst)
        self._listing_drop(parent, name)
        self.inodes.move(src, new_parent, new_name, new_key)
        if src.is_dir:
            await self._after_dir_move(new_key)
        self.inodes.set_negative(parent.ino, name)
        self._listing_put(src)
        if src.is_dir and new_parent.listing is not None:
            new_parent.listing.entries[new_name] = Entry(name=new_name, kind=Kind.DIR, key=new_key)

    async def _after_dir_move(self, new_key: str) -> None:
        """Known files under a moved directory: same metadata (the copies kept it), maybe
        new ETags (Azure, copies in parts).  One listing gives those, so a lookup answered
        from a listing later still finds the version whose metadata is known -- otherwise
        a symlink would show as a file until its next HEAD."""
        try:
            moved = await self._tree(new_key)
        except FsError:
            moved = {}  # the move is done; the nodes are simply re-checked
        for node in self.inodes:
            if node.is_dir or not node.key.startswith(new_key) or node.ino in self._staged:
                continue
            info = moved.get(node.key[len(new_key) :])
            node.attr_expires = 0.0  # re-checked on the next getattr/open
            if info is None:
                node.etag, node.metadata_loaded = None, False
            else:
                node.etag, node.size = info.etag, info.size

    async def _rename_file(self, src: Node, new_key: str, dst: Node | None) -> None:
        staged = self._staged.get(src.ino)
        if dst is not None:
            dst_staged = self._staged.get(dst.ino)
            if dst_staged is not None:
                dst_staged.unlinked = True
        with from_storage():
            if staged is not None and staged.dirty and not staged.unlinked:
                # Not yet stored: upload straight under the new name.
                etag = await staged.upload(self.store, new_key, self._metadata(src))
                src.etag, src.size = etag, staged.size
            else:
                if staged is not None:
                    with from_storage(missing=Stale):
                        await staged.fill_all()
                await self.store.copy(src.key, new_key, size=src.size)
                src.etag = (await self.store.head(new_key)).etag
            await self.store.delete(src.key, missing_ok=True)
        if staged is not None:
            staged.rename_key(new_key)

    def _forget_listings(self, prefix: str) -> None:
        """Drop the kept listings of the directory ``prefix`` and those below it."""
        for key in [k for k in self._recent_listings if k.startswith(prefix)]:
            del self._recent_listings[key]

    async def _rename_dir(self, src: Node, new_key: str, dst: Node | None) -> None:
        """Move every key under ``src`` to ``new_key``: all copies first, then the deletes.

        Not atomic, but safe to re-run after an interruption (``docs/SEMANTICS.md``,
        "Renaming directories"): until the copies are done the source is complete and the
        destination holds only finished copies of some of its files; after, the destination
        is complete and the source holds only files (then directories) it already has.
        Renaming the same source onto such a destination again copies what is missing and
        deletes the rest (:func:`rename_plan`); onto any other non-empty directory it is
        ENOTEMPTY.  The source's own marker goes last, so an interruption just before it
        leaves an empty directory (``rmdir`` ends that).
        """
        if dst is not None and self._has_staged_under(dst.key):
            raise NotEmpty(dst.key)  # files being written there are not in its listing yet
        # Everything written under the directory goes up first, under the old names.
        for ino, staged in list(self._staged.items()):
            node = self._staged_node(ino)
            if node is not None and node.key.startswith(src.key) and staged.dirty:
                if not staged.unlinked:
                    await self._upload(node, staged)
        src_tree = await self._tree(src.key)
        # Listed even when the caches say the name is free: keys under it written since
        # (another mount, an earlier interrupted rename) must not be merged into unseen.
        dst_tree = await self._tree(new_key)
        plan = rename_plan(src_tree, dst_tree)
        if plan is None:
            raise NotEmpty(new_key)
        to_copy, to_delete = plan

        async def move(rel: str) -> None:
            try:
                with from_storage():
                    await self.store.copy(src.key + rel, new_key + rel, size=src_tree[rel].size)
            except NotFound:
                # A key deleted meanwhile has nothing to move.  SeaweedFS cannot copy a
                # `dir/` marker (its folders are not objects): write a new, empty one.
                if rel.endswith("/"):
                    with from_storage():
                        await self.store.put(new_key + rel, b"")

        async def remove(rel: str) -> None:
            with from_storage():
                await self.store.delete(src.key + rel, missing_ok=True)

        await self._move_marker(src, new_key, "" in src_tree)
        await _for_each(to_copy, move)
        # Files first, then directories deepest first, the directory itself last: SeaweedFS
        # keeps a folder listed (empty) after its last key goes, until its `dir/` key is
        # deleted once it is empty -- so implicit directories are "deleted" too (a no-op
        # elsewhere).
        await _for_each([rel for rel in to_delete if not rel.endswith("/")], remove)
        for level in _directories_deepest_first(to_delete):
            await _for_each(level, remove)
        await remove("")
        for node in self.inodes:
            if node.is_dir and (node.key.startswith(src.key) or node.key.startswith(new_key)):
                node.listing = None
        self._forget_listings(src.key)
        self._forget_listings(new_key)
        for ino, staged in self._staged.items():
            node = self._staged_node(ino)
            if node is not None and node.key.startswith(src.key):
                staged.rename_key(new_key + node.key[len(src.key) :])

    async def _move_marker(self, src: Node, new_key: str, listed: bool) -> None:
        """The directory's own marker object under its new name."""
        if listed:
            try:
                with from_storage():
                    await self.store.copy(src.key, new_key, size=0)
                return
            except NotFound:
                pass  # SeaweedFS lists implicit directories, which cannot be copied
        # An implicit directory gets a marker under its new name, so it persists even if
        # its last file goes.
        with from_storage():
            await self.store.put(new_key, b"", metadata=self._metadata(src))

    def _has_staged_under(self, key: str) -> bool:
        for ino, staged in self._staged.items():
            node = self._staged_node(ino)
            if node is not None and not staged.unlinked and node.key.startswith(key):
                return True
        return False

    async def _tree(self, key: str) -> dict[str, ObjectInfo]:
        """Every object under the directory ``key``, by its name relative to it (the
        directory's own marker is ``""``)."""
        tree: dict[str, ObjectInfo] = {}
        with from_storage():
            async with aclosing(self.store.list_pages(key, delimiter=None)) as pages:
                async for page in pages:
                    for item in page:
                        if isinstance(item, ObjectInfo):
                            tree[item.key[len(key) :]] = item
        return tree

    async def symlink(self, parent_ino: int, name: str, target: str) -> Node:
        parent = self._dir(parent_ino)
        self._check_name(name)
        self._check_writable()
        await self._check_absent(parent, name)
        key = namespace.child_key(parent.key, name, directory=False)
        body = target.encode("utf-8", "surrogateescape")
        now = time.time_ns()
        meta = namespace.s3fs_metadata(
            stat.S_IFLNK | 0o777, self.options.uid, self.options.gid, now
        )
        with from_storage():
            etag = await self.store.put(key, body, metadata=meta)
        parent = self._dir(parent_ino)
        node = self.inodes.remember(parent, name, Kind.FILE, key)
        node.mode, node.uid, node.gid = 0o777, self.options.uid, self.options.gid
        node.size, node.etag, node.symlink = len(body), etag, True
        node.metadata_loaded = True
        self._touch(node, now)
        node.attr_expires = self.clock() + self.options.attr_ttl
        self._remember_metadata(node)
        self._listing_put(node)
        return node

    async def readlink(self, ino: int) -> bytes:
        node = self.inodes.get(ino)
        if node.is_dir or not node.symlink:
            raise InvalidName(f"{node.key} is not a symbolic link")
        with from_storage():
            return await self.store.read_all(node.key)

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
        """Upload whatever is still dirty (called before the daemon exits).

        Files still open when the mount goes away are uploaded as they are; a failed upload
        leaves its staging file on disk and is logged with its key.
        """
        for ino, staged in list(self._staged.items()):
            node = self._staged_node(ino)
            if node is None or staged.unlinked or not staged.dirty:
                continue
            try:
                await self._upload(node, staged)
            except FsError as e:
                log.error(
                    "could not upload %r before exit (%s); its data is kept in %s",
                    node.key,
                    e,
                    staged.path,
                )
        # Streaming uploads given up meanwhile are aborted, so they leave no parts.
        await self.writeback.settle()
        self.writeback.close_spares()

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


async def _for_each(items: Sequence[str], fn: Callable[[str], Awaitable[None]]) -> None:
    """``fn`` on every item, :data:`RENAME_CONCURRENCY` at once.  After a failure no new
    item is started, and the first failure is raised as itself (not as a group), so the
    adapter can give its errno."""
    limit = trio.Semaphore(RENAME_CONCURRENCY)
    failures: list[Exception] = []

    async def one(item: str) -> None:
        try:
            await fn(item)
        except Exception as e:  # collected: the first is raised below
            failures.append(e)
        finally:
            limit.release()

    async with trio.open_nursery() as nursery:
        for item in items:
            await limit.acquire()
            if failures:
                limit.release()
                break
            nursery.start_soon(one, item)
    if failures:
        raise failures[0]


def _directories_deepest_first(names: Sequence[str]) -> list[list[str]]:
    """Every directory ``names`` (relative keys) hold, listed or implied by a deeper key,
    grouped by depth, deepest group first (the top directory itself, ``""``, excluded)."""
    dirs: set[str] = set()
    for name in names:
        parts = name.split("/")[:-1]  # "a/b/c" -> a/, a/b/; "a/b/" -> a/, a/b/
        dirs.update("/".join(parts[: i + 1]) + "/" for i in range(len(parts)))
    levels: dict[int, list[str]] = {}
    for d in dirs:
        levels.setdefault(d.count("/"), []).append(d)
    return [sorted(levels[depth]) for depth in sorted(levels, reverse=True)]


def rename_plan(
    src: dict[str, ObjectInfo], dst: dict[str, ObjectInfo]
) -> tuple[list[str], list[str]] | None:
    """What a directory rename must copy and then delete, given the objects under the source
    and under the destination (relative names; ``""`` is a directory's own marker).

    Returns ``(to_copy, to_delete)`` -- neither includes ``""`` -- or ``None`` when the
    destination is a non-empty directory that is not part of this move (ENOTEMPTY).  The
    destination counts as part of the move -- an earlier, interrupted rename of this source
    -- when the names the two share are not none, every shared name is the same object
    (:func:`same_copy`), and one side's files all appear in the other: the destination's in
    the source (interrupted while copying) or the source's in the destination (interrupted
    while deleting).  Shared names are then only deleted from the source, not copied again.
    """
    src_names = set(src) - {""}
    dst_names = set(dst) - {""}
    if dst_names:
        shared = src_names & dst_names
        # Directory markers hold no data and one that cannot be copied is written anew
        # (SeaweedFS), so only the files decide which side is contained in the other.
        src_files = {name for name in src_names if not name.endswith("/")}
        dst_files = {name for name in dst_names if not name.endswith("/")}
        if not shared or not (dst_files <= src_files or src_files <= dst_files):
            return None
        if not all(same_copy(src[name], dst[name]) for name in shared):
            return None
    to_copy = sorted(src_names - dst_names)
    return to_copy, sorted(src_names)


def same_copy(src: ObjectInfo, dst: ObjectInfo) -> bool:
    """Whether ``dst`` can be a finished copy of ``src`` made by a rename.

    Directory markers carry no content.  Otherwise the sizes must agree, and the ETags:
    equal ETags are the same content (a single-request S3 copy keeps the source's).  Two
    plain md5 ETags that differ are different content for sure.  Where copies get new ETags
    (Azure; S3 copies made in parts, ``md5-N``) the content cannot be told apart without
    reading it, and a destination no older than its source is taken for its copy: a source
    changed after it was copied is newer than the copy, so it is not.
    """
    if src.key.endswith("/"):
        return True
    if src.size != dst.size:
        return False
    if src.etag == dst.etag:
        return True
    if _PLAIN_MD5.fullmatch(src.etag) and _PLAIN_MD5.fullmatch(dst.etag):
        return False
    return (
        src.modified_at is not None
        and dst.modified_at is not None
        and dst.modified_at >= src.modified_at
    )
