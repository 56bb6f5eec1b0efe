"""Names to nodes: ``lookup`` and ``getattr``, the negative entries, the HEAD + LIST race.

A file's attributes are trusted for ``attr_ttl`` seconds, then re-checked with a HEAD.  A
name found missing stays missing for ``negative_ttl``.  A name not known yet is looked up
in the directory's cached listing if it has one (re-listed when expired), else with a HEAD
of the file key and a one-entry LIST of the directory prefix at once; when both exist the
directory wins (:mod:`blobfs.fs.names`).  A file being written here is what its staging
file says, without asking the store.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import trio

from blobfs.cache.inflight import InFlight
from blobfs.errors import Exists, FsError, NotFound, from_storage
from blobfs.fs.attributes import Attributes
from blobfs.fs.inodes import Entry, Kind, Node
from blobfs.fs.listings import Listings
from blobfs.fs.metadata import to_ns
from blobfs.fs.names import check_name, child_key, key_fits, valid_name
from blobfs.fs.state import FsState
from sdk.providers.base import ObjectInfo, PrefixInfo

log = logging.getLogger(__name__)


class Lookup:
    """Resolves names in directories and keeps nodes' attributes fresh."""

    def __init__(self, state: FsState, attributes: Attributes, listings: Listings) -> None:
        self.state = state
        self.attributes = attributes
        self.listings = listings
        #: Inode -> the HEAD re-checking it, which later askers wait for.
        self._refreshing: InFlight[int, None] = InFlight()

    async def lookup(self, parent_ino: int, name: str) -> Node:
        """The entry ``name`` in directory ``parent_ino``; counts one kernel reference."""
        inodes = self.state.inodes
        parent = inodes.directory(parent_ino)
        if name == ".":
            node = parent
        elif name == "..":
            node = inodes.get(parent.parent)
        else:
            check_name(name)
            node = await self.resolve(parent, name)
            if node.is_dir and not node.metadata_loaded:
                await self.load_dir_metadata(node)
        inodes.ref(node)
        return node

    def forget(self, items: Sequence[tuple[int, int]]) -> None:
        """The kernel dropped references: ``(inode, count)`` pairs."""
        for ino, count in items:
            self.state.inodes.forget(ino, count)

    async def getattr(self, ino: int) -> Node:
        """The node of ``ino``, a file's attributes re-checked once their TTL ran out."""
        state = self.state
        node = state.inodes.get(ino)
        if (
            node.kind is Kind.FILE
            and node.attr_expires <= state.clock()
            and node.ino not in state.staged
        ):
            await self.refresh(node)
        return node

    async def refresh(self, node: Node) -> None:
        """A file's attributes from a HEAD; a file gone is detached (:class:`NotFound`).

        Those who ask while a HEAD of the node is on its way share it and its outcome: the
        kernel re-checks an open file's attributes from every reader once they expire (fio's
        jobs, a data loader's workers), and each asked the store on its own.  The answer is
        at most one HEAD older than the asker, well within ``attr_ttl``."""
        pending = self._refreshing.get(node.ino)
        if pending is not None:
            if await pending.wait():
                return
            # Its asker was cancelled: ask again.
            return await self.refresh(node)
        state = self.state
        state.stats.heads += 1

        async def head() -> None:
            try:
                with from_storage():
                    info = await state.store.head(node.key)
            except NotFound:
                state.inodes.detach(node)
                raise
            self.attributes.apply_head(node, info)

        await self._refreshing.run(node.ino, head)

    def init_dir(self, node: Node, marker: ObjectInfo | None) -> None:
        """A directory node's listing (if one is kept) and attributes."""
        self.listings.recall(node)
        self.attributes.init_dir(node, marker)

    def node_from_entry(self, parent: Node, entry: Entry) -> Node:
        """The node of a listing's entry, its attributes from the entry if not fresher."""
        node = self.state.inodes.remember(parent, entry.name, entry.kind, entry.key)
        if entry.kind is Kind.DIR:
            if node.attr_expires <= self.state.clock():
                self.init_dir(node, None)
        else:
            self.attributes.init_file(node, entry.size, entry.mtime_ns, entry.etag)
        return node

    async def find(self, parent: Node, name: str) -> Node | None:
        """:meth:`resolve`, with ``None`` for a name that does not exist."""
        try:
            return await self.resolve(parent, name)
        except NotFound:
            return None

    async def check_absent(self, parent: Node, name: str) -> None:
        """Raise :class:`Exists` if ``name`` exists in ``parent``."""
        node = await self.find(parent, name)
        if node is not None:
            self.state.inodes.drop_unreferenced(node)
            raise Exists(name)

    async def resolve(self, parent: Node, name: str) -> Node:
        """The node of ``name`` in ``parent`` (:class:`NotFound` if there is none); it
        counts no kernel reference."""
        state = self.state
        now = state.clock()
        existing = state.inodes.child(parent.ino, name)
        if existing is not None and (existing.attr_expires > now or existing.ino in state.staged):
            return existing
        if existing is None and state.inodes.is_negative(parent.ino, name):
            raise NotFound(name)
        if not valid_name(name):
            raise NotFound(name)
        listing = parent.listing
        if listing is not None:
            # Once a directory has been listed, a lookup after the listing expired re-lists
            # it rather than HEAD + LIST the one name: as cheap for up to a page of entries,
            # and the lookups that follow (ls -l, find, reading back a tree) are answered
            # from it.  For a directory with very many entries, a stat storm's lookups each
            # cost two requests otherwise, while one paged re-listing serves them all.
            listing = await self.listings.get(parent)
            entry = listing.entries.get(name)
            if entry is not None:
                return self.node_from_entry(parent, entry)
            return self._missing(parent, name, state.inodes.child(parent.ino, name))
        return await self._resolve_remote(parent, name)

    def _missing(self, parent: Node, name: str, existing: Node | None) -> Node:
        inodes = self.state.inodes
        if existing is not None:
            inodes.detach(existing)
        inodes.set_negative(parent.ino, name)
        raise NotFound(name)

    async def _resolve_remote(self, parent: Node, name: str) -> Node:
        state = self.state
        file_key = child_key(parent.key, name, directory=False)
        dir_key = child_key(parent.key, name, directory=True)
        if not key_fits(file_key):
            return self._missing(parent, name, state.inodes.child(parent.ino, name))
        head: ObjectInfo | None = None
        first: ObjectInfo | PrefixInfo | None = None

        async def do_head() -> None:
            nonlocal head
            state.stats.heads += 1
            try:
                with from_storage():
                    head = await state.store.head(file_key)
            except NotFound:
                head = None

        async def do_list() -> None:
            nonlocal first
            state.stats.lists += 1
            with from_storage():
                first = await state.store.first_entry(dir_key, delimiter="/")

        # Both questions at once: one round trip of latency for a lookup.
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(do_head)
                nursery.start_soon(do_list)
        except* FsError as failed:
            # The nursery groups what failed; the lookup fails with the first, as itself,
            # so the adapter gives its errno (one failing or both alike, e.g. no server).
            raise failed.exceptions[0] from None

        existing = state.inodes.child(parent.ino, name)
        if first is not None:
            # The directory wins over a file of the same name.
            node = state.inodes.remember(parent, name, Kind.DIR, dir_key)
            marker = first if isinstance(first, ObjectInfo) and first.key == dir_key else None
            self.init_dir(node, marker)
            return node
        if head is not None:
            node = state.inodes.remember(parent, name, Kind.FILE, file_key)
            self.attributes.apply_head(node, head)
            return node
        return self._missing(parent, name, existing)

    async def load_dir_metadata(self, node: Node) -> None:
        """Mode, owner, times and extended attributes of a directory from its marker's
        metadata (one HEAD per directory node; an implicit directory keeps the defaults)."""
        state = self.state
        state.stats.heads += 1
        try:
            with from_storage():
                info = await state.store.head(node.key)
        except NotFound:
            node.metadata_loaded = True
            return
        except FsError as e:
            log.debug("cannot read the metadata of %r: %s", node.key, e)
            return
        if info.modified_at is not None:
            written = to_ns(info.modified_at, node.mtime_ns)
            node.atime_ns = node.mtime_ns = node.ctime_ns = written
        self.attributes.apply_metadata(node, info)
        state.dir_times.recall(node)
        node.metadata_loaded = True
