"""Directory listings: loaded from the store one page at a time, cached, kept current.

A directory's listing is reused for ``dir_ttl`` seconds, both for ``readdir`` and to answer
lookups without a request; it is loaded by one task at a time per directory, and the
lookups racing a reload wait for it.  Listings are also kept by directory key (a bounded
LRU) beyond the life of their directory's inode: the kernel forgets inodes under memory
pressure or ``drop_caches``, and the listing is still good.

Changes made through this mount are written into the cached listings (:meth:`put`,
:meth:`drop`), so they show at once; files created here and not yet uploaded are added to
every listing loaded while they are being written.
"""

from __future__ import annotations

import logging
from contextlib import aclosing

from cachetools import LRUCache

from blobfs.cache.inflight import InFlight
from blobfs.errors import from_storage
from blobfs.fs.inodes import Entry, Kind, Listing, Node
from blobfs.fs.metadata import to_ns
from blobfs.fs.names import valid_name
from blobfs.fs.state import FsState
from sdk.providers.base import ObjectInfo, PrefixInfo

log = logging.getLogger(__name__)

#: Listings kept by directory key beyond the life of their directory's inode.
RECENT_LISTINGS = 64


class Listings:
    """The listings of directories: single-flight loading, the recent ones, updates."""

    def __init__(self, state: FsState) -> None:
        self.state = state
        self._loads: InFlight[int, Listing] = InFlight()
        self._recent: LRUCache[str, Listing] = LRUCache(maxsize=RECENT_LISTINGS)

    async def get(self, node: Node) -> Listing:
        """The directory's listing, reloaded if expired; one load at a time per directory,
        so the lookups of an ``ls -l`` racing a reload all wait for that one reload and
        share its outcome (the store has retried what it could by then)."""
        clock = self.state.clock
        while True:
            listing = node.listing
            if listing is not None and listing.expires > clock():
                return listing
            pending = self._loads.get(node.ino)
            if pending is None:
                return await self._reload(node)
            if await pending.wait():
                assert pending.result is not None
                return pending.result  # just loaded for us, even if its TTL is already short
            # Its loader was cancelled: look again.

    async def _reload(self, node: Node) -> Listing:
        async def reload() -> Listing:
            listing = await self._load(node)
            node.listing = listing
            self._recent[node.key] = listing
            return listing

        return await self._loads.run(node.ino, reload)

    async def _load(self, node: Node) -> Listing:
        state = self.state
        prefix = node.key
        entries: dict[str, Entry] = {}
        state.stats.lists += 1
        with from_storage():
            async with aclosing(state.store.list_pages(prefix, delimiter="/")) as pages:
                async for page in pages:
                    for item in page:
                        self._add_entry(entries, prefix, item)
        # Files created here and not yet uploaded exist too.
        for ino, staged in state.staged.items():
            child = state.inodes.find(ino)
            if child is not None and child.parent == node.ino and not staged.unlinked:
                if state.inodes.child(node.ino, child.name) is child:
                    entries[child.name] = Entry(
                        name=child.name, kind=Kind.FILE, key=child.key, size=child.size
                    )
        return Listing(entries=entries, expires=state.clock() + state.options.dir_ttl)

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
        if not valid_name(name):
            self.state.stats.skipped_names += 1
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
                mtime_ns=to_ns(item.modified_at, 0),
                etag=item.etag,
            )

    def recall(self, node: Node) -> None:
        """Give a directory node without a listing the one kept for its key, if any."""
        if node.listing is None:
            node.listing = self._recent.get(node.key)

    def start_empty(self, node: Node) -> None:
        """A directory just made here: its listing is known to be empty."""
        node.listing = Listing(entries={}, expires=self.state.clock() + self.state.options.dir_ttl)
        self._recent[node.key] = node.listing

    def put(self, node: Node) -> None:
        """Show ``node`` as it is now in its parent's cached listing."""
        parent = self.state.inodes.find(node.parent)
        if parent is None or parent.listing is None:
            return
        if self.state.inodes.child(parent.ino, node.name) is not node:
            return
        parent.listing.entries[node.name] = Entry(
            name=node.name,
            kind=node.kind,
            key=node.key,
            size=node.size,
            mtime_ns=node.mtime_ns,
            etag=node.etag,
        )

    @staticmethod
    def put_dir(parent: Node, name: str, key: str) -> None:
        """Show the directory ``name`` (key ``key``) in ``parent``'s cached listing."""
        if parent.listing is not None:
            parent.listing.entries[name] = Entry(name=name, kind=Kind.DIR, key=key)

    @staticmethod
    def drop(parent: Node, name: str) -> None:
        """Remove ``name`` from ``parent``'s cached listing."""
        if parent.listing is not None:
            parent.listing.entries.pop(name, None)

    def forget(self, prefix: str) -> None:
        """Drop the kept listings of the directory ``prefix`` and those below it."""
        for key in [k for k in self._recent if k.startswith(prefix)]:
            del self._recent[key]

    def forget_nodes(self, prefix: str) -> None:
        """Drop the listings of the directory nodes ``prefix`` and below, and the kept ones."""
        for node in self.state.inodes:
            if node.is_dir and node.key.startswith(prefix):
                node.listing = None
        self.forget(prefix)
